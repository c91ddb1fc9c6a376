//! Batches of one partition, from the records held to the writer tasks and back.
//!
//! Up to [`DEPTH`] batches of a partition are in flight: each decodes its values at once
//! ([`crate::write::decode`], CPU work that needs no database), waits until the batch before it
//! has one of the `CSVBUS_SINK_CONCURRENCY` permits, takes one, and — while the batch before is
//! still writing — writes its rows pipelined behind it ([`crate::write::pipeline`]: it takes the
//! position lock last, after the batch before has committed). When that does not commit, or the
//! batch before has ended already, it writes the ordinary way once the batch before has ended.
//! So the transactions of a partition commit in offset order while their COPYs overlap.
//!
//! A batch that finds a gap (it starts past the stored position) makes the partition seek back;
//! a batch dispatched before that seek (an older *epoch*) that finds the same gap is only
//! released: one seek per gap.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::SinkConfig;
use crate::fetch::feed::SinkConsumer;
use crate::fetch::record::Record;
use crate::write::turn::{Turn, Writer};
use crate::write::writer::{Batch, Outcome, Settings};

/// Batches of one partition in flight at once, at most.
pub const DEPTH: usize = 4;

/// After a pipelined batch was held up by the batch before it (both reached the same rows:
/// a key repeated, a trigger's counter row), the partition's next batches are written the
/// ordinary way, one after another, this many of them.
pub const ORDINARY_AFTER_CONTENTION: u32 = 64;

/// What the loop keeps per partition.
#[derive(Default)]
pub struct Partition {
    pub buf: Vec<Record>,
    pub first_at: Option<Instant>,
    /// When the last record was added.
    pub last_at: Option<Instant>,
    in_flight: usize,
    /// The last dispatched batch's turn: the next one is written after it.
    turn: Option<Turn>,
    /// Counts seek-backs: a gap found by a batch of an older epoch was handled already.
    epoch: u64,
    /// How far before the stored position the next seek-back starts (doubles while gaps repeat).
    rewind: i64,
    /// The last seek-back went to the start of the log.
    from_start: bool,
    /// Batches still to be written the ordinary way (not pipelined) after a contended one.
    ordinary_for: u32,
}

impl Partition {
    /// Another batch may be dispatched.
    pub fn has_room(&self) -> bool {
        self.in_flight < DEPTH
    }

    /// A full batch can be dispatched now.
    pub fn ready(&self, batch_rows: usize) -> bool {
        self.has_room() && self.buf.len() >= batch_rows
    }

    /// A partial batch is due: its first record waited `linger`, or no record came for `quiet`
    /// (the partition is caught up: waiting longer only adds latency).
    pub fn due(&self, now: Instant, linger: Duration, quiet: Duration) -> bool {
        let waited = |t: Option<Instant>, d| t.is_some_and(|t| now.duration_since(t) >= d);
        self.has_room()
            && !self.buf.is_empty()
            && (waited(self.first_at, linger) || waited(self.last_at, quiet))
    }
}

/// A finished write.
pub struct Done {
    partition: i32,
    epoch: u64,
    /// Records and bytes it releases.
    records: usize,
    bytes: usize,
    outcome: Option<Outcome>,
    /// Pipelined, it was held up by the batch before (or failed): see [`ORDINARY_AFTER_CONTENTION`].
    contended: bool,
}

/// What dispatching and booking need.
pub struct Ctx<'a> {
    pub config: &'a SinkConfig,
    pub pool: &'a PgPool,
    pub topic: &'a str,
    pub sem: &'a Arc<Semaphore>,
    pub stop: &'a CancellationToken,
    pub settings: &'a Settings,
}

