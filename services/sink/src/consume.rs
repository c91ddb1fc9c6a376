//! The consumer loop: gathers records per partition and hands batches to writer tasks.
//!
//! At most one batch per partition is being written at a time (order within a partition), at
//! most `CSVBUS_SINK_CONCURRENCY` across partitions (a semaphore), and at most
//! `batch_rows × (concurrency + 2)` records are held in memory: past that the loop stops fetching.
//! Positions are the database's (see [`crate::writer`]); Kafka's committed offsets are only a
//! hint, committed after the database did.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::batch::Record;
use crate::config::{Assignment, SinkConfig};
use crate::feed::{Feed, SinkConsumer};
use crate::lag::LagContext;
use crate::watchdog::GroupHealth;
use crate::writer::{write_with_retry, Batch, Outcome, Settings};

#[derive(Default)]
struct Partition {
    buf: Vec<Record>,
    first_at: Option<Instant>,
    writing: bool,
    /// How far before the stored position the next seek-back starts (doubles while gaps repeat).
    rewind: i64,
    /// The last seek-back went to the start of the log.
    from_start: bool,
}

/// A finished write: partition, records and bytes it releases, what it committed.
type Done = (i32, usize, usize, Option<Outcome>);

/// The consumer of the sink.
pub fn consumer(config: &SinkConfig) -> Result<SinkConsumer, rdkafka::error::KafkaError> {
    let mut c = csvbus_shared::kafka::client_config(&config.common.kafka_brokers);
    if let (Some(id), Assignment::Group) = (&config.instance_id, config.assignment) {
        // Static membership: a restarted replica takes its partitions back at once.
        c.set("group.instance.id", id);
    }
    c.set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("max.poll.interval.ms", "600000")
        .set("statistics.interval.ms", "5000")
        .set(
            "queued.max.messages.kbytes",
            (config.prefetch_bytes / 1024).max(1024).to_string(),
        )
        // Fetch again while ten batches of records are still queued, and look again
        // after 10 ms (not librdkafka's 1 s) when the queue was full: a broker that answers a
        // fetch with one partition's whole backlog (tansu ignores the fetch size limits) left
        // the sink idle for the 1 s backoff and the next fetch's round trip at every turn.
        .set(
            "queued.min.messages",
            (config.batch_rows * 10).max(1000).to_string(),
        )
        .set("fetch.queue.backoff.ms", "10");
    for (k, v) in &config.common.kafka_consumer {
        c.set(k, v);
    }
    c.create_with_context(LagContext::new(&config.common.topic, &config.group_id))
}

