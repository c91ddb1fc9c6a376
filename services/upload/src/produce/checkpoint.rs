//! How far an upload is safely on the broker: the checkpoint a retry resumes from.
//!
//! Acknowledgements arrive out of order (several partitions), so the upload keeps its records
//! since the checkpoint in send order, each marked done when the broker acknowledged it (or at
//! once when it was rejected). The checkpoint is the last record of the done prefix: every
//! record up to its line is safe, and a retry skips them. Records after it may be on the broker
//! too; the sink recognises those when they come again (it keeps each import's highest line per
//! partition, and partitions are chosen by line or key, the same on every attempt).
//!
//! The digest chains a hash of each record's bytes onto the one before, so that a retry can
//! check it reads the same bytes up to the checkpoint.

use std::collections::VecDeque;

use csvbus_shared::imports::Checkpoint;

/// The chained digest after a record with these raw bytes.
pub fn chain(digest: i64, raw: &[u8]) -> i64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(raw, digest as u64) as i64
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    line: i64,
    digest: i64,
    produced: bool,
    done: bool,
}

/// Records since the checkpoint, in send order.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Sequence number of `entries[0]`.
    base: u64,
    entries: VecDeque<Entry>,
    /// The done prefix's end.
    pub at: Checkpoint,
}

impl Ledger {
    pub fn new(start: Checkpoint) -> Self {
        Self {
            base: 0,
            entries: VecDeque::new(),
            at: start,
        }
    }

    /// A record is sent (`produced`: it goes into a message) or rejected: returns its sequence
    /// number for [`done`].
    ///
    /// [`done`]: Ledger::done
    pub fn push(&mut self, line: i64, digest: i64, produced: bool) -> u64 {
        let seq = self.base + self.entries.len() as u64;
        self.entries.push_back(Entry {
            line,
            digest,
            produced,
            done: !produced,
        });
        self.advance();
        seq
    }

    /// The records `seqs` are safe (acknowledged: one message's rows).
    pub fn done(&mut self, seqs: &[u64]) {
        for &seq in seqs {
            if let Some(e) = seq
                .checked_sub(self.base)
                .and_then(|i| self.entries.get_mut(i as usize))
            {
                e.done = true;
            }
        }
        self.advance();
    }

    fn advance(&mut self) {
        while let Some(e) = self.entries.front().filter(|e| e.done).copied() {
            self.entries.pop_front();
            self.base += 1;
            self.at = Checkpoint {
                line: e.line,
                rows: self.at.rows + i64::from(e.produced),
                digest: e.digest,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoint_is_the_end_of_the_done_prefix() {
        let mut l = Ledger::new(Checkpoint::default());
        let a = l.push(2, 20, true);
        l.push(3, 30, false); // rejected: done at once, but behind line 2
        let c = l.push(5, 50, true);
        let d = l.push(6, 60, true);
        assert_eq!(l.at, Checkpoint::default());
        l.done(&[d]);
        assert_eq!(
            l.at.line, 0,
            "acked out of order: the prefix is not done yet"
        );
        l.done(&[a]);
        assert_eq!(
            l.at,
            Checkpoint {
                line: 3,
                rows: 1,
                digest: 30
            }
        );
        l.done(&[c]);
        assert_eq!(
            l.at,
            Checkpoint {
                line: 6,
                rows: 3,
                digest: 60
            }
        );
        l.done(&[99]); // unknown: ignored
        assert_eq!(l.at.rows, 3);
    }

    #[test]
    fn a_pack_is_done_at_once_and_the_rows_of_other_packs_are_not() {
        let mut l = Ledger::new(Checkpoint::default());
        let first = l.push(2, 20, true);
        l.push(3, 30, false);
        let last = l.push(4, 40, true);
        // Another partition's pack, still gathering: not on the broker yet.
        let next = l.push(5, 50, true);
        assert_eq!(l.at, Checkpoint::default());
        l.done(&[first, last]);
        assert_eq!(
            l.at,
            Checkpoint {
                line: 4,
                rows: 2,
                digest: 40
            }
        );
        l.done(&[next]);
        assert_eq!((l.at.line, l.at.rows), (5, 3));
    }

    #[test]
    fn a_resumed_ledger_counts_on_from_its_start() {
        let start = Checkpoint {
            line: 100,
            rows: 90,
            digest: 7,
        };
        let mut l = Ledger::new(start);
        let s = l.push(101, 8, true);
        l.done(&[s]);
        assert_eq!((l.at.line, l.at.rows, l.at.digest), (101, 91, 8));
    }

    #[test]
    fn digests_depend_on_bytes_and_order() {
        let ab = chain(chain(0, b"a\n"), b"b\n");
        assert_eq!(ab, chain(chain(0, b"a\n"), b"b\n"));
        assert_ne!(ab, chain(chain(0, b"b\n"), b"a\n"));
        assert_ne!(ab, chain(chain(0, b"a\n"), b"c\n"));
    }
}
