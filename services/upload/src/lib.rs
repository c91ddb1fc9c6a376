//! The csvbus upload service: CSV over HTTP in, one Kafka message per row out.
//!
//! A `POST /v1/imports?table=…` body is parsed as it arrives and its rows are produced in
//! batches; the answer comes once the broker has acknowledged every row. When the broker is
//! slower than the client, the handler stops reading the body (bounded bytes in flight), so
//! memory stays flat whatever the file size.
//!
//! Layout:
//! - [`config`]: settings from the environment.
//! - [`routes`]: the router (every route documented), API keys, health/metrics handlers.
//! - [`edge`]: checks before any route: the `Host`, cross-site writes.
//! - [`api_doc`]: the OpenAPI document's frame (`GET /v1/openapi.json`).
//! - [`import_status`]: one import, its rejected rows (JSON pages, CSV).
//! - [`rejected_csv`]: rejected rows as CSV, streamed a page at a time.
//! - [`listing`]: the tables csvbus may write; recent imports.
//! - [`page`]: the web page at `/`.
//! - [`clients`]: upload slots per client (API key, else peer address).
//! - [`media`]: what the body is (CSV, or a form's file part) from its `Content-Type`.
//! - [`checks`]: what is checked before the body: type, encoding, length, table.
//! - [`ingest`]: the upload handler: from the checks to the final answer.
//! - [`request`]: an upload's query options and its `202` answer.
//! - [`source_name`]: the file name an upload came from (`name=`, `Content-Disposition`).
//! - [`start`]: the plan of an upload, its checked header, its new import record.
//! - [`idempotency`]: `Idempotency-Key`: repeats answered as before, failed uploads resumed.
//! - [`checkpoint`]: how far an upload is safely on the broker (what a retry skips).
//! - [`route`]: which partition a row goes to, the same on every attempt.
//! - [`failures`]: what each way an upload can fail answers.
//! - [`row_loop`]: the read → check → send loop of one upload.
//! - [`lines`]: line numbers as people count them (CR, LF, CRLF, blank lines).
//! - [`prepare`]: encoding, preamble and dialect, decided from the first bytes ([`sniff`]),
//!   and the body turned into UTF-8 ([`transcode`]).
//! - [`create`]: `create=true`: the table inferred from the file.
//! - [`mapping`]: the file's columns onto the table's (normalized names, `columns=`).
//! - [`metric_docs`]: the metrics the service exports, with their meaning.
//! - [`parse`]: the body's CSV records with their lines and raw bytes.
//! - [`body`]: the body as a counted, capped, idle-limited, decompressed byte stream.
//! - [`body_digest`]: the decoded body's digest, which tells a repeat from another file.
//! - [`tap`]: raw record text and the record length bound.
//! - [`rows`]: header check against the table; record → JSON message value.
//! - [`produce`]: the producer and the in-flight bounds (backpressure).
//! - [`progress`]: live counters saved to `csvbus.imports`; abort on a vanished client.
//! - [`server`]: the connection loop (header-read timeout, graceful shutdown).
//! - [`error`]: the JSON error answers.

pub mod api_doc;
pub mod body;
pub mod body_digest;
pub mod checkpoint;
pub mod checks;
pub mod clients;
pub mod config;
pub mod create;
pub mod detect;
pub mod edge;
pub mod error;
pub mod failures;
pub mod idempotency;
pub mod import_status;
pub mod ingest;
pub mod lines;
pub mod listing;
pub mod mapping;
pub mod media;
pub mod metric_docs;
pub mod page;
pub mod parse;
pub mod prepare;
pub mod produce;
pub mod progress;
pub mod rejected_csv;
pub mod request;
pub mod route;
pub mod routes;
pub mod row_loop;
pub mod rows;
pub mod server;
pub mod sniff;
pub mod source_name;
pub mod start;
pub mod tap;
pub mod transcode;

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
    pub client_slots: Arc<clients::ClientSlots>,
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
        let producer = produce::producer(&config)?;
        let partitions = route::partition_count(&producer, &config.common.topic)
            .await
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or(config.common.topic_partitions);
        Ok(Arc::new(Self {
            partitions: std::sync::atomic::AtomicI32::new(partitions),
            uploads: Arc::new(Semaphore::new(config.max_uploads)),
            client_slots: clients::ClientSlots::new(config.max_uploads_per_client),
            inflight: Arc::new(Semaphore::new(config.inflight_bytes_total as usize)),
            waiters: Arc::new(Semaphore::new(config.max_waiters)),
            metrics: {
                csvbus_shared::telemetry::describe(metric_docs::METRICS);
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
    /// cannot be trusted to go on ([`produce::InFlight::producer_broken`]): a broker that
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
        match produce::producer(&self.config) {
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

/// How often the janitor deletes what is past its retention.
const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Marks imports whose upload service died `aborted`, refreshes the partition count, drops
/// staging tables no import needs any more, and deletes what is past its retention, at start
/// and then periodically.
async fn abort_orphans(app: Arc<App>, shutdown: CancellationToken) {
    let every = (app.config.orphan_after / 4).min(std::time::Duration::from_secs(10));
    let mut tick = tokio::time::interval(every);
    // The first tick purges at once; later ones every PURGE_EVERY.
    let mut last_purge: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match csvbus_shared::imports::abort_orphans(&app.pool, app.config.orphan_after).await {
            Ok(ids) => {
                for id in ids {
                    tracing::warn!(import_id = %id, "upload stopped without finishing (its service died): aborted");
                }
            }
            Err(e) => tracing::debug!(error = %e, "looking for orphaned imports failed"),
        }
        let (_, producer) = app.producer();
        if let Ok(n) = route::partition_count(&producer, &app.config.common.topic).await {
            if n > 0 {
                app.partitions
                    .store(n, std::sync::atomic::Ordering::Relaxed);
            }
        }
        match csvbus_shared::modes::drop_unneeded_staging(&app.pool).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(tables = n, "dropped staging tables of ended imports"),
            Err(e) => tracing::debug!(error = %e, "dropping unneeded staging tables failed"),
        }
        let due = last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY);
        if let Some(keep) = app.config.retention.filter(|_| due) {
            last_purge = Some(tokio::time::Instant::now());
            purge(&app, keep).await;
        }
    }
}

/// Deletes ended imports and dead letters past their retention (`CSVBUS_RETENTION_DAYS`).
async fn purge(app: &App, keep: std::time::Duration) {
    match csvbus_shared::retention::purge(&app.pool, keep, 1000).await {
        Ok(p) if p == Default::default() => {}
        Ok(p) => tracing::info!(
            imports = p.imports,
            rejected_rows = p.rejected_rows,
            dead_letters = p.dead_letters,
            "deleted what is past its retention"
        ),
        Err(e) => tracing::warn!(error = %e, "deleting what is past its retention failed"),
    }
}

/// [`run`] with an already connected [`App`].
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), UploadError> {
    tracing::info!(addr = %listener.local_addr()?, topic = %app.config.common.topic, "upload service listening");
    app.tasks
        .spawn(abort_orphans(app.clone(), shutdown.clone()));
    let router = routes::router(app.clone());
    let stop = shutdown.clone();
    let limits = server::Limits {
        header_read_timeout: app.config.header_read_timeout,
        max_connections: app.config.max_connections,
    };
    let mut server = tokio::spawn(server::serve(listener, router, limits, stop));
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
