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
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use csv_async::{AsyncReaderBuilder, ByteRecord};
use csvbus_shared::catalog::{self, TableName};
use csvbus_shared::imports::{self, status, UploadCounters};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use uuid::Uuid;

use crate::body::{self, BodyError, Encoding};
use crate::error::ApiError;
use crate::produce::{row_headers, InFlight, ProduceError};
use crate::progress::{Progress, ProgressGuard};
use crate::rows::{check_header, ValueOptions};
use crate::tap::{quoted_fields, RecordTooLong, Tap};
use crate::App;

/// Longest raw text kept for a rejected row.
const RAW_LIMIT: usize = 4096;

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

/// Content type, encoding and declared length, before the body is touched.
fn check_headers(headers: &HeaderMap, max_body: u64) -> Result<Encoding, ApiError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !matches!(mime, "text/csv" | "application/csv" | "text/plain") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("Content-Type {mime:?} is not CSV; send text/csv"),
            ));
        }
    }
    let enc = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?"));
    let encoding = Encoding::parse(enc).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            format!(
                "Content-Encoding {:?} is not supported; use gzip, zstd or none",
                enc.unwrap_or("")
            ),
        )
    })?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body) {
        return Err(too_large(max_body));
    }
    Ok(encoding)
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the body is larger than the limit of {max} bytes"),
    )
}

fn parse_delimiter(d: Option<&str>) -> Result<u8, ApiError> {
    match d {
        None | Some(",") => Ok(b','),
        Some("\\t") | Some("tab") | Some("\t") => Ok(b'\t'),
        Some(s) if s.len() == 1 && s.is_ascii() && !matches!(s, "\"" | "\n" | "\r") => {
            Ok(s.as_bytes()[0])
        }
        Some(s) => Err(ApiError::bad_request(
            "invalid_delimiter",
            format!("delimiter {s:?} must be one ASCII character other than a quote or newline"),
        )),
    }
}

async fn resolve_table(
    app: &App,
    name: &str,
) -> Result<(TableName, Vec<catalog::Column>), ApiError> {
    let unknown = || {
        ApiError::not_found(
            "unknown_table",
            format!("no table {name:?} that csvbus may write to"),
        )
    };
    let table = TableName::parse(name, "public").ok_or_else(unknown)?;
    if table.schema == catalog::OWN_SCHEMA || !app.config.allowed_schemas.contains(&table.schema) {
        return Err(unknown());
    }
    let cols = catalog::table_columns(&app.pool, &table)
        .await
        .map_err(|e| ApiError::database(&e))?;
    Ok((table, cols.ok_or_else(unknown)?))
}

