//! The services as separate processes (the release binaries), for tests that SIGKILL them.
//!
//! `scripts/test.sh` builds the release binaries before the tests; `CSVBUS_BIN_DIR` points
//! elsewhere. Each process logs to a file under the system temp directory, printed when a test
//! asks for it ([`Proc::log_tail`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use csvbus_shared::config::Env;
use tokio::process::{Child, Command};

/// `target/release/<name>` of this workspace, or `$CSVBUS_BIN_DIR/<name>`.
pub fn release_binary(name: &str) -> PathBuf {
    let dir = std::env::var_os("CSVBUS_BIN_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release"),
        PathBuf::from,
    );
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --release --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// One running service process.
pub struct Proc {
    child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `bin` with `env` (plus `extra`) listening on `addr` through `addr_var`; does not
    /// wait for readiness.
    pub fn start(
        bin: &str,
        addr_var: &str,
        addr: SocketAddr,
        env: &Env,
        extra: &[(&str, &str)],
    ) -> Self {
        let log = std::env::temp_dir().join(format!("{}.log", crate::unique(bin)));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(release_binary(bin));
        cmd.env_clear()
            .envs(env.vars())
            .envs(extra.iter().copied())
            .env(addr_var, addr.to_string())
            .env("RUST_LOG", "info,sqlx=warn,rdkafka=warn")
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .kill_on_drop(true);
        let child = cmd.spawn().expect("spawn service process");
        Self { child, addr, log }
    }

    /// A sink process on a free port.
    pub fn sink(env: &Env, extra: &[(&str, &str)]) -> Self {
        Self::start("csvbus-sink", "CSVBUS_SINK_ADDR", free_addr(), env, extra)
    }

    /// A sink process on a given address (a restarted replica keeps its address).
    pub fn sink_at(addr: SocketAddr, env: &Env, extra: &[(&str, &str)]) -> Self {
        Self::start("csvbus-sink", "CSVBUS_SINK_ADDR", addr, env, extra)
    }

    /// An upload service process on a free port.
    pub fn upload(env: &Env, extra: &[(&str, &str)]) -> Self {
        Self::start(
            "csvbus-upload",
            "CSVBUS_UPLOAD_ADDR",
            free_addr(),
            env,
            extra,
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Waits until `/readyz` answers 200, failing if the process exits or `timeout` passes.
    pub async fn ready(&mut self, timeout: Duration) {
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(r) = client.get(self.url("/readyz")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited before it was ready ({status}):\n{}",
                    self.log.display(),
                    self.log_tail()
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not ready after {timeout:?}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `/readyz` status code and body, as it is now.
    pub async fn readyz(&self) -> (u16, serde_json::Value) {
        let r = reqwest::get(self.url("/readyz"))
            .await
            .expect("readyz request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or_default())
    }

    /// SIGKILL, and waits for the process to be gone.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child
            .wait()
            .await
            .expect("wait for the killed process");
    }

    /// SIGTERM, and waits (at most 60 s) for a clean exit.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("exits within 60 s of SIGTERM")
            .expect("wait");
        assert!(
            status.success(),
            "exit status {status}:\n{}",
            self.log_tail()
        );
    }

    /// The value of `name` in the process' environment as it runs (after any re-execution).
    pub fn environ(&self, name: &str) -> Option<String> {
        let pid = self.child.id().expect("process running");
        let all = std::fs::read(format!("/proc/{pid}/environ")).expect("proc environ");
        all.split(|b| *b == 0).find_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
    }

    /// Peak resident memory of the process so far (the kernel's `VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let pid = self.child.id().expect("process running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmHWM");
        kb * 1024
    }

    /// The last lines of the process' log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}
