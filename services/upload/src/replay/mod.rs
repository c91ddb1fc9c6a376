//! `POST /v1/imports/{id}/replay`: a new import whose rows are an earlier import's rows read
//! back from the topic ([`body`], [`reader`]), uploaded into another table (or the same one) exactly as a
//! file would be — the same mapping rules, modes, `create=true`, counters, rejected rows,
//! Idempotency-Key — with a link to the original (`replay_of`).
//!
//! Refused before anything is read or written: an original that did not complete its produce
//! stage (`409 import_not_produced`: its rows are not all on the topic), one the sink has not
//! finished with (`409 import_in_progress`), and one whose rows the topic no longer holds
//! (`410 replay_gone`, naming the partitions and offsets missing: [`retained`]).

mod body;
mod reader;
mod retained;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Extension;
use csvbus_shared::imports::{self, spans};
use csvbus_shared::modes::ImportMode;
use csvbus_shared::read_as::Delimiter;
use csvbus_shared::scope::Scope;
use serde::Deserialize;
use uuid::Uuid;

use crate::error::{ApiError, ErrorBody};
use crate::import::clients::Peer;
use crate::import::request::{Accepted, UploadQuery};
use crate::import::{ingest, lookup};
use crate::rows::mapping::{Evolve, ExtraColumns};
use crate::App;

/// Query options of a replay: where the rows go, and how (as for an upload).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReplayQuery {
    /// The target table: `table` (in `public`) or `schema.table`.
    pub table: String,
    /// append (default), atomic, replace, upsert or skip.
    #[param(value_type = Option<csvbus_shared::modes::ImportMode>, inline)]
    #[serde(default, deserialize_with = "crate::error::typed")]
    pub mode: Option<ImportMode>,
    /// upsert / skip: the conflict columns, comma-separated (default: the primary key).
    pub conflict: Option<String>,
    /// `true`: when the table does not exist, create it from the original's columns.
    pub create: Option<bool>,
    /// `error` (default) or `ignore`: a column of the original the table lacks.
    #[param(value_type = Option<String>, pattern = "^(error|ignore)?$")]
    #[serde(default, deserialize_with = "crate::error::typed")]
    pub extra_columns: Option<ExtraColumns>,
    /// `add_columns`: columns of the original the table lacks are added.
    #[param(value_type = Option<String>, pattern = "^(add_columns)?$")]
    #[serde(default, deserialize_with = "crate::error::typed")]
    pub evolve: Option<Evolve>,
    /// A column of the original whose value is each row's message key.
    pub key: Option<String>,
    /// Rejected rows after which the replay fails (default 100).
    #[param(maximum = 100_000)]
    pub max_rejected: Option<u64>,
    /// A webhook URL told of the replay's end (under `CSVBUS_WEBHOOK_ALLOW`).
    pub notify: Option<String>,
}

/// Replays an import: its rows, read back from the topic, into a table.
#[utoipa::path(
    post,
    path = "/v1/imports/{id}/replay",
    tag = "imports",
    params(
        ("id" = Uuid, Path, description = "The import whose rows are replayed"),
        ReplayQuery,
        ("Idempotency-Key" = Option<String>, Header, nullable = false, pattern = "^[!-~]{1,255}$",
            description = "Makes retries safe, as for an upload"),
    ),
    responses(
        (status = 200, description = "A repeat under an Idempotency-Key: the first answer", body = Accepted),
        (status = 202, description = "Every row is on the broker again, as the new import's; the sink writes them", body = Accepted),
        (status = 400, description = "An option is invalid", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "The API key's scope does not reach the table", body = ErrorBody),
        (status = 404, description = "No such import, or no such table", body = ErrorBody),
        (status = 409, description = "The original did not complete its produce stage (`import_not_produced`) or is not final yet (`import_in_progress`); or the Idempotency-Key is in use", body = ErrorBody),
        (status = 410, description = "The topic no longer holds all of the original's rows (`replay_gone`)", body = ErrorBody),
        (status = 422, description = "The original's columns do not fit the table", body = ErrorBody),
        (status = 429, description = "Too many uploads at once; retry", body = ErrorBody),
        (status = 503, description = "The database or the broker is unavailable; retry", body = ErrorBody),
    ),
    security(("api_key" = []), ())
)]
pub async fn replay_import(
    State(app): State<Arc<App>>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
    query: Result<Query<ReplayQuery>, QueryRejection>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let original = lookup::find(&app, &id, &scope).await?;
    let id = original.id;
    if original.produced_at.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "import_not_produced",
            format!(
                "import {id} is {} and did not complete its produce stage: its rows are not all \
                 on the topic; upload its file again",
                original.status
            ),
        ));
    }
    if !original.is_final() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "import_in_progress",
            format!("import {id} is still being written; replay it once it has ended"),
        )
        .retry_after(2));
    }
    let spans = retained_spans(&app, id, original.rows_produced).await?;
    let config = app.config.common.clone();
    let body = body::csv_body(config, id, original.columns, spans, original.rows_produced);
    let upload = UploadQuery {
        table: q.table,
        mode: q.mode,
        conflict: q.conflict,
        create: q.create,
        extra_columns: q.extra_columns,
        evolve: q.evolve,
        key: q.key,
        max_rejected: q.max_rejected,
        notify: q.notify,
        delimiter: Some(Delimiter::COMMA),
        skip_lines: Some(0),
        name: Some(format!("replay of {id}")),
        ..UploadQuery::default()
    };
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv"));
    for name in ["idempotency-key", "authorization"] {
        if let Some(v) = headers.get(name) {
            h.insert(name, v.clone());
        }
    }
    let peer = peer.map(|Extension(p)| p);
    ingest::upload(
        app,
        &scope,
        upload,
        peer,
        h,
        Body::from_stream(body),
        Some(id),
    )
    .await
}

/// The original's spans on the topic, once the topic is known to still hold them all.
async fn retained_spans(app: &App, id: Uuid, produced: i64) -> Result<Vec<spans::Span>, ApiError> {
    let gone = |message: String| ApiError::new(StatusCode::GONE, "replay_gone", message);
    let Some(spans) = imports::spans::spans(&app.pool, id).await? else {
        return Err(gone(format!(
            "import {id} was written before csvbus kept where its rows are on the topic"
        )));
    };
    if spans.is_empty() && produced > 0 {
        return Err(gone(format!("no row of import {id} is known on the topic")));
    }
    let missing = retained::missing(&app.config.common, id, &spans)
        .await
        .map_err(|e| {
            ApiError::unavailable(
                "broker_unavailable",
                format!("the broker did not answer: {e}"),
            )
            .retry_after(2)
        })?;
    if missing.is_empty() {
        return Ok(spans);
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|g| format!("partition {}: {}", g.partition, g.reason))
        .collect();
    Err(gone(format!(
        "the topic no longer holds all of import {id}'s rows: {}; upload its file again",
        parts.join("; ")
    )))
}
