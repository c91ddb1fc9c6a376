//! The live record of a running upload: counters kept in atomics by the upload loop and saved to
//! `csvbus.imports` by a ticker task, so `GET /v1/imports/{id}` shows progress even while the
//! upload waits on the broker. If the upload's future is dropped (the client went away), the
//! guard marks the import `aborted`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use csvbus_shared::imports::{self, Checkpoint, ImportStatus, UploadCounters};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::App;

/// Counters of one upload.
#[derive(Debug)]
pub struct Progress {
    /// Body bytes as sent (compressed), counted by the body reader.
    pub bytes: Arc<AtomicU64>,
    pub received: AtomicU64,
    pub produced: AtomicU64,
    pub rejected: AtomicU64,
    /// The checkpoint ([`Checkpoint`]): line, rows, digest.
    pub acked_line: AtomicU64,
    pub acked_rows: AtomicU64,
    pub acked_digest: AtomicU64,
    /// The import ended while its body was read (the sink stopped it past `max_rejected`, or
    /// it was taken for abandoned): the upload stops reading.
    pub ended_elsewhere: CancellationToken,
}

impl Progress {
    /// Counters from zero, or from where a resumed import's last attempt left them.
    pub fn new(bytes: Arc<AtomicU64>, start: &UploadCounters) -> Self {
        Self {
            bytes,
            received: AtomicU64::new(start.rows_received as u64),
            produced: AtomicU64::new(start.rows_produced as u64),
            rejected: AtomicU64::new(start.rows_rejected as u64),
            acked_line: AtomicU64::new(start.acked.line as u64),
            acked_rows: AtomicU64::new(start.acked.rows as u64),
            acked_digest: AtomicU64::new(start.acked.digest as u64),
            ended_elsewhere: CancellationToken::new(),
        }
    }

    pub fn set_checkpoint(&self, c: Checkpoint) {
        self.acked_line.store(c.line as u64, Ordering::Relaxed);
        self.acked_rows.store(c.rows as u64, Ordering::Relaxed);
        self.acked_digest.store(c.digest as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> UploadCounters {
        UploadCounters {
            rows_received: self.received.load(Ordering::Relaxed) as i64,
            rows_produced: self.produced.load(Ordering::Relaxed) as i64,
            rows_rejected: self.rejected.load(Ordering::Relaxed) as i64,
            bytes_received: self.bytes.load(Ordering::Relaxed) as i64,
            acked: Checkpoint {
                line: self.acked_line.load(Ordering::Relaxed) as i64,
                rows: self.acked_rows.load(Ordering::Relaxed) as i64,
                digest: self.acked_digest.load(Ordering::Relaxed) as i64,
            },
        }
    }
}

/// How long saving an upload's final status waits out a database outage.
const FINISH_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Saves progress periodically; marks the import aborted if dropped before [`finish`](Self::finish).
pub struct ProgressGuard {
    app: Arc<App>,
    id: Uuid,
    attempt: i32,
    progress: Arc<Progress>,
    stop: CancellationToken,
    finished: bool,
}

impl ProgressGuard {
    pub fn start(app: Arc<App>, id: Uuid, attempt: i32, progress: Arc<Progress>) -> Self {
        let stop = CancellationToken::new();
        let (a, p, s) = (app.clone(), progress.clone(), stop.clone());
        app.tasks.spawn(async move {
            let mut tick = tokio::time::interval(a.config.progress_interval);
            let mut last = UploadCounters::default();
            loop {
                tokio::select! {
                    _ = s.cancelled() => break,
                    _ = tick.tick() => {}
                }
                // Saved on every tick, changed or not: `updated_at` is the upload's heartbeat, by
                // which another instance finds imports whose service died (see `orphans`).
                let now = p.snapshot();
                count_metrics(&last, &now);
                match imports::update_progress(&a.pool, id, attempt, &now).await {
                    Ok(true) => {}
                    Ok(false) => p.ended_elsewhere.cancel(),
                    Err(e) => {
                        tracing::warn!(import_id = %id, error = %e, "saving upload progress failed")
                    }
                }
                last = now;
            }
            count_metrics(&last, &p.snapshot());
        });
        Self {
            app,
            id,
            attempt,
            progress,
            stop,
            finished: false,
        }
    }

    /// Saves the final status and counters.
    pub async fn finish(
        &mut self,
        final_status: ImportStatus,
        c: UploadCounters,
        error: Option<&str>,
    ) -> Result<bool, sqlx::Error> {
        self.finished = true;
        self.stop.cancel();
        // The rows are on the broker by now: a database blip must not turn that into a 503, so
        // outages are waited out for a while (the same backoff as everywhere).
        let (pool, c) = (&self.app.pool, &c);
        let (id, attempt) = (self.id, self.attempt);
        let saved = csvbus_shared::db::retry_outages(
            "saving the upload's end",
            Some(FINISH_PATIENCE),
            || imports::upload::finish(pool, id, attempt, final_status, c, error),
        )
        .await?;
        if !saved {
            // The sink may have stopped the import: its record still gets the final counters,
            // so that what was produced is told, and set aside, in full.
            imports::upload::save_stopped_counters(pool, id, attempt, c).await?;
        }
        Ok(saved)
    }
}

fn count_metrics(before: &UploadCounters, now: &UploadCounters) {
    metrics::counter!("csvbus_upload_rows_total")
        .increment((now.rows_received - before.rows_received) as u64);
    metrics::counter!("csvbus_upload_rows_produced_total")
        .increment((now.rows_produced - before.rows_produced) as u64);
    metrics::counter!("csvbus_upload_bytes_total")
        .increment((now.bytes_received - before.bytes_received) as u64);
}

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        self.stop.cancel();
        if self.finished {
            return;
        }
        let (app, id, c) = (self.app.clone(), self.id, self.progress.snapshot());
        let attempt = self.attempt;
        tracing::warn!(import_id = %id, "upload dropped before it finished (client gone): aborted");
        self.app.tasks.spawn(async move {
            let r = imports::upload::finish(
                &app.pool,
                id,
                attempt,
                ImportStatus::Aborted,
                &c,
                Some("the client disconnected"),
            )
            .await;
            if let Err(e) = r {
                tracing::error!(import_id = %id, error = %e, "marking import aborted failed");
            }
        });
    }
}
