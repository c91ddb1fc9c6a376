//! `Idempotency-Key`: a retried upload never writes a row twice.
//!
//! The first upload under a key creates the import with the key. A later request under the same
//! key (before it expires, `CSVBUS_IDEMPOTENCY_TTL`):
//! - while that import is `receiving`: 409 `import_running`, with its id;
//! - once it was accepted (`produced`, `completed`, or failed after all its rows were
//!   produced): the first answer, marked `replayed`, nothing produced again — provided the
//!   body is the same bytes (its digest, [`crate::body_digest`]), else 422
//!   `idempotency_key_mismatch`;
//! - when it `failed` or was `aborted` part way: the retry *resumes* it. Records up to its
//!   checkpoint ([`crate::checkpoint`]) are read and skipped — their chained digest must match,
//!   or the answer is 422 `idempotency_key_mismatch` — and the rest are produced again.
//!
//! A key names one target table and mode: another table or mode under it is a mismatch too.

use axum::http::{HeaderMap, StatusCode};
use csvbus_shared::catalog::TableName;
use csvbus_shared::imports::{Checkpoint, ImportStatus, UploadCounters};
use csvbus_shared::modes::ImportMode;
use csvbus_shared::read_as::ReadAs;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::ApiError;

pub const HEADER: &str = "idempotency-key";

/// The request's key: 1–255 visible ASCII characters.
pub fn key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(HEADER) else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(k.to_owned()))
        }
        _ => Err(ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )),
    }
}

/// An import resumed by a retry.
#[derive(Debug, Clone)]
pub struct Resume {
    pub id: Uuid,
    pub attempt: i32,
    pub columns: Vec<String>,
    /// Where its counters start again.
    pub counters: UploadCounters,
    /// How the first upload read the file: a retry reads it the same way (what was detected
    /// then is not detected again).
    pub read_as: Option<ReadAs>,
}

/// What a request under a known key does.
#[derive(Debug)]
pub enum Claim {
    /// The key is new: create the import under it.
    New,
    /// Answer as the first time, if the body is the first one's.
    Replay {
        id: Uuid,
        /// The first body's digest (`None`: not known, the body is not compared).
        body_digest: Option<String>,
    },
    Resume(Box<Resume>),
}

#[derive(sqlx::FromRow)]
struct Known {
    id: Uuid,
    target_schema: String,
    target_table: String,
    mode: ImportMode,
    status: ImportStatus,
    accepted: bool,
    columns: Vec<String>,
    read_as: Option<sqlx::types::Json<ReadAs>>,
    rows_rejected: i64,
    body_digest: Option<String>,
    #[sqlx(flatten)]
    acked: Checkpoint,
}

/// Looks the key up and, for an import to resume, takes it over (it is `receiving` again).
pub async fn claim(
    pool: &PgPool,
    key: &str,
    table: &TableName,
    mode: ImportMode,
) -> Result<Claim, ApiError> {
    let db = ApiError::from;
    let mut tx = pool.begin().await.map_err(db)?;
    // An expired key is free again.
    sqlx::query(
        "UPDATE csvbus.imports SET idempotency_key = NULL
          WHERE idempotency_key = $1 AND key_expires_at <= now()",
    )
    .bind(key)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    let known: Option<Known> = sqlx::query_as(
        "SELECT id, target_schema, target_table, mode, status, produced_at IS NOT NULL AS accepted,
                columns, read_as, body_digest, acked_line, acked_rows, acked_digest,
                (SELECT count(*) FROM csvbus.rejected_rows r
                  WHERE r.import_id = i.id AND r.stage = 'parse' AND r.line <= i.acked_line)
                    AS rows_rejected
           FROM csvbus.imports i WHERE idempotency_key = $1 FOR UPDATE",
    )
    .bind(key)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db)?;
    let Some(k) = known else {
        // The expired key's release must outlive this transaction: rolled back, it left the
        // key on the old import and every repeat answered 409 `import_running` for good.
        tx.commit().await.map_err(db)?;
        return Ok(Claim::New);
    };
    if k.target_schema != table.schema || k.target_table != table.table || k.mode != mode {
        return Err(mismatch(format!(
            "this Idempotency-Key belongs to import {} into {}.{} in mode {}",
            k.id,
            k.target_schema,
            k.target_table,
            k.mode.as_str()
        ))
        .for_import(k.id));
    }
    match k.status {
        ImportStatus::Receiving => Err(ApiError::new(
            StatusCode::CONFLICT,
            "import_running",
            format!("import {} under this Idempotency-Key is still being uploaded; retry when it has ended", k.id),
        )
        .for_import(k.id)
        .retry_after(2)),
        s if s.upload_failed() && !k.accepted => {
            let attempt = resume(&mut tx, &k).await.map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(Claim::Resume(Box::new(Resume {
                id: k.id,
                attempt,
                columns: k.columns,
                read_as: k.read_as.map(|r| r.0),
                counters: UploadCounters {
                    rows_produced: k.acked.rows,
                    rows_rejected: k.rows_rejected,
                    acked: k.acked,
                    ..UploadCounters::default()
                },
            })))
        }
        _ => Ok(Claim::Replay {
            id: k.id,
            body_digest: k.body_digest,
        }),
    }
}

/// Takes a failed or aborted import over for another attempt: `receiving` again, its counters
/// back at the checkpoint, its parse rejections after the checkpoint forgotten (they are read
/// again).
async fn resume(conn: &mut sqlx::PgConnection, k: &Known) -> Result<i32, sqlx::Error> {
    sqlx::query(
        "DELETE FROM csvbus.rejected_rows WHERE import_id = $1 AND stage = 'parse' AND line > $2",
    )
    .bind(k.id)
    .bind(k.acked.line)
    .execute(&mut *conn)
    .await?;
    sqlx::query_scalar(
        "UPDATE csvbus.imports SET status = 'receiving', attempts = attempts + 1,
                resumed_from_line = acked_line, rows_produced = acked_rows, rows_rejected = $2,
                rows_received = 0, bytes_received = 0, error = NULL, finished_at = NULL,
                updated_at = now()
          WHERE id = $1 RETURNING attempts",
    )
    .bind(k.id)
    .bind(k.rows_rejected)
    .fetch_one(conn)
    .await
}

pub fn mismatch(message: impl Into<String>) -> ApiError {
    ApiError::unprocessable("idempotency_key_mismatch", message)
}
