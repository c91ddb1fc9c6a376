//! `csvbus-bench`: throughput and memory of csvbus against its baselines, measured in one run on
//! one machine. See `bench/README.md` (or `--help`).
//!
//! - upload (first byte → 202) vs a raw librdkafka producer of the same rows;
//! - sink (start → last row committed, topic pre-filled) vs direct `COPY` of the same CSV;
//! - end to end (first byte → last row committed) vs direct `COPY`;
//! - peak RSS of the upload service (100 MB and 1 GB files, 1 and 16 uploads) and of the sink.

mod input;
mod measure;
mod procs;
mod report;
mod writer;

use std::path::PathBuf;

use clap::Parser;
use report::{Ratio, Series};

/// Benchmarks csvbus against a raw producer and direct COPY; writes bench/results/.
#[derive(Parser)]
struct Args {
    /// Rows of the generated input (~100 bytes each).
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Use this CSV instead of generating one (with --table).
    #[arg(long, requires = "table")]
    file: Option<PathBuf>,
    /// Target table for --file (it is truncated between runs).
    #[arg(long)]
    table: Option<String>,
    /// Runs of each throughput measurement.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Rows of the large file for the memory check (~100 bytes each; 10M ≈ 1 GB). 0 skips it.
    #[arg(long, default_value_t = 10_000_000)]
    large_rows: u64,
    /// Concurrent uploads for the memory check.
    #[arg(long, default_value_t = 16)]
    concurrent: usize,
    /// Rows per upload in the concurrent memory check.
    #[arg(long, default_value_t = 250_000)]
    concurrent_rows: u64,
    /// Where results go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Postgres (the target table is created there).
    #[arg(long, env = "DATABASE_URL", default_value = csvbus_shared::config::DEFAULT_DATABASE_URL)]
    database_url: String,
    /// The broker (tansu from scripts/stack.sh by default; any Kafka works).
    #[arg(long, env = "KAFKA_BROKERS", default_value = csvbus_shared::config::DEFAULT_KAFKA_BROKERS)]
    brokers: String,
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Scale-out check: the rows on a topic of this many partitions, written by 1 and by 2
    /// sink processes of one group (one run each). 0 skips it.
    #[arg(long, default_value_t = 8)]
    scale_out_partitions: i32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    let work = std::env::temp_dir().join("csvbus-bench");
    std::fs::create_dir_all(&work)?;
    let pool = csvbus_shared::db::connect(&args.database_url, 4, &Default::default()).await?;
    csvbus_shared::db::migrate(&pool).await?;

    let (file, table, ddl) = match (&args.file, &args.table) {
        (Some(f), Some(t)) => (f.clone(), t.clone(), None),
        _ => {
            let f = work.join(format!("input-{}.csv", args.rows));
            say(&format!(
                "generating {} rows into {}",
                args.rows,
                f.display()
            ));
            input::generate(&f, args.rows)?;
            (
                f,
                "csvbus_bench".to_owned(),
                Some(input::TABLE_DDL.to_owned()),
            )
        }
    };
    let bytes = std::fs::metadata(&file)?.len();
    let rows = match &args.file {
        Some(_) => count_rows(&file)?,
        None => args.rows,
    };
    let b = measure::Bench {
        pool,
        database_url: args.database_url.clone(),
        brokers: args.brokers.clone(),
        partitions: args.partitions,
        table,
        ddl,
        file: file.clone(),
        rows,
    };
    b.reset_table().await?;

