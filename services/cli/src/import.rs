//! `csvbus import`: streams files (or stdin) to the upload service, one after the other, with
//! a progress bar on a terminal, retries while the service is overloaded or unreachable, and
//! optionally follows each import until the sink has written it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use csvbus_shared::imports::ImportStatus;
use csvbus_upload::ingest::Accepted;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::client::{describe_rejected, Client, ClientError};
use crate::report::{human, refused, Imported, Report};
use crate::source::Source;
use crate::ImportArgs;

/// How one file ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Ok,
    /// Accepted, but rows were rejected and `--max-rejected` was not given to allow them.
    Rejected,
    /// Refused, failed, aborted, or not sent.
    Failed,
}

/// Imports every file of `args`; prints a line (or a JSON object) per file.
pub async fn run(client: &Client, args: &ImportArgs) -> Verdict {
    let bars = MultiProgress::with_draw_target(if args.progress() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let mut worst = Verdict::Ok;
    for file in &args.files {
        let source = Source::new(file);
        let (verdict, report) = import_one(client, args, &source, &bars).await;
        bars.suspend(|| {
            if args.json {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            } else {
                println!("{}", human(&report));
                if let Report::Imported(r) = &report {
                    for row in &r.first_rejected {
                        println!("  {}", describe_rejected(row));
                    }
                }
            }
        });
        worst = worst.max(verdict);
    }
    worst
}

async fn import_one(
    client: &Client,
    args: &ImportArgs,
    source: &Source,
    bars: &MultiProgress,
) -> (Verdict, Report) {
    let name = source.name();
    let size = source.size().await;
    let bar = bars.add(ProgressBar::new(size.unwrap_or(0)));
    bar.set_style(style(size.is_some()));
    bar.set_prefix(name.clone());
    let started = Instant::now();
    let outcome = send_with_retry(client, args, source, &bar).await;
    let accepted = match outcome {
        Ok(v) => v,
        Err(e) => {
            bar.abandon_with_message("failed");
            return (Verdict::Failed, refused(&name, &e));
        }
    };
    bar.finish_with_message("accepted");
    let mut report = Imported {
        file: name.clone(),
        import_id: accepted.import_id,
        status: accepted.status,
        rows_produced: accepted.rows_produced,
        rows_rejected: accepted.rows_rejected,
        bytes_read: accepted.bytes_read,
        seconds: started.elapsed().as_secs_f64(),
        rows_written: None,
        rows_write_rejected: None,
        error: None,
        first_rejected: Vec::new(),
        read_as: accepted.read_as.clone().map(Box::new),
    };
    let id = accepted.import_id.to_string();
    let mut rejected = accepted.rows_rejected as i64;
    if args.wait {
        let follow = bars.add(ProgressBar::new_spinner());
        follow.set_message(format!("{name}: waiting for the sink"));
        let rec = client
            .wait(&id, |r| {
                follow.set_message(format!(
                    "{name}: {} written of {}",
                    r.rows_written, r.rows_produced
                ));
                follow.tick();
            })
            .await;
        follow.finish_and_clear();
        let rec = match rec {
            Ok(rec) => rec,
            Err(e) => return (Verdict::Failed, refused(&name, &e)),
        };
        rejected = rec.rows_rejected + rec.rows_write_rejected;
        report.status = rec.status;
        report.rows_written = Some(rec.rows_written);
        report.rows_write_rejected = Some(rec.rows_write_rejected);
        report.error = rec.error;
        report.seconds = started.elapsed().as_secs_f64();
        if rec.status != ImportStatus::Completed {
            return (Verdict::Failed, Report::Imported(report));
        }
    }
    let mut verdict = Verdict::Ok;
    if rejected > 0 {
        if let Ok(page) = client.rejected(&id, 0, 5).await {
            report.first_rejected = page.rows;
        }
        if args.max_rejected.is_none() {
            verdict = Verdict::Rejected;
        }
    }
    (verdict, Report::Imported(report))
}

/// The longest wait between two attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Sends `source` until the service accepts or refuses it for good. Overload (429/503) and
/// connection errors are retried while the input can be sent again from its start: after
/// 0.5 s, doubling up to [`MAX_RETRY_DELAY`], or after the service's `Retry-After` (backon,
/// each retry shown).
async fn send_with_retry(
    client: &Client,
    args: &ImportArgs,
    source: &Source,
    bar: &ProgressBar,
) -> Result<Accepted, ClientError> {
    let query = args.query();
    let key = match &args.idempotency_key {
        Some(k) => k.clone(),
        None => source.idempotency_key(&query).await?,
    };
    let send_once = || async {
        bar.set_position(0);
        let lines = Arc::new(AtomicU64::new(0));
        let seen = {
            let (bar, lines) = (bar.clone(), lines.clone());
            move |chunk: &[u8]| {
                bar.inc(chunk.len() as u64);
                let n = lines.fetch_add(count_newlines(chunk), Ordering::Relaxed);
                bar.set_message(format!("~{} rows", n.saturating_sub(1)));
            }
        };
        let body = source.body(args.gzip, seen).await?;
        let mut req = client
            .request(reqwest::Method::POST, &format!("/v1/imports?{query}"))
            .header("content-type", "text/csv")
            .header("idempotency-key", &key)
            .body(body);
        if args.gzip {
            req = req.header("content-encoding", "gzip");
        }
        client.send::<Accepted>(req).await
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(MAX_RETRY_DELAY)
        .with_factor(2.0)
        .with_max_times(args.retries as usize);
    let mut attempt = 0;
    let v = send_once
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|e| e.retryable() && source.replayable())
        .adjust(|e, wait| wait.map(|w| e.retry_after().unwrap_or(w).min(MAX_RETRY_DELAY)))
        .notify(|e, wait| {
            attempt += 1;
            let note = format!(
                "{}: {e}; retry {attempt}/{} in {:.1}s",
                source.name(),
                args.retries,
                wait.as_secs_f64()
            );
            if args.progress() {
                bar.set_message(note);
            } else {
                eprintln!("{note}");
            }
        })
        .await?;
    if let Some(line) = v.resumed_from_line {
        let note = format!(
            "{}: resumed import {} at line {}",
            source.name(),
            v.import_id,
            line + 1
        );
        bars_note(args, bar, note);
    }
    Ok(v)
}

/// A note for people: on the progress line, or on stderr without one.
fn bars_note(args: &ImportArgs, bar: &ProgressBar, note: String) {
    if args.progress() {
        bar.println(note);
    } else {
        eprintln!("{note}");
    }
}

fn count_newlines(chunk: &[u8]) -> u64 {
    chunk.iter().filter(|b| **b == b'\n').count() as u64
}

fn style(sized: bool) -> ProgressStyle {
    let template = if sized {
        "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}"
    } else {
        "{prefix} {bytes} {binary_bytes_per_sec} {msg}"
    };
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}
