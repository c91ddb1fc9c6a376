//! Consumer lag per partition, for `/metrics`.
//!
//! librdkafka's statistics (every `statistics.interval.ms`) carry each partition's high
//! watermark as of the last fetch, with no extra round trip. The lag reported is that minus the
//! position the sink last committed *to Postgres* — the truth — not Kafka's committed offset,
//! which is only a hint here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientContext, Statistics};

/// The consumer's context: positions in, `csvbus_sink_consumer_lag{topic, group, partition}` out;
/// it also notes when every broker connection was lost (see [`crate::assign::claims`]).
#[derive(Clone, Default)]
pub struct LagContext {
    topic: String,
    group: String,
    positions: Arc<Mutex<HashMap<i32, i64>>>,
    brokers_lost: Arc<AtomicBool>,
}

impl LagContext {
    pub fn new(topic: &str, group: &str) -> Self {
        Self {
            topic: topic.to_owned(),
            group: group.to_owned(),
            positions: Arc::default(),
            brokers_lost: Arc::default(),
        }
    }

    /// Whether every broker connection was lost since the last call (and forgets it).
    pub fn take_brokers_lost(&self) -> bool {
        self.brokers_lost.swap(false, Ordering::Relaxed)
    }

    /// Notes a loss again (the brokers were not back yet when it was taken).
    pub fn note_brokers_lost(&self) {
        self.brokers_lost.store(true, Ordering::Relaxed);
    }

    /// Records the position the sink committed to Postgres for `partition`; whether it moved on.
    /// Positions only move forward, but pipelined batches of one partition are booked as their
    /// tasks are reaped, not always in commit order: an older one booked late is not a move
    /// back (the lag gauge stayed a batch behind until the next commit).
    pub fn committed(&self, partition: i32, next_offset: i64) -> bool {
        let Ok(mut p) = self.positions.lock() else {
            return false;
        };
        let at = p.entry(partition).or_insert(i64::MIN);
        let moved = next_offset > *at;
        *at = (*at).max(next_offset);
        moved
    }

    /// The lag of each partition with a known position and high watermark.
    pub fn lags(&self, stats: &Statistics) -> Vec<(i32, i64)> {
        let Some(topic) = stats.topics.get(&self.topic) else {
            return Vec::new();
        };
        let Ok(positions) = self.positions.lock() else {
            return Vec::new();
        };
        topic
            .partitions
            .values()
            .filter(|p| p.partition >= 0 && p.hi_offset >= 0)
            .filter_map(|p| {
                let pos = positions.get(&p.partition)?;
                Some((p.partition, (p.hi_offset - pos).max(0)))
            })
            .collect()
    }
}

impl ClientContext for LagContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.note_brokers_lost();
        }
        tracing::error!("librdkafka: {error}: {reason}");
    }

    fn stats(&self, stats: Statistics) {
        for (partition, lag) in self.lags(&stats) {
            metrics::gauge!(
                "csvbus_sink_consumer_lag",
                "topic" => self.topic.clone(),
                "group" => self.group.clone(),
                "partition" => partition.to_string()
            )
            .set(lag as f64);
        }
    }
}

impl ConsumerContext for LagContext {}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::statistics::{Partition, Topic};

    fn stats(topic: &str, highs: &[(i32, i64)]) -> Statistics {
        let mut t = Topic {
            topic: topic.into(),
            ..Topic::default()
        };
        for (p, hi) in highs {
            let part = Partition {
                partition: *p,
                hi_offset: *hi,
                ..Partition::default()
            };
            t.partitions.insert(*p, part);
        }
        let mut s = Statistics::default();
        s.topics.insert(topic.into(), t);
        s
    }

    #[test]
    fn lag_is_the_high_watermark_minus_the_position_committed_to_postgres() {
        let ctx = LagContext::new("t", "g");
        ctx.committed(0, 90);
        ctx.committed(1, 500);
        // Partition 2 has no position yet; -1 is librdkafka's internal UA partition; an unknown
        // high watermark (-1) says nothing.
        let s = stats("t", &[(0, 100), (1, 400), (2, 50), (-1, 10), (3, -1)]);
        let mut lags = ctx.lags(&s);
        lags.sort();
        // A position past the watermark (tansu's watermark lags its last batch) is no lag.
        assert_eq!(lags, [(0, 10), (1, 0)]);
        // Another topic's statistics are not ours.
        assert!(ctx.lags(&stats("other", &[(0, 100)])).is_empty());
        // Positions move on.
        ctx.committed(0, 100);
        let mut lags = ctx.lags(&s);
        lags.sort();
        assert_eq!(lags[0], (0, 0));
        // Pipelined batches of a partition can be booked out of commit order: an older
        // position booked after a newer one does not move it back.
        assert!(!ctx.committed(0, 95), "not an advance");
        assert_eq!(ctx.lags(&s).iter().find(|l| l.0 == 0), Some(&(0, 0)));
    }
}
