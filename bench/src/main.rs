//! `csvbus-bench`: throughput and memory of csvbus against its baselines, measured in one run on
//! one machine. See `bench/README.md` (or `--help`).
//!
//! - upload (first byte → 202) vs a raw librdkafka producer of the same rows;
//! - sink (start → last row committed, topic pre-filled) vs direct `COPY` of the same CSV;
//! - end to end (first byte → last row committed) vs direct `COPY`;
//! - peak RSS of the upload service (100 MB and 1 GB files, 1 and 16 uploads) and of the sink.

mod baselines;
mod cpu;
mod input;
mod measure;
mod memory;
mod procs;
mod report;
mod runs;
mod writer;

use std::path::{Path, PathBuf};

use clap::Parser;

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
    let (b, bytes) = bench(&args, &work, pool)?;
    b.reset_table().await?;

    let t = runs::throughput(&b, args.runs, bytes as f64 / 1e6).await?;
    let scale = runs::scale_out(&b, args.scale_out_partitions).await?;
    let plan = memory::Plan {
        work: &work,
        large_rows: args.large_rows,
        concurrent: args.concurrent,
        concurrent_rows: args.concurrent_rows,
    };
    let (more, checks) = memory::check(&b, &plan, t.rss_upload.max(), t.rss_sink.max()).await?;

    let mut memory = vec![t.rss_upload.clone(), t.rss_e2e.clone(), t.rss_sink.clone()];
    memory.extend(more);
    let mut ratios = t.ratios();
    let mut times = t.times();
    if let Some((series, ratio)) = scale {
        times.extend(series);
        ratios.push(ratio);
    }
    let header = machine(&args.brokers);
    let results = report::Results {
        header: &header,
        rows: b.rows,
        bytes,
        times: &times,
        memory: &memory,
        ratios: &ratios,
        memory_checks: &checks,
    };
    let md = report::markdown(&results);
    println!("\n{md}");
    let json = report::json(&results);
    let base = args.out.join(format!("bench-{}", chrono_stamp()));
    std::fs::write(base.with_extension("md"), &md)?;
    std::fs::write(
        base.with_extension("json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    std::fs::write(args.out.join("latest.md"), &md)?;
    say(&format!("results: {}.{{md,json}}", base.display()));
    Ok(())
}

/// The bench for `args`: the given file and table, or a generated file and its table; and the
/// file's size in bytes.
fn bench(args: &Args, work: &Path, pool: sqlx::PgPool) -> anyhow::Result<(measure::Bench, u64)> {
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
            let ddl = Some(input::TABLE_DDL.to_owned());
            (f, "csvbus_bench".to_owned(), ddl)
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
        file,
        rows,
    };
    Ok((b, bytes))
}

pub(crate) fn say(s: &str) {
    eprintln!("[bench] {s}");
}

fn count_rows(file: &std::path::Path) -> anyhow::Result<u64> {
    let mut r = csv::Reader::from_path(file)?;
    Ok(r.byte_records().count() as u64)
}

/// The sink's settings as the sink reads them (its defaults, or this process's environment).
pub(crate) fn sink_config() -> csvbus_sink::SinkConfig {
    csvbus_sink::SinkConfig::from_env(&csvbus_shared::config::Env::from_process())
        .expect("the sink's settings in the environment are valid")
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
