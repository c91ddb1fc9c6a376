//! `csvbus.imports` and `csvbus.rejected_rows`: the live record of every upload, read by the
//! status API and written by both services.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::catalog::TableName;
use crate::modes::ImportMode;
use crate::read_as::ReadAs;
pub use crate::rejected::{
    insert_rejected, storable_json, storable_text, Rejected, RejectedPage, RejectedRow, Stage,
};
pub use crate::status::{ImportStatus, Outcome};

/// One import as the API shows it (the CLI reads it back with the same type).
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ImportRecord {
    pub id: Uuid,
    /// `schema.table`.
    pub table: String,
    /// The file's header, in file order.
    pub columns: Vec<String>,
    pub status: ImportStatus,
    /// What the import came to, at a glance (from `status` and the counters).
    pub outcome: Outcome,
    /// Where the rows came from: the file name sent with the upload (`name=` or
    /// `Content-Disposition`), when one was.
    pub source: Option<String>,
    pub mode: ImportMode,
    /// upsert / skip: the `ON CONFLICT` columns.
    pub conflict_columns: Option<Vec<String>>,
    pub rows_received: i64,
    pub rows_produced: i64,
    pub rows_rejected: i64,
    pub rows_written: i64,
    pub rows_write_rejected: i64,
    /// skip: rows not written because their key was already in the table.
    pub rows_skipped: i64,
    pub bytes_received: i64,
    /// Uploads of this import (more than 1 when a retry resumed it).
    pub attempts: i32,
    /// The line after which the last retry resumed (records up to it were skipped).
    pub resumed_from_line: Option<i64>,
    pub error: Option<String>,
    /// How the file was read: delimiter, encoding, column mapping, created table.
    #[schema(value_type = Option<ReadAs>)]
    pub read_as: Option<sqlx::types::Json<ReadAs>>,
    pub created_at: DateTime<Utc>,
    pub produced_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl ImportRecord {
    /// Whether the import will change no more.
    pub fn is_final(&self) -> bool {
        match self.status {
            ImportStatus::Completed => true,
            // A failed/aborted upload is final once the sink has caught up with what was produced.
            // Staged rows of an import that failed never reach the target.
            s if s.upload_failed() && self.mode.staged() => true,
            s if s.upload_failed() => {
                self.rows_written + self.rows_write_rejected + self.rows_skipped
                    >= self.rows_produced
            }
            _ => false,
        }
    }
}

/// Counters the upload service keeps while reading a body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UploadCounters {
    pub rows_received: i64,
    pub rows_produced: i64,
    pub rows_rejected: i64,
    pub bytes_received: i64,
    /// The checkpoint a retry resumes from (see [`Checkpoint`]).
    pub acked: Checkpoint,
}

/// How far an upload is safely on the broker: every record up to `line` was acknowledged or
/// rejected, `rows` of them were produced, and `digest` is the chained hash of their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Checkpoint {
    #[sqlx(rename = "acked_line")]
    pub line: i64,
    #[sqlx(rename = "acked_rows")]
    pub rows: i64,
    #[sqlx(rename = "acked_digest")]
    pub digest: i64,
}

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
        }
    }
}

/// Records a new import (in the caller's transaction, with its staging table if it has one).
pub async fn create(conn: &mut PgConnection, n: &NewImport<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO csvbus.imports (id, target_schema, target_table, columns, mode,
                conflict_columns, max_rejected, idempotency_key, key_expires_at, read_as, source)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(secs => $9), $10, $11)",
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
    .bind(n.read_as.map(sqlx::types::Json))
    .bind(n.source)
    .execute(conn)
    .await?;
    Ok(())
}

/// Live progress while the body is read. A no-op once the upload has finished: a progress
/// tick that lands after [`finish_upload`] must not put older counters back (it did, under
/// load, and an import completed before all its rows were written).
pub async fn update_progress(
    pool: &PgPool,
    id: Uuid,
    attempt: i32,
    c: &UploadCounters,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE csvbus.imports SET rows_received = $2, rows_produced = $3, rows_rejected = $4,
                bytes_received = $5, acked_line = $6, acked_rows = $7, acked_digest = $8,
                updated_at = now() WHERE id = $1 AND status = 'receiving' AND attempts = $9",
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
    .execute(pool)
    .await?;
    Ok(())
}

/// The upload ended: `produced` (every row acknowledged) — or `completed` at once when the sink
/// already wrote them all — or `failed`/`aborted` with the error. Applies only while this
/// attempt is `receiving`: returns false when the import was aborted meanwhile (its service was
/// taken for dead).
pub async fn finish_upload(
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
                error = $7, produced_at = CASE WHEN $2 = 'produced' THEN now() END,
                acked_line = $8, acked_rows = $9, acked_digest = $10,
                status = CASE WHEN $2 = 'produced' AND mode NOT IN ('atomic', 'replace')
                               AND rows_written + rows_write_rejected + rows_skipped >= $4
                              THEN 'completed' ELSE $2 END,
                finished_at = CASE WHEN $2 <> 'produced' OR (mode NOT IN ('atomic', 'replace')
                                   AND rows_written + rows_write_rejected + rows_skipped >= $4)
                                   THEN now() END,
                updated_at = now()
          WHERE id = $1 AND status = 'receiving' AND attempts = $11",
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
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
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
            SET status = 'aborted', error = 'the upload service stopped during the upload',
                finished_at = now(), updated_at = now()
          WHERE status = 'receiving' AND updated_at < now() - make_interval(secs => $1)
         RETURNING id",
    )
    .bind(silent.as_secs_f64())
    .fetch_all(pool)
    .await
}

/// What the sink did with rows of one import in one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    pub written: i64,
    pub rejected: i64,
    pub skipped: i64,
}

/// The sink handled rows of an import (in the caller's transaction); completes the import when
/// that covers everything produced — except staged imports, which complete when moved.
pub async fn add_written(conn: &mut PgConnection, id: Uuid, w: Written) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE csvbus.imports SET
                rows_written = rows_written + $2, rows_write_rejected = rows_write_rejected + $3,
                rows_skipped = rows_skipped + $4,
                status = CASE WHEN status = 'produced' AND mode NOT IN ('atomic', 'replace')
                               AND rows_written + rows_write_rejected + rows_skipped + $2 + $3 + $4
                                   >= rows_produced
                              THEN 'completed' ELSE status END,
                finished_at = CASE WHEN status = 'produced' AND mode NOT IN ('atomic', 'replace')
                               AND rows_written + rows_write_rejected + rows_skipped + $2 + $3 + $4
                                   >= rows_produced
                              THEN now() ELSE finished_at END,
                updated_at = now()
          WHERE id = $1",
    )
    .bind(id)
    .bind(w.written)
    .bind(w.rejected)
    .bind(w.skipped)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The columns of `csvbus.imports` an [`ImportRecord`] is read from (`{outcome}`: the outcome's
/// expression).
const RECORD_COLUMNS_TEMPLATE: &str =
    "id, target_schema || '.' || target_table AS table, columns, status, {outcome} AS outcome,
     source, mode, conflict_columns, rows_received, rows_produced, rows_rejected, rows_written,
     rows_write_rejected, rows_skipped, bytes_received, attempts, resumed_from_line,
     error, read_as, created_at, produced_at, finished_at, updated_at";

/// The select list of an [`ImportRecord`].
pub(crate) fn record_columns() -> String {
    RECORD_COLUMNS_TEMPLATE.replace("{outcome}", Outcome::SQL)
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<ImportRecord>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {} FROM csvbus.imports WHERE id = $1",
        record_columns()
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}
