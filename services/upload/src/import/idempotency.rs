//! `Idempotency-Key`: a retried upload never writes a row twice.
//!
//! The first upload under a key creates the import with the key. A later request under the same
//! key (before it expires, `CSVBUS_IDEMPOTENCY_TTL`):
//! - while that import is `receiving`: 409 `import_running`, with its id;
//! - once it was accepted (`produced`, `completed`, or failed after all its rows were
//!   produced): the first answer, marked `replayed`, nothing produced again — provided the
//!   body is the same bytes (its digest, [`crate::read::body_digest`]), else 422
//!   `idempotency_key_mismatch`;
//! - when it `failed` or was `aborted` part way: the retry *resumes* it. Records up to its
//!   checkpoint ([`crate::produce::checkpoint`]) are read and skipped — their chained digest must match,
//!   or the answer is 422 `idempotency_key_mismatch` — and the rest are produced again.
//!
//! A key names one target table and mode: another table or mode under it is a mismatch too.

use axum::http::{HeaderMap, StatusCode};
use csvbus_shared::catalog::TableName;
use csvbus_shared::imports::{upload, ImportStatus, UploadCounters};
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
    upload::release_expired_key(&mut tx, key)
        .await
        .map_err(db)?;
    let known = upload::key_holder(&mut tx, key).await.map_err(db)?;
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
            let attempt = upload::resume(&mut tx, &k).await.map_err(db)?;
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

pub fn mismatch(message: impl Into<String>) -> ApiError {
    ApiError::unprocessable("idempotency_key_mismatch", message)
}