    let mut upload = Series::new("upload (first byte → 202)", "s");
    let mut raw = Series::new("raw librdkafka producer", "s");
    let mut sink = Series::new("sink (start → last commit)", "s");
    let mut sink_first = Series::new("sink: start → first commit (diagnostic)", "s");
    let mut writer = Series::new("sink writer, no broker (diagnostic)", "s");
    let mut consumer = Series::new("raw consumer, fresh group (diagnostic)", "s");
    let mut consumer_first = Series::new("raw consumer: start → first message (diagnostic)", "s");
    let mut batch_consumer = Series::new("batch consumer, large fetches (diagnostic)", "s");
    let mut copy = Series::new("direct COPY", "s");
    let mut e2e = Series::new("end to end (first byte → last commit)", "s");
    let mut e2e_atomic = Series::new("end to end, mode=atomic (first byte → moved in)", "s");
    let mut e2e_upsert = Series::new("end to end, mode=upsert (first byte → last commit)", "s");
    let mut rss_upload = Series::new(
        &format!("upload service, {:.0} MB file", bytes as f64 / 1e6),
        "B",
    );
    let mut rss_sink = Series::new("sink", "B");
    let mut rss_e2e = Series::new("upload service during end to end", "B");
    for run in 1..=args.runs {
        say(&format!("run {run}/{}: raw producer", args.runs));
        raw.runs.push(b.raw_producer().await?);
        say(&format!("run {run}/{}: upload", args.runs));
        let up = b.upload().await?;
        upload.runs.push(up.secs);
        rss_upload.runs.push(up.peak_rss as f64);
        say(&format!("run {run}/{}: direct COPY", args.runs));
        copy.runs.push(b.copy().await?);
        say(&format!("run {run}/{}: sink", args.runs));
        let (secs, first, peak) = b.sink(&up).await?;
        sink.runs.push(secs);
        sink_first.runs.push(first);
        rss_sink.runs.push(peak as f64);
        say(&format!(
            "run {run}/{}: sink writer without broker",
            args.runs
        ));
        writer
            .runs
            .push(writer::sink_writer(&b, sink_batch_rows(), sink_concurrency()).await?);
        say(&format!("run {run}/{}: raw consumer", args.runs));
        let (first, secs) = b.raw_consumer(&up, false).await?;
        consumer_first.runs.push(first);
        consumer.runs.push(secs);
        say(&format!("run {run}/{}: batch consumer", args.runs));
        batch_consumer.runs.push(b.raw_consumer(&up, true).await?.1);
        say(&format!("run {run}/{}: end to end", args.runs));
        let (secs, u, s) = b.end_to_end().await?;
        e2e.runs.push(secs);
        rss_e2e.runs.push(u as f64);
        rss_sink.runs.push(s as f64);
        for (mode, series) in [("atomic", &mut e2e_atomic), ("upsert", &mut e2e_upsert)] {
            say(&format!("run {run}/{}: end to end, mode={mode}", args.runs));
            series.runs.push(b.end_to_end_in(mode).await?.0);
        }
    }

    let (one_sink, two_sinks) = scale_out(&b, args.scale_out_partitions).await?;

