//! The csvbus upload service: CSV over HTTP in, one Kafka message per row out.
//!
//! A `POST /v1/imports?table=…` body is parsed as it arrives and its rows are produced in
//! batches; the answer comes once the broker has acknowledged every row. When the broker is
//! slower than the client, the handler stops reading the body (bounded bytes in flight), so
//! memory stays flat whatever the file size.
//!
//! The folders are the stages a row goes through, in order (each depends only on the ones
//! after it, and on [`config`] and [`error`]):
//! 1. [`http`]: the connection, the checks of every request, the router;
//! 2. [`import`]: one upload planned and run, from its checks to its final answer;
//! 3. [`read`]: the body's bytes into CSV records with their line numbers;
//! 4. [`rows`]: records into row messages (the header mapped onto the table);
//! 5. [`produce`]: messages onto the broker, and the checkpoint a retry resumes from.
//!
//! [`replay`] sits beside [`http`]: an import's rows read back from the topic become the body
//! of a new upload that [`import`] runs. [`janitor`] runs beside them. The public API is what the binary, the CLI and the tests use:
//! [`run`], [`serve`], [`App`], [`UploadConfig`], [`router`], [`UploadQuery`], [`Accepted`],
//! [`infer`] and [`codec`].

pub mod codec;
pub mod config;
pub(crate) mod error;
pub(crate) mod http;
pub(crate) mod import;
pub mod infer;
pub(crate) mod janitor;
pub(crate) mod produce;
pub(crate) mod read;
pub(crate) mod replay;
pub(crate) mod rows;

use std::sync::Arc;

use csvbus_shared::db;
use metrics_exporter_prometheus::PrometheusHandle;
use rdkafka::producer::{FutureProducer, Producer};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::UploadConfig;
pub use http::metric_docs::METRICS;
pub use http::routes::{documented, router};
pub use import::preview::{Preview, PreviewRejection, PreviewRow};
pub use import::request::{Accepted, UploadQuery};
pub use infer::{infer, Inferred};

/// The fatal error of the service (shared with the other service).
pub type UploadError = csvbus_shared::service::ServiceError;

/// The state every handler shares.
pub struct App {
    pub config: UploadConfig,
    pub pool: PgPool,
    /// The producer and its generation; replaced when it cannot go on (see
    /// [`App::renew_producer`]).
    producer: std::sync::RwLock<(u64, FutureProducer)>,
    /// One permit per upload being served.
    pub uploads: Arc<Semaphore>,
    /// The upload slots each client holds (at most `CSVBUS_MAX_UPLOADS_PER_CLIENT`).
    pub client_slots: Arc<import::clients::ClientSlots>,
    /// One permit per message byte awaiting acknowledgement, across uploads.
    pub inflight: Arc<Semaphore>,
    /// One permit per long-poll (`GET /v1/imports/{id}?wait=`) being served.
    pub waiters: Arc<Semaphore>,
    pub metrics: PrometheusHandle,
    /// Background work of uploads (progress saving), drained at shutdown.
    pub tasks: TaskTracker,
    /// The topic's partition count, as last read from the broker (refreshed by the janitor):
    /// rows are routed by it, so an upload needs no broker round trip to start.
    pub partitions: std::sync::atomic::AtomicI32,
}

impl App {
    /// Connects to Postgres (applying migrations) and Kafka (creating the topic if needed).
    pub async fn connect(
        config: UploadConfig,
        shutdown: &CancellationToken,
    ) -> Result<Arc<Self>, UploadError> {
        let pool = db::connect(
            config.common.database_url.expose(),
            config.db_pool_size,
            shutdown,
        )
        .await?;
        db::migrate(&pool).await?;
        csvbus_shared::kafka::prepare_topic(&config.common).await?;
        let producer = produce::producer::producer(&config)?;
        let partitions = produce::route::partition_count(&producer, &config.common.topic)
            .await
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or(config.common.topic_partitions);
        Ok(Arc::new(Self {
            partitions: std::sync::atomic::AtomicI32::new(partitions),
            uploads: Arc::new(Semaphore::new(config.max_uploads)),
            client_slots: import::clients::ClientSlots::new(config.max_uploads_per_client),
            inflight: Arc::new(Semaphore::new(config.inflight_bytes_total as usize)),
            waiters: Arc::new(Semaphore::new(config.max_waiters)),
            metrics: {
                csvbus_shared::telemetry::describe(http::metric_docs::METRICS);
                csvbus_shared::telemetry::metrics_handle()
            },
            tasks: TaskTracker::new(),
            config,
            pool,
            producer: std::sync::RwLock::new((0, producer)),
        }))
    }

    /// The producer uploads send with now, and its generation.
    pub fn producer(&self) -> (u64, FutureProducer) {
        self.producer
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the producer of generation `used` (if it is still the current one) when it
    /// cannot be trusted to go on ([`produce::producer::InFlight::producer_broken`]): a broker that
    /// stalled past the delivery timeout refuses its epoch bump with ProducerFenced, a broker
    /// restarted without its state leaves it timing out every message — and every later upload
    /// would fail with it. Uploads still sending with the old one finish with it.
    pub fn renew_producer(&self, used: u64) {
        let mut current = self
            .producer
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.0 != used {
            return;
        }
        match produce::producer::producer(&self.config) {
            Ok(fresh) => {
                tracing::warn!(
                    generation = used + 1,
                    "the producer cannot go on: replaced with a new one"
                );
                metrics::counter!("csvbus_upload_producer_renewed_total").increment(1);
                *current = (used + 1, fresh);
            }
            Err(e) => tracing::error!(error = %e, "the producer could not be replaced"),
        }
    }
}

/// Serves the API on `listener` until `shutdown` is cancelled; then stops accepting, lets
/// running uploads finish for up to `CSVBUS_SHUTDOWN_GRACE_MS`, and flushes the producer.
pub async fn run(
    config: UploadConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), UploadError> {
    let app = App::connect(config, &shutdown).await?;
    serve(app, listener, shutdown).await
}

/// [`run`] with an already connected [`App`].
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), UploadError> {
    tracing::info!(addr = %listener.local_addr()?, topic = %app.config.common.topic, "upload service listening");
    app.tasks.spawn(janitor::run(app.clone(), shutdown.clone()));
    let router = http::routes::router(app.clone());
    let stop = shutdown.clone();
    let limits = http::server::Limits {
        header_read_timeout: app.config.header_read_timeout,
        max_connections: app.config.max_connections,
    };
    let mut server = tokio::spawn(http::server::serve(listener, router, limits, stop));
    tokio::select! {
        r = &mut server => { r.map_err(std::io::Error::other)??; }
        _ = shutdown.cancelled() => {
            match tokio::time::timeout(app.config.shutdown_grace, &mut server).await {
                Ok(r) => { r.map_err(std::io::Error::other)??; }
                Err(_) => {
                    tracing::warn!("uploads still running after the shutdown grace period: cut off");
                    server.abort();
                }
            }
        }
    }
    app.tasks.close();
    let _ = tokio::time::timeout(app.config.shutdown_grace, app.tasks.wait()).await;
    let (_, producer) = app.producer();
    let _ = tokio::task::spawn_blocking(move || producer.flush(std::time::Duration::from_secs(10)))
        .await;
    tracing::info!("upload service stopped");
    Ok(())
}
