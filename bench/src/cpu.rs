//! Where the machine's CPU went during a measurement: the whole machine's busy and stolen
//! time (`/proc/stat`) and the CPU seconds of Postgres and of the broker (`/proc/<pid>/stat` of
//! every process so named), so a run that is short of its target shows whether the cores were
//! busy, and with what.

use std::fs;

use crate::report::Series;

/// The kernel's clock ticks per second (USER_HZ) on Linux.
const HZ: f64 = 100.0;

/// Counters at one moment, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct CpuSnap {
    busy: f64,
    idle: f64,
    steal: f64,
    postgres: f64,
    broker: f64,
}

/// What happened between two snapshots.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    /// Busy share of every core, 0–1 (user, system, interrupts; not the time stolen by the
    /// hypervisor, which is in `steal`).
    pub busy: f64,
    /// Share of every core the hypervisor gave to other machines, 0–1.
    pub steal: f64,
    /// CPU seconds of every Postgres process (backends that ended included, through their
    /// parent's accounting).
    pub postgres: f64,
    /// CPU seconds of the broker process (`tansu`, or a JVM running Kafka).
    pub broker: f64,
}

impl CpuSnap {
    pub fn now() -> Self {
        let (busy, idle, steal) = machine();
        let (mut postgres, mut broker) = (0.0, 0.0);
        for (comm, secs) in processes() {
            match comm.as_str() {
                "postgres" => postgres += secs,
                "tansu" | "java" => broker += secs,
                _ => {}
            }
        }
        Self {
            busy,
            idle,
            steal,
            postgres,
            broker,
        }
    }

    /// The use from `self` to now.
    pub fn used(&self) -> CpuUse {
        let now = Self::now();
        let all = (now.busy - self.busy) + (now.idle - self.idle) + (now.steal - self.steal);
        let share = |d: f64| if all > 0.0 { d / all } else { 0.0 };
        CpuUse {
            busy: share(now.busy - self.busy),
            steal: share(now.steal - self.steal),
            postgres: now.postgres - self.postgres,
            broker: now.broker - self.broker,
        }
    }
}

/// The first line of `/proc/stat`: busy, idle (with I/O wait) and stolen seconds of all cores.
fn machine() -> (f64, f64, f64) {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    let at = |i: usize| ticks.get(i).copied().unwrap_or(0.0) / HZ;
    // user nice system idle iowait irq softirq steal (guest time is inside user already)
    let busy = at(0) + at(1) + at(2) + at(5) + at(6);
    (busy, at(3) + at(4), at(7))
}

/// Every process' command name and CPU seconds: its own user + system time and that of the
/// children it has waited for (so a Postgres backend that ended still counts, in the
/// postmaster's).
fn processes() -> Vec<(String, f64)> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|stat| parse_stat(&stat))
        .collect()
}

fn parse_stat(stat: &str) -> Option<(String, f64)> {
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_owned();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime stime cutime cstime: fields 14–17 of the line, 11–14 after the name.
    let secs = (11..=14)
        .map(|i| fields.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum::<Option<f64>>()?;
    Some((comm, secs / HZ))
}

/// The machine's CPU over the runs of one measurement, as report series.
pub struct CpuSeries {
    busy: Series,
    steal: Series,
    postgres: Series,
    broker: Series,
}

impl CpuSeries {
    /// Series named after `what` (the measurement they accompany).
    pub fn new(what: &str) -> Self {
        let per_m = "cpu-s/1M";
        Self {
            busy: Series::new(&format!("{what}: machine busy, % of all cores"), "%"),
            steal: Series::new(
                &format!("{what}: stolen by the hypervisor, % of all cores"),
                "%",
            ),
            postgres: Series::new(&format!("{what}: Postgres CPU s per million rows"), per_m),
            broker: Series::new(&format!("{what}: broker CPU s per million rows"), per_m),
        }
    }

    pub fn push(&mut self, used: &CpuUse, rows: u64) {
        let per_m = 1e6 / rows as f64;
        self.busy.runs.push(used.busy * 100.0);
        self.steal.runs.push(used.steal * 100.0);
        self.postgres.runs.push(used.postgres * per_m);
        self.broker.runs.push(used.broker * per_m);
    }

    pub fn series(&self) -> [&Series; 4] {
        [&self.busy, &self.steal, &self.postgres, &self.broker]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_its_name_and_its_own_and_its_childrens_time() {
        let line = "42 (postgres: x (y)) S 1 42 42 0 -1 4194560 10 0 0 0 150 50 300 100 20 0 1 0";
        let (comm, secs) = parse_stat(line).unwrap();
        assert_eq!(comm, "postgres: x (y)");
        assert!((secs - 6.0).abs() < 1e-9);
    }

    #[test]
    fn this_process_is_seen_and_the_machine_counts_time() {
        let mine = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(parse_stat(&mine).is_some());
        let (busy, idle, _) = machine();
        assert!(busy + idle > 0.0);
    }
}
