//! The last stage: webhooks announcing an import's end. Deliveries are owed in Postgres by the
//! transaction that made the import final (`csvbus.deliveries`); here a few senders claim the
//! due ones, one at a time each, and record every attempt in the transaction that claimed it.
//! A sender that dies mid-request leaves its delivery owed: it is sent again, with the same
//! `Csvbus-Delivery` id, so a receiver that keeps the ids it has seen acts on it once.

mod send;

use std::time::Duration;

use csvbus_shared::imports::deliveries::{self, Attempt};
use csvbus_shared::webhook::WebhookConfig;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use send::Sender;

/// Runs the senders until `shutdown`; nothing when no webhook secret is configured (there is
/// nothing a delivery could be signed with).
pub async fn run(pool: PgPool, config: WebhookConfig, shutdown: CancellationToken) {
    let Some(sender) = Sender::new(&config) else {
        return;
    };
    let senders = (0..config.senders.max(1)).map(|_| {
        let (pool, sender, config, stop) = (
            pool.clone(),
            sender.clone(),
            config.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move { sender_loop(pool, sender, config, stop).await })
    });
    futures::future::join_all(senders.collect::<Vec<_>>()).await;
}

async fn sender_loop(pool: PgPool, sender: Sender, config: WebhookConfig, stop: CancellationToken) {
    loop {
        let worked = tokio::select! {
            () = stop.cancelled() => return,
            r = deliver_one(&pool, &sender, &config) => r,
        };
        let pause = match worked {
            Ok(true) => continue,
            Ok(false) => config.poll,
            Err(e) => {
                tracing::warn!(error = %e, "webhook deliveries: postgres unavailable");
                config.poll.max(Duration::from_secs(1))
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Claims one due delivery, attempts it and records the attempt; false when none was due.
async fn deliver_one(
    pool: &PgPool,
    sender: &Sender,
    config: &WebhookConfig,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let Some(due) = deliveries::claim_due(&mut tx).await? else {
        return Ok(false);
    };
    // Through the claiming transaction: a second connection from this pool (one per sender)
    // could wait for ever while every sender holds one.
    let Some(import) = csvbus_shared::imports::get(&mut *tx, due.import_id).await? else {
        return Ok(true); // deleted meanwhile (retention): its delivery went with it
    };
    let attempt = match sender.send(&due, &import).await {
        Ok(status) => Attempt::Delivered { status },
        Err(failed) => {
            let tried = u32::try_from(due.attempts + 1).unwrap_or(u32::MAX);
            let wait = config.backoff_after(tried);
            let deadline = due.created_at + config.retry_for;
            let next = chrono::Utc::now() + wait;
            Attempt::Failed {
                status: failed.status,
                error: failed.error,
                retry_in: (next <= deadline).then_some(wait),
            }
        }
    };
    deliveries::record(&mut tx, due.id, &attempt).await?;
    tx.commit().await?;
    let outcome = match &attempt {
        Attempt::Delivered { .. } => "delivered",
        Attempt::Failed { retry_in: None, .. } => "failed",
        Attempt::Failed { .. } => "retry",
    };
    metrics::counter!("csvbus_sink_webhook_attempts_total", "outcome" => outcome).increment(1);
    tracing::info!(import_id = %due.import_id, delivery = %due.id, event = %due.event,
        attempt = due.attempts + 1, outcome, "webhook delivery");
    Ok(true)
}
