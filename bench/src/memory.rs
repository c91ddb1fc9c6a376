//! The memory checks: peak RSS of the upload service on a large file and under concurrent
//! uploads (bounded by configuration, not by input), and of the sink.

use std::path::Path;

use crate::measure::Bench;
use crate::report::{self, Series};
use crate::{input, say};

/// Allowance per concurrent upload for its HTTP and CSV buffers (hyper's read buffer, the
/// body decoder, the CSV reader and record window).
const PER_UPLOAD_BUFFERS: f64 = 4.0 * 1048576.0;

const MIB: f64 = 1048576.0;

/// What to check beyond the throughput runs.
pub struct Plan<'a> {
    pub work: &'a Path,
    /// Rows of the large file (0 skips it).
    pub large_rows: u64,
    /// Concurrent uploads (1 skips the check) of `concurrent_rows` rows each.
    pub concurrent: usize,
    pub concurrent_rows: u64,
}

/// Peak-RSS series and the checks on them. `small` is the upload service's peak on the
/// throughput file; `sink` the sink's peak during the throughput runs.
pub async fn check(
    b: &Bench,
    plan: &Plan<'_>,
    small: f64,
    sink: f64,
) -> anyhow::Result<(Vec<Series>, Vec<(String, bool)>)> {
    let mut memory = Vec::new();
    let mut checks = vec![(
        format!("upload ≤ 64 MiB ({:.1} MiB)", report::mib(small)),
        small <= 64.0 * MIB,
    )];
    if plan.large_rows > 0 {
        let (s, check) = large_file(b, plan, small).await?;
        memory.push(s);
        checks.push(check);
    }
    if plan.concurrent > 1 {
        concurrent(b, plan, small, &mut memory, &mut checks).await?;
    }
    checks.push((
        format!("sink ≤ 128 MiB ({:.1} MiB)", report::mib(sink)),
        sink <= 128.0 * MIB,
    ));
    Ok((memory, checks))
}

/// One upload of a large file: flat memory (within 25% of the small file's peak).
async fn large_file(
    b: &Bench,
    plan: &Plan<'_>,
    small: f64,
) -> anyhow::Result<(Series, (String, bool))> {
    let f = plan.work.join(format!("input-{}.csv", plan.large_rows));
    say(&format!(
        "generating {} rows for the memory check",
        plan.large_rows
    ));
    let large_bytes = input::generate(&f, plan.large_rows)?;
    b.reset_table().await?;
    say("memory: one large upload");
    let mut s = Series::new(
        &format!("upload service, {:.0} MB file", large_bytes as f64 / 1e6),
        "B",
    );
    s.runs
        .push(b.upload_memory(&f, plan.large_rows, 1, &[]).await? as f64);
    let large = s.max();
    let check = (
        format!(
            "upload ≤ 64 MiB with the {:.1} GB file ({:.1} MiB), within 25% of the small file",
            large_bytes as f64 / 1e9,
            report::mib(large)
        ),
        large <= 64.0 * MIB && large <= small * 1.25,
    );
    let _ = std::fs::remove_file(&f);
    Ok((s, check))
}

/// Concurrent uploads with the default in-flight total and with a quarter of it: the peak must
/// follow the setting, and stay under base + in-flight total + a per-upload allowance.
async fn concurrent(
    b: &Bench,
    plan: &Plan<'_>,
    small: f64,
    memory: &mut Vec<Series>,
    checks: &mut Vec<(String, bool)>,
) -> anyhow::Result<()> {
    let n = plan.concurrent;
    let f = plan
        .work
        .join(format!("input-{}.csv", plan.concurrent_rows));
    input::generate(&f, plan.concurrent_rows)?;
    let total = inflight_total();
    let mut peaks = Vec::new();
    for bound in [total, total / 4] {
        say(&format!(
            "memory: {n} concurrent uploads, CSVBUS_INFLIGHT_BYTES_TOTAL={bound}"
        ));
        let extra = [("CSVBUS_INFLIGHT_BYTES_TOTAL", bound.to_string())];
        let mut s = Series::new(
            &format!(
                "upload service, {n} concurrent uploads, in-flight total {:.0} MiB",
                report::mib(bound as f64)
            ),
            "B",
        );
        s.runs
            .push(b.upload_memory(&f, plan.concurrent_rows, n, &extra).await? as f64);
        let limit = small + bound as f64 + n as f64 * PER_UPLOAD_BUFFERS;
        checks.push((
            format!(
                "{n} uploads, in-flight total {:.0} MiB: {:.1} MiB ≤ one-upload peak + in-flight total + {n} × 4 MiB ({:.1} MiB)",
                report::mib(bound as f64),
                report::mib(s.max()),
                report::mib(limit)
            ),
            s.max() <= limit,
        ));
        peaks.push(s.max());
        memory.push(s);
    }
    let (full, quarter) = (peaks[0], peaks[1]);
    checks.push((
        format!(
            "{n} uploads: a quarter of the in-flight total lowers the peak ({:.1} → {:.1} MiB)",
            report::mib(full),
            report::mib(quarter)
        ),
        quarter < full,
    ));
    Ok(())
}

fn inflight_total() -> u64 {
    csvbus_upload::config::UploadConfig::from_env(&csvbus_shared::config::Env::from_process())
        .expect("the upload service's settings in the environment are valid")
        .inflight_bytes_total
}
