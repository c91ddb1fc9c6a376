//! `POST /v1/imports`: one upload, from the first byte of the body to the broker's last
//! acknowledgement.
//!
//! The checks that need no row (type, encoding, size, table, header) come first and answer 4xx
//! before anything is produced. Then records are read one at a time and each is sent before the
//! next is read; when the in-flight bounds are reached `InFlight::send` waits, and the body is
//! not polled meanwhile. The answer is sent after every produced row is acknowledged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use csvbus_shared::catalog::{self, TableName};
use csvbus_shared::imports::{self, status, UploadCounters};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use uuid::Uuid;

use crate::body::{self, BodyError, Encoding};
use crate::checks::{check_headers, parse_delimiter, resolve_table, too_large};
use crate::error::ApiError;
use crate::parse::Records;
use crate::produce::{InFlight, ProduceError};
use crate::progress::{Progress, ProgressGuard};
use crate::row_loop::{read_header, RowLoop};
use crate::rows::{check_header, ValueOptions};
use crate::tap::RecordTooLong;
use crate::App;

/// `max_rejected` when the query gives none.
const DEFAULT_MAX_REJECTED: u64 = 100;

/// Query options of an upload.
#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    pub table: String,
    pub delimiter: Option<String>,
    pub null: Option<String>,
    pub key: Option<String>,
    pub max_rejected: Option<u64>,
}

/// The `202 Accepted` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct Accepted {
    pub import_id: Uuid,
    pub table: String,
    pub status: String,
    pub rows_produced: u64,
    pub rows_rejected: u64,
    pub bytes_read: u64,
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
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = app.config.max_rejected_limit;
    if q.max_rejected.is_some_and(|m| m > limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("max_rejected may be at most {limit} (CSVBUS_MAX_REJECTED_LIMIT)"),
        ));
    }
    let encoding = check_headers(&headers, app.config.max_body_bytes)?;
    let opts = ValueOptions {
        delimiter: parse_delimiter(q.delimiter.as_deref())?,
        null: q.null.clone().filter(|s| !s.is_empty()),
    };
    let table = resolve_table(&app, &q.table).await?;

    let _active = ActiveGauge::new();
    let span = tracing::info_span!("upload", table = %table.0, import_id = tracing::field::Empty);
    run_upload(app, q, opts, table, encoding, body)
        .instrument(span)
        .await
}

/// Maps a failure to read the next record to the client's answer and the import's final status.
pub(crate) fn read_error(e: csv_async::Error, max_body: u64) -> (ApiError, &'static str) {
    let io = match e.into_kind() {
        csv_async::ErrorKind::Io(io) => io,
        _ => {
            let e = ApiError::bad_request("invalid_csv", "the body could not be read as CSV");
            return (e, status::FAILED);
        }
    };
    if let Some(b) = BodyError::find(&io) {
        return match b {
            BodyError::TooLarge(_) => (too_large(max_body), status::FAILED),
            BodyError::Decompressed(max) => (
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("the body decompresses to more than {max} bytes (CSVBUS_MAX_DECOMPRESSED_BYTES)"),
                ),
                status::FAILED,
            ),
            BodyError::TooSlow { rate, window } => (
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_too_slow",
                    format!("the client sent less than {rate} bytes/s over {window:?}"),
                ),
                status::ABORTED,
            ),
            BodyError::Idle(d) => (
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_idle_timeout",
                    format!("no data received for {d:?}"),
                ),
                status::ABORTED,
            ),
            BodyError::Client(m) => (
                ApiError::bad_request("body_read_error", m.clone()),
                status::ABORTED,
            ),
        };
    }
    if let Some(t) = io.get_ref().and_then(|i| i.downcast_ref::<RecordTooLong>()) {
        return (
            ApiError::unprocessable("record_too_long", t.to_string()).at_line(t.line),
            status::FAILED,
        );
    }
    (
        ApiError::bad_request(
            "invalid_body",
            format!("the body could not be decoded: {io}"),
        ),
        status::FAILED,
    )
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
    q: UploadQuery,
    opts: ValueOptions,
    (table, columns): (TableName, Vec<catalog::Column>),
    encoding: Encoding,
    body: Body,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let cfg = &app.config;
    let bytes_read = Arc::new(AtomicU64::new(0));
    let input = body::reader(body, encoding, &cfg.body_limits(), bytes_read.clone());
    let mut records = Records::new(
        input,
        opts.delimiter,
        cfg.max_record_bytes,
        cfg.max_decompressed_bytes,
    );
    read_header(&mut records, cfg.max_body_bytes).await?;
    let header = check_header(&records.record, &columns, q.key.as_deref())?;
    records.done();

    let id = Uuid::now_v7();
    tracing::Span::current().record("import_id", tracing::field::display(id));
    imports::create(&app.pool, id, &table, &header.columns)
        .await
        .map_err(|e| ApiError::database(&e))?;
    let progress = Arc::new(Progress::new(bytes_read));
    let mut guard = ProgressGuard::start(app.clone(), id, progress.clone());
    tracing::info!(columns = header.columns.len(), "upload started");

    let mut rows = RowLoop {
        app: &app,
        id,
        id_text: id.to_string(),
        table_text: table.to_string(),
        max_rejected: q.max_rejected.unwrap_or(DEFAULT_MAX_REJECTED),
        opts: &opts,
        header: &header,
        progress: &progress,
        inflight: InFlight::new(
            app.producer.clone(),
            cfg.common.topic.clone(),
            app.inflight.clone(),
            cfg.inflight_bytes_per_upload,
        ),
    };
    let outcome = rows.run(&mut records).await;
    // Whatever happened, rows already sent are waited for so the record says how far it got.
    let drained = tokio::time::timeout(cfg.delivery_timeout * 2, rows.inflight.drain()).await;
    progress
        .produced
        .store(rows.inflight.acked, Ordering::Relaxed);
    let outcome = match (outcome, drained) {
        (Err(e), _) => Err(e),
        (Ok(()), Ok(Err(e))) => Err(produce_error(e)),
        (Ok(()), Err(_)) => Err(produce_error(ProduceError::Cancelled)),
        (Ok(()), Ok(Ok(()))) => Ok(()),
    };
    let counters = progress.counters();
    let (final_status, error) = match &outcome {
        Ok(()) => (status::PRODUCED, None),
        Err((e, s)) => (*s, Some(e.message.clone())),
    };
    guard
        .finish(final_status, counters, error.as_deref())
        .await
        .map_err(|e| ApiError::database(&e))?;
    match outcome {
        Ok(()) => {
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
                    table: rows.table_text,
                    status: final_status.to_owned(),
                    rows_produced: counters.rows_produced as u64,
                    rows_rejected: counters.rows_rejected as u64,
                    bytes_read: counters.bytes_received as u64,
                    status_url: format!("/v1/imports/{id}"),
                }),
            ))
        }
        Err((e, s)) => {
            tracing::warn!(status = s, error = %e.message, "upload ended early");
            Err(e)
        }
    }
}

pub(crate) fn produce_error(e: ProduceError) -> (ApiError, &'static str) {
    tracing::error!(error = %e, "produce failed");
    (
        ApiError::unavailable(
            "broker_unavailable",
            "the broker did not acknowledge the rows in time; the import failed, retry later",
        ),
        status::FAILED,
    )
}

impl Progress {
    fn counters(&self) -> UploadCounters {
        self.snapshot()
    }
}
