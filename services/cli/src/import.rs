//! `csvbus import`: streams files (or stdin) to the upload service, one after the other, with
//! a progress bar on a terminal, retries while the service is overloaded or unreachable, and
//! optionally follows each import until the sink has written it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

use crate::client::{describe_rejected, Client, ClientError};
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
                println!("{report}");
            } else {
                println!("{}", human(&source.name(), &report));
                for r in report["first_rejected"].as_array().into_iter().flatten() {
                    println!("  {}", describe_rejected(r));
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
) -> (Verdict, Value) {
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
            return (Verdict::Failed, error_report(&name, &e));
        }
    };
    bar.finish_with_message("accepted");
    let id = accepted["import_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut report = json!({
        "file": name,
        "import_id": id,
        "status": accepted["status"],
        "rows_produced": accepted["rows_produced"],
        "rows_rejected": accepted["rows_rejected"],
        "bytes_read": accepted["bytes_read"],
        "seconds": started.elapsed().as_secs_f64(),
    });
    let mut rejected = accepted["rows_rejected"].as_i64().unwrap_or(0);
    if args.wait {
        let follow = bars.add(ProgressBar::new_spinner());
        follow.set_message(format!("{name}: waiting for the sink"));
        let rec = client
            .wait(&id, |r| {
                follow.set_message(format!(
                    "{name}: {} written of {}",
                    r["rows_written"], r["rows_produced"]
                ));
                follow.tick();
            })
            .await;
        follow.finish_and_clear();
        match rec {
            Ok(rec) => {
                rejected = rec["rows_rejected"].as_i64().unwrap_or(0)
                    + rec["rows_write_rejected"].as_i64().unwrap_or(0);
                for k in ["status", "rows_written", "rows_write_rejected", "error"] {
                    report[k] = rec[k].clone();
                }
                report["seconds"] = json!(started.elapsed().as_secs_f64());
                if rec["status"] != "completed" {
                    return (Verdict::Failed, report);
                }
            }
            Err(e) => return (Verdict::Failed, error_report(&name, &e)),
        }
    }
    if rejected > 0 {
        if let Ok((rows, _)) = client.rejected(&id, 0, 5).await {
            report["first_rejected"] = Value::Array(rows);
        }
        if args.max_rejected.is_none() {
            return (Verdict::Rejected, report);
        }
    }
    (Verdict::Ok, report)
}

/// Sends `source` until the service accepts or refuses it for good. Overload (429/503) and
/// connection errors are retried with a capped, visible backoff while the input can be sent
/// again from its start.
async fn send_with_retry(
    client: &Client,
    args: &ImportArgs,
    source: &Source,
    bar: &ProgressBar,
) -> Result<Value, ClientError> {
    let query = args.query();
    let key = match &args.idempotency_key {
        Some(k) => k.clone(),
        None => source.idempotency_key(&query).await?,
    };
    let mut delay = Duration::from_millis(500);
    let mut attempt = 1;
    loop {
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
        match client.send(req).await {
            Err(e) if e.retryable() && attempt < args.retries + 1 && source.replayable() => {
                let wait = e
                    .retry_after()
                    .unwrap_or(delay)
                    .min(Duration::from_secs(30));
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
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(Duration::from_secs(30));
                attempt += 1;
            }
            Ok(v) => {
                if let Some(line) = v["resumed_from_line"].as_u64() {
                    let note = format!(
                        "{}: resumed import {} at line {}",
                        source.name(),
                        v["import_id"].as_str().unwrap_or("?"),
                        line + 1
                    );
                    bars_note(args, bar, note);
                }
                return Ok(v);
            }
            r => return r,
        }
    }
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

fn error_report(file: &str, e: &ClientError) -> Value {
    let mut v = json!({ "file": file, "status": "refused", "message": e.to_string() });
    if let ClientError::Api {
        status, code, line, ..
    } = e
    {
        v["http_status"] = json!(status);
        v["error"] = json!(code);
        v["line"] = json!(line);
    }
    v
}

/// One line per file for people (and for logs when not on a terminal).
pub fn human(file: &str, r: &Value) -> String {
    if r["status"] == "refused" {
        return format!("{file}: refused: {}", r["message"].as_str().unwrap_or("?"));
    }
    let mut s = format!(
        "{file}: {} import {} — {} rows produced, {} rejected while reading",
        r["status"].as_str().unwrap_or("?"),
        r["import_id"].as_str().unwrap_or("?"),
        r["rows_produced"],
        r["rows_rejected"],
    );
    if !r["rows_written"].is_null() {
        s += &format!(
            ", {} written, {} rejected by Postgres",
            r["rows_written"], r["rows_write_rejected"]
        );
    }
    if let Some(e) = r["error"].as_str() {
        s += &format!(" — {e}");
    }
    s += &format!(" ({:.1}s)", r["seconds"].as_f64().unwrap_or(0.0));
    s
}
