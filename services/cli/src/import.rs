//! `csvbus import`: streams files (or stdin) to the upload service, one after the other, each
//! under its own Idempotency-Key ([`crate::key`]), with a progress bar on a terminal, retries
//! while the service is overloaded or unreachable, and optionally follows each import until
//! the sink has written it. What each file came to is judged here ([`Verdict`]).

use std::time::Instant;

use csvbus_shared::imports::{ImportRecord, ImportStatus};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget};

use crate::client::{describe_rejected, Client, ClientError};
use crate::key::{self, FileKey};
use crate::report::{human, refused, Imported, Report, Verdict};
use crate::send::send_with_retry;
use crate::source::Source;
use crate::ImportArgs;

/// Imports every file of `args`; prints a line (or a JSON object) per file; returns the worst
/// verdict.
pub async fn run(client: &Client, args: &ImportArgs) -> Verdict {
    let bars = MultiProgress::with_draw_target(if args.progress() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut worst = Verdict::Imported;
    for (index, file) in args.files.iter().enumerate() {
        let source = Source::new(file);
        let report = match key::for_file(args, &source, index, &run).await {
            Ok(key) => import_one(client, args, &source, &key, &bars).await,
            Err(e) => refused(&source.name(), &ClientError::Input(e)),
        };
        bars.suspend(|| print(args, &report));
        worst = worst.max(report.verdict());
    }
    worst
}

fn print(args: &ImportArgs, report: &Report) {
    if args.json {
        println!("{}", serde_json::to_string(report).unwrap_or_default());
        return;
    }
    println!("{}", human(report));
    if let Report::Imported(r) = report {
        for row in &r.first_rejected {
            println!("  {}", describe_rejected(row));
        }
    }
}

impl Report {
    pub fn verdict(&self) -> Verdict {
        match self {
            Self::Imported(r) => r.result,
            Self::Refused(r) => r.result,
        }
    }
}

async fn import_one(
    client: &Client,
    args: &ImportArgs,
    source: &Source,
    key: &FileKey,
    bars: &MultiProgress,
) -> Report {
    let name = source.name();
    let started = Instant::now();
    // A derived key names this content with these options: an import under it that was
    // accepted is this file, imported already. (Unreachable here: the upload retries below.)
    if key.derived {
        if let Ok(Some(rec)) = client.by_key(&key.key).await {
            if accepted(&rec) {
                return repeat(client, args, (&name, key), rec.id, 0, started).await;
            }
        }
    }
    let bar = bars.add(ProgressBar::new(0));
    let answer = send_with_retry(client, args, source, &key.key, &bar).await;
    let accepted = match answer {
        Ok(a) => a,
        Err(e) => {
            bar.abandon_with_message("failed");
            return ended_early(client, args, (&name, key), &e, started).await;
        }
    };
    bar.finish_with_message("accepted");
    if accepted.replayed {
        let sent = bar.position();
        return repeat(
            client,
            args,
            (&name, key),
            accepted.import_id,
            sent,
            started,
        )
        .await;
    }
    let id = accepted.import_id;
    let mut report = Imported {
        file: name.clone(),
        result: Verdict::Imported,
        import_id: id,
        idempotency_key: key.key.clone(),
        status: accepted.status,
        mode: accepted.mode,
        replayed: false,
        imported_at: None,
        rows_produced: accepted.rows_produced,
        rows_rejected: accepted.rows_rejected,
        bytes_read: accepted.bytes_read,
        seconds: 0.0,
        rows_written: None,
        rows_write_rejected: None,
        error: None,
        first_rejected: Vec::new(),
        read_as: accepted.read_as.map(Box::new),
    };
    if args.wait {
        let rec = match follow(client, &name, &id.to_string(), bars).await {
            Ok(rec) => rec,
            Err(e) => return refused(&name, &e),
        };
        set_counters(&mut report, &rec, true);
    }
    report.result = judge(args, &report);
    report.seconds = started.elapsed().as_secs_f64();
    add_first_rejected(client, &mut report).await;
    Report::Imported(Box::new(report))
}

/// Whether an import was accepted (every row on the broker), so that a repeat under its key
/// is answered from it rather than resuming it.
fn accepted(rec: &ImportRecord) -> bool {
    match rec.status {
        ImportStatus::Receiving => false,
        s if s.upload_failed() => rec.produced_at.is_some(),
        _ => true,
    }
}

/// A file imported already under its key: what that import came to. With `--idempotent` it is
/// followed until it ends and judged as this file's own; otherwise it is `already_imported`.
async fn repeat(
    client: &Client,
    args: &ImportArgs,
    (name, key): (&str, &FileKey),
    id: uuid::Uuid,
    sent: u64,
    started: Instant,
) -> Report {
    let follow = args.wait || args.idempotent;
    let rec = if follow {
        client.wait(&id.to_string(), |_| {}).await
    } else {
        client.status(&id.to_string()).await
    };
    let rec = match rec {
        Ok(rec) => rec,
        Err(e) => return refused(name, &e),
    };
    let mut report = record_report(name, key, &rec, follow);
    report.replayed = true;
    report.imported_at = Some(rec.created_at);
    report.bytes_read = sent;
    report.result = if args.idempotent {
        judge(args, &report)
    } else {
        Verdict::AlreadyImported
    };
    report.seconds = started.elapsed().as_secs_f64();
    Report::Imported(Box::new(report))
}

/// An upload the service ended with an error. When the error names this upload's import and
/// some of its rows were written (or are being written: append, upsert, skip), the file is
/// `partly_written`; otherwise it was refused and nothing of it is in the table.
async fn ended_early(
    client: &Client,
    args: &ImportArgs,
    (name, key): (&str, &FileKey),
    e: &ClientError,
    started: Instant,
) -> Report {
    let id = match e {
        // These name another upload's import (or one still running), not what this one did.
        ClientError::Api { code, .. }
            if matches!(code.as_str(), "idempotency_key_mismatch" | "import_running") =>
        {
            None
        }
        ClientError::Api { import_id, .. } => *import_id,
        _ => None,
    };
    let Some(id) = id else {
        return refused(name, e);
    };
    let rec = if args.wait {
        client.wait(&id.to_string(), |_| {}).await
    } else {
        client.status(&id.to_string()).await
    };
    let Ok(rec) = rec else {
        return refused(name, e);
    };
    let mut report = record_report(name, key, &rec, args.wait);
    report.result = judge(args, &report);
    if report.result != Verdict::PartlyWritten {
        return refused(name, e);
    }
    report.seconds = started.elapsed().as_secs_f64();
    add_first_rejected(client, &mut report).await;
    Report::Imported(Box::new(report))
}

/// The report of a file from its import's record; `followed`: the record is final, and its
/// sink counters are shown.
fn record_report(name: &str, key: &FileKey, rec: &ImportRecord, followed: bool) -> Imported {
    let mut report = Imported {
        file: name.to_owned(),
        result: Verdict::Imported,
        import_id: rec.id,
        idempotency_key: key.key.clone(),
        status: rec.status,
        mode: rec.mode,
        replayed: false,
        imported_at: None,
        rows_produced: rec.rows_produced as u64,
        rows_rejected: rec.rows_rejected as u64,
        bytes_read: rec.bytes_received as u64,
        seconds: 0.0,
        rows_written: None,
        rows_write_rejected: None,
        error: None,
        first_rejected: Vec::new(),
        read_as: rec.read_as.clone().map(|r| Box::new(r.0)),
    };
    set_counters(&mut report, rec, followed);
    report
}

fn set_counters(report: &mut Imported, rec: &ImportRecord, followed: bool) {
    report.status = rec.status;
    report.error = rec.error.clone();
    if followed {
        report.rows_written = Some(rec.rows_written);
        report.rows_write_rejected = Some(rec.rows_write_rejected);
    }
}

/// What a file's import came to: failed (with or without rows in the table), or imported
/// with more or fewer rejected rows than `--max-rejected` allows (0 when not given).
fn judge(args: &ImportArgs, r: &Imported) -> Verdict {
    if r.status.upload_failed() {
        // Not followed to its end, a failed import's produced rows are being written — unless
        // they were staged (atomic, replace): those never reach the table.
        let being_written = if r.mode.staged() {
            0
        } else {
            r.rows_produced as i64
        };
        let written = r.rows_written.unwrap_or(being_written);
        return if written > 0 {
            Verdict::PartlyWritten
        } else {
            Verdict::Failed
        };
    }
    let rejected = r.rows_rejected as i64 + r.rows_write_rejected.unwrap_or(0);
    if rejected > args.max_rejected.unwrap_or(0) as i64 {
        Verdict::RowsRejected
    } else if r.read_as.as_ref().is_some_and(|a| a.dateformat_guessed) {
        Verdict::DatesGuessed
    } else {
        Verdict::Imported
    }
}

/// Follows an import until it ends, with a spinner showing the rows written.
async fn follow(
    client: &Client,
    name: &str,
    id: &str,
    bars: &MultiProgress,
) -> Result<ImportRecord, ClientError> {
    let spinner = bars.add(ProgressBar::new_spinner());
    spinner.set_message(format!("{name}: waiting for the sink"));
    let rec = client
        .wait(id, |r| {
            spinner.set_message(format!(
                "{name}: {} written of {}",
                r.rows_written, r.rows_produced
            ));
            spinner.tick();
        })
        .await;
    spinner.finish_and_clear();
    rec
}

/// The first rejected rows (in file order), when there are any.
async fn add_first_rejected(client: &Client, report: &mut Imported) {
    let rejected = report.rows_rejected as i64 + report.rows_write_rejected.unwrap_or(0);
    if rejected > 0 {
        if let Ok(page) = client.rejected(&report.import_id.to_string(), 0, 5).await {
            report.first_rejected = page.rows;
        }
    }
}
