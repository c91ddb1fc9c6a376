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

use std::time::Duration;

use csvbus_shared::catalog::{quote_ident, TableName};
use csvbus_shared::failure::{classify, Failure};
use csvbus_shared::imports::{self, Stage};
use csvbus_shared::modes::{drop_staging, staging_table, ImportMode, LINE_COLUMN};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::copy::describe;

/// Looks for complete imports every `every` and moves them, until `stop`.
pub async fn run(pool: PgPool, every: Duration, timeout: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ready: Vec<Uuid> = match sqlx::query_scalar(
            "SELECT id FROM csvbus.imports
              WHERE status = 'produced' AND mode IN ('atomic', 'replace')
                AND rows_written + rows_write_rejected >= rows_produced ORDER BY id",
        )
        .fetch_all(&pool)
        .await
        {
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

#[derive(sqlx::FromRow)]
struct Import {
    target_schema: String,
    target_table: String,
    columns: Vec<String>,
    mode: ImportMode,
    max_rejected: i64,
    rejected_before: i64,
}

/// A staged row the target refused.
struct Refused {
    line: i64,
    reason: String,
    fields: Option<serde_json::Value>,
}

/// Moves one import if it is still complete and not moved; errors roll everything back.
async fn move_import(pool: &PgPool, id: Uuid, timeout: Duration) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let Some(imp) = sqlx::query_as::<_, Import>(
        "SELECT target_schema, target_table, columns, mode, max_rejected,
                rows_rejected + rows_write_rejected AS rejected_before
           FROM csvbus.imports WHERE id = $1 AND status = 'produced' FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(());
    };
    sqlx::query("SET CONSTRAINTS ALL IMMEDIATE")
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!(
        "SET LOCAL statement_timeout = {}",
        timeout.as_millis()
    ))
    .execute(&mut *tx)
    .await?;
    let table = TableName {
        schema: imp.target_schema.clone(),
        table: imp.target_table.clone(),
    };
    let allowed = imp.max_rejected - imp.rejected_before;
    let moved = match insert_all(&mut tx, id, &table, &imp, allowed).await? {
        Ok(moved) => moved,
        Err((refused, why)) => {
            tx.rollback().await?;
            return fail(pool, id, &refused, &why).await;
        }
    };
    let (written, refused) = moved;
    for r in &refused {
        store_refused(&mut tx, id, r).await?;
    }
    sqlx::query(
        "UPDATE csvbus.imports SET status = 'completed', rows_written = $2,
                rows_write_rejected = rows_write_rejected + $3, finished_at = now(),
                updated_at = now()
          WHERE id = $1",
    )
    .bind(id)
    .bind(written as i64)
    .bind(refused.len() as i64)
    .execute(&mut *tx)
    .await?;
    drop_staging(&mut tx, id).await?;
    tx.commit().await?;
    tracing::info!(import_id = %id, table = %table, rows = written, rejected = refused.len(), mode = imp.mode.as_str(), "import moved into its table");
    Ok(())
}

type Moved = Result<(u64, Vec<Refused>), (Vec<Refused>, String)>;

