//! The transitions the sink makes: rows written (which completes an append, upsert or skip
//! import), and the move of an atomic or replace import from its staging table.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::ImportStatus;

/// What the sink did with rows of one import in one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    pub written: i64,
    pub rejected: i64,
    pub skipped: i64,
    /// Rows of a stopped import, set aside unwritten.
    pub set_aside: i64,
}

/// The sink handled rows of an import (in the caller's transaction); completes the import when
/// that covers everything produced — except staged imports, which complete when moved, and an
/// import whose refusals passed `max_rejected`, which [`stop_over_limit`] fails instead.
pub async fn add_written(conn: &mut PgConnection, id: Uuid, w: Written) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE csvbus.imports SET
                rows_written = rows_written + $2, rows_write_rejected = rows_write_rejected + $3,
                rows_skipped = rows_skipped + $4, rows_set_aside = rows_set_aside + $7,
                status = CASE WHEN status = $5 AND mode NOT IN ('atomic', 'replace')
                               AND rows_written + rows_write_rejected + rows_skipped + $2 + $3 + $4
                                   >= rows_produced
                               AND rows_rejected + rows_write_rejected + $3 <= max_rejected
                              THEN $6 ELSE status END,
                finished_at = CASE WHEN status = $5 AND mode NOT IN ('atomic', 'replace')
                               AND rows_written + rows_write_rejected + rows_skipped + $2 + $3 + $4
                                   >= rows_produced
                               AND rows_rejected + rows_write_rejected + $3 <= max_rejected
                              THEN now() ELSE finished_at END,
                updated_at = now()
          WHERE id = $1",
    )
    .bind(id)
    .bind(w.written)
    .bind(w.rejected)
    .bind(w.skipped)
    .bind(ImportStatus::Produced)
    .bind(ImportStatus::Completed)
    .bind(w.set_aside)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Stops an import whose refused rows (while reading and by Postgres, counted by
/// [`add_written`] first, in the same transaction) passed its `max_rejected`: `failed` and
/// `stopped`, with what it wrote said in its error. Its later rows are set aside unwritten; an
/// atomic or replace import wrote nothing (its staging table is dropped by the janitor). Returns
/// whether it stopped now.
pub async fn stop_over_limit(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE csvbus.imports SET status = $2, stopped = true, finished_at = now(),
                updated_at = now(),
                error = format('%s rows refused (%s while reading, %s by Postgres), more than '
                    || 'max_rejected=%s: the import stopped taking rows; %s',
                    rows_rejected + rows_write_rejected,
                    rows_rejected, rows_write_rejected, max_rejected,
                    CASE WHEN mode IN ('atomic', 'replace')
                         THEN 'nothing was written to the table'
                         ELSE rows_written || ' rows were written before it stopped' END)
          WHERE id = $1 AND status IN ($3, $4) AND NOT stopped
            AND rows_rejected + rows_write_rejected > max_rejected",
    )
    .bind(id)
    .bind(ImportStatus::Failed)
    .bind(ImportStatus::Receiving)
    .bind(ImportStatus::Produced)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Atomic and replace imports ready to be moved: produced, every row staged or rejected.
pub async fn ready_to_move(pool: &PgPool) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM csvbus.imports
          WHERE status = $1 AND mode IN ('atomic', 'replace')
            AND rows_written + rows_write_rejected >= rows_produced ORDER BY id",
    )
    .bind(ImportStatus::Produced)
    .fetch_all(pool)
    .await
}

/// An import as its move reads it.
#[derive(Debug, sqlx::FromRow)]
pub struct ToMove {
    pub target_schema: String,
    pub target_table: String,
    pub columns: Vec<String>,
    pub mode: crate::modes::ImportMode,
    pub max_rejected: i64,
    /// Rows rejected before the move (while reading, or while staging).
    pub rejected_before: i64,
}

/// Locks an import for its move, if it is still `produced` (one replica moves it; a moved one
/// is not moved again).
pub async fn lock_for_move(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<ToMove>, sqlx::Error> {
    sqlx::query_as(
        "SELECT target_schema, target_table, columns, mode, max_rejected,
                rows_rejected + rows_write_rejected AS rejected_before
           FROM csvbus.imports WHERE id = $1 AND status = $2 FOR UPDATE",
    )
    .bind(id)
    .bind(ImportStatus::Produced)
    .fetch_optional(conn)
    .await
}

/// The move committed: `completed`, with the rows it wrote and refused (in the move's
/// transaction, after [`lock_for_move`]).
pub async fn moved(
    conn: &mut PgConnection,
    id: Uuid,
    written: i64,
    refused: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE csvbus.imports SET status = $4, rows_written = $2,
                rows_write_rejected = rows_write_rejected + $3, finished_at = now(),
                updated_at = now()
          WHERE id = $1 AND status = $5",
    )
    .bind(id)
    .bind(written)
    .bind(refused)
    .bind(ImportStatus::Completed)
    .bind(ImportStatus::Produced)
    .execute(conn)
    .await?;
    Ok(())
}

/// The move was refused (more rows refused than `max_rejected`, or the target refused it as a
/// whole): `failed`, nothing written. Returns false when the import was no longer `produced`.
pub async fn move_refused(
    conn: &mut PgConnection,
    id: Uuid,
    why: &str,
    refused: i64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE csvbus.imports SET status = $4, error = $2, rows_written = 0,
                rows_write_rejected = rows_write_rejected + $3, finished_at = now(),
                updated_at = now()
          WHERE id = $1 AND status = $5",
    )
    .bind(id)
    .bind(super::storable_text(why).as_ref())
    .bind(refused)
    .bind(ImportStatus::Failed)
    .bind(ImportStatus::Produced)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Whether some import still waits for rows to be written (not completed, fewer rows handled
/// than produced): the watchdog's sign that the group should be reading.
pub async fn rows_pending(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM csvbus.imports
                         WHERE status <> $1
                           AND rows_written + rows_write_rejected + rows_skipped
                               + rows_set_aside < rows_produced)",
    )
    .bind(ImportStatus::Completed)
    .fetch_one(pool)
    .await
}
