//! Gathers an upload's rows into packs ([`csvbus_shared::message::pack`]), one open pack per
//! partition: keyless rows (a run goes to one partition) and, in upsert and skip mode, keyed
//! rows (csvbus chooses their partition from their key: [`crate::produce::route`]). A pack
//! holds up to `CSVBUS_MESSAGE_ROWS` rows and `CSVBUS_MESSAGE_PACK_BYTES` bytes; the open packs
//! of one upload hold at most [`MAX_OPEN_BYTES`] together (past it the largest is sent). The
//! upload sends a pack when full, when the next row would not fit it, when the body ends, and
//! before it waits for more of the body — so no row waits in a pack for a slow client.

use csvbus_shared::message::{Pack, Packed};

use crate::produce::producer::Rows;

/// Bytes the open packs of one upload may hold together.
pub const MAX_OPEN_BYTES: usize = 1 << 20;

/// One partition's pack and its rows' ledger entries.
#[derive(Debug, Default)]
struct Open {
    pack: Pack,
    seqs: Vec<u64>,
}

/// The packs being gathered, by partition.
#[derive(Debug)]
pub struct Packer {
    open: Vec<Open>,
    /// Bytes held by the open packs.
    bytes: usize,
    max_rows: u32,
    max_bytes: usize,
}

impl Packer {
    /// Packs of at most `max_rows` rows and `max_bytes` bytes (value and lines).
    pub fn new(max_rows: u32, max_bytes: usize) -> Self {
        Self {
            open: Vec::new(),
            bytes: 0,
            max_rows: max_rows.max(1),
            max_bytes,
        }
    }

    fn get(&self, partition: i32) -> Option<&Open> {
        self.open.get(usize::try_from(partition).ok()?)
    }

    /// Whether a row of `len` bytes may join `partition`'s pack (an empty pack takes any row:
    /// alone, it is sent as a plain row message).
    pub fn fits(&self, partition: i32, len: usize) -> bool {
        self.get(partition).is_none_or(|o| {
            o.pack.is_empty()
                || (o.pack.rows() < self.max_rows && o.pack.size_with(len) <= self.max_bytes)
        })
    }

    /// `partition`'s pack has as many rows as it may: send it now.
    pub fn full(&self, partition: i32) -> bool {
        self.get(partition)
            .is_some_and(|o| o.pack.rows() >= self.max_rows)
    }

    /// The open packs hold more than [`MAX_OPEN_BYTES`]: the largest one's partition, to send.
    pub fn over_budget(&self) -> Option<i32> {
        if self.bytes <= MAX_OPEN_BYTES {
            return None;
        }
        let (i, _) = self
            .open
            .iter()
            .enumerate()
            .max_by_key(|(_, o)| o.pack.bytes())?;
        i32::try_from(i).ok()
    }

    /// Adds the row at `line`, ledger entry `seq`, to `partition`'s pack (after
    /// [`Packer::fits`] said so, or the pack was sent). `partition` is not negative.
    pub fn push(&mut self, partition: i32, line: u64, row: &[u8], seq: u64) {
        let i = usize::try_from(partition).unwrap_or_default();
        if self.open.len() <= i {
            self.open.resize_with(i + 1, Open::default);
        }
        let o = &mut self.open[i];
        let before = o.pack.bytes();
        o.pack.push(line, row);
        o.seqs.push(seq);
        self.bytes += o.pack.bytes() - before;
    }

    /// The partitions whose packs hold rows.
    pub fn partitions(&self) -> Vec<i32> {
        (0..self.open.len())
            .filter(|i| !self.open[*i].pack.is_empty())
            .filter_map(|i| i32::try_from(i).ok())
            .collect()
    }

    /// `partition`'s pack as a message and its rows; `None` when empty. The pack is empty
    /// after it.
    pub fn take(&mut self, partition: i32) -> Option<(Packed<'_>, Rows)> {
        let i = usize::try_from(partition).ok()?;
        let o = self.open.get_mut(i).filter(|o| !o.pack.is_empty())?;
        self.bytes -= o.pack.bytes();
        let rows = Rows {
            count: o.pack.rows(),
            seqs: std::mem::take(&mut o.seqs),
        };
        Some((o.pack.take(), rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pack_ends_at_its_row_and_byte_bounds_and_partitions_pack_apart() {
        let row = br#"{"a":"1"}"#;
        let mut p = Packer::new(3, 1000);
        assert!(p.take(0).is_none());
        assert!(p.fits(0, row.len()));
        p.push(0, 2, row, 10);
        p.push(1, 3, row, 11);
        p.push(0, 4, row, 12);
        assert!(p.fits(0, row.len()) && !p.full(0));
        p.push(0, 5, row, 13);
        assert!(p.full(0) && !p.fits(0, row.len()), "three rows");
        assert_eq!(p.partitions(), [0, 1]);
        let (packed, rows) = p.take(0).unwrap();
        assert!(matches!(packed, Packed::Many { lines: "2,4,5", .. }));
        assert_eq!(rows.count, 3);
        assert_eq!(
            rows.seqs,
            [10, 12, 13],
            "partition 1's row is not this pack's"
        );
        let (packed, rows) = p.take(1).unwrap();
        assert!(matches!(packed, Packed::One { line: 3, .. }));
        assert_eq!(rows.seqs, [11]);
        assert!(p.partitions().is_empty() && p.take(0).is_none());
        assert!(p.fits(1, 5000), "an empty pack takes any row");
        let mut small = Packer::new(100, 50);
        small.push(0, 2, row, 0);
        assert!(small.fits(0, row.len()));
        small.push(0, 3, row, 1);
        assert!(!small.fits(0, row.len()), "50 bytes");
    }

    #[test]
    fn past_the_budget_the_largest_pack_is_named() {
        let row = vec![b'x'; 40_000];
        let mut p = Packer::new(100, 1 << 20);
        for (i, line) in (0..30u64).enumerate() {
            p.push((i % 3) as i32, line + 2, &row, line);
        }
        assert!(p.over_budget().is_some());
        let largest = p.over_budget().unwrap();
        p.take(largest).unwrap();
        assert!(p.over_budget().is_none(), "{}", p.bytes);
        for part in p.partitions() {
            p.take(part).unwrap();
        }
        assert_eq!(p.bytes, 0);
    }
}
