//! A batch's rows inside its transaction: sorted, COPYd by group ([`crate::write::copy`]), the
//! refused rows and dead letters stored — and then booked: the imports' counters, the lines
//! handled and the position moved. The ordinary writer ([`crate::write::writer`]) does both with
//! the position locked first; a pipelined batch ([`crate::write::pipeline`]) books last.

use crate::write::ByImport;

use csvbus_shared::imports;
use sqlx::PgConnection;

use crate::fetch::record::Record;
use crate::positions::handled;
use crate::positions::offsets::{self, Key};
use crate::write::batch::{sort, Dead, Reject, Sorted, Target};
use crate::write::copy::{copy_group, lock_allowance, Allowance, Mode};
use crate::write::writer::{Batch, Outcome, Settings};

/// How a batch counts its refused rows against their imports' `max_rejected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Allowances {
    /// Against the allowances as read with the batch's targets: a pipelined batch, which is
    /// written again the ordinary way when it refuses any row.
    AsRead,
    /// An import whose allowance as read covers every row of the batch counts against that,
    /// without its lock — partitions refusing rows of one import then write side by side —
    /// and the batch is checked before it books ([`Rows::over_allowance`]); any other import
    /// as [`Allowances::Locked`].
    Optimistic,
    /// From its first refusal on, the transaction holds the import's row and reads what is
    /// left ([`copy_group`]): the import stops after exactly `max_rejected + 1` refusals.
    Locked,
}

/// What a batch's rows came to, before it is booked.
pub(crate) struct Rows {
    last_offset: i64,
    sorted: Sorted,
    counts: ByImport<imports::Written>,
    outcome: Outcome,
    /// Imports whose refusals were counted against their allowance read without the lock.
    unlocked: Vec<uuid::Uuid>,
}

impl Rows {
    /// Rows Postgres refused.
    pub(crate) fn refused(&self) -> u64 {
        self.outcome.rejected
    }