/// Empties the target (replace) and inserts the staged rows, bisecting refused ones. `Err` when
/// more than `allowed` rows are refused, or the target refuses the import as a whole.
async fn insert_all(
    conn: &mut PgConnection,
    id: Uuid,
    table: &TableName,
    imp: &Import,
    allowed: i64,
) -> Result<Moved, sqlx::Error> {
    let stage = staging_table(id);
    if imp.mode == ImportMode::Replace {
        sqlx::query(&format!("DELETE FROM {}", table.quoted()))
            .execute(&mut *conn)
            .await?;
    }
    let cols = imp
        .columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let insert = format!(
        "INSERT INTO {} ({cols}) SELECT {cols} FROM {stage}
          WHERE {LINE_COLUMN} BETWEEN $1 AND $2 ORDER BY {LINE_COLUMN}",
        table.quoted()
    );
    let (lo, hi): (Option<i64>, Option<i64>) = sqlx::query_as(&format!(
        "SELECT min({LINE_COLUMN}), max({LINE_COLUMN}) FROM {stage}"
    ))
    .fetch_one(&mut *conn)
    .await?;
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Ok(Ok((0, vec![])));
    };
    let mut written = 0;
    let mut refused = Vec::new();
    let mut indexed = false;
    // Line ranges still to insert, popped in file order.
    let mut todo = vec![(lo, hi)];
    while let Some((a, b)) = todo.pop() {
        sqlx::query("SAVEPOINT csvbus_move")
            .execute(&mut *conn)
            .await?;
        let e = match sqlx::query(&insert)
            .bind(a)
            .bind(b)
            .execute(&mut *conn)
            .await
        {
            Ok(r) => {
                written += r.rows_affected();
                sqlx::query("RELEASE SAVEPOINT csvbus_move")
                    .execute(&mut *conn)
                    .await?;
                continue;
            }
            Err(e) => e,
        };
        match classify(&e) {
            Failure::Rows => {}
            Failure::Group => return Ok(Err((refused, describe(&e)))),
            Failure::Outage | Failure::Unknown => return Err(e),
        }
        sqlx::query("ROLLBACK TO SAVEPOINT csvbus_move")
            .execute(&mut *conn)
            .await?;
        if !indexed {
            // Bisection looks rows up by line: worth an index from the first refusal on.
            sqlx::query(&format!("CREATE INDEX ON {stage} ({LINE_COLUMN})"))
                .execute(&mut *conn)
                .await?;
            indexed = true;
        }
        let lines: Vec<i64> = sqlx::query_scalar(&format!(
            "SELECT {LINE_COLUMN} FROM {stage} WHERE {LINE_COLUMN} BETWEEN $1 AND $2 LIMIT 2"
        ))
        .bind(a)
        .bind(b)
        .fetch_all(&mut *conn)
        .await?;
        match lines.as_slice() {
            [] => {}
            [line] => {
                refused.push(refused_row(conn, &stage, *line, describe(&e)).await?);
                if refused.len() as i64 > allowed {
                    let why = format!(
                        "{} rows were refused by {table} when the import was moved in, more than max_rejected={} allows; nothing was written. Last: {}",
                        refused.len() as i64 + imp.rejected_before,
                        imp.max_rejected,
                        describe(&e)
                    );
                    return Ok(Err((refused, why)));
                }
            }
            _ => {
                let mid = a + (b - a) / 2;
                todo.push((mid + 1, b));
                todo.push((a, mid));
            }
        }
    }
    Ok(Ok((written, refused)))
}

async fn refused_row(
    conn: &mut PgConnection,
    stage: &str,
    line: i64,
    reason: String,
) -> Result<Refused, sqlx::Error> {
    let fields: Option<serde_json::Value> = sqlx::query_scalar(&format!(
        "SELECT to_jsonb(s) - '{LINE_COLUMN}' FROM {stage} s WHERE {LINE_COLUMN} = $1"
    ))
    .bind(line)
    .fetch_optional(conn)
    .await?;
    Ok(Refused {
        line,
        reason,
        fields,
    })
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
    let updated = sqlx::query(
        "UPDATE csvbus.imports SET status = 'failed', error = $2, rows_written = 0,
                rows_write_rejected = rows_write_rejected + $3, finished_at = now(),
                updated_at = now()
          WHERE id = $1 AND status = 'produced'",
    )
    .bind(id)
    .bind(imports::storable_text(why).as_ref())
    .bind(refused.len() as i64)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 1 {
        for r in refused {
            store_refused(&mut tx, id, r).await?;
        }
        drop_staging(&mut tx, id).await?;
    }
    tx.commit().await?;
    tracing::warn!(import_id = %id, reason = why, "import not moved into its table: failed");
    Ok(())
}
