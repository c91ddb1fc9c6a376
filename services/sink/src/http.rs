//! The sink's small HTTP surface: liveness, readiness (database and broker), Prometheus metrics.

use std::time::Duration;

use axum::extract::State as Extract;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use csvbus_shared::health::Readiness;
use metrics_exporter_prometheus::PrometheusHandle;
use rdkafka::producer::FutureProducer;
use sqlx::PgPool;

#[derive(Clone)]
pub struct State {
    pub pool: PgPool,
    /// A client used only to ask the brokers for metadata.
    pub probe: FutureProducer,
    pub metrics: PrometheusHandle,
}

pub fn router(state: State) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(|Extract(s): Extract<State>| async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    s.metrics.render(),
                )
            }),
        )
        .with_state(state)
}

async fn readyz(Extract(s): Extract<State>) -> impl IntoResponse {
    let r = Readiness::check(&s.pool, &s.probe, Duration::from_secs(2)).await;
    let status = if r.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(r))
}