/// Takes up to `batch_rows` records of `p` (offsets ascending, duplicates dropped) into a
/// writer task.
pub fn dispatch(ctx: &Ctx<'_>, tasks: &mut JoinSet<Done>, partition: i32, p: &mut Partition) {
    if p.buf.is_empty() {
        p.first_at = None;
        return;
    }
    // Fetches may arrive out of offset order and, after a rebalance, twice: sort and dedupe so
    // a batch is a contiguous run of offsets (the writer checks it starts at the stored one).
    let (before, before_bytes) = (p.buf.len(), bytes_of(&p.buf));
    p.buf.sort_by_key(|r| (r.offset, r.sub));
    p.buf.dedup_by_key(|r| (r.offset, r.sub));
    let dups = before - p.buf.len();
    let dup_bytes = before_bytes - bytes_of(&p.buf);
    let take = batch_end(&p.buf, ctx.config.batch_rows);
    let records: Vec<Record> = p.buf.drain(..take).collect();
    p.first_at = (!p.buf.is_empty()).then(Instant::now);
    p.in_flight += 1;
    let (turn, mine) = Turn::next();
    let pipelining = p.ordinary_for == 0;
    p.ordinary_for = p.ordinary_for.saturating_sub(1);
    let before = p.turn.replace(turn);
    let epoch = p.epoch;
    let topic = ctx.topic.to_owned();
    let (pool, sem, stop) = (ctx.pool.clone(), ctx.sem.clone(), ctx.stop.clone());
    let settings = ctx.settings.clone();
    tasks.spawn(async move {
        let mut done = Done {
            partition,
            epoch,
            records: records.len() + dups,
            bytes: bytes_of(&records) + dup_bytes,
            outcome: None,
            contended: false,
        };
        let batch = Batch::new(topic, partition, records);
        let w = Writer {
            pipelining,
            pool: &pool,
            settings: &settings,
            sem: &sem,
            stop: &stop,
        };
        // A panic must not lose the partition's turn nor the records' room: it ends as a write
        // that committed nothing (the next batch finds the gap and the records come again).
        let write = w.write(&batch, before, &mine, &mut done.contended);
        let write = std::panic::AssertUnwindSafe(write);
        done.outcome = match write.catch_unwind().await {
            Ok(outcome) => outcome,
            Err(_) => {
                tracing::error!(
                    partition,
                    "a batch writer panicked; its records will be fetched again"
                );
                None
            }
        };
        // Its signals go when the task ends, however it ends.
        drop(mine);
        if let Some(o) = &done.outcome {
            tracing::debug!(
                partition,
                written = o.written,
                rejected = o.rejected,
                skipped = o.skipped,
                next_offset = o.next_offset,
                "batch committed"
            );
        }
        done
    });
}

pub fn bytes_of(records: &[Record]) -> usize {
    records.iter().map(Record::held_bytes).sum()
}

/// Books a finished write; returns its partition and how many records (and bytes) it releases.
pub fn finished(
    consumer: &SinkConsumer,
    ctx: &Ctx<'_>,
    parts: &mut HashMap<i32, Partition>,
    done: Result<Done, tokio::task::JoinError>,
) -> (Option<i32>, (usize, usize)) {
    match done {
        Ok(done) => (Some(done.partition), book(consumer, ctx, parts, done)),
        Err(e) if e.is_cancelled() => (None, (0, 0)),
        Err(e) => {
            tracing::error!(error = %e, "a batch writer panicked");
            (None, (0, 0))
        }
    }
}

/// Books a finished write: seek back on a gap, else report and hint the position.
fn book(
    consumer: &SinkConsumer,
    ctx: &Ctx<'_>,
    parts: &mut HashMap<i32, Partition>,
    done: Done,
) -> (usize, usize) {
    let (partition, mut released) = (done.partition, (done.records, done.bytes));
    let Some(p) = parts.get_mut(&partition) else {
        return released;
    };
    p.in_flight -= 1;
    if done.contended {
        p.ordinary_for = ORDINARY_AFTER_CONTENTION;
    }
    match done.outcome {
        // A gap: drop what is held and fetch again from the stored position.
        Some(Outcome {
            gap: Some(stored), ..
        }) if done.epoch == p.epoch => {
            released.0 += p.buf.len();
            released.1 += bytes_of(&p.buf);
            p.buf.clear();
            p.first_at = None;
            p.epoch += 1;
            seek_back(consumer, ctx.topic, partition, p, stored);
        }
        // A gap found by a batch dispatched before the last seek-back: handled by that seek.
        Some(Outcome { gap: Some(_), .. }) | None => {}
        Some(o) => {
            p.rewind = 0;
            p.from_start = false;
            // A batch booked after a later one of its partition moves nothing back.
            let moved = consumer.context().committed(partition, o.next_offset);
            let mut tpl = TopicPartitionList::new();
            if moved
                && tpl
                    .add_partition_offset(ctx.topic, partition, Offset::Offset(o.next_offset))
                    .is_ok()
            {
                // A hint for tooling and for where to resume fetching; the truth is in Postgres.
                let _ = consumer.commit(&tpl, CommitMode::Async);
            }
        }
    }
    released
}

