//! The csvbus sink: a Kafka consumer group that writes rows into their Postgres tables with
//! `COPY`, exactly once, in batches, with bounded concurrency.
//!
//! Layout:
//! - [`config`]: settings from the environment.
//! - [`consume`]: the consumer loop, per-partition batching, dispatch to writers, shutdown.
//! - [`dispatch`]: batches of a partition to writer tasks, two in flight, and back.
//! - [`feed`]: the fetch loop on a thread of its own, handing records over in chunks.
//! - [`batch`]: records as received; admitted rows grouped by import and encoded for
//!   `COPY … CSV`; dead letters for messages that are not rows csvbus may write.
//! - [`decode`]: values decoded into COPY CSV before their batch's transaction.
//! - [`writer`]: one batch in one transaction, retried by the failure policy.
//! - [`offsets`]: the partition's position in Postgres (skip, gap, stale, move).
//! - [`copy`]: COPY of a group (or staged INSERT … ON CONFLICT) with bisection of refused rows.
//! - [`targets`]: the imports a batch names; lines already handled per partition.
//! - [`finalize`]: moves complete atomic/replace imports from staging into their tables.
//! - [`http`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`lag`]: consumer lag per partition against the positions in Postgres.
//! - [`metric_docs`]: the metrics the sink exports, with their meaning.
//! - [`stale`]: detects positions left by an earlier incarnation of a recreated topic.
//! - [`claims`]: which replica writes which partition, kept in Postgres (`CSVBUS_SINK_ASSIGNMENT=postgres`).
//! - [`watchdog`]: rejoins the group when the sink holds no partition while rows wait.

pub mod batch;
pub mod claims;
pub mod config;
pub mod consume;
pub mod copy;
pub mod decode;
pub mod dispatch;
pub mod feed;
pub mod finalize;
pub mod http;
pub mod lag;
pub mod locks;
pub mod metric_docs;
pub mod move_rows;
pub mod offsets;
pub mod record;
pub mod stale;
pub mod targets;
pub mod topic;
pub mod watchdog;
pub mod writer;

use std::sync::Arc;

use csvbus_shared::db;
use rdkafka::consumer::Consumer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::SinkConfig;

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
    let health = Arc::new(watchdog::GroupHealth::default());
    let http_stop = CancellationToken::new();
    let watch = watchdog::Watch {
        pool: pool.clone(),
        probe: probe.clone(),
        topic: config.common.topic.clone(),
        group_id: config.group_id.clone(),
        patience: config.watchdog,
    };
    let watcher = tokio::spawn(watchdog::run(watch, health.clone(), http_stop.clone()));
    let claimer = (config.assignment == config::Assignment::Postgres).then(|| {
        let claimer = claims::Claimer {
            pool: pool.clone(),
            consumer: consumer.clone(),
            topic: config.common.topic.clone(),
            group_id: config.group_id.clone(),
            interval: config.claim_interval,
            health: health.clone(),
        };
        tokio::spawn(claims::run(claimer, http_stop.clone()))
    });
    let finalizer = tokio::spawn(finalize::run(
        pool.clone(),
        config.finalize_interval,
        config.move_timeout,
        http_stop.clone(),
    ));
    let state = http::State {
        pool: pool.clone(),
        probe,
        metrics: {
            csvbus_shared::telemetry::describe(metric_docs::METRICS);
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
    consume::run(&config, pool, consumer, &health, shutdown).await;
    http_stop.cancel();
    let _ = watcher.await;
    if let Some(claimer) = claimer {
        let _ = claimer.await;
    }
    let _ = finalizer.await;
    server.await.map_err(std::io::Error::other)??;
    Ok(())
}
