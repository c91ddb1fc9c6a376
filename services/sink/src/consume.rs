//! The consumer loop: gathers records per partition and hands batches to writer tasks.
//!
//! Batches go to writer tasks through [`crate::write::dispatch`] (order within a partition, at most
//! `CSVBUS_SINK_CONCURRENCY` writes at once); at most `batch_rows × (concurrency + 2)` records
//! and `CSVBUS_SINK_BUFFER_BYTES` are held in memory: past that the loop stops fetching.
//! Positions are the database's (see [`crate::write::writer`]); Kafka's committed offsets are only a
//! hint, committed after the database did.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::assign::watchdog::GroupHealth;
use crate::config::{Assignment, SinkConfig};
use crate::fetch::feed::{Feed, SinkConsumer};
use crate::fetch::lag::LagContext;
use crate::fetch::record::Record;
use crate::write::dispatch::{dispatch, finished, Ctx, Done, Partition};
use crate::write::how::KeyConflicts;
use crate::write::writer::Settings;

/// The consumer of the sink.
pub fn consumer(config: &SinkConfig) -> Result<SinkConsumer, rdkafka::error::KafkaError> {
    consumer_config(config)
        .create_with_context(LagContext::new(&config.common.topic, &config.group_id))
}

/// The consumer's librdkafka settings: the client-wide ones, csvbus' own, then the operator's
/// consumer settings.
pub fn consumer_config(config: &SinkConfig) -> rdkafka::ClientConfig {
    let mut c = csvbus_shared::kafka::service_client(&config.common);
    if let (Some(id), Assignment::Group) = (&config.instance_id, config.assignment) {
        // Static membership: a restarted replica takes its partitions back at once.
        c.set("group.instance.id", id);
    }
    c.set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("max.poll.interval.ms", "600000")
        .set("statistics.interval.ms", "5000");
    for (k, v) in fetch_settings(config) {
        c.set(k, v);
    }
    for (k, v) in &config.common.kafka_consumer {
        c.set(k, v);
    }
    c
}

/// librdkafka's prefetch settings of the sink (the benchmark's raw consumer reads with them too).
///
/// The queue holds up to `CSVBUS_SINK_PREFETCH_BYTES`; librdkafka fetches again while ten
/// batches of records are still queued, looks again after 10 ms (not its default 1 s) when the
/// queue was full, and a broker with nothing new answers within 100 ms (not 500). A broker that
/// answers a fetch with one partition's whole backlog (tansu ignores the fetch size limits)
/// would otherwise leave the sink idle for the backoff plus a round trip at every turn. (These
/// settings make the crash fixed in `vendor/rdkafka-sys` far more likely; see its PATCHES.md.)
pub fn fetch_settings(config: &SinkConfig) -> [(&'static str, String); 4] {
    [
        (
            "queued.max.messages.kbytes",
            (config.prefetch_bytes / 1024).max(1024).to_string(),
        ),
        (
            "queued.min.messages",
            (config.batch_rows * 10).max(1000).to_string(),
        ),
        ("fetch.queue.backoff.ms", "10".to_owned()),
        ("fetch.wait.max.ms", "100".to_owned()),
    ]
}

/// How often the loop compares librdkafka's assignment with the one it reported.
const ASSIGNMENT_LOOK: Duration = Duration::from_millis(100);

/// Runs until `shutdown`; then stops fetching, writes what it holds (within the grace period),
/// and leaves the group.
pub async fn run(
    config: &SinkConfig,
    pool: PgPool,
    consumer: Arc<SinkConsumer>,
    health: &GroupHealth,
    staged: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    let mut feed = Feed::start(consumer, config.common.signer());
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
        signer: config.common.signer(),
        copy_format: config.copy_format,
        key_conflicts: KeyConflicts::default(),
        staged,
    };
    let flush_every = config
        .linger
        .min(config.quiet)
        .max(Duration::from_millis(5))
        / 2;
    let mut tick = tokio::time::interval(flush_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut looked_at = Instant::now();

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
                if let Some((id, p)) = partition.and_then(|id| parts.get_mut(&id).map(|p| (id, p))) {
                    while p.ready(config.batch_rows) {
                        dispatch(&ctx, &mut tasks, id, p);
                    }
                }
            }
            Some(chunk) = feed.rx.recv(), if held.records < max_held && held.bytes < config.buffer_bytes => {
                take(&ctx, &mut parts, &mut tasks, &mut held, chunk);
            },
            _ = health.rejoin_requested(), if config.assignment == Assignment::Group => {
                if let Some(fresh) = rejoin(config) {
                    std::mem::replace(&mut feed, Feed::start(fresh, config.common.signer())).stop();
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                if now.duration_since(looked_at) >= ASSIGNMENT_LOOK {
                    looked_at = now;
                    report_assignment(&feed.consumer, health);
                }
                for (id, p) in parts.iter_mut() {
                    if p.due(now, config.linger, config.quiet) {
                        dispatch(&ctx, &mut tasks, *id, p);
                    }
                }
            }
        }
    }

    write_what_is_held(&ctx, feed, &mut parts, tasks, held, &hard_stop).await;
}

