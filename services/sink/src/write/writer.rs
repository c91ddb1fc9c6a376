//! One batch of one partition into Postgres, in one transaction, exactly once.
//!
//! The transaction checks the partition's position ([`crate::positions::offsets`]), sorts the new records
//! ([`crate::write::batch`]: rows of known, allowed imports; dead letters for the rest), COPYs each
//! group ([`crate::write::copy`]: bisection of refused rows), stores rejected rows, dead letters and
//! import counters, and moves the position — then commits. Whatever moment the process dies,
//! either all of that is in the database or none of it.
//!
//! Retries follow [`csvbus_shared::failure`]: outages are waited out without end; any other
//! failure of the whole batch is retried `CSVBUS_SINK_MAX_ATTEMPTS` times, then the batch is
//! written in [`Mode::LastResort`] (unknown errors bisected as data errors), and if even that
//! fails twice, every row is rejected with the error: no input can hold a partition.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use csvbus_shared::db;
use csvbus_shared::failure::{classify, describe, Failure};
use csvbus_shared::message::Signer;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::CopyFormat;
use crate::fetch::record::Record;
use crate::positions::offsets::{self, Key, Start};
use crate::write::batch::Target;
use crate::write::copy::Mode;
use crate::write::decode::Decoded;
use crate::write::how::KeyConflicts;
use crate::write::pipeline::Signal;
use crate::write::rows::{book, write_rows, Allowances};
use crate::write::ByImport;
use crate::write::{targets, transaction};

/// What one committed batch did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    pub written: u64,
    pub rejected: u64,
    pub dead: u64,
    /// Rows a resumed upload sent again that were handled already: not written twice.
    pub duplicates: u64,
    /// Records below the stored position, not written again.
    pub skipped: u64,
    /// Rows of stopped imports, set aside unwritten.
    pub set_aside: u64,
    /// The partition's position after the batch.
    pub next_offset: i64,
    /// Set when the batch starts past the stored position (records between were never seen
    /// here): nothing was committed and the consumer must seek back to this offset.
    pub gap: Option<i64>,
}

/// A batch for one partition, offsets ascending, with its values decoded.
#[derive(Debug)]
pub struct Batch {
    pub topic: String,
    pub partition: i32,
    pub records: Vec<Record>,
    pub(crate) decoded: Decoded,
}

impl Batch {
    /// Its partition's position row.
    pub(crate) fn key<'a>(&'a self, settings: &'a Settings) -> Key<'a> {
        Key {
            group_id: &settings.group_id,
            topic: &self.topic,
            partition: self.partition,
        }
    }

    /// Decodes the records' values (CPU work, done before the batch's transaction).
    pub fn new(topic: String, partition: i32, records: Vec<Record>) -> Self {
        let decoded = Decoded::new(&records);
        Self {
            topic,
            partition,
            records,
            decoded,
        }
    }
}

/// How batches are written.
#[derive(Debug, Clone)]
pub struct Settings {
    pub group_id: String,
    pub allowed_schemas: Vec<String>,
    /// Failures other than outages before the batch is written in [`Mode::LastResort`].
    pub max_attempts: u32,
    /// `statement_timeout` of each batch transaction (a trigger that never ends is a row error).
    pub statement_timeout: Duration,
    /// With `CSVBUS_SIGNING_KEY`: rows must be signed with it.
    pub signer: Option<Signer>,
    /// `CSVBUS_SINK_COPY_FORMAT`.
    pub copy_format: CopyFormat,
    /// Upsert and skip imports known to meet keys already in their tables.
    pub key_conflicts: KeyConflicts,
    /// Told when a batch with rows of an atomic or replace import commits: the finalizer looks
    /// for complete imports at once instead of at its next tick.
    pub staged: Arc<tokio::sync::Notify>,
}

impl Settings {
    /// After a commit of rows for `targets`: tells the finalizer when any is staged.
    pub(crate) fn committed(&self, targets: &ByImport<Target>) {
        if targets.values().any(|t| t.mode.staged()) {
            self.staged.notify_one();
        }
    }
}

