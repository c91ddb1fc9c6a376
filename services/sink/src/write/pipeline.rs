//! A batch written while the batch before it, of the same partition, is still being written.
//!
//! A batch's transaction normally begins by locking its partition's position, so the batches
//! of one partition run one after another — and a broker that hands out one partition's backlog
//! at a time (tansu) leaves Postgres with one transaction at a time. A *pipelined* batch writes
//! its rows first and takes the lock last: it begins while the batch before is running, writes
//! its rows, waits until that batch holds the lock ([`Signal`]), then locks the position itself
//! (Postgres makes it wait for that batch's commit) and checks that nothing it assumed has
//! changed — the position is where its first record is, and the imports' state it read (their
//! handled lines, whether they ended or stopped) still gives its rows the same fate. Only then
//! does it book the rows, move the position and commit, in the one transaction that wrote them.
//! If anything differs, or anything fails, it rolls back and the batch is written the ordinary
//! way once the batch before has ended: exactly-once rests on the position, as before.
//!
//! While waiting for the batch before to take the lock, a pipelined batch holds its rows'
//! locks; should that batch wait for one of them (the same key in both, in a table with a
//! unique index), neither would move — so the wait ends after [`LOCK_WAIT`], the pipelined batch
//! rolls back, the other goes on, and the partition's next batches are written the ordinary way
//! for a while. Upsert and skip imports, whose keys often repeat in consecutive batches, are
//! always written the ordinary way.

use crate::write::ByImport;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use csvbus_shared::modes::ImportMode;
use sqlx::PgPool;
use tokio::sync::oneshot;

use crate::positions::offsets;
use crate::write::batch::Target;
use crate::write::copy::Mode;
use crate::write::rows::{book, write_rows, Allowances};
use crate::write::targets;
use crate::write::transaction;
use crate::write::writer::{record_metrics, Batch, Outcome, Settings};

/// How long a pipelined batch waits for the batch before to hold the position lock.
pub const LOCK_WAIT: Duration = Duration::from_millis(500);

/// Fired once: the batch holds its partition's position lock and will move it (or has ended —
/// the sender is dropped then, which the receiver sees alike).
#[derive(Debug, Default)]
pub struct Signal(Mutex<Option<oneshot::Sender<()>>>);

impl Signal {
    /// A signal and the receiver the next batch waits on.
    pub fn new() -> (Self, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        (Self(Mutex::new(Some(tx))), rx)
    }

    pub fn fire(&self) {
        let sender = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(tx) = sender {
            let _ = tx.send(());
        }
    }
}

/// What became of a pipelined write.
#[derive(Debug)]
pub enum Pipelined {
    Committed(Outcome),
    /// Rolled back (the batches before changed what it assumed), or not tried (upsert, skip).
    /// Written the ordinary way.
    Conflict,
    /// Rolled back: it waited too long for the batch before, or failed (a deadlock with the
    /// batch before, an outage), or Postgres refused rows of it. Written the ordinary way — and
    /// so are the partition's next batches for a while ([`crate::write::dispatch`]): the two
    /// batches reach the same rows, or refuse rows again.
    Contended,
}

/// Writes `batch` pipelined behind the batch before it (which fires `before_locked`).
pub async fn write(
    pool: &PgPool,
    settings: &Settings,
    batch: &Batch,
    before_locked: oneshot::Receiver<()>,
    locked: &Signal,
) -> Pipelined {
    let started = Instant::now();
    let written = attempt(pool, settings, batch, before_locked, locked).await;
    let (result, label) = match written {
        Ok(Attempt::Committed(o)) => (Pipelined::Committed(o), "committed"),
        Ok(Attempt::Conflict) => (Pipelined::Conflict, "conflict"),
        Ok(Attempt::Ordinary) => (Pipelined::Conflict, "ordinary"),
        Ok(Attempt::Waited) => (Pipelined::Contended, "contended"),
        // A file's refused rows seldom come alone: its next batches would write their rows
        // twice too.
        Ok(Attempt::Refused) => (Pipelined::Contended, "refused"),
        Err(e) => {
            // Written again the ordinary way: a retried write, like any other that failed.
            metrics::counter!("csvbus_sink_retries_total").increment(1);
            tracing::warn!(partition = batch.partition, error = %e, "pipelined batch failed; written again");
            (Pipelined::Contended, "failed")
        }
    };
    metrics::counter!("csvbus_sink_pipelined_batches_total", "result" => label).increment(1);
    if let Pipelined::Committed(o) = &result {
        record_metrics(batch, o, started);
    }
    result
}

