//! Sending one file: the upload request, retried while the service is overloaded or
//! unreachable and the input can be sent again from its start.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use csvbus_upload::Accepted;
use indicatif::{ProgressBar, ProgressStyle};

use crate::client::{Client, ClientError};
use crate::source::Source;
use crate::ImportArgs;

/// The longest wait between two attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Sends `source` under `key` until the service accepts or refuses it for good. Overload
/// (429/503) and connection errors are retried while the input can be sent again from its
/// start: after 0.5 s, doubling up to [`MAX_RETRY_DELAY`], or after the service's `Retry-After`
/// (backon, each retry shown). A compressed input is sent as it is, with its encoding.
pub async fn send_with_retry(
    client: &Client,
    args: &ImportArgs,
    source: &Source,
    key: &str,
    bar: &ProgressBar,
) -> Result<Accepted, ClientError> {
    let size = source.size().await;
    bar.set_length(size.unwrap_or(0));
    bar.set_style(style(size.is_some()));
    bar.set_prefix(source.name());
    // The file's name goes with it (the imports list shows it); it is not part of the key: a
    // copy under another name is the same import.
    let mut query = args.query();
    if let Some(name) = source.file_name() {
        query += "&";
        query += &form_urlencoded::Serializer::new(String::new())
            .append_pair("name", &name)
            .finish();
    }
    let compression = source.compression().await?;
    let encoding = compression
        .map(|c| c.content_encoding())
        .or(args.gzip.then_some("gzip"));
    let send_once = || async {
        bar.set_position(0);
        let lines = Arc::new(AtomicU64::new(0));
        let seen = {
            let (bar, lines) = (bar.clone(), lines.clone());
            let plain = compression.is_none();
            move |chunk: &[u8]| {
                bar.inc(chunk.len() as u64);
                if plain {
                    let n = lines.fetch_add(count_newlines(chunk), Ordering::Relaxed);
                    bar.set_message(format!("~{} rows", n.saturating_sub(1)));
                }
            }
        };
        let body = source
            .body(args.gzip && compression.is_none(), seen)
            .await?;
        let mut req = client
            .request(reqwest::Method::POST, &format!("/v1/imports?{query}"))
            .header("content-type", "text/csv")
            .header("idempotency-key", key)
            .body(body);
        if let Some(e) = encoding {
            req = req.header("content-encoding", e);
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
        if args.progress() {
            bar.println(note);
        } else {
            eprintln!("{note}");
        }
    }
    Ok(v)
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