    /// Whether an import's refusals, counted without its lock, pass what it has left now that
    /// its row is locked (other partitions refused its rows meanwhile): then the batch must be
    /// written again under [`Allowances::Locked`], for the import to stop at exactly the row
    /// past its bound. Holds the locks to the transaction's end (booking takes them anyway).
    pub(crate) async fn over_allowance(&self, tx: &mut PgConnection) -> Result<bool, sqlx::Error> {
        for import in &self.unlocked {
            let refused = self.counts.get(import).map_or(0, |c| c.rejected);
            if refused > 0
                && lock_allowance(tx, *import)
                    .await?
                    .is_some_and(|l| l < refused)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Writes `batch`'s records from `first_new` on, as `targets` say, with their rejected rows and
/// dead letters; books nothing yet. Refusals count against `max_rejected` as `allowances` say.
pub(crate) async fn write_rows(
    tx: &mut PgConnection,
    settings: &Settings,
    batch: &Batch,
    first_new: usize,
    targets: &ByImport<Target>,
    mode: &Mode,
    allowances: Allowances,
) -> Result<Rows, sqlx::Error> {
    let fresh = &batch.records[first_new..];
    let signer = settings.signer.as_ref();
    let sorted = sort(fresh, |i| batch.decoded.get(first_new + i), targets, signer);
    let mut rejects = Vec::new();
    let mut counts: ByImport<imports::Written> = ByImport::default();
    let rows = fresh.len() as i64;
    let unlocked: Vec<uuid::Uuid> = match allowances {
        Allowances::Optimistic => {
            let covers = |t: &Target| t.allowance.is_none_or(|l| l >= rows);
            let mut ids: Vec<_> = targets
                .iter()
                .filter(|(_, t)| covers(t))
                .map(|(id, _)| *id)
                .collect();
            ids.sort_unstable(); // locked in one order by every batch
            ids
        }
        _ => Vec::new(),
    };
    let mut allowances: ByImport<Allowance> = targets
        .iter()
        .map(|(id, t)| {
            let settled = allowances == Allowances::AsRead || unlocked.contains(id);
            (
                *id,
                Allowance {
                    left: t.allowance,
                    settled,
                },
            )
        })
        .collect();
    for (import, n) in &sorted.set_aside {
        counts.entry(*import).or_default().set_aside += n;
    }
    let mut outcome = Outcome {
        skipped: first_new as u64,
        ..Outcome::default()
    };
    for g in &sorted.groups {
        let allowance = allowances.entry(g.import).or_default();
        let format = settings.copy_format;
        let conflicts = &settings.key_conflicts;
        let c = copy_group(
            &mut *tx,
            g,
            mode,
            &mut rejects,
            allowance,
            format,
            conflicts,
        )
        .await?;
        let n = counts.entry(g.import).or_default();
        n.written += c.written as i64;
        n.skipped += c.skipped as i64;
        n.set_aside += c.set_aside as i64;
        outcome.written += c.written;
        outcome.set_aside += c.set_aside;
    }
    outcome.set_aside += sorted.set_aside.values().sum::<i64>() as u64;
    store_rejects(&mut *tx, fresh, &rejects, targets).await?;
    let key = batch.key(settings);
    store_dead(&mut *tx, key, fresh, &sorted.dead).await?;
    for r in &rejects {
        counts.entry(r.import).or_default().rejected += 1;
    }
    outcome.rejected = rejects.len() as u64;
    outcome.dead = sorted.dead.len() as u64;
    outcome.duplicates = sorted.duplicates;
    let last_offset = batch.records.last().map_or(0, |r| r.offset);
    Ok(Rows {
        last_offset,
        sorted,
        counts,
        outcome,
        unlocked,
    })
}

/// Books written rows in the batch's transaction: the imports' counters (an import whose
/// refusals passed its `max_rejected` stops), the lines handled, and the position moved from
/// `stored` (the caller holds its lock).
pub(crate) async fn book(
    tx: &mut PgConnection,
    key: Key<'_>,
    stored: i64,
    rows: Rows,
) -> Result<Outcome, sqlx::Error> {
    let Rows {
        sorted,
        counts,
        mut outcome,
        last_offset,
        ..
    } = rows;
    for (import, w) in counts {
        imports::add_written(&mut *tx, import, w).await?;
        if w.rejected > 0 && imports::sink::stop_over_limit(&mut *tx, import).await? {
            tracing::warn!(import_id = %import, "rows refused past max_rejected: import stopped");
        }
    }
    let (lines, offsets) = (&sorted.max_lines, &sorted.offsets);
    handled::store_max_lines(&mut *tx, key.partition, lines, offsets).await?;
    outcome.next_offset = stored.max(last_offset + 1);
    offsets::set(&mut *tx, key, outcome.next_offset).await?;
    Ok(outcome)
}

async fn store_rejects(
    conn: &mut PgConnection,
    records: &[Record],
    rejects: &[Reject],
    targets: &ByImport<Target>,
) -> Result<(), sqlx::Error> {
    let mut earlier: ByImport<i64> = ByImport::default();
    let mut rows = Vec::with_capacity(rejects.len());
    for r in rejects {
        let before = earlier
            .entry(r.import)
            .or_insert_with(|| targets.get(&r.import).map_or(0, |t| t.rejected));
        let payload = &records[r.index].payload;
        let kept = *before < imports::rejected::KEPT_IN_FULL
            && payload.len() <= imports::rejected::FIELDS_LIMIT;
        *before += 1;
        let fields = kept.then(|| serde_json::from_slice(payload).ok()).flatten();
        rows.push(imports::Rejected {
            import_id: r.import,
            line: r.line,
            stage: imports::Stage::Write,
            reason: &r.reason,
            raw: None,
            fields,
        });
    }
    imports::insert_rejected_many(conn, &rows).await
}

/// Longest part of a dead letter's value that is kept.
const DEAD_PAYLOAD_LIMIT: usize = 64 * 1024;

async fn store_dead(
    conn: &mut PgConnection,
    key: Key<'_>,
    records: &[Record],
    dead: &[Dead],
) -> Result<(), sqlx::Error> {
    // One line per batch, not per row: a topic of foreign messages would flood the log.
    if let Some(first) = dead.first() {
        let offset = records[first.index].offset;
        tracing::warn!(partition = key.partition, count = dead.len(), first_offset = offset,
            first_reason = %first.reason, "dead letters");
    }
    for d in dead {
        let r = &records[d.index];
        let payload = &r.payload[..r.payload.len().min(DEAD_PAYLOAD_LIMIT)];
        sqlx::query(
            "INSERT INTO csvbus.dead_letters
                    (group_id, topic, partition, \"offset\", row_in_message, reason, headers, key,
                     payload, payload_bytes)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
        )
        .bind(key.group_id)
        .bind(key.topic)
        .bind(key.partition)
        .bind(r.offset)
        .bind(r.sub as i32)
        .bind(imports::storable_text(&d.reason).as_ref())
        .bind(imports::storable_json(r.headers_json()))
        .bind(r.key.as_deref())
        .bind(payload)
        .bind(i32::try_from(r.payload.len()).unwrap_or(i32::MAX))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
