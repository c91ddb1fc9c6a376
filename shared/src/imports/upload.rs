//! The transitions the upload service makes: a new import, its live progress, the end of its
//! upload, a resume under its Idempotency-Key, and imports whose service died.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{Checkpoint, ImportStatus, UploadCounters};
use crate::catalog::TableName;
use crate::modes::ImportMode;
use crate::read_as::ReadAs;

/// A new import.
#[derive(Debug, Clone)]
pub struct NewImport<'a> {
    pub id: Uuid,
    pub table: &'a TableName,
    pub columns: &'a [String],
    pub mode: ImportMode,
    pub conflict_columns: Option<&'a [String]>,
    pub max_rejected: i64,
    /// The client's Idempotency-Key and how long it holds.
    pub key: Option<(&'a str, std::time::Duration)>,
    pub read_as: Option<&'a ReadAs>,
    /// Where the rows come from (a file name), when the client said.
    pub source: Option<&'a str>,
    /// The webhook endpoint told of the import's end (see [`crate::webhook`]).
    pub notify_url: Option<&'a str>,
    /// The import a replay reads its rows from.
    pub replay_of: Option<Uuid>,
}

impl<'a> NewImport<'a> {
    /// An append import with the default `max_rejected` and no key.
    pub fn append(id: Uuid, table: &'a TableName, columns: &'a [String]) -> Self {
        Self {
            id,
            table,
            columns,
            mode: ImportMode::Append,
            conflict_columns: None,
            max_rejected: 100,
            key: None,
            read_as: None,
            source: None,
            notify_url: None,
            replay_of: None,
        }
    }
}

/// Records a new import (in the caller's transaction, with its staging table if it has one).
pub async fn create(conn: &mut PgConnection, n: &NewImport<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO csvbus.imports (id, target_schema, target_table, columns, mode,
                conflict_columns, max_rejected, idempotency_key, key_expires_at, read_as, source,
                notify_url, replay_of)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(secs => $9), $10, $11,
                 $12, $13)",
    )
    .bind(n.id)
    .bind(&n.table.schema)
    .bind(&n.table.table)
    .bind(n.columns)
    .bind(n.mode)
    .bind(n.conflict_columns)
    .bind(n.max_rejected)
    .bind(n.key.map(|k| k.0))
    .bind(n.key.map(|k| k.1.as_secs_f64()))
    // A header field may hold a NUL, which `jsonb` does not take.
    .bind(
        n.read_as
            .and_then(|r| serde_json::to_value(r).ok())
            .map(super::storable_json),
    )
    .bind(n.source)
    .bind(n.notify_url)
    .bind(n.replay_of)
    .execute(conn)
    .await?;
    Ok(())
}

/// Live progress while the body is read. A no-op once the upload has finished: a progress
/// tick that lands after [`finish`] must not put older counters back (under load, the import
/// would complete before all its rows were written). Returns false when this attempt is no
/// longer `receiving`: it ended elsewhere (the sink stopped it, or it was taken for abandoned).
pub async fn update_progress(
    pool: &PgPool,
    id: Uuid,
    attempt: i32,
    c: &UploadCounters,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE csvbus.imports SET rows_received = $2, rows_produced = $3, rows_rejected = $4,
                bytes_received = $5, acked_line = $6, acked_rows = $7, acked_digest = $8,
                updated_at = now() WHERE id = $1 AND status = $10 AND attempts = $9",
    )
    .bind(id)
    .bind(c.rows_received)
    .bind(c.rows_produced)
    .bind(c.rows_rejected)
    .bind(c.bytes_received)
    .bind(c.acked.line)
    .bind(c.acked.rows)
    .bind(c.acked.digest)
    .bind(attempt)
    .bind(ImportStatus::Receiving)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The upload ended: `produced` (every row acknowledged) — or `completed` at once when the sink
