//! The HTTP API: the router (every route documented, see [`documented`]), the API-key check,
//! health and metrics.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use axum::{Extension, Json, Router};
use csvbus_shared::health::Readiness;
use csvbus_shared::scope::Scope;
use subtle::ConstantTimeEq;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;

use crate::http::{import_status, listing, page};
use crate::import::ingest;
use crate::App;

/// The service's routes, testable without a socket (`oneshot`).
pub fn router(app: Arc<App>) -> Router {
    let (api, doc) = documented(app.clone()).split_for_parts();
    api.fallback(|| async {
        ApiError::not_found("not_found", "no such route; the API is under /v1/imports")
    })
    .method_not_allowed_fallback(method_not_allowed)
    .layer(Extension(Arc::new(doc)))
    .layer(DefaultBodyLimit::disable())
    .layer(middleware::from_fn_with_state(app.clone(), deadline))
    .layer(middleware::from_fn_with_state(
        app.clone(),
        crate::http::edge::guard,
    ))
    .with_state(app)
}

/// Every route of the API with its OpenAPI description: a route is added here with
/// `routes!(handler)`, which takes its path and method from the handler's `#[utoipa::path]`,
/// so no route can exist without a description.
pub fn documented(app: Arc<App>) -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::with_openapi(crate::http::api_doc::ApiDoc::openapi())
        .routes(routes!(ingest::create_import, listing::list_imports))
        .routes(routes!(import_status::get_import))
        .routes(routes!(crate::replay::replay_import))
        .routes(routes!(import_status::get_rejected))
        .routes(routes!(import_status::get_rejected_csv))
        .routes(routes!(listing::list_tables))
        // Only the routes above need a key.
        .route_layer(middleware::from_fn_with_state(app, require_key))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
        .routes(routes!(page::index))
        .routes(routes!(page::script))
        .routes(routes!(page::style))
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "page", responses(
    (status = 200, description = "The OpenAPI 3.1 document of this service", body = Object),
))]
async fn openapi_json(
    Extension(doc): Extension<Arc<utoipa::openapi::OpenApi>>,
) -> Json<Arc<utoipa::openapi::OpenApi>> {
    Json(doc)
}

/// The whole-request limit (`CSVBUS_REQUEST_TIMEOUT_MS`, uploads included): past it the
/// request is dropped and answered 408 `request_timeout` in the JSON error shape.
async fn deadline(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let limit = app.config.request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request took longer than {} (CSVBUS_REQUEST_TIMEOUT_MS)",
                humantime::format_duration(limit)
            ),
        )
        .into_response(),
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// Checks the request's key and hands its [`Scope`] to the handler (every table when no keys
/// are configured).
async fn require_key(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    if app.config.api_keys.is_empty() {
        req.extensions_mut().insert(Scope::all());
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Every key is compared (in constant time), so timing tells nothing of which matched.
    let matched = presented.and_then(|k| {
        app.config
            .api_keys
            .iter()
            .filter(|key| bool::from(key.secret.expose().as_bytes().ct_eq(k.as_bytes())))
            .fold(None, |found, key| found.or(Some(key.scope.clone())))
    });
    match matched {
        Some(scope) => {
            req.extensions_mut().insert(scope);
            next.run(req).await
        }
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is required: Authorization: Bearer <key>",
        )
        .into_response(),
    }
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database and the brokers answer.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Ready", body = Readiness),
    (status = 503, description = "A dependency does not answer", body = Readiness),
))]
async fn readyz(State(app): State<Arc<App>>) -> Response {
    let r = Readiness::check(&app.pool, &app.producer().1, Duration::from_secs(2)).await;
    let status = if r.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(r)).into_response()
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
))]
async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}
