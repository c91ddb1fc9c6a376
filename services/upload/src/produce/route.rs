//! Which partition a row goes to — the same on every attempt of an import, so that a resumed
//! upload sends a row again to the partition that may already hold it, where the sink
//! recognises it by its line.
//!
//! Rows with a key (the `key` column, or in upsert/skip mode the conflict columns: rows with the
//! same key keep their file order end to end) go where the producer's partitioner puts that key
//! — except rows packed by key (upsert/skip without `key=`, [`Route::new`]'s `pack_keyed`):
//! csvbus puts those itself, by an xxh3 hash of the key, so that a partition's pack may hold
//! rows of many keys. Rows without a key go in runs of [`RUN`] lines to one partition after
//! another, starting at a partition derived from the import id.

use csv_async::ByteRecord;
use rdkafka::producer::{FutureProducer, Producer};
use std::time::Duration;
use uuid::Uuid;

/// Lines per run of keyless rows on one partition.
pub const RUN: u64 = 1024;

/// Separates the values of a key made of several columns.
const KEY_SEPARATOR: u8 = 0x1f;

/// Where the rows of one import go.
#[derive(Debug)]
pub struct Route {
    key_columns: Vec<usize>,
    partitions: u64,
    first: u64,
    key: Vec<u8>,
    pack_keyed: bool,
}

impl Route {
    /// `pack_keyed`: keyed rows are packed, their partition chosen here ([`Route::place`]).
    pub fn new(key_columns: Vec<usize>, partitions: i32, import: Uuid, pack_keyed: bool) -> Self {
        let partitions = partitions.max(1) as u64;
        Self {
            key_columns,
            partitions,
            first: (import.as_u128() % u128::from(partitions)) as u64,
            key: Vec::new(),
            pack_keyed,
        }
    }

    /// The message key and the partition of `record` at `line`: a keyless row has its run's
    /// partition; a keyed row packed by key the partition of its key's hash and no message key
    /// (its pack has none); any other keyed row its key, for the producer's partitioner.
    pub fn place<'r>(
        &'r mut self,
        line: u64,
        record: &'r ByteRecord,
    ) -> (Option<&'r [u8]>, Option<i32>) {
        if self.key_columns.is_empty() {
            return (None, self.partition(line));
        }
        let (partitions, pack) = (self.partitions, self.pack_keyed);
        let key = self.key(record);
        if pack {
            let hash = xxhash_rust::xxh3::xxh3_64(key.unwrap_or_default());
            return (None, Some((hash % partitions) as i32));
        }
        (key, None)
    }

    /// The message key of `record`, if the import routes by key.
    pub fn key<'r>(&'r mut self, record: &'r ByteRecord) -> Option<&'r [u8]> {
        match self.key_columns.as_slice() {
            [] => None,
            [i] => record.get(*i),
            many => {
                self.key.clear();
                for (n, i) in many.iter().enumerate() {
                    if n > 0 {
                        self.key.push(KEY_SEPARATOR);
                    }
                    self.key
                        .extend_from_slice(record.get(*i).unwrap_or_default());
                }
                Some(&self.key)
            }
        }
    }

    /// The partition of a keyless row at `line`; `None` when rows have keys.
    pub fn partition(&self, line: u64) -> Option<i32> {
        if !self.key_columns.is_empty() {
            return None;
        }
        Some(((line / RUN + self.first) % self.partitions) as i32)
    }
}

/// The topic's partition count, from the broker (see [`csvbus_shared::kafka::partition_count`]).
pub async fn partition_count(
    producer: &FutureProducer,
    topic: &str,
) -> Result<i32, rdkafka::error::KafkaError> {
    csvbus_shared::kafka::partition_count(
        producer.clone(),
        topic,
        Duration::from_secs(5),
        |p, t, d| p.client().fetch_metadata(Some(t), d),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyless_rows_go_in_runs_the_same_every_time() {
        let id = Uuid::from_u128(6);
        let r = Route::new(vec![], 4, id, false);
        assert_eq!(r.partition(1), Some(2));
        assert_eq!(r.partition(RUN - 1), Some(2));
        assert_eq!(r.partition(RUN), Some(3));
        assert_eq!(r.partition(2 * RUN), Some(0));
        assert_eq!(Route::new(vec![], 4, id, true).partition(RUN), Some(3));
    }

    #[test]
    fn keys_of_several_columns_are_joined() {
        let rec = ByteRecord::from(vec!["a", "b", "c"]);
        let mut r = Route::new(vec![2, 0], 4, Uuid::nil(), false);
        assert_eq!(r.key(&rec), Some(&b"c\x1fa"[..]));
        assert_eq!(r.partition(5), None);
        let mut r = Route::new(vec![1], 4, Uuid::nil(), false);
        assert_eq!(r.key(&rec), Some(&b"b"[..]));
        assert_eq!(r.place(2, &rec), (Some(&b"b"[..]), None));
    }

    #[test]
    fn rows_packed_by_key_go_to_their_key_s_partition_without_a_message_key() {
        let mut r = Route::new(vec![0], 4, Uuid::nil(), true);
        let a = ByteRecord::from(vec!["k1", "x"]);
        let (key, pa) = r.place(2, &a);
        assert_eq!(key, None);
        assert_eq!(r.place(900, &a).1, pa, "same key, same partition, any line");
        assert!(pa.is_some_and(|p| (0..4).contains(&p)));
        let spread: std::collections::HashSet<_> = (0..64)
            .map(|i| {
                let rec = ByteRecord::from(vec![format!("key{i}")]);
                r.place(2, &rec).1
            })
            .collect();
        assert_eq!(spread.len(), 4, "keys spread over the partitions");
    }
}