/// already wrote them all — or `failed`/`aborted` with the error. Applies only while this
/// attempt is `receiving`: returns false when the import was aborted meanwhile (its service was
/// taken for dead).
pub async fn finish(
    pool: &PgPool,
    id: Uuid,
    attempt: i32,
    final_status: ImportStatus,
    c: &UploadCounters,
    error: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE csvbus.imports SET
                rows_received = $3, rows_produced = $4, rows_rejected = $5, bytes_received = $6,
                error = $7, produced_at = CASE WHEN $2 = $12 THEN now() END,
                acked_line = $8, acked_rows = $9, acked_digest = $10,
                status = CASE WHEN $2 = $12 AND mode NOT IN ('atomic', 'replace')
                               AND rows_written + rows_write_rejected + rows_skipped + rows_set_aside >= $4
                              THEN $13 ELSE $2 END,
                finished_at = CASE WHEN $2 <> $12 OR (mode NOT IN ('atomic', 'replace')
                                   AND rows_written + rows_write_rejected + rows_skipped + rows_set_aside >= $4)
                                   THEN now() END,
                updated_at = now()
          WHERE id = $1 AND status = $14 AND attempts = $11",
    )
    .bind(id)
    .bind(final_status)
    .bind(c.rows_received)
    .bind(c.rows_produced)
    .bind(c.rows_rejected)
    .bind(c.bytes_received)
    .bind(error)
    .bind(c.acked.line)
    .bind(c.acked.rows)
    .bind(c.acked.digest)
    .bind(attempt)
    .bind(ImportStatus::Produced)
    .bind(ImportStatus::Completed)
    .bind(ImportStatus::Receiving)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The counters an upload ends with, when the sink stopped its import while the body was
/// read ([`super::sink::stop_over_limit`]): the status stays as the sink left it.
pub async fn save_stopped_counters(
    pool: &PgPool,
    id: Uuid,
    attempt: i32,
    c: &UploadCounters,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE csvbus.imports SET rows_received = $3, rows_produced = $4, rows_rejected = $5,
                bytes_received = $6, updated_at = now()
          WHERE id = $1 AND attempts = $2 AND stopped",
    )
    .bind(id)
    .bind(attempt)
    .bind(c.rows_received)
    .bind(c.rows_produced)
    .bind(c.rows_rejected)
    .bind(c.bytes_received)
    .execute(pool)
    .await?;
    Ok(())
}

/// A column of the table the import created was widened (`statement`): appended to its
/// `read_as.widened`, in the caller's transaction (the one that ran it).
pub async fn record_widened(
    conn: &mut PgConnection,
    id: Uuid,
    statement: &str,
) -> Result<(), sqlx::Error> {
    append_to_read_as(conn, id, ReadAsList::Widened, statement).await
}

/// What the upload found while reading the body (`note`): appended to its `read_as.notes`.
pub async fn record_note(pool: &PgPool, id: Uuid, note: &str) -> Result<(), sqlx::Error> {
    append_to_read_as(pool, id, ReadAsList::Notes, note).await
}

/// A list of an import's `read_as` that grows while it is read.
#[derive(Debug, Clone, Copy)]
enum ReadAsList {
    Widened,
    Notes,
}

async fn append_to_read_as<'e>(
    db: impl sqlx::PgExecutor<'e>,
    id: Uuid,
    list: ReadAsList,
    text: &str,
) -> Result<(), sqlx::Error> {
    let key = match list {
        ReadAsList::Widened => "widened",
        ReadAsList::Notes => "notes",
    };
    sqlx::query(
        "UPDATE csvbus.imports
            SET read_as = jsonb_set(coalesce(read_as, '{}'::jsonb), ARRAY[$3::text],
                                    coalesce(read_as->$3, '[]'::jsonb) || to_jsonb($2::text))
          WHERE id = $1",
    )
    .bind(id)
    .bind(super::storable_text(text).as_ref())
    .bind(key)
    .execute(db)
    .await?;
    Ok(())
}

/// Saves the digest of the import's body as decoded ([`ImportRecord`] does not show it): a
/// repeat under its Idempotency-Key is compared with it.
pub async fn save_body_digest(pool: &PgPool, id: Uuid, digest: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE csvbus.imports SET body_digest = $2 WHERE id = $1")
        .bind(id)
        .bind(digest)
        .execute(pool)
        .await?;
    Ok(())
}