/// Runs until `shutdown`; then stops fetching, writes what it holds (within the grace period),
/// and leaves the group.
pub async fn run(
    config: &SinkConfig,
    pool: PgPool,
    consumer: Arc<SinkConsumer>,
    health: &GroupHealth,
    shutdown: CancellationToken,
) {
    let mut feed = Feed::start(consumer);
    let topic = config.common.topic.clone();
    let sem = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let hard_stop = CancellationToken::new();
    let max_held = config.batch_rows * (config.concurrency + 2);
    let mut parts: HashMap<i32, Partition> = HashMap::new();
    let mut tasks: JoinSet<Done> = JoinSet::new();
    let mut held = Held::default();
    let settings = Settings {
        group_id: config.group_id.clone(),
        allowed_schemas: config.common.allowed_schemas.clone(),
        max_attempts: config.max_attempts.max(1),
        statement_timeout: config.statement_timeout,
    };
    let mut tick =
        tokio::time::interval(config.linger.max(std::time::Duration::from_millis(10)) / 2);

    let ctx = Ctx {
        config,
        pool: &pool,
        topic: &topic,
        sem: &sem,
        stop: &hard_stop,
        settings: &settings,
    };

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(done) = tasks.join_next() => {
                let (partition, released) = finished(&feed.consumer, &ctx, &mut parts, done);
                held.release(released);
                // The next batch of this partition may be waiting already: write it now, not
                // when the next record or the linger tick comes (no record comes while the
                // loop holds all it may).
                if let Some(p) = partition.and_then(|id| parts.get_mut(&id).map(|p| (id, p))) {
                    if p.1.buf.len() >= config.batch_rows {
                        dispatch(&ctx, &mut tasks, p.0, p.1);
                    }
                }
            }
            Some(chunk) = feed.rx.recv(), if held.records < max_held && held.bytes < config.buffer_bytes => {
                for record in chunk {
                    let partition = record.partition;
                    let p = parts.entry(partition).or_default();
                    p.first_at.get_or_insert_with(Instant::now);
                    held.records += 1;
                    held.bytes += record.held_bytes();
                    p.buf.push(record);
                    if p.buf.len() >= config.batch_rows && !p.writing {
                        dispatch(&ctx, &mut tasks, partition, p);
                    }
                }
            },
            _ = health.rejoin_requested(), if config.assignment == Assignment::Group => {
                if let Some(fresh) = rejoin(config) {
                    std::mem::replace(&mut feed, Feed::start(fresh)).stop();
                }
            }
            _ = tick.tick() => {
                let assigned = feed.consumer.assignment().map_or(0, |a| a.count());
                if assigned != health.assigned() {
                    tracing::info!(partitions = assigned, "assignment changed");
                    health.set_assigned(assigned);
                }
                for (id, p) in parts.iter_mut() {
                    if !p.writing && p.first_at.is_some_and(|t| t.elapsed() >= config.linger) {
                        dispatch(&ctx, &mut tasks, *id, p);
                    }
                }
            }
        }
    }

    tracing::info!(
        held = held.records,
        writing = tasks.len(),
        "sink stopping: writing what it holds"
    );
    let grace = config.shutdown_grace;
    let stopper = hard_stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        stopper.cancel();
    });
    loop {
        for (id, p) in parts.iter_mut() {
            if !p.writing && !p.buf.is_empty() {
                dispatch(&ctx, &mut tasks, *id, p);
            }
        }
        match tasks.join_next().await {
            Some(done) => held.release(finished(&feed.consumer, &ctx, &mut parts, done).1),
            None => break,
        }
    }
    hard_stop.cancel();
    feed.stop();
    tracing::info!(left_unwritten = held.records, "sink stopped");
}

/// Records (and their bytes) received and not yet committed or dropped.
#[derive(Debug, Default)]
struct Held {
    records: usize,
    bytes: usize,
}

impl Held {
    fn release(&mut self, (records, bytes): (usize, usize)) {
        self.records -= records;
        self.bytes -= bytes;
    }
}

/// A new consumer, subscribed: the old one is dropped (it leaves the group) and the new one
/// joins as a new member (asked by the watchdog; records held are still written, the stored
/// positions decide what is new).
fn rejoin(config: &SinkConfig) -> Option<Arc<SinkConsumer>> {
    let fresh = consumer(config).and_then(|c| {
        c.subscribe(&[&config.common.topic])?;
        Ok(c)
    });
    match fresh {
        Ok(c) => Some(Arc::new(c)),
        Err(e) => {
            tracing::error!(error = %e, "creating a new consumer failed; keeping the old one");
            None
        }
    }
}

struct Ctx<'a> {
    config: &'a SinkConfig,
    pool: &'a PgPool,
    topic: &'a str,
    sem: &'a Arc<Semaphore>,
    stop: &'a CancellationToken,
    settings: &'a Settings,
}

fn dispatch(ctx: &Ctx<'_>, tasks: &mut JoinSet<Done>, partition: i32, p: &mut Partition) {
    if p.buf.is_empty() {
        p.first_at = None;
        return;
    }
    // Fetches may arrive out of offset order and, after a rebalance, twice: sort and dedupe so
    // a batch is a contiguous run of offsets (the writer checks it starts at the stored one).
    let (before, before_bytes) = (p.buf.len(), bytes_of(&p.buf));
    p.buf.sort_by_key(|r| r.offset);
    p.buf.dedup_by_key(|r| r.offset);
    let dups = before - p.buf.len();
    let dup_bytes = before_bytes - bytes_of(&p.buf);
    let take = p.buf.len().min(ctx.config.batch_rows);
    let records: Vec<Record> = p.buf.drain(..take).collect();
    p.first_at = if p.buf.is_empty() {
        None
    } else {
        Some(Instant::now())
    };
    p.writing = true;
    let batch = Batch {
        topic: ctx.topic.to_owned(),
        partition,
        records,
    };
    let (pool, sem, stop) = (ctx.pool.clone(), ctx.sem.clone(), ctx.stop.clone());
    let settings = ctx.settings.clone();
    tasks.spawn(async move {
        let n = batch.records.len() + dups;
        let bytes = bytes_of(&batch.records) + dup_bytes;
        let Ok(_permit) = sem.acquire().await else {
            return (partition, n, bytes, None);
        };
        let outcome = write_with_retry(&pool, &settings, &batch, &stop).await;
        if let Some(o) = &outcome {
            tracing::debug!(
                partition,
                written = o.written,
                rejected = o.rejected,
                skipped = o.skipped,
                next_offset = o.next_offset,
                "batch committed"
            );
        }
        (partition, n, bytes, outcome)
    });
}

