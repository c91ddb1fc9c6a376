//! The HTTP API: the router, API-key check, import status, health and metrics.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use csvbus_shared::health::Readiness;
use csvbus_shared::imports::{self, ImportRecord, RejectedPage};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tower_http::timeout::TimeoutLayer;
use uuid::Uuid;

use crate::error::ApiError;
use crate::ingest::create_import;
use crate::App;

/// The service's routes, testable without a socket (`oneshot`).
pub fn router(app: Arc<App>) -> Router {
    let v1 = Router::new()
        .route("/imports", post(create_import))
        .route("/imports/{id}", get(get_import))
        .route("/imports/{id}/rejected", get(get_rejected))
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn_with_state(app.clone(), require_key));
    Router::new()
        .nest("/v1", v1)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError::not_found("not_found", "no such route; the API is under /v1/imports")
        })
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::disable())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            app.config.request_timeout,
        ))
        .with_state(app)
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

async fn require_key(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if app.config.api_keys.is_empty() {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(k)
            if app
                .config
                .api_keys
                .iter()
                .any(|s| bool::from(s.expose().as_bytes().ct_eq(k.as_bytes()))) =>
        {
            next.run(req).await
        }
        _ => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is required: Authorization: Bearer <key>",
        )
        .into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct WaitQuery {
    /// Long-poll: answer when the import is final or this long has passed (`30s`, `500ms`).
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

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    id.parse()
        .map_err(|_| ApiError::not_found("unknown_import", format!("no import {id:?}")))
}

async fn get_import(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Json<ImportRecord>, ApiError> {
    let id = parse_id(&id)?;
    let Query(w) = query?;
    let wait = match w.wait.as_deref() {
        None => Duration::ZERO,
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
        let rec = imports::get(&app.pool, id).await?;
        let rec =
            rec.ok_or_else(|| ApiError::not_found("unknown_import", format!("no import {id}")))?;
        if rec.is_final() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(rec));
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

/// How often a long-poll looks at its import.
const WAIT_POLL: Duration = Duration::from_millis(200);

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

#[derive(Debug, Deserialize)]
struct PageQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

async fn get_rejected(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<RejectedPage>, ApiError> {
    let id = parse_id(&id)?;
    let Query(p) = query?;
    if imports::get(&app.pool, id).await?.is_none() {
        return Err(ApiError::not_found(
            "unknown_import",
            format!("no import {id}"),
        ));
    }
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let rows = csvbus_shared::rejected::page(&app.pool, id, p.after.unwrap_or(0), limit).await?;
    let next_after = if rows.len() as i64 == limit {
        rows.last().map(|r| r.id)
    } else {
        None
    };
    Ok(Json(RejectedPage { rows, next_after }))
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    let r = Readiness::check(&app.pool, &app.producer().1, Duration::from_secs(2)).await;
    let status = if r.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(r)).into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}