    let mut memory = vec![rss_upload.clone(), rss_e2e, rss_sink.clone()];
    let mut checks = Vec::new();
    let small = rss_upload.max();
    checks.push((
        format!("upload ≤ 64 MiB ({:.1} MiB)", report::mib(small)),
        small <= 64.0 * 1048576.0,
    ));
    if args.large_rows > 0 {
        let f = work.join(format!("input-{}.csv", args.large_rows));
        say(&format!(
            "generating {} rows for the memory check",
            args.large_rows
        ));
        let large_bytes = input::generate(&f, args.large_rows)?;
        b.reset_table().await?;
        say("memory: one large upload");
        let mut s = Series::new(
            &format!("upload service, {:.0} MB file", large_bytes as f64 / 1e6),
            "B",
        );
        s.runs
            .push(b.upload_memory(&f, args.large_rows, 1, &[]).await? as f64);
        let large = s.max();
        checks.push((
            format!(
                "upload ≤ 64 MiB with the {:.1} GB file ({:.1} MiB), within 25% of the small file",
                large_bytes as f64 / 1e9,
                report::mib(large)
            ),
            large <= 64.0 * 1048576.0 && large <= small * 1.25,
        ));
        memory.push(s);
        let _ = std::fs::remove_file(&f);
    }
    if args.concurrent > 1 {
        // Bounded by configuration: the same uploads with the default in-flight total and with
        // a quarter of it; the peak must follow the setting, and stay under base + in-flight
        // total + a per-upload allowance for HTTP and CSV buffers.
        let f = work.join(format!("input-{}.csv", args.concurrent_rows));
        input::generate(&f, args.concurrent_rows)?;
        let total = inflight_total();
        for bound in [total, total / 4] {
            say(&format!(
                "memory: {} concurrent uploads, CSVBUS_INFLIGHT_BYTES_TOTAL={bound}",
                args.concurrent
            ));
            let extra = [("CSVBUS_INFLIGHT_BYTES_TOTAL", bound.to_string())];
            let mut s = Series::new(
                &format!(
                    "upload service, {} concurrent uploads, in-flight total {:.0} MiB",
                    args.concurrent,
                    report::mib(bound as f64)
                ),
                "B",
            );
            s.runs.push(
                b.upload_memory(&f, args.concurrent_rows, args.concurrent, &extra)
                    .await? as f64,
            );
            let limit = small + bound as f64 + args.concurrent as f64 * PER_UPLOAD_BUFFERS;
            checks.push((
                format!(
                    "{} uploads, in-flight total {:.0} MiB: {:.1} MiB ≤ one-upload peak + in-flight total + {} × 4 MiB ({:.1} MiB)",
                    args.concurrent,
                    report::mib(bound as f64),
                    report::mib(s.max()),
                    args.concurrent,
                    report::mib(limit)
                ),
                s.max() <= limit,
            ));
            memory.push(s);
        }
        let n = memory.len();
        let (full, quarter) = (memory[n - 2].max(), memory[n - 1].max());
        checks.push((
            format!(
                "{} uploads: a quarter of the in-flight total lowers the peak ({:.1} → {:.1} MiB)",
                args.concurrent,
                report::mib(full),
                report::mib(quarter)
            ),
            quarter < full,
        ));
    }
    let sink_peak = rss_sink.max();
    checks.push((
        format!("sink ≤ 128 MiB ({:.1} MiB)", report::mib(sink_peak)),
        sink_peak <= 128.0 * 1048576.0,
    ));