fn bytes_of(records: &[Record]) -> usize {
    records.iter().map(Record::held_bytes).sum()
}

/// Books a finished write; returns its partition and how many records (and bytes) it releases.
fn finished(
    consumer: &SinkConsumer,
    ctx: &Ctx<'_>,
    parts: &mut HashMap<i32, Partition>,
    done: Result<Done, tokio::task::JoinError>,
) -> (Option<i32>, (usize, usize)) {
    let (partition, n, bytes, outcome) = match done {
        Ok(done) => done,
        Err(e) if e.is_cancelled() => return (None, (0, 0)),
        Err(e) => {
            tracing::error!(error = %e, "a batch writer panicked");
            return (None, (0, 0));
        }
    };
    (
        Some(partition),
        book(consumer, ctx, parts, partition, n, bytes, outcome),
    )
}

/// Books a finished write of `partition`: seek back on a gap, else report and hint the position.
fn book(
    consumer: &SinkConsumer,
    ctx: &Ctx<'_>,
    parts: &mut HashMap<i32, Partition>,
    partition: i32,
    n: usize,
    bytes: usize,
    outcome: Option<Outcome>,
) -> (usize, usize) {
    let mut released = (n, bytes);
    if let Some(p) = parts.get_mut(&partition) {
        p.writing = false;
        if let Some(stored) = outcome.and_then(|o| o.gap) {
            // Records between the stored position and what we hold were never seen here: drop
            // what we hold and fetch again from before the stored position. Kafka answers a
            // fetch with the whole record batch holding the offset asked for; some brokers
            // (tansu) answer from the next batch instead, so the margin grows while the gap
            // repeats, down to the start of the log. Records below the stored position are
            // skipped by the writer.
            released.0 += p.buf.len();
            released.1 += bytes_of(&p.buf);
            p.buf.clear();
            p.first_at = None;
            let from = stored - p.rewind;
            let offset = if from <= 0 {
                Offset::Beginning
            } else {
                Offset::Offset(from)
            };
            if p.from_start {
                // Even from the beginning the broker does not return `stored`: the records are
                // gone (retention). Stall rather than skip rows; an operator must decide.
                tracing::error!(
                    partition,
                    stored,
                    "records at the stored position are no longer on the broker"
                );
                metrics::counter!("csvbus_sink_missing_offsets_total").increment(1);
            }
            p.from_start = from <= 0;
            tracing::info!(
                partition,
                stored,
                rewind = p.rewind,
                "seeking back to the stored position"
            );
            metrics::counter!("csvbus_sink_seek_backs_total").increment(1);
            p.rewind = if p.rewind == 0 { 1024 } else { p.rewind * 8 };
            if let Err(e) = consumer.seek(
                ctx.topic,
                partition,
                offset,
                std::time::Duration::from_secs(5),
            ) {
                tracing::warn!(partition, stored, error = %e, "seek back failed (partition moved?)");
            }
            return released;
        }
        p.rewind = 0;
        p.from_start = false;
        if let Some(o) = &outcome {
            consumer.context().committed(partition, o.next_offset);
        }
    }
    if let Some(o) = outcome {
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(ctx.topic, partition, Offset::Offset(o.next_offset))
            .is_ok()
        {
            // A hint for tooling and for where to resume fetching; the truth is in Postgres.
            let _ = consumer.commit(&tpl, CommitMode::Async);
        }
    }
    released
}
