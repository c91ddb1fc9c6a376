//! The move of a complete atomic or replace import from its staging table into its target, in
//! one transaction: readers of the target see none of its rows or all of them.
//!
//! An import is complete when its upload is `produced` and every produced row was staged or
//! rejected. The move locks the import's record (so one sink replica moves it), empties the
//! target first in replace mode, and inserts the staged rows in line order. Rows the target
//! refuses (unique, foreign key, check, trigger) are found by bisection over line ranges and
//! rejected with their line and Postgres' message; when more rows are rejected than the import's
//! `max_rejected`, the move is rolled back and the import is `failed` with nothing in the target.
//! The staging table is dropped either way.

pub(crate) mod move_rows;

use std::sync::Arc;
use std::time::Duration;

use csvbus_shared::catalog::TableName;
use csvbus_shared::imports::{self, Stage};
use csvbus_shared::modes::drop_staging;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use move_rows::{insert_all, Moved, Refused};

/// Looks for complete imports every `every`, and when `staged` is told that rows of a staged
/// import were written (the last of them completes it), and moves them, until `stop`.
pub async fn run(
    pool: PgPool,
    every: Duration,
    timeout: Duration,
    staged: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
            _ = staged.notified() => {}
        }
        let ready = match imports::sink::ready_to_move(&pool).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::debug!(error = %e, "looking for complete imports failed");
                continue;
            }
        };
        for id in ready {
            let moved = tokio::select! {
                r = move_import(&pool, id, timeout) => r,
                _ = stop.cancelled() => return,
            };
            if let Err(e) = moved {
                // Outages and the like: the transaction rolled back; tried again next tick.
                tracing::warn!(import_id = %id, error = %e, "moving the import into its table failed; will retry");
            }
        }
    }
}

/// Moves one import if it is still complete and not moved; errors roll everything back.
async fn move_import(pool: &PgPool, id: Uuid, timeout: Duration) -> Result<(), sqlx::Error> {
    let mut tx = crate::write::transaction::begin(pool, timeout).await?;
    let Some(imp) = imports::sink::lock_for_move(&mut tx, id).await? else {
        return Ok(());
    };
    let table = TableName {
        schema: imp.target_schema.clone(),
        table: imp.target_table.clone(),
    };
    let allowed = imp.max_rejected - imp.rejected_before;
    let (written, refused) = match insert_all(&mut tx, id, &table, &imp, allowed).await? {
        Moved::Done { written, refused } => (written, refused),
        Moved::GivenUp { refused, why } => {
            tx.rollback().await?;
            return fail(pool, id, &refused, &why).await;
        }
    };
    for r in &refused {
        store_refused(&mut tx, id, r).await?;
    }
    imports::sink::moved(&mut tx, id, written as i64, refused.len() as i64).await?;
    drop_staging(&mut tx, id).await?;
    tx.commit().await?;
    tracing::info!(import_id = %id, table = %table, rows = written, rejected = refused.len(), mode = imp.mode.as_str(), "import moved into its table");
    Ok(())
}

async fn store_refused(conn: &mut PgConnection, id: Uuid, r: &Refused) -> Result<(), sqlx::Error> {
    let rejected = imports::Rejected {
        import_id: id,
        line: r.line,
        stage: Stage::Write,
        reason: &r.reason,
        raw: None,
        fields: r.fields.clone(),
    };
    imports::insert_rejected(conn, rejected).await
}

/// The move was refused: the import is `failed`, nothing of it in the target, its refused rows
/// recorded and its staging table dropped.
async fn fail(pool: &PgPool, id: Uuid, refused: &[Refused], why: &str) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    if imports::sink::move_refused(&mut tx, id, why, refused.len() as i64).await? {
        for r in refused {
            store_refused(&mut tx, id, r).await?;
        }
        drop_staging(&mut tx, id).await?;
    }
    tx.commit().await?;
    tracing::warn!(import_id = %id, reason = why, "import not moved into its table: failed");
    Ok(())
}
