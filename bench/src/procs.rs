//! The services under test as separate processes (release binaries), so their memory can be
//! measured: peak RSS is the kernel's `VmHWM` of the process.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

/// A running csvbus service.
pub struct Proc {
    pub child: Child,
    pub addr: String,
}

/// `target/release/<name>`, next to this harness.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let p = me.parent().context("exe dir")?.join(name);
    if !p.exists() {
        bail!(
            "{} is missing: cargo build --release --bin {name}",
            p.display()
        );
    }
    Ok(p)
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Proc {
    /// Starts `bin` with `env` and a free port in `addr_var`; waits for `/readyz` if `ready`.
    pub async fn start(
        bin: &str,
        addr_var: &str,
        env: &[(String, String)],
        ready: bool,
    ) -> anyhow::Result<Self> {
        let addr = format!("127.0.0.1:{}", free_port()?);
        let child = Command::new(binary(bin)?)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env(addr_var, &addr)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let p = Self { child, addr };
        if ready {
            p.ready().await?;
        }
        Ok(p)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn ready(&self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        for _ in 0..600 {
            if let Ok(r) = http.get(self.url("/readyz")).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("service on {} not ready", self.addr)
    }

    /// Waits until a sink's `/readyz` says it holds `n` partitions.
    pub async fn holds_partitions(&self, n: i32) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        for _ in 0..1200 {
            if let Ok(r) = http.get(self.url("/readyz")).send().await {
                let v: serde_json::Value = r.json().await.unwrap_or_default();
                if v["partitions"].as_i64().is_some_and(|p| p >= i64::from(n)) {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("sink on {} never held {n} partitions", self.addr)
    }

    /// Peak resident memory so far, in bytes.
    pub fn peak_rss(&self) -> anyhow::Result<u64> {
        let pid = self.child.id().context("process gone")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("VmHWM")?;
        Ok(kb * 1024)
    }

    /// CPU time the process has used so far (user + system, every thread), in seconds.
    pub fn cpu_secs(&self) -> anyhow::Result<f64> {
        process_cpu_secs(&self.child.id().context("process gone")?.to_string())
    }

    /// SIGTERM, then waits for the exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await?;
        }
        tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await??;
        Ok(())
    }
}

/// CPU time process `pid` (or `self`) has used so far (user + system, every thread), in
/// seconds: from `/proc/<pid>/stat`, in the kernel's clock ticks (USER_HZ, 100 per second on
/// Linux).
pub fn process_cpu_secs(pid: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').context("stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    let total = ticks(11).zip(ticks(12)).context("utime/stime")?;
    Ok((total.0 + total.1) / 100.0)
}
