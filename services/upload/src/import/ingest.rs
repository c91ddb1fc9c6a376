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
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use csvbus_shared::catalog::{TableName, DEFAULT_SCHEMA};
use csvbus_shared::imports::ImportStatus;
use csvbus_shared::scope::Scope;
use tracing::Instrument;
use uuid::Uuid;

use crate::error::{ApiError, ErrorBody};
use crate::import::checks::{
    check_headers, in_scope, read_options, reserved_column, resolve_conflict, resolve_or_create,
    unpack,
};
use crate::import::clients::{self, Peer};
use crate::import::conclude::{conclude, Ended};
use crate::import::dates::{self, Sample};
use crate::import::failures;
use crate::import::given_types;
use crate::import::idempotency::{self, Claim};
use crate::import::preview::{preview, Planned, Preview};
use crate::import::progress::{Progress, ProgressGuard};
use crate::import::row_loop::produce_all;
use crate::import::source_name;
use crate::import::start::{create, read_checked_header, replay, Plan};
use crate::read::body::{self, Encoding};
use crate::read::body_digest;
use crate::read::filter::Filtered;
use crate::read::media;
use crate::read::parse::Records;
use crate::read::prepare::prepare;
use crate::read::requote::Requote;
use crate::read::trim::TrimBeforeQuote;
use crate::rows::ValueOptions;
use crate::App;

pub use crate::import::request::{Accepted, UploadQuery};

/// `max_rejected` when the query gives none.
pub(crate) const DEFAULT_MAX_REJECTED: u64 = 100;

/// Uploads a CSV file into a table: the body is streamed, each row becomes a message, and the
/// answer comes once the broker has every row. The sink then writes them; follow the import
/// with `GET /v1/imports/{id}`.
#[utoipa::path(
    post,
    path = "/v1/imports",
    tag = "imports",
    params(
        UploadQuery,
        ("Idempotency-Key" = Option<String>, Header, nullable = false, pattern = "^[!-~]{1,255}$",
            description = "Makes retries safe: a repeat is answered as before, a failed upload is resumed"),
        ("Content-Encoding" = Option<String>, Header, nullable = false, pattern = "^([gG][zZ][iI][pP]|x-gzip|zstd|identity)?$",
            description = "gzip, zstd or none"),
    ),
    request_body(
        description = "The CSV file: a header line naming the columns, then the rows",
        content(
            (String = "text/csv"),
            (String = "application/csv"),
            (String = "application/vnd.ms-excel"),
            (String = "application/octet-stream"),
            (crate::read::media::UploadForm = "multipart/form-data"),
        ),
    ),
    responses(
        (status = 200, description = "A repeat under an Idempotency-Key: the first answer (`Accepted`); with `dry_run=true`: how the file would be read, nothing stored (`Preview`)", body = UploadAnswer),
        (status = 202, description = "Every row is on the broker; the sink writes them", body = Accepted),
        (status = 400, description = "An option is invalid", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "The API key's scope does not reach the table (`out_of_scope`)", body = ErrorBody),
        (status = 404, description = "No such table csvbus may write (`unknown_table`)", body = ErrorBody),
        (status = 408, description = "The body stalled or took too long", body = ErrorBody),
        (status = 409, description = "The Idempotency-Key belongs to a running or different import", body = ErrorBody),
        (status = 413, description = "The body or a record is too large", body = ErrorBody),
        (status = 415, description = "Not CSV, or an unsupported Content-Encoding", body = ErrorBody),
        (status = 422, description = "The header or the rows do not fit the table (with `line`)", body = ErrorBody),
        (status = 429, description = "Too many uploads at once; retry after Retry-After", body = ErrorBody),
        (status = 503, description = "The database or the broker is unavailable; retry", body = ErrorBody),
    ),
    security(("api_key" = []), ())
)]
pub async fn create_import(
    State(app): State<Arc<App>>,
    Extension(scope): Extension<Scope>,
    query: Result<Query<UploadQuery>, QueryRejection>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let peer = peer.map(|Extension(p)| p);
    upload(app, &scope, q, peer, headers, body, None).await
}