    let mut ratios = vec![
        Ratio::of_times("upload / raw producer", &upload, &raw, 0.5),
        Ratio::of_times("sink / direct COPY", &sink, &copy, 0.8),
        Ratio::of_times("end to end / direct COPY", &e2e, &copy, 0.5),
        Ratio::of_times(
            "atomic end to end / append end to end",
            &e2e_atomic,
            &e2e,
            0.6,
        ),
        Ratio::of_times(
            "(diagnostic) upsert end to end / append end to end",
            &e2e_upsert,
            &e2e,
            0.5,
        ),
        // Diagnostics: where the sink's time goes (no targets of their own).
        Ratio::of_times(
            "(diagnostic) sink writer without broker / direct COPY",
            &writer,
            &copy,
            0.8,
        ),
        Ratio::of_times(
            "(diagnostic) sink / raw consumer of the same topic",
            &sink,
            &consumer,
            0.8,
        ),
        Ratio::of_times(
            "(diagnostic) raw consumer / batch consumer with large fetches",
            &consumer,
            &batch_consumer,
            0.8,
        ),
    ];
    if let (Some(one), Some(two)) = (&one_sink, &two_sinks) {
        ratios.push(Ratio::of_times(
            &format!(
                "(scale-out) 2 sink replicas / 1 replica, {} partitions",
                args.scale_out_partitions
            ),
            two,
            one,
            1.0,
        ));
    }
    let header = machine(&args.brokers);
    let mut times = vec![
        upload,
        raw,
        sink,
        copy,
        e2e,
        e2e_atomic,
        e2e_upsert,
        sink_first,
        writer,
        consumer,
        consumer_first,
        batch_consumer,
    ];
    times.extend(one_sink.into_iter().chain(two_sinks));
    let md = report::markdown(&header, rows, bytes, &times, &memory, &ratios, &checks);
    println!("\n{md}");
    let stamp = chrono_stamp();
    let json = serde_json::json!({
        "machine": header.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        "rows": rows, "bytes": bytes,
        "times": times.iter().map(|t| serde_json::json!({"name": t.name, "runs_s": t.runs, "median_s": t.median(), "spread": t.spread(), "rows_per_s": rows as f64 / t.median()})).collect::<Vec<_>>(),
        "ratios": ratios,
        "peak_rss": memory.iter().map(|m| serde_json::json!({"name": m.name, "runs_bytes": m.runs, "max_mib": report::mib(m.max())})).collect::<Vec<_>>(),
        "memory_checks": checks.iter().map(|(w, m)| serde_json::json!({"check": w, "met": m})).collect::<Vec<_>>(),
    });
    let base = args.out.join(format!("bench-{stamp}"));
    std::fs::write(base.with_extension("md"), &md)?;
    std::fs::write(
        base.with_extension("json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    std::fs::write(args.out.join("latest.md"), &md)?;
    say(&format!("results: {}.{{md,json}}", base.display()));
    Ok(())
}

/// The rows on a topic of `partitions` partitions, written by 1 and then by 2 sink processes of
/// one group (on 2 cores this shows the overhead of a second replica, not a speed-up).
async fn scale_out(
    b: &measure::Bench,
    partitions: i32,
) -> anyhow::Result<(Option<Series>, Option<Series>)> {
    if partitions <= 0 {
        return Ok((None, None));
    }
    let wide = b.with_partitions(partitions);
    say(&format!("scale-out: upload to {partitions} partitions"));
    let up = wide.upload().await?;
    let mut series = Vec::new();
    for replicas in [1, 2] {
        say(&format!("scale-out: {replicas} sink replica(s)"));
        let mut s = Series::new(
            &format!("sink, {partitions} partitions, {replicas} replica(s) (scale-out)"),
            "s",
        );
        s.runs.push(wide.sinks(&up, replicas).await?.0);
        series.push(s);
    }
    let two = series.pop();
    Ok((series.pop(), two))
}

fn say(s: &str) {
    eprintln!("[bench] {s}");
}

fn count_rows(file: &std::path::Path) -> anyhow::Result<u64> {
    let mut r = csv::Reader::from_path(file)?;
    Ok(r.byte_records().count() as u64)
}

/// Allowance per concurrent upload for its HTTP and CSV buffers (hyper's read buffer, the
/// body decoder, the CSV reader and record window).
const PER_UPLOAD_BUFFERS: f64 = 4.0 * 1048576.0;

/// The sink's settings as the sink reads them (its defaults, or this process's environment).
fn sink_config() -> csvbus_sink::SinkConfig {
    csvbus_sink::SinkConfig::from_env(&csvbus_shared::config::Env::from_process())
        .expect("the sink's settings in the environment are valid")
}

fn sink_batch_rows() -> usize {
    sink_config().batch_rows
}

fn sink_concurrency() -> usize {
    sink_config().concurrency
}

fn inflight_total() -> u64 {
    csvbus_upload::config::UploadConfig::from_env(&csvbus_shared::config::Env::from_process())
        .expect("the upload service's settings in the environment are valid")
        .inflight_bytes_total
}

/// Cores, memory, broker kind, and the csvbus settings given.
fn machine(brokers: &str) -> Vec<(String, String)> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or("?".into(), |kb| format!("{:.1} GiB", kb / 1048576.0));
    let tansu = std::process::Command::new("pgrep")
        .args(["-f", "tansu broker"])
        .output()
        .is_ok_and(|o| o.status.success());
    let broker = if tansu {
        format!("tansu (memory storage) at {brokers}")
    } else {
        format!("Kafka at {brokers}")
    };
    let settings: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("CSVBUS_"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    vec![
        ("cores".into(), cores.to_string()),
        ("memory".into(), mem),
        ("broker".into(), broker),
        (
            "csvbus settings".into(),
            if settings.is_empty() {
                "defaults".into()
            } else {
                settings.join(" ")
            },
        ),
        ("git".into(), git_rev()),
    ]
}

fn git_rev() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn chrono_stamp() -> String {
    chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string()
}