/// Writes `batch`, retrying as the failure policy says until it commits; `None` when `stop`
/// was cancelled first (nothing of the batch is committed then).
pub async fn write_with_retry(
    pool: &PgPool,
    settings: &Settings,
    batch: &Batch,
    stop: &CancellationToken,
    locked: &Signal,
) -> Option<Outcome> {
    use backon::Retryable;
    // Failures other than outages change how the next attempt treats what it cannot classify
    // (see [`Mode`]); the attempt reads the mode, the retry's notification moves it on.
    let mode = Mutex::new(Mode::Normal);
    let failures = AtomicU32::new(0);
    let attempt = || async {
        let started = Instant::now();
        let current = mode.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let o = write_once(pool, settings, batch, &current, locked).await?;
        record_metrics(batch, &o, started);
        Ok::<_, sqlx::Error>(o)
    };
    let retried = attempt
        .retry(db::outage_backoff(None))
        .sleep(tokio::time::sleep)
        .notify(|e, delay| {
            metrics::counter!("csvbus_sink_retries_total").increment(1);
            if classify(e) == Failure::Outage {
                tracing::warn!(partition = batch.partition, error = %e, retry_in_ms = delay.as_millis() as u64, "database unavailable; batch will be retried");
                return;
            }
            let n = failures.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::error!(partition = batch.partition, error = %e, failures = n, "batch failed");
            let mut mode = mode.lock().unwrap_or_else(PoisonError::into_inner);
            if n >= settings.max_attempts + 2 {
                *mode = Mode::RejectAll(format!("the batch could not be written: {}", describe(e)));
            } else if n >= settings.max_attempts {
                *mode = Mode::LastResort;
            }
        });
    tokio::select! {
        // The backoff has no end: an `Err` is not reached.
        r = retried => r.ok(),
        _ = stop.cancelled() => None,
    }
}

pub(crate) fn record_metrics(batch: &Batch, o: &Outcome, started: Instant) {
    metrics::histogram!("csvbus_sink_batch_seconds").record(started.elapsed().as_secs_f64());
    metrics::histogram!("csvbus_sink_batch_rows").record(batch.records.len() as f64);
    metrics::counter!("csvbus_sink_rows_written_total").increment(o.written);
    metrics::counter!("csvbus_sink_rows_rejected_total").increment(o.rejected);
    metrics::counter!("csvbus_sink_dead_letters_total").increment(o.dead);
    metrics::counter!("csvbus_sink_duplicates_total").increment(o.duplicates);
    metrics::counter!("csvbus_sink_rows_set_aside_total").increment(o.set_aside);
}

async fn write_once(
    pool: &PgPool,
    settings: &Settings,
    batch: &Batch,
    mode: &Mode,
    locked: &Signal,
) -> Result<Outcome, sqlx::Error> {
    match write_as(pool, settings, batch, mode, locked, Allowances::Optimistic).await? {
        Some(outcome) => Ok(outcome),
        None => {
            metrics::counter!("csvbus_sink_allowance_rewrites_total").increment(1);
            let again = write_as(pool, settings, batch, mode, locked, Allowances::Locked).await?;
            Ok(again.unwrap_or_default())
        }
    }
}

/// One transaction of [`write_once`]; `None` (rolled back) when refusals counted without
/// their imports' locks passed what those imports have left.
async fn write_as(
    pool: &PgPool,
    settings: &Settings,
    batch: &Batch,
    mode: &Mode,
    locked: &Signal,
    allowances: Allowances,
) -> Result<Option<Outcome>, sqlx::Error> {
    let Some(last) = batch.records.last() else {
        return Ok(Some(Outcome::default()));
    };
    let key = batch.key(settings);
    let mut tx = transaction::begin(pool, settings.statement_timeout).await?;
    let (first_new, stored) = match offsets::check(&mut tx, key, &batch.records).await? {
        Start::Fresh { first_new, stored } => (first_new, stored),
        Start::Gap { stored } => {
            let gap = Some(stored);
            return Ok(Some(Outcome {
                gap,
                next_offset: stored,
                ..Outcome::default()
            }));
        }
        Start::Stale => {
            tx.commit().await?;
            return Ok(Some(Outcome {
                gap: Some(0),
                ..Outcome::default()
            }));
        }
    };
    // The next batch of the partition may take the position lock after this one now.
    locked.fire();
    if first_new == batch.records.len() {
        return Ok(Some(Outcome {
            skipped: first_new as u64,
            next_offset: stored.max(last.offset + 1),
            ..Outcome::default()
        }));
    }
    let fresh = &batch.records[first_new..];
    let targets = targets::load(&mut tx, fresh, batch.partition, &settings.allowed_schemas).await?;
    let rows = write_rows(
        &mut tx, settings, batch, first_new, &targets, mode, allowances,
    )
    .await?;
    if rows.over_allowance(&mut tx).await? {
        tx.rollback().await?;
        return Ok(None);
    }
    let outcome = book(&mut tx, key, stored, rows).await?;
    tx.commit().await?;
    settings.committed(&targets);
    Ok(Some(outcome))
}