/// Marks `aborted` the imports still `receiving` whose upload has not saved progress for
/// `silent` (its service was killed or lost its database): returns their ids. Rows they
/// produced are still written by the sink.
pub async fn abort_orphans(
    pool: &PgPool,
    silent: std::time::Duration,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE csvbus.imports
            SET status = $2, error = 'the upload service stopped during the upload',
                finished_at = now(), updated_at = now()
          WHERE status = $3 AND updated_at < now() - make_interval(secs => $1)
         RETURNING id",
    )
    .bind(silent.as_secs_f64())
    .bind(ImportStatus::Aborted)
    .bind(ImportStatus::Receiving)
    .fetch_all(pool)
    .await
}

/// The import holding an Idempotency-Key, as a repeat under that key finds it.
#[derive(Debug, sqlx::FromRow)]
pub struct KeyHolder {
    pub id: Uuid,
    pub target_schema: String,
    pub target_table: String,
    pub mode: ImportMode,
    pub status: ImportStatus,
    /// Every row of its body was accepted once (it reached `produced`).
    pub accepted: bool,
    pub columns: Vec<String>,
    pub read_as: Option<sqlx::types::Json<ReadAs>>,
    /// Rows rejected while reading, up to its checkpoint.
    pub rows_rejected: i64,
    pub body_digest: Option<String>,
    #[sqlx(flatten)]
    pub acked: Checkpoint,
}

/// Frees `key` if it has expired; the caller commits this even when it goes on to create a new
/// import (rolled back, the key stayed on the old import and every repeat answered 409).
pub async fn release_expired_key(conn: &mut PgConnection, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE csvbus.imports SET idempotency_key = NULL
          WHERE idempotency_key = $1 AND key_expires_at <= now()",
    )
    .bind(key)
    .execute(conn)
    .await?;
    Ok(())
}

/// The import holding `key`, locked until the caller's transaction ends.
pub async fn key_holder(
    conn: &mut PgConnection,
    key: &str,
) -> Result<Option<KeyHolder>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, target_schema, target_table, mode, status,
                produced_at IS NOT NULL OR stopped AS accepted,
                columns, read_as, body_digest, acked_line, acked_rows, acked_digest,
                (SELECT count(*) FROM csvbus.rejected_rows r
                  WHERE r.import_id = i.id AND r.stage = 'parse' AND r.line <= i.acked_line)
                    AS rows_rejected
           FROM csvbus.imports i WHERE idempotency_key = $1 FOR UPDATE",
    )
    .bind(key)
    .fetch_optional(conn)
    .await
}

/// Takes a failed or aborted import that was never accepted over for another attempt:
/// `receiving` again, its counters back at the checkpoint, its parse rejections after the
/// checkpoint forgotten (they are read again). Returns the new attempt's number.
pub async fn resume(conn: &mut PgConnection, k: &KeyHolder) -> Result<i32, sqlx::Error> {
    sqlx::query(
        "DELETE FROM csvbus.rejected_rows WHERE import_id = $1 AND stage = 'parse' AND line > $2",
    )
    .bind(k.id)
    .bind(k.acked.line)
    .execute(&mut *conn)
    .await?;
    sqlx::query_scalar(
        "UPDATE csvbus.imports SET status = $3, attempts = attempts + 1,
                resumed_from_line = acked_line, rows_produced = acked_rows, rows_rejected = $2,
                rows_received = 0, bytes_received = 0, error = NULL, finished_at = NULL,
                updated_at = now()
          WHERE id = $1 AND status IN ($4, $5) AND produced_at IS NULL AND NOT stopped RETURNING attempts",
    )
    .bind(k.id)
    .bind(k.rows_rejected)
    .bind(ImportStatus::Receiving)
    .bind(ImportStatus::Failed)
    .bind(ImportStatus::Aborted)
    .fetch_one(conn)
    .await
}
