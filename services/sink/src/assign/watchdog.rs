//! The group watchdog: no broker's group bookkeeping may park a sink for good.
//!
//! A consumer can end up in a formed group holding no partition while rows wait (seen on tansu
//! when a member restarts before the dead member it replaces has timed out: nobody sends the
//! assignment). The watchdog looks every second: how many partitions this sink holds (the
//! consume loop reports it), whether the group has work left (high watermarks above the
//! positions stored in Postgres, or imports with produced rows not yet written), and whether the
//! group's positions moved lately. Holding nothing for `CSVBUS_SINK_WATCHDOG_MS` while work is
//! left and nobody makes progress, the sink rejoins the group (logged, counted in
//! `csvbus_sink_rejoins_total`). `/readyz` reports a sink holding nothing while work is left as
//! not ready.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, Producer};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::positions::offsets;

/// What the consume loop, the watchdog and `/readyz` share.
#[derive(Debug, Default)]
pub struct GroupHealth {
    assigned: AtomicUsize,
    work_left: AtomicBool,
    rejoin: Notify,
}

impl GroupHealth {
    /// The consume loop reports the partitions it holds.
    pub fn set_assigned(&self, n: usize) {
        self.assigned.store(n, Ordering::Relaxed);
    }
    pub fn assigned(&self) -> usize {
        self.assigned.load(Ordering::Relaxed)
    }
    /// Whether the group has rows not yet written (as of the last look).
    pub fn work_left(&self) -> bool {
        self.work_left.load(Ordering::Relaxed)
    }
    /// Holding no partition while the group has work left: not ready.
    pub fn parked(&self) -> bool {
        self.assigned() == 0 && self.work_left()
    }
    /// Resolves when the watchdog asks the consume loop to rejoin the group.
    pub async fn rejoin_requested(&self) {
        self.rejoin.notified().await;
    }
}

/// Where to look.
pub struct Watch {
    pub pool: PgPool,
    /// Any client of the brokers, for metadata and watermarks.
    pub probe: FutureProducer,
    pub topic: String,
    pub group_id: String,
    /// How long holding nothing while work is left is tolerated.
    pub patience: Duration,
}

/// Looks every second until `shutdown`.
pub async fn run(watch: Watch, health: Arc<GroupHealth>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut idle_since: Option<Instant> = None;
    // A join takes a while (seconds on tansu): rejoining again before it can finish would keep
    // the sink out for good, so the wait doubles after each rejoin until partitions arrive.
    let mut patience = watch.patience;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let work = match work_left(&watch).await {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!(error = %e, "watchdog could not look at the group's work");
                continue;
            }
        };
        health.work_left.store(work.left, Ordering::Relaxed);
        if health.assigned() > 0 || !work.left {
            idle_since = None;
            if health.assigned() > 0 {
                patience = watch.patience;
            }
            continue;
        }
        let since = *idle_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= patience && !work.moving {
            tracing::warn!(
                group = %watch.group_id,
                idle_ms = since.elapsed().as_millis() as u64,
                "holding no partition while the group has rows waiting and no progress: rejoining the group"
            );
            metrics::counter!("csvbus_sink_rejoins_total").increment(1);
            health.rejoin.notify_one();
            idle_since = Some(Instant::now());
            patience = (patience * 2).min(Duration::from_secs(300));
        }
    }
}

/// The group's outstanding work as seen from Postgres and the brokers.
#[derive(Debug, Clone, Copy)]
pub struct Work {
    /// Rows wait: a high watermark above the stored position, or an import not fully written.
    pub left: bool,
    /// A position of the group moved within the patience window (someone is writing).
    pub moving: bool,
}

async fn work_left(w: &Watch) -> Result<Work, anyhow::Error> {
    let (positions, moving) = offsets::of_group(&w.pool, &w.group_id, &w.topic, w.patience).await?;
    let pending = csvbus_shared::imports::sink::rows_pending(&w.pool).await?;
    let stored: HashMap<i32, i64> = positions.into_iter().collect();
    let highs = high_watermarks(&w.probe, &w.topic).await?;
    let lag = highs
        .iter()
        .any(|(p, high)| *high > stored.get(p).copied().unwrap_or(0));
    Ok(Work {
        left: lag || pending,
        moving,
    })
}

/// Each partition's high watermark, from the brokers.
async fn high_watermarks(
    probe: &FutureProducer,
    topic: &str,
) -> Result<Vec<(i32, i64)>, anyhow::Error> {
    let probe = probe.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let timeout = Duration::from_secs(2);
        let md = probe.client().fetch_metadata(Some(&topic), timeout)?;
        let mut out = Vec::new();
        for t in md.topics().iter().filter(|t| t.name() == topic) {
            for p in t.partitions() {
                let (_, high) = probe.client().fetch_watermarks(&topic, p.id(), timeout)?;
                out.push((p.id(), high));
            }
        }
        Ok(out)
    })
    .await?
}
