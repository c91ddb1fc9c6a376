//! Medians and spreads, ratios to the baselines, and the results as a table, JSON and markdown.

use serde::Serialize;

/// Several runs of one measurement, in seconds (or bytes for memory).
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub name: String,
    pub unit: String,
    pub runs: Vec<f64>,
}

impl Series {
    pub fn new(name: &str, unit: &str) -> Self {
        Self {
            name: name.into(),
            unit: unit.into(),
            runs: Vec::new(),
        }
    }

    pub fn median(&self) -> f64 {
        let mut v = self.runs.clone();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// (max - min) / median, as a fraction.
    pub fn spread(&self) -> f64 {
        let min = self.runs.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.runs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (max - min) / self.median()
    }

    pub fn max(&self) -> f64 {
        self.runs.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }
}

/// A throughput compared with its baseline from the same run.
#[derive(Debug, Serialize)]
pub struct Ratio {
    pub what: String,
    pub value: f64,
    pub target: f64,
    pub met: bool,
}

impl Ratio {
    /// `baseline_secs / secs`: how fast the csvbus path is next to its baseline.
    pub fn of_times(what: &str, secs: &Series, baseline_secs: &Series, target: f64) -> Self {
        let value = baseline_secs.median() / secs.median();
        Self {
            what: what.into(),
            value,
            target,
            met: value >= target,
        }
    }
}

pub fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

/// Everything one bench run reports.
pub struct Results<'a> {
    /// Machine, broker, settings, git revision.
    pub header: &'a [(String, String)],
    pub rows: u64,
    pub bytes: u64,
    pub times: &'a [Series],
    pub memory: &'a [Series],
    pub ratios: &'a [Ratio],
    pub memory_checks: &'a [(String, bool)],
}

/// The markdown report (also printed).
pub fn markdown(r: &Results<'_>) -> String {
    let Results {
        header,
        rows,
        bytes,
        times,
        memory,
        ratios,
        memory_checks,
    } = *r;
    let mut s = String::from("# csvbus benchmark\n\n");
    for (k, v) in header {
        s += &format!("- {k}: {v}\n");
    }
    s += &format!(
        "\nInput: {rows} rows, {:.1} MB.\n\n| measurement | median s | rows/s | MB/s | spread | runs |\n|---|---:|---:|---:|---:|---:|\n",
        bytes as f64 / 1e6
    );
    for t in times {
        let m = t.median();
        // A time of the whole input has rates; CPU seconds per million rows have none.
        let (rate, mbs) = if t.unit == "s" {
            (
                format!("{:.0}", rows as f64 / m),
                format!("{:.1}", bytes as f64 / 1e6 / m),
            )
        } else {
            ("—".to_owned(), "—".to_owned())
        };
        s += &format!(
            "| {} | {m:.2} | {rate} | {mbs} | {:.0}% | {} |\n",
            t.name,
            t.spread() * 100.0,
            t.runs.len()
        );
    }
    s += "\n| ratio (same run) | value | target | met |\n|---|---:|---:|---|\n";
    for r in ratios {
        s += &format!(
            "| {} | {:.2} | ≥ {:.2} | {} |\n",
            r.what,
            r.value,
            r.target,
            if r.met { "yes" } else { "**no**" }
        );
    }
    s += "\n| peak RSS | max MiB | runs |\n|---|---:|---:|\n";
    for m in memory {
        s += &format!("| {} | {:.1} | {} |\n", m.name, mib(m.max()), m.runs.len());
    }
    s += "\n| memory target | met |\n|---|---|\n";
    for (what, met) in memory_checks {
        s += &format!("| {what} | {} |\n", if *met { "yes" } else { "**no**" });
    }
    s
}

/// The same results as JSON.
pub fn json(r: &Results<'_>) -> serde_json::Value {
    let Results {
        header,
        rows,
        bytes,
        times,
        memory,
        ratios,
        memory_checks,
    } = *r;
    let machine: std::collections::BTreeMap<_, _> = header.iter().cloned().collect();
    let times: Vec<_> = times
        .iter()
        .map(|t| {
            serde_json::json!({
                "name": t.name, "runs_s": t.runs, "median_s": t.median(),
                "spread": t.spread(), "rows_per_s": rows as f64 / t.median(),
            })
        })
        .collect();
    let peak_rss: Vec<_> = memory
        .iter()
        .map(|m| serde_json::json!({"name": m.name, "runs_bytes": m.runs, "max_mib": mib(m.max())}))
        .collect();
    let checks: Vec<_> = memory_checks
        .iter()
        .map(|(w, m)| serde_json::json!({"check": w, "met": m}))
        .collect();
    serde_json::json!({
        "machine": machine, "rows": rows, "bytes": bytes, "times": times,
        "ratios": ratios, "peak_rss": peak_rss, "memory_checks": checks,
    })
}
