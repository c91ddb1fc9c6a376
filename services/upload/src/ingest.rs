//! `POST /v1/imports`: one upload, from the first byte of the body to the broker's last
//! acknowledgement.
//!
//! The checks that need no row (type, encoding, size, table, mode, Idempotency-Key, header) come
//! first and answer 4xx before anything is produced. Then records are read one at a time and
//! each is sent before the next is read; when the in-flight bounds are reached `InFlight::send`
//! waits, and the body is not polled meanwhile. The answer is sent after every produced row is
//! acknowledged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use csvbus_shared::imports::ImportStatus;
use csvbus_shared::modes::ImportMode;
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use uuid::Uuid;

use crate::body::{self, Encoding};
use crate::checks::{check_headers, parse_delimiter, parse_mode, resolve_conflict, resolve_table};
use crate::error::ApiError;
use crate::failures::UploadFailure;
use crate::idempotency::{self, Claim};
use crate::parse::Records;
use crate::progress::{Progress, ProgressGuard};
use crate::row_loop::produce_all;
use crate::rows::ValueOptions;
use crate::start::{create, read_checked_header, replay, Plan};
use crate::App;

/// `max_rejected` when the query gives none.
pub(crate) const DEFAULT_MAX_REJECTED: u64 = 100;

/// Query options of an upload.
#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    pub table: String,
    pub delimiter: Option<String>,
    pub null: Option<String>,
    pub key: Option<String>,
    pub max_rejected: Option<u64>,
    /// append (default), atomic, replace, upsert or skip.
    pub mode: Option<String>,
    /// upsert / skip: the conflict columns, comma-separated (default: the primary key).
    pub conflict: Option<String>,
}

/// The `202 Accepted` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct Accepted {
    pub import_id: Uuid,
    pub table: String,
    pub status: ImportStatus,
    pub mode: ImportMode,
    pub rows_produced: u64,
    pub rows_rejected: u64,
    pub bytes_read: u64,
    /// Set when this upload resumed an earlier one under its Idempotency-Key: the records up
    /// to this line were skipped.
    pub resumed_from_line: Option<u64>,
    pub status_url: String,
}

pub async fn create_import(
    State(app): State<Arc<App>>,
    query: Result<Query<UploadQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let Ok(_permit) = app.uploads.clone().try_acquire_owned() else {
        metrics::counter!("csvbus_upload_refused_total").increment(1);
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_uploads",
            format!(
                "{} uploads are running, the most this service takes at once; retry later",
                app.config.max_uploads
            ),
        )
        .retry_after(1));
    };
    let Query(q) = query?;
    let limit = app.config.max_rejected_limit;
    if q.max_rejected.is_some_and(|m| m > limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("max_rejected may be at most {limit} (CSVBUS_MAX_REJECTED_LIMIT)"),
        ));
    }
    let mode = parse_mode(q.mode.as_deref())?;
    let encoding = check_headers(&headers, app.config.max_body_bytes)?;
    let key = idempotency::key(&headers)?;
    let opts = ValueOptions {
        delimiter: parse_delimiter(q.delimiter.as_deref())?,
        null: q.null.clone().filter(|s| !s.is_empty()),
    };
    let table = resolve_table(&app, &q.table).await?;
    let conflict = resolve_conflict(&app, mode, &table.0, q.conflict.as_deref()).await?;
    let partitions = app.partitions.load(Ordering::Relaxed);
    // A repeat that is answered without its rows (replayed, refused) still has its body read
    // and dropped first: a client busy sending it would otherwise see a broken pipe, not the
    // answer, and retry.
    let resume = match &key {
        None => None,
        Some(k) => match idempotency::claim(&app.pool, k, &table.0, mode).await {
            Ok(Claim::New) => None,
            Ok(Claim::Resume(r)) => Some(r),
            Ok(Claim::Replay(id)) => {
                body::discard(body, app.config.body_idle_timeout).await;
                return replay(&app, id).await;
            }
            Err(e) => {
                body::discard(body, app.config.body_idle_timeout).await;
                return Err(e);
            }
        },
    };
    let plan = Plan {
        q,
        opts,
        table,
        mode,
        conflict,
        key,
        resume,
        partitions,
    };
    let _active = ActiveGauge::new();
    let span =
        tracing::info_span!("upload", table = %plan.table.0, import_id = tracing::field::Empty);
    run_upload(app, plan, encoding, body).instrument(span).await
}