/// Maps a failure to read the next record to the client's answer and the import's final status.
fn read_error(e: csv_async::Error, max_body: u64) -> (ApiError, &'static str) {
    let io = match e.into_kind() {
        csv_async::ErrorKind::Io(io) => io,
        other => {
            return (
                ApiError::bad_request("invalid_csv", format!("{other:?}")),
                status::FAILED,
            );
        }
    };
    if let Some(b) = BodyError::find(&io) {
        return match b {
            BodyError::TooLarge(_) => (too_large(max_body), status::FAILED),
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
    let input = body::reader(
        body,
        encoding,
        cfg.max_body_bytes,
        cfg.body_idle_timeout,
        bytes_read.clone(),
    );
    let (tap, input) = Tap::new(input, cfg.max_record_bytes);
    let mut reader = AsyncReaderBuilder::new()
        .delimiter(opts.delimiter)
        .has_headers(false)
        .flexible(true)
        .create_reader(input);

    let mut record = ByteRecord::new();
    match reader.read_byte_record(&mut record).await {
        Ok(true) => {}
        Ok(false) => {
            return Err(ApiError::unprocessable(
                "missing_header",
                "the body is empty: the first record must name the columns",
            )
            .at_line(1))
        }
        Err(e) => return Err(read_error(e, cfg.max_body_bytes).0),
    }
    let header = check_header(&record, &columns, q.key.as_deref())?;
    tap.advance(reader.position().byte(), reader.position().line());

    let id = Uuid::now_v7();
    tracing::Span::current().record("import_id", tracing::field::display(id));
    imports::create(&app.pool, id, &table, &header.columns)
        .await
        .map_err(|e| ApiError::database(&e))?;
    let progress = Arc::new(Progress::new(bytes_read));
    let mut guard = ProgressGuard::start(app.clone(), id, progress.clone());
    tracing::info!(columns = header.columns.len(), "upload started");

    let max_rejected = q.max_rejected.unwrap_or(100);
    let id_text = id.to_string();
    let table_text = table.to_string();
    let mut inflight = InFlight::new(
        app.producer.clone(),
        cfg.common.topic.clone(),
        app.inflight.clone(),
        cfg.inflight_bytes_per_upload,
    );
    let mut payload = Vec::with_capacity(1024);
    let mut last_rejected_line = 0;

    let outcome: Result<(), (ApiError, &'static str)> = loop {
        match reader.read_byte_record(&mut record).await {
            Ok(true) => {}
            Ok(false) => break Ok(()),
            Err(e) => break Err(read_error(e, cfg.max_body_bytes)),
        }
        let (mut start, mut line) = record.position().map_or((0, 0), |p| (p.byte(), p.line()));
        // After a CRLF the reader ends a record at '\r' and starts the next at '\n', on the
        // previous line: step over it so positions and line numbers are the record's own.
        if tap.byte_at(start) == Some(b'\n') {
            start += 1;
            line += 1;
        }
        let end = reader.position().byte();
        progress.received.fetch_add(1, Ordering::Relaxed);
        let raw = || {
            tap.slice(start, end, cfg.max_record_bytes + 1)
                .unwrap_or_default()
        };
        let mut verdict = header.encode(
            &record,
            &opts,
            || quoted_fields(&raw(), opts.delimiter),
            &mut payload,
        );
        if verdict.is_ok() {
            let (eof, total) = tap.eof();
            if eof && end == total && raw().iter().filter(|b| **b == b'"').count() % 2 == 1 {
                verdict = Err("unterminated quoted field".to_owned());
            }
        }
        match verdict {
            Ok(()) => {
                let key = header.key_index.and_then(|i| record.get(i));
                if let Err(e) = inflight
                    .send(&payload, key, row_headers(&id_text, line, &table_text))
                    .await
                {
                    break Err(produce_error(e));
                }
            }
            Err(reason) => {
                let rejected = progress.rejected.fetch_add(1, Ordering::Relaxed) + 1;
                last_rejected_line = line;
                let raw = raw();
                let raw = raw.strip_suffix(b"\n").unwrap_or(&raw);
                let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
                let text = String::from_utf8_lossy(raw)
                    .chars()
                    .take(RAW_LIMIT)
                    .collect::<String>();
                if let Err(e) = save_rejected(&app, id, line, &reason, &text).await {
                    break Err((ApiError::database(&e), status::FAILED));
                }
                if rejected > max_rejected {
                    break Err((
                        ApiError::unprocessable(
                            "too_many_rejected_rows",
                            format!("{rejected} rows rejected, more than max_rejected={max_rejected}; last: {reason}"),
                        )
                        .at_line(line),
                        status::FAILED,
                    ));
                }
            }
        }
        tap.advance(end, reader.position().line());
        if let Err(e) = inflight.poll_acks() {
            break Err(produce_error(e));
        }
        progress.produced.store(inflight.acked, Ordering::Relaxed);
    };

    // Whatever happened, rows already sent are waited for so the record says how far it got.
    let drained = tokio::time::timeout(cfg.delivery_timeout * 2, inflight.drain()).await;
    progress.produced.store(inflight.acked, Ordering::Relaxed);
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
                    table: table_text,
                    status: final_status.to_owned(),
                    rows_produced: counters.rows_produced as u64,
                    rows_rejected: counters.rows_rejected as u64,
                    bytes_read: counters.bytes_received as u64,
                    status_url: format!("/v1/imports/{id}"),
                }),
            ))
        }
        Err((e, s)) => {
            tracing::warn!(status = s, error = %e.message, last_rejected_line, "upload ended early");
            Err(e)
        }
    }
}

fn produce_error(e: ProduceError) -> (ApiError, &'static str) {
    tracing::error!(error = %e, "produce failed");
    (
        ApiError::unavailable(
            "broker_unavailable",
            "the broker did not acknowledge the rows in time; the import failed, retry later",
        ),
        status::FAILED,
    )
}

async fn save_rejected(
    app: &App,
    id: Uuid,
    line: u64,
    reason: &str,
    raw: &str,
) -> Result<(), sqlx::Error> {
    let mut conn = app.pool.acquire().await?;
    imports::insert_rejected(&mut conn, id, line as i64, "parse", reason, Some(raw), None).await?;
    metrics::counter!("csvbus_upload_rejected_rows_total").increment(1);
    Ok(())
}

impl Progress {
    fn counters(&self) -> UploadCounters {
        self.snapshot()
    }
}
