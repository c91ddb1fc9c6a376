//! One import: its record (with long-poll), its rejected rows as JSON pages and as CSV.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use csvbus_shared::imports::{ImportRecord, RejectedPage};
use csvbus_shared::scope::Scope;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{ApiError, ErrorBody};
use crate::import::lookup;
use crate::App;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
// An unknown parameter is refused (400 unknown_parameter), never ignored: a typo such as
// `mdoe=upsert` would otherwise run with the default.
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// Long-poll: answer when the import is final or this long has passed (`30s`, `500ms`,
    /// `1m`, or seconds like `2.5`; at most 5 minutes).
    #[param(pattern = r"^([0-9]{1,6}(\.[0-9]{1,6})?|[0-9]{1,6}(ms|s|m|h))?$")]
    wait: Option<String>,
}

/// `30s`, `500ms`, `1m` (humantime), or plain seconds (`2.5`); never more than [`MAX_WAIT`].
fn parse_wait(s: &str) -> Option<Duration> {
    let d = match humantime::parse_duration(s) {
        Ok(d) => d,
        Err(_) => {
            let secs: f64 = s.parse().ok()?;
            if !secs.is_finite() || secs < 0.0 {
                return None;
            }
            Duration::from_secs_f64(secs.min(MAX_WAIT.as_secs_f64()))
        }
    };
    Some(d.min(MAX_WAIT))
}

/// The longest long-poll.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// How often a long-poll looks at its import.
const WAIT_POLL: Duration = Duration::from_millis(200);

/// One import with its counters; with `wait`, answers once it is final (or the wait is over).
#[utoipa::path(
    get,
    path = "/v1/imports/{id}",
    tag = "imports",
    params(("id" = Uuid, Path, description = "The import's id"), WaitQuery),
    responses(
        (status = 200, description = "The import", body = ImportRecord),
        (status = 400, description = "`wait` is not a duration", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such import (`unknown_import`)", body = ErrorBody),
        (status = 429, description = "Too many long-polls are waiting; retry", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry", body = ErrorBody),
    ),
    security(("api_key" = []), ())
)]
pub async fn get_import(
    State(app): State<Arc<App>>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Json<ImportRecord>, ApiError> {
    let id = lookup::parse_id(&id)?;
    let Query(w) = query?;
    let wait = match w.wait.as_deref() {
        None | Some("") => Duration::ZERO,
        Some(s) => parse_wait(s).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_wait",
                format!("wait={s:?}: use a duration like 30s or 500ms"),
            )
        })?,
    };
    // Long-polls are bounded: each looks at the database every WAIT_POLL, and they share the
    // pool with uploads.
    let _waiting = if wait.is_zero() {
        None
    } else {
        let permit = app.waiters.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_waiters",
                format!(
                    "{} status requests are waiting already (CSVBUS_MAX_WAITERS); retry later or without wait",
                    app.config.max_waiters
                ),
            )
            .retry_after(1)
        })?;
        Some(permit)
    };
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let rec = lookup::get_in_scope(&app, id, &scope).await?;
        if rec.is_final() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(rec));
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
// An unknown parameter is refused (400 unknown_parameter), never ignored: a typo such as
// `mdoe=upsert` would otherwise run with the default.
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Rows on the lines after this one: the `next_after` of the previous page.
    after: Option<i64>,
    /// Rows per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// The import's rejected rows in file order (by line), a page at a time.
#[utoipa::path(
    get,
    path = "/v1/imports/{id}/rejected",
    tag = "imports",
    params(("id" = Uuid, Path, description = "The import's id"), PageQuery),
    responses(
        (status = 200, description = "A page of rejected rows", body = RejectedPage),
        (status = 400, description = "A query parameter is invalid", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such import (`unknown_import`)", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry", body = ErrorBody),
    ),
    security(("api_key" = []), ())
)]
pub async fn get_rejected(
    State(app): State<Arc<App>>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<RejectedPage>, ApiError> {
    let Query(p) = query?;
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        // As the imports list does: a page size out of range is refused, not bent.
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit={limit}: use 1 to 1000"),
        ));
    }
    let rec = lookup::find(&app, &id, &scope).await?;
    let rows =
        csvbus_shared::imports::rejected::page(&app.pool, rec.id, p.after.unwrap_or(0), limit)
            .await?;
    let next_after = if rows.len() as i64 >= limit {
        rows.last().map(|r| r.line)
    } else {
        None
    };
    Ok(Json(RejectedPage { rows, next_after }))
}

#[derive(Debug, Default, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CsvFormat {
    /// `line,stage,reason,raw` and then the import's columns: a row per rejected row.
    #[default]
    Annotated,
    /// The import's columns only, each row as it was sent (parse rejects: the record's text
    /// as in the file), to fix and upload again.
    Reupload,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
// An unknown parameter is refused (400 unknown_parameter), never ignored: a typo such as
// `mdoe=upsert` would otherwise run with the default.
#[serde(deny_unknown_fields)]
pub struct CsvQuery {
    /// `annotated` (default) or `reupload`.
    #[param(inline)]
    format: Option<CsvFormat>,
}

/// The import's rejected rows as a CSV file to fix and upload again.
#[utoipa::path(
    get,
    path = "/v1/imports/{id}/rejected.csv",
    tag = "imports",
    params(("id" = Uuid, Path, description = "The import's id"), CsvQuery),
    responses(
        (status = 200, description = "The rejected rows", content_type = "text/csv", body = String),
        (status = 400, description = "A query parameter is invalid", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such import (`unknown_import`)", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry", body = ErrorBody),
    ),
    security(("api_key" = []), ())
)]
pub async fn get_rejected_csv(
    State(app): State<Arc<App>>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
    query: Result<Query<CsvQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let rec = lookup::find(&app, &id, &scope).await?;
    let format = q.format.unwrap_or_default();
    let stream = crate::http::rejected_csv::stream(app.pool.clone(), rec.id, rec.columns, format);
    let name = format!("attachment; filename=\"rejected-{}.csv\"", rec.id);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_parse_and_are_capped_and_nonsense_is_refused() {
        assert_eq!(parse_wait("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_wait("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_wait("2.5"), Some(Duration::from_millis(2500)));
        assert_eq!(parse_wait("1h"), Some(MAX_WAIT));
        assert_eq!(parse_wait("1e300"), Some(MAX_WAIT));
        assert_eq!(parse_wait("inf"), None);
        assert_eq!(parse_wait("NaN"), None);
        assert_eq!(parse_wait("-1"), None);
    }
}