/// An upload of `body` as `q` and `headers` say; `replay_of`: a replay's original import (its
/// body is the original's rows read back from the topic).
pub(crate) async fn upload(
    app: Arc<App>,
    scope: &Scope,
    q: UploadQuery,
    peer: Option<Peer>,
    headers: HeaderMap,
    body: Body,
    replay_of: Option<Uuid>,
) -> Result<Response, ApiError> {
    let client = clients::client_of(&headers, peer);
    let Some(_client_slot) = app.client_slots.try_take(client) else {
        metrics::counter!("csvbus_upload_refused_total").increment(1);
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_uploads",
            format!(
                "this client has {} uploads running, the most one client may \
                 (CSVBUS_MAX_UPLOADS_PER_CLIENT); retry when one has ended",
                app.client_slots.max()
            ),
        )
        .retry_after(1));
    };
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
    if let Some(t) = TableName::parse(&q.table, DEFAULT_SCHEMA) {
        in_scope(scope, &t)?;
    }
    let limit = app.config.max_rejected_limit;
    if q.max_rejected.is_some_and(|m| m > limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("max_rejected may be at most {limit} (CSVBUS_MAX_REJECTED_LIMIT)"),
        ));
    }
    let mode = q.mode.unwrap_or_default();
    let notify = notify_endpoint(&app, q.notify.as_deref())?;
    let media = media::media(&headers)?;
    let encoding = check_headers(&headers, app.config.max_body_bytes)?;
    let key = idempotency::key(&headers)?;
    let mut read = read_options(&q, media.charset.as_deref())?;
    let opts = ValueOptions {
        delimiter: read.delimiter.unwrap_or_default(),
        null: q.null.clone().filter(|s| !s.is_empty()),
        dates: q.dateformat.unwrap_or_default(),
        decimal: q.decimal.unwrap_or_default(),
        decimal_settled: q.decimal.is_some(),
    };
    let (table, create) = resolve_or_create(&app, &q, &mut read).await?;
    let given_types = given_types(&app, &q, create).await?;
    in_scope(scope, &table.0)?;
    reserved_column(mode, &table.1)?;
    let conflict = resolve_conflict(&app, mode, &table.0, q.conflict.as_deref()).await?;
    let partitions = app.partitions.load(Ordering::Relaxed);
    let (body, encoding, part_name, form_rest) = unpack(&app, &media, encoding, body).await?;
    let name = q.name.as_deref().or(part_name.as_deref());
    let source = source_name::source(name, &headers)?;
    // A repeat that is answered without its rows (replayed, refused) still has its body read
    // and dropped first: a client busy sending it would otherwise see a broken pipe, not the
    // answer, and retry.
    // A preview stores nothing: it neither claims nor resumes under a key.
    let dry_run = q.dry_run == Some(true);
    let resume = match key.as_ref().filter(|_| !dry_run) {
        None => None,
        Some(k) => match idempotency::claim(&app.pool, k, &table.0, mode).await {
            Ok(Claim::New) => None,
            Ok(Claim::Resume(r)) => Some(*r),
            Ok(Claim::Replay { id, body_digest }) => {
                let answer = repeat(&app, id, body_digest, encoding, body).await?;
                return Ok(answer.into_response());
            }
            Err(e) => {
                body::discard(body, encoding, &body::Limits::of(&app.config)).await;
                return Err(e);
            }
        },
    };
    let plan = Plan {
        q,
        opts,
        read,
        table,
        create,
        given_types,
        mode,
        conflict,
        key,
        resume,
        partitions,
        source,
        form_rest,
        notify,
        replay_of,
    };
    let _active = ActiveGauge::new();
    let span =
        tracing::info_span!("upload", table = %plan.table.0, import_id = tracing::field::Empty);
    run_upload(app, plan, encoding, body).instrument(span).await
}

/// What `POST /v1/imports` answers with a 200: a repeat's first answer, or a preview.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // the document's schema; the handler builds either answer directly
pub enum UploadAnswer {
    Accepted(Accepted),
    Preview(Preview),
}

/// A repeat of an accepted import under its key: the first answer, marked `replayed`, when the
/// body is the same bytes (compared by digest when the first one's is known); 422
/// `idempotency_key_mismatch` when it is another file.
async fn repeat(
    app: &App,
    id: Uuid,
    first: Option<String>,
    encoding: Encoding,
    body: Body,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let cfg = &app.config;
    let input = body::reader(body, encoding, &body::Limits::of(cfg), Arc::default());
    let this = body_digest::digest_to_end(input)
        .await
        .map_err(|e| failures::io_error(e, cfg.max_body_bytes).into_answer())?;
    if first.is_some_and(|first| first != this) {
        return Err(idempotency::mismatch(format!(
            "this Idempotency-Key belongs to import {id}, whose file had other bytes; \
             use a new key to import this one"
        ))
        .for_import(id));
    }
    replay(app, id).await
}

