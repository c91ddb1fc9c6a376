//! Gathers an upload's keyless rows into packs ([`csvbus_shared::message::pack`]): the rows of
//! one run (one partition), up to `CSVBUS_MESSAGE_ROWS` rows and `CSVBUS_MESSAGE_PACK_BYTES`
//! bytes. The upload sends a pack when the next row would not fit it, when the body ends, and
//! before it waits for more of the body — so no row waits in a pack for a slow client.

use csvbus_shared::message::{Pack, Packed};

use crate::produce::producer::Rows;

/// The pack being gathered, and where it goes.
#[derive(Debug)]
pub struct Packer {
    pack: Pack,
    partition: i32,
    first_seq: u64,
    last_seq: u64,
    max_rows: u32,
    max_bytes: usize,
}

impl Packer {
    /// Packs of at most `max_rows` rows and `max_bytes` bytes (value and lines).
    pub fn new(max_rows: u32, max_bytes: usize) -> Self {
        Self {
            pack: Pack::default(),
            partition: 0,
            first_seq: 0,
            last_seq: 0,
            max_rows: max_rows.max(1),
            max_bytes,
        }
    }

    /// Whether a row of `len` bytes for `partition` may join the pack (an empty pack takes any
    /// row: alone, it is sent as a plain row message).
    pub fn fits(&self, partition: i32, len: usize) -> bool {
        self.pack.is_empty()
            || (partition == self.partition
                && self.pack.rows() < self.max_rows
                && self.pack.size_with(len) <= self.max_bytes)
    }

    /// The pack has as many rows as it may: send it now.
    pub fn full(&self) -> bool {
        self.pack.rows() >= self.max_rows
    }

    /// Adds the row at `line`, ledger entry `seq`, to the pack (after [`Packer::fits`] said so,
    /// or the pack was sent).
    pub fn push(&mut self, partition: i32, line: u64, row: &[u8], seq: u64) {
        if self.pack.is_empty() {
            self.partition = partition;
            self.first_seq = seq;
        }
        self.last_seq = seq;
        self.pack.push(line, row);
    }

    /// The pack as a message, its partition and its rows; `None` when empty. [`Packer::clear`]
    /// it once sent.
    pub fn message(&mut self) -> Option<(Packed<'_>, i32, Rows)> {
        if self.pack.is_empty() {
            return None;
        }
        let rows = Rows {
            count: self.pack.rows(),
            first_seq: self.first_seq,
            last_seq: self.last_seq,
        };
        Some((self.pack.finish(), self.partition, rows))
    }

    pub fn clear(&mut self) {
        self.pack.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pack_ends_at_its_partition_row_and_byte_bounds() {
        let row = br#"{"a":"1"}"#;
        let mut p = Packer::new(3, 1000);
        assert!(p.message().is_none());
        assert!(p.fits(0, row.len()));
        p.push(0, 2, row, 10);
        p.push(0, 3, row, 12);
        assert!(!p.fits(1, row.len()), "another partition");
        assert!(p.fits(0, row.len()));
        assert!(!p.full());
        p.push(0, 5, row, 13);
        assert!(p.full() && !p.fits(0, row.len()), "three rows");
        let (packed, partition, rows) = p.message().unwrap();
        assert!(matches!(packed, Packed::Many { lines: "2,3,5", .. }));
        assert_eq!(partition, 0);
        assert_eq!(
            rows,
            Rows {
                count: 3,
                first_seq: 10,
                last_seq: 13
            }
        );
        p.clear();
        assert!(p.fits(1, 5000), "an empty pack takes any row");
        let mut small = Packer::new(100, 50);
        small.push(0, 2, row, 0);
        assert!(small.fits(0, row.len()));
        small.push(0, 3, row, 1);
        assert!(!small.fits(0, row.len()), "50 bytes");
    }
}
