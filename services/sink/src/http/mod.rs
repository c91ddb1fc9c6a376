//! The sink's small HTTP surface: liveness, readiness (database, broker, holding partitions while
//! rows wait), Prometheus metrics.

pub(crate) mod metric_docs;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State as Extract;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use csvbus_shared::health::Readiness;
use metrics_exporter_prometheus::PrometheusHandle;
use rdkafka::producer::FutureProducer;
use serde::Serialize;
use sqlx::PgPool;

use crate::assign::watchdog::GroupHealth;

#[derive(Clone)]
pub struct State {
    pub pool: PgPool,
    /// A client used only to ask the brokers for metadata.
    pub probe: FutureProducer,
    pub metrics: PrometheusHandle,
    pub health: Arc<GroupHealth>,
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

/// Readiness of the sink: the database and brokers answer, and it is not parked (holding no
/// partition while its group has rows waiting).
#[derive(Serialize)]
struct SinkReadiness {
    #[serde(flatten)]
    deps: Readiness,
    partitions: usize,
    work_left: bool,
}

async fn readyz(Extract(s): Extract<State>) -> impl IntoResponse {
    let deps = Readiness::check(&s.pool, &s.probe, Duration::from_secs(2)).await;
    let r = SinkReadiness {
        deps,
        partitions: s.health.assigned(),
        work_left: s.health.work_left(),
    };
    let status = if deps.ready() && !s.health.parked() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(r))
}