enum Attempt {
    Committed(Outcome),
    Conflict,
    /// Not tried: an upsert or skip import's rows.
    Ordinary,
    /// The batch before did not take the lock within [`LOCK_WAIT`].
    Waited,
    /// Postgres refused rows of it: they count under their import's lock, which the batch
    /// before needs to book.
    Refused,
}

async fn attempt(
    pool: &PgPool,
    settings: &Settings,
    batch: &Batch,
    before_locked: oneshot::Receiver<()>,
    locked: &Signal,
) -> Result<Attempt, sqlx::Error> {
    let Some(first) = batch.records.first() else {
        return Ok(Attempt::Conflict);
    };
    let (records, partition) = (&batch.records, batch.partition);
    let mut tx = transaction::begin(pool, settings.statement_timeout).await?;
    let read = targets::load(&mut tx, records, partition, &settings.allowed_schemas).await?;
    if read
        .values()
        .any(|t| matches!(t.mode, ImportMode::Upsert | ImportMode::Skip))
    {
        // upsert / skip: the same key in this batch and the one before is common, and whichever
        // reached it first would hold the other: written the ordinary way.
        return Ok(Attempt::Ordinary);
    }
    let allowances = Allowances::AsRead;
    let rows = write_rows(
        &mut tx,
        settings,
        batch,
        0,
        &read,
        &Mode::Normal,
        allowances,
    )
    .await?;
    if rows.refused() > 0 {
        // Refusals count against the import's allowance under its row lock, which the batch
        // before needs to book: written the ordinary way.
        tx.rollback().await?;
        return Ok(Attempt::Refused);
    }
    let key = batch.key(settings);
    let (why, verdict) = 'check: {
        if tokio::time::timeout(LOCK_WAIT, before_locked)
            .await
            .is_err()
        {
            break 'check ("the batch before did not lock in time", Attempt::Waited);
        }
        if offsets::lock(&mut tx, key).await? != first.offset {
            break 'check (
                "the position is not where the batch starts",
                Attempt::Conflict,
            );
        }
        let now = targets::load(&mut tx, records, partition, &settings.allowed_schemas).await?;
        if !same_fate(batch, &read, &now, rows.refused() > 0) {
            let why = "the imports' state changed what becomes of its rows";
            break 'check (why, Attempt::Conflict);
        }
        locked.fire();
        let outcome = book(&mut tx, key, first.offset, rows).await?;
        tx.commit().await?;
        settings.committed(&now);
        return Ok(Attempt::Committed(outcome));
    };
    tracing::debug!(partition, why, "pipelined batch rolled back");
    // At once: its rows' locks may hold the batch before.
    tx.rollback().await?;
    Ok(verdict)
}

/// Whether the imports' state `now` (the batches before committed) gives the rows the fate they
/// got from the state `read` before: no import ended, stopped or lost its staging table since; an
/// import whose handled line moved had none of its records at or below the new line (else some
/// were rows sent again, to be skipped); and when rows were refused, the imports' allowances
/// are what they were.
fn same_fate(
    batch: &Batch,
    read: &ByImport<Target>,
    now: &ByImport<Target>,
    refused: bool,
) -> bool {
    if read.len() != now.len() {
        return false;
    }
    let lowest = lowest_lines(batch);
    read.iter().all(|(id, r)| {
        let Some(n) = now.get(id) else {
            return false;
        };
        let line_ok = n.max_line == r.max_line || lowest.get(id).is_some_and(|l| *l > n.max_line);
        let allowance_ok = !refused || n.allowance == r.allowance;
        line_ok
            && allowance_ok
            && (n.completed, n.stopped, n.staging_gone) == (r.completed, r.stopped, r.staging_gone)
    })
}