struct ActiveGauge;
impl ActiveGauge {
    fn new() -> Self {
        metrics::gauge!("csvbus_uploads_active").increment(1.0);
        Self
    }
}
impl Drop for ActiveGauge {
    fn drop(&mut self) {
        metrics::gauge!("csvbus_uploads_active").decrement(1.0);
    }
}

async fn run_upload(
    app: Arc<App>,
    plan: Plan,
    encoding: Encoding,
    body: Body,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let cfg = &app.config;
    let bytes_read = Arc::new(AtomicU64::new(0));
    let input = body::reader(body, encoding, &cfg.body_limits(), bytes_read.clone());
    let mut records = Records::new(
        input,
        plan.opts.delimiter,
        cfg.max_record_bytes,
        cfg.max_decompressed_bytes,
    );
    let start = plan.resume.as_ref().map(|r| r.counters).unwrap_or_default();
    let progress = Arc::new(Progress::new(bytes_read, &start));
    // A resumed import is ours from here: whatever ends this upload must end it again.
    let mut guard = plan
        .resume
        .as_ref()
        .map(|r| ProgressGuard::start(app.clone(), r.id, r.attempt, progress.clone()));
    let header = match read_checked_header(&app, &plan, &mut records).await {
        Ok(h) => h,
        Err(e) => {
            if let Some(g) = &mut guard {
                let _ = g
                    .finish(ImportStatus::Failed, progress.snapshot(), Some(&e.message))
                    .await;
            }
            return Err(e);
        }
    };
    records.done();
    let (id, attempt) = match &plan.resume {
        Some(r) => (r.id, r.attempt),
        None => (create(&app, &plan, &header).await?, 1),
    };
    tracing::Span::current().record("import_id", tracing::field::display(id));
    let mut guard =
        guard.unwrap_or_else(|| ProgressGuard::start(app.clone(), id, attempt, progress.clone()));
    tracing::info!(
        columns = header.columns.len(),
        mode = plan.mode.as_str(),
        attempt,
        "upload started"
    );

    let outcome = produce_all(&app, &plan, &header, &progress, &mut records, id, &start).await;
    conclude(&mut guard, &plan, id, &progress, outcome).await
}

/// Saves how the upload ended and answers: `202` with the counters once every row is on the
/// broker, the failure's answer otherwise.
async fn conclude(
    guard: &mut ProgressGuard,
    plan: &Plan,
    id: Uuid,
    progress: &Progress,
    outcome: Result<(), UploadFailure>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let counters = progress.snapshot();
    let (final_status, error) = match &outcome {
        Ok(()) => (ImportStatus::Produced, None),
        Err(f) => (f.status(), Some(f.answer().message.clone())),
    };
    let saved = guard
        .finish(final_status, counters, error.as_deref())
        .await?;
    if let Err(f) = outcome {
        tracing::warn!(error = %f, "upload ended early");
        return Err(f.into_answer());
    }
    if !saved {
        return Err(ApiError::unavailable(
            "import_aborted",
            "the import was taken for abandoned while it was uploaded; retry with the same Idempotency-Key to finish it",
        )
        .for_import(id));
    }
    tracing::info!(
        rows = counters.rows_produced,
        rejected = counters.rows_rejected,
        bytes = counters.bytes_received,
        "upload produced"
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            import_id: id,
            table: plan.table.0.to_string(),
            status: final_status,
            mode: plan.mode,
            rows_produced: counters.rows_produced as u64,
            rows_rejected: counters.rows_rejected as u64,
            bytes_read: counters.bytes_received as u64,
            resumed_from_line: plan.resume.as_ref().map(|r| r.counters.acked.line as u64),
            status_url: format!("/v1/imports/{id}"),
        }),
    ))
}