/// Records between the stored position and what we held were never seen here: fetch again from
/// before the stored position. Kafka answers a fetch with the whole record batch holding the
/// offset asked for; some brokers (tansu) answer from the next batch instead, so the margin grows
/// while the gap repeats, down to the start of the log. Records below the stored position are
/// skipped by the writer.
fn seek_back(consumer: &SinkConsumer, topic: &str, partition: i32, p: &mut Partition, stored: i64) {
    let offset = seek_target(stored, p.rewind);
    if p.from_start {
        // Even from the beginning the broker does not return `stored`: the records are gone
        // (retention). Stall rather than skip rows; an operator must decide.
        tracing::error!(
            partition,
            stored,
            "records at the stored position are no longer on the broker"
        );
        metrics::counter!("csvbus_sink_missing_offsets_total").increment(1);
    }
    p.from_start = offset == Offset::Beginning;
    tracing::info!(
        partition,
        stored,
        rewind = p.rewind,
        "seeking back to the stored position"
    );
    metrics::counter!("csvbus_sink_seek_backs_total").increment(1);
    p.rewind = next_rewind(p.rewind);
    if let Err(e) = consumer.seek(topic, partition, offset, std::time::Duration::from_secs(5)) {
        tracing::warn!(partition, stored, error = %e, "seek back failed (partition moved?)");
    }
}

/// Where a seek-back for `stored` goes with margin `rewind`: the log start once the margin
/// reaches past it.
fn seek_target(stored: i64, rewind: i64) -> Offset {
    match stored - rewind {
        from if from <= 0 => Offset::Beginning,
        from => Offset::Offset(from),
    }
}

/// How many of `buf`'s records (sorted) the next batch takes: `batch_rows`, or more up to the
/// end of the message the last one is in (a message's rows arrive together).
fn batch_end(buf: &[Record], batch_rows: usize) -> usize {
    let mut take = buf.len().min(batch_rows);
    while take < buf.len() && !buf[take - 1].last {
        take += 1;
    }
    take
}

/// The margin of the next seek-back while gaps repeat: exact, 1024, then ×8.
fn next_rewind(rewind: i64) -> i64 {
    if rewind == 0 {
        1024
    } else {
        rewind.saturating_mul(8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seek_backs_widen_until_the_log_start() {
        let stored = 100_000;
        let mut rewind = 0;
        let mut targets = Vec::new();
        loop {
            let t = seek_target(stored, rewind);
            targets.push(t);
            if t == Offset::Beginning {
                break;
            }
            rewind = next_rewind(rewind);
        }
        assert_eq!(
            targets,
            [
                Offset::Offset(100_000),
                Offset::Offset(98_976),
                Offset::Offset(91_808),
                Offset::Offset(34_464),
                Offset::Beginning,
            ]
        );
        assert_eq!(seek_target(0, 0), Offset::Beginning);
        assert_eq!(next_rewind(i64::MAX / 2), i64::MAX);
    }

    fn held(n: usize, first_ago: u64, last_ago: u64, now: Instant) -> Partition {
        Partition {
            buf: (0..n as i64)
                .map(|offset| Record {
                    offset,
                    ..Record::default()
                })
                .collect(),
            first_at: Some(now - Duration::from_millis(first_ago)),
            last_at: Some(now - Duration::from_millis(last_ago)),
            ..Partition::default()
        }
    }

    #[test]
    fn a_partial_batch_is_due_after_the_linger_or_a_quiet_spell() {
        let now = Instant::now() + Duration::from_secs(10);
        let (linger, quiet) = (Duration::from_millis(200), Duration::from_millis(20));
        // Records still coming, linger not over: wait.
        assert!(!held(10, 100, 5, now).due(now, linger, quiet));
        // Nothing new for the quiet time: write now.
        assert!(held(10, 100, 25, now).due(now, linger, quiet));
        // Records keep coming, but the first waited the linger: write.
        assert!(held(10, 200, 1, now).due(now, linger, quiet));
        // Nothing held, or no room: never.
        assert!(!held(0, 500, 500, now).due(now, linger, quiet));
        let mut full = held(10, 500, 500, now);
        full.in_flight = DEPTH;
        assert!(!full.due(now, linger, quiet));
    }
}