/// The lowest line of each import among the batch's records.
fn lowest_lines(batch: &Batch) -> ByImport<i64> {
    let mut lowest: ByImport<i64> = ByImport::default();
    for meta in batch.records.iter().filter_map(|r| r.meta.as_ref()) {
        let l = lowest.entry(meta.import).or_insert(meta.line);
        *l = (*l).min(meta.line);
    }
    lowest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::record::Record;
    use csvbus_shared::catalog::TableName;
    use csvbus_shared::message::RowMeta;
    use uuid::Uuid;

    fn batch(import: Uuid, lines: std::ops::RangeInclusive<i64>) -> Batch {
        let table = std::sync::Arc::new(TableName::parse("public.t", "public").unwrap());
        let records = lines
            .enumerate()
            .map(|(i, line)| Record {
                offset: i as i64,
                partition: 0,
                meta: Some(RowMeta {
                    import,
                    line,
                    table: table.clone(),
                }),
                payload: br#"{"a":"1"}"#.to_vec().into(),
                ..Record::default()
            })
            .collect();
        Batch::new("t".into(), 0, records)
    }

    fn state(import: Uuid, max_line: i64, edit: impl FnOnce(&mut Target)) -> ByImport<Target> {
        let mut t = Target {
            table: TableName::parse("public.t", "public").unwrap(),
            columns: vec!["a".into()],
            allowed: true,
            mode: ImportMode::Append,
            conflict: None,
            staging_gone: false,
            completed: false,
            stopped: false,
            allowance: Some(10),
            rejected: 0,
            max_line,
        };
        edit(&mut t);
        ByImport::from_iter([(import, t)])
    }

    #[test]
    fn a_handled_line_that_moved_matters_only_when_the_batch_has_lines_at_or_below_it() {
        let id = Uuid::new_v4();
        let read = state(id, 200, |_| {});
        let moved = state(id, 300, |_| {});
        // The batch before handled lines up to 300; this one starts past them: same fate.
        assert!(same_fate(&batch(id, 301..=400), &read, &moved, false));
        // Lines 250–300 were taken for new rows, but they came again: not the same fate.
        assert!(!same_fate(&batch(id, 250..=349), &read, &moved, false));
        assert!(!same_fate(&batch(id, 300..=300), &read, &moved, false));
        // Nothing moved: whatever the lines, it read the truth.
        assert!(same_fate(&batch(id, 1..=50), &read, &read, false));
    }

    #[test]
    fn an_import_that_ended_stopped_or_lost_its_staging_since_changes_the_fate() {
        let id = Uuid::new_v4();
        let read = state(id, 0, |_| {});
        let b = batch(id, 1..=10);
        assert!(!same_fate(
            &b,
            &read,
            &state(id, 0, |t| t.completed = true),
            false
        ));
        assert!(!same_fate(
            &b,
            &read,
            &state(id, 0, |t| t.stopped = true),
            false
        ));
        assert!(!same_fate(
            &b,
            &read,
            &state(id, 0, |t| t.staging_gone = true),
            false
        ));
        assert!(!same_fate(&b, &read, &ByImport::default(), false));
    }

    #[test]
    fn the_allowance_matters_only_when_rows_were_refused() {
        let id = Uuid::new_v4();
        let read = state(id, 0, |_| {});
        let spent = state(id, 0, |t| t.allowance = Some(3));
        let b = batch(id, 1..=10);
        assert!(same_fate(&b, &read, &spent, false));
        assert!(!same_fate(&b, &read, &spent, true));
    }
}
