//! The csvbus sink: a Kafka consumer group that writes rows into their Postgres tables with
//! `COPY`, exactly once, in batches, with bounded concurrency.
//!
//! The folders are the stages a row goes through, in order:
//! 1. [`fetch`]: the consumer's fetch loop on a thread of its own, handing records over in
//!    chunks, each record with its typed csvbus headers;
//! 2. [`assign`]: which replica writes which partition (the group, or claims kept in
//!    Postgres), and the watchdog that rejoins when rows wait and nobody reads them;
//! 3. [`write`]: a partition's records batched, decoded and written in one transaction each
//!    (COPY, or staged `INSERT … ON CONFLICT`), refused rows found by bisection;
//! 4. [`positions`]: where each partition stands in Postgres, moved in the batch's
//!    transaction (what makes the writes exactly once);
//! 5. [`finalize`]: complete atomic/replace imports moved from staging into their tables;
//! 6. [`notify`]: webhooks announcing each import's end, delivered once.
//!
//! [`consume`] is the loop that runs them; [`http`] serves `/healthz`, `/readyz`, `/metrics`.
//! The public API: [`run`], [`SinkConfig`], [`METRICS`], [`fetch_settings`], [`diagnostics`].

pub(crate) mod assign;
pub mod config;
pub(crate) mod consume;
pub(crate) mod fetch;
pub(crate) mod finalize;
pub(crate) mod http;
pub(crate) mod notify;
pub(crate) mod positions;
pub(crate) mod write;

/// The write path without the broker, for the benchmark's diagnostic (`csvbus-bench`): records
/// built by hand, written by the sink's own writer.
pub mod diagnostics {
    pub use crate::fetch::record::Record;
    pub use crate::write::binary::{encode as binary_copy, Codec};
    pub use crate::write::pipeline::Signal;
    pub use crate::write::writer::{write_with_retry, Batch, Settings};
    pub use csvbus_shared::message::RowMeta;
}

use std::sync::Arc;

use csvbus_shared::db;
use rdkafka::consumer::Consumer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::SinkConfig;
pub use consume::fetch_settings;
pub use http::metric_docs::METRICS;

/// The fatal error of the service (shared with the other service).
pub type SinkError = csvbus_shared::service::ServiceError;

/// Runs the sink until `shutdown` is cancelled; serves health and metrics on `listener`.
pub async fn run(
    config: SinkConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), SinkError> {
    let pool = db::connect(
        config.common.database_url.expose(),
        config.concurrency as u32 + 2,
        &shutdown,
    )
    .await?;
    db::migrate(&pool).await?;
    csvbus_shared::kafka::prepare_topic(&config.common).await?;
    let consumer = Arc::new(consume::consumer(&config)?);
    if config.assignment == config::Assignment::Group {
        consumer.subscribe(&[&config.common.topic])?;
    }
    tracing::info!(
        group = %config.group_id,
        assignment = ?config.assignment,
        instance = config.instance_id.as_deref().unwrap_or("(dynamic)"),
        topic = %config.common.topic,
        addr = %listener.local_addr()?,
        "sink started"
    );

    let probe: rdkafka::producer::FutureProducer =
        csvbus_shared::kafka::service_client(&config.common).create()?;
    let health = Arc::new(assign::watchdog::GroupHealth::default());
    let http_stop = CancellationToken::new();
    let watch = assign::watchdog::Watch {
        pool: pool.clone(),
        probe: probe.clone(),
        topic: config.common.topic.clone(),
        group_id: config.group_id.clone(),
        patience: config.watchdog,
    };
    let watcher = tokio::spawn(assign::watchdog::run(
        watch,
        health.clone(),
        http_stop.clone(),
    ));
    let claimer = (config.assignment == config::Assignment::Postgres).then(|| {
        let claimer = assign::claims::Claimer {
            pool: pool.clone(),
            consumer: consumer.clone(),
            topic: config.common.topic.clone(),
            group_id: config.group_id.clone(),
            interval: config.claim_interval,
            health: health.clone(),
        };
        tokio::spawn(assign::claims::run(claimer, http_stop.clone()))
    });
    let staged = Arc::new(tokio::sync::Notify::new());
    let finalizer = tokio::spawn(finalize::run(
        pool.clone(),
        config.finalize_interval,
        config.move_timeout,
        staged.clone(),
        http_stop.clone(),
    ));
    // Senders hold a connection while a receiver answers: a pool of their own, so that a slow
    // receiver never takes one from the writers.
    let notifier = match &config.common.webhook.secret {
        None => None,
        Some(_) => {
            let senders = config.common.webhook.senders.max(1) as u32;
            let url = config.common.database_url.expose();
            let pool = db::connect(url, senders, &shutdown).await?;
            let webhook = config.common.webhook.clone();
            Some(tokio::spawn(notify::run(pool, webhook, http_stop.clone())))
        }
    };
    let state = http::State {
        pool: pool.clone(),
        probe,
        metrics: {
            csvbus_shared::telemetry::describe(METRICS);
            csvbus_shared::telemetry::metrics_handle()
        },
        health: health.clone(),
    };
    let server = tokio::spawn({
        let stop = http_stop.clone();
        async move {
            axum::serve(listener, http::router(state))
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        }
    });
    consume::run(&config, pool, consumer, &health, staged, shutdown).await;
    http_stop.cancel();
    let _ = watcher.await;
    if let Some(claimer) = claimer {
        let _ = claimer.await;
    }
    let _ = finalizer.await;
    if let Some(notifier) = notifier {
        let _ = notifier.await;
    }
    server.await.map_err(std::io::Error::other)??;
    Ok(())
}
