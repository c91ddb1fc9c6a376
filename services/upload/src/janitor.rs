//! Housekeeping beside the uploads: imports whose upload service died are marked `aborted`, the
//! partition count is refreshed, staging tables no import needs are dropped, and what is past
//! its retention is deleted.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::App;

/// How often the janitor deletes what is past its retention.
const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Marks imports whose upload service died `aborted`, refreshes the partition count, drops
/// staging tables no import needs any more, and deletes what is past its retention, at start
/// and then periodically.
pub(crate) async fn run(app: Arc<App>, shutdown: CancellationToken) {
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
        if let Ok(n) =
            crate::produce::route::partition_count(&producer, &app.config.common.topic).await
        {
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
    match csvbus_shared::imports::retention::purge(&app.pool, keep, 1000).await {
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
