//! Logs (tracing, text or JSON, filtered by `RUST_LOG`) and metrics (a Prometheus recorder whose
//! text the services serve on `/metrics`).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Installs the global tracing subscriber once; later calls do nothing (tests start many services).
pub fn init_tracing(json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,rdkafka=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
                .and_then(|b| {
                    // Counts of rows, not seconds: buckets of their own size.
                    b.set_buckets_for_metric(
                        Matcher::Suffix("_rows".into()),
                        &[
                            1.0, 10.0, 100.0, 1_000.0, 5_000.0, 10_000.0, 50_000.0, 100_000.0,
                        ],
                    )
                })
                .expect("static buckets")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may be installed already (a test harness); then ours only renders.
            let _ = metrics::set_global_recorder(recorder);
            // Histogram samples wait in a buffer until upkeep folds them into the buckets:
            // without it they pile up with every row recorded (memory growing with input size,
            // found by the benchmark's 1 GB upload).
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    upkeep.run_upkeep();
                });
            handle
        })
        .clone()
}

/// What a metric is, for `# HELP` and `# TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric a service exports: its name, kind and meaning (the one list a service's metrics
/// are described and registered from, and that the documentation is checked against).
#[derive(Debug, Clone, Copy)]
pub struct MetricDoc {
    pub name: &'static str,
    pub kind: MetricKind,
    pub help: &'static str,
    /// Its labels: a labelled series appears once it has a value (registering it without its
    /// labels would export a series that means nothing).
    pub labels: &'static [&'static str],
}

impl MetricDoc {
    pub const fn new(name: &'static str, kind: MetricKind, help: &'static str) -> Self {
        Self {
            name,
            kind,
            help,
            labels: &[],
        }
    }
}

/// Describes `metrics` (`# HELP`) and registers the counters and gauges, so that `/metrics`
/// shows every one from the start — a counter that never moved is 0, not missing — without
/// changing a value another service of this process has set.
pub fn describe(metrics: &[MetricDoc]) {
    metrics_handle();
    for m in metrics {
        let register = m.labels.is_empty();
        match m.kind {
            MetricKind::Counter => {
                metrics::describe_counter!(m.name, m.help);
                if register {
                    metrics::counter!(m.name).increment(0);
                }
            }
            MetricKind::Gauge => {
                metrics::describe_gauge!(m.name, m.help);
                if register {
                    metrics::gauge!(m.name).increment(0.0);
                }
            }
            MetricKind::Histogram => {
                metrics::describe_histogram!(m.name, m.help);
                if register {
                    let _ = metrics::histogram!(m.name);
                }
            }
        }
    }
}