/// The webhook endpoint of a new import: its allowlisted `notify=`, else the operator's.
pub(crate) fn notify_endpoint(app: &App, notify: Option<&str>) -> Result<Option<String>, ApiError> {
    app.config
        .common
        .webhook
        .endpoint(notify)
        .map(|u| u.map(String::from))
        .map_err(|m| ApiError::bad_request("notify_not_allowed", m))
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
    mut plan: Plan,
    encoding: Encoding,
    body: Body,
) -> Result<Response, ApiError> {
    let cfg = &app.config;
    let bytes_read = Arc::new(AtomicU64::new(0));
    let (input, digest) = body_digest::digesting(body::reader(
        body,
        encoding,
        &body::Limits::of(cfg),
        bytes_read.clone(),
    ));
    if let Some(r) = plan.resume.as_ref() {
        if let Some(first) = r.read_as.as_ref() {
            plan.read.same_as(first);
        }
        if !plan.read.header && plan.read.mapping.names.is_none() {
            plan.read.mapping.names = Some(r.columns.clone());
        }
    }
    let decides = |t: &str| {
        (plan.read.dateformat.is_none() && csvbus_shared::dates::is_date_type(t))
            || (plan.read.decimal.is_none() && csvbus_shared::numbers::is_number_type(t))
    };
    if plan.table.1.iter().any(|c| decides(&c.type_name)) {
        // The first rows decide how dates are read (import::dates): the bytes looked at anyway,
        // not waited for (a slow client's rows are not held back).
        plan.read.value_sample = true;
    }
    let prepared = prepare(input, &plan.read).await?;
    let dialect = prepared.dialect;
    plan.opts.delimiter = prepared.dialect.delimiter;
    let mut read_as = prepared.read_as;
    if let Some((sample, complete)) = &prepared.sample {
        crate::import::create::shape(&mut plan, sample, *complete, &dialect, &mut read_as)?;
    }
    // Without a quote, the CSV reader's own trim is all there is to do.
    let (delimiter, escape) = (dialect.delimiter.byte(), dialect.escape);
    let input: crate::read::sniff::Input = match dialect.quote.filter(|_| dialect.trim) {
        Some(quote) => Box::pin(Filtered::new(
            prepared.input,
            TrimBeforeQuote::new(delimiter, quote, escape),
        )),
        None => prepared.input,
    };
    let input: crate::read::sniff::Input = match dialect.quote {
        Some(quote) => Box::pin(Filtered::new(input, Requote::new(delimiter, quote, escape))),
        None => input,
    };
    let mut records = Records::with(
        input,
        prepared.dialect,
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
    read_as.mapping = header.mapping.clone();
    let sample = prepared.sample.as_ref().map(|(bytes, complete)| Sample {
        bytes,
        complete: *complete,
        dialect: &dialect,
        header: plan.read.header,
    });
    plan.opts.dates = dates::decide(plan.read.dateformat, &header, sample.as_ref(), &mut read_as);
    let decimal = dates::decide_decimal(plan.read.decimal, &header, sample.as_ref(), &mut read_as);
    (plan.opts.decimal, plan.opts.decimal_settled) = decimal;
    if plan.q.dry_run == Some(true) {
        let planned = Planned {
            table: plan.table.0.to_string(),
            mode: plan.mode,
            opts: &plan.opts,
            max_body: cfg.max_body_bytes,
            max_message: cfg.max_message_bytes,
        };
        let p = preview(planned, &header, &mut records, read_as).await?;
        return Ok((StatusCode::OK, Json(p)).into_response());
    }
    let (id, attempt) = match &plan.resume {
        Some(r) => (r.id, r.attempt),
        None => (create(&app, &plan, &header, &read_as).await?, 1),
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

    let (outcome, widened) =
        produce_all(&app, &plan, &header, &progress, &mut records, id, &start).await;
    read_as.widened.extend(widened);
    let comments = dialect
        .comment
        .and_then(|c| records.comments.comment_note(c));
    for note in comments
        .into_iter()
        .chain(records.repeated_headers.header_note())
    {
        if let Err(e) = csvbus_shared::imports::upload::record_note(&app.pool, id, &note).await {
            tracing::warn!(error = %e, "a note on skipped lines was not saved");
        }
        read_as.notes.push(note);
    }
    let ended = Ended {
        id,
        read_as,
        digest,
    };
    let answer = conclude(&app, &mut guard, &plan, ended, &progress, outcome).await?;
    Ok(answer.into_response())
}

/// `types=`, resolved when this import creates its table (and checked, though not used, when
/// the table exists already: a retry of the import that made it).
async fn given_types(
    app: &App,
    q: &UploadQuery,
    create: bool,
) -> Result<Vec<given_types::GivenType>, ApiError> {
    let Some(types) = q.types.as_deref() else {
        return Ok(Vec::new());
    };
    if q.create != Some(true) {
        return Err(ApiError::bad_request(
            "invalid_types",
            "types= gives the types of the table create=true makes: add create=true (an existing table's types are its own)",
        ));
    }
    let pairs = given_types::parse(types)?;
    if !create {
        return Ok(Vec::new());
    }
    given_types::resolve(&app.pool, pairs).await
}