/// Adds received records to their partitions' buffers; dispatches each batch that fills.
fn take(
    ctx: &Ctx<'_>,
    parts: &mut HashMap<i32, Partition>,
    tasks: &mut JoinSet<Done>,
    held: &mut Held,
    chunk: Vec<Record>,
) {
    let now = Instant::now();
    for record in chunk {
        let id = record.partition;
        let p = parts.entry(id).or_default();
        p.first_at.get_or_insert(now);
        p.last_at = Some(now);
        held.records += 1;
        held.bytes += record.held_bytes();
        let last = record.last;
        p.buf.push(record);
        if last && p.ready(ctx.config.batch_rows) {
            dispatch(ctx, tasks, id, p);
        }
    }
}

/// Tells the health check how many partitions librdkafka has assigned, when that changed.
fn report_assignment(consumer: &SinkConsumer, health: &GroupHealth) {
    let assigned = consumer.assignment().map_or(0, |a| a.count());
    if assigned != health.assigned() {
        tracing::info!(partitions = assigned, "assignment changed");
        health.set_assigned(assigned);
    }
}

/// At shutdown: writes the records held (within `CSVBUS_SHUTDOWN_GRACE_MS`; then the
/// writes in flight are cancelled and commit nothing), then stops fetching.
async fn write_what_is_held(
    ctx: &Ctx<'_>,
    feed: Feed,
    parts: &mut HashMap<i32, Partition>,
    mut tasks: JoinSet<Done>,
    mut held: Held,
    hard_stop: &CancellationToken,
) {
    tracing::info!(
        held = held.records,
        writing = tasks.len(),
        "sink stopping: writing what it holds"
    );
    let grace = ctx.config.shutdown_grace;
    let stopper = hard_stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        stopper.cancel();
    });
    loop {
        for (id, p) in parts.iter_mut() {
            if p.has_room() && !p.buf.is_empty() {
                dispatch(ctx, &mut tasks, *id, p);
            }
        }
        match tasks.join_next().await {
            Some(done) => held.release(finished(&feed.consumer, ctx, parts, done).1),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_consumer_has_the_client_wide_settings() {
        let env = csvbus_shared::config::Env::from_pairs([
            ("CSVBUS_KAFKA_CLIENT_SECURITY_PROTOCOL", "ssl"),
            ("CSVBUS_KAFKA_CONSUMER_SESSION_TIMEOUT_MS", "20000"),
        ]);
        let c = consumer_config(&SinkConfig::from_env(&env).unwrap());
        assert_eq!(c.get("security.protocol"), Some("ssl"));
        assert_eq!(c.get("session.timeout.ms"), Some("20000"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
    }
}
