//! A broker of a test's own: tansu with its SQLite storage, whose maintenance deletes records
//! older than a topic's `retention.ms` (`cleanup.policy=delete`) — the retention the shared
//! memory-storage broker does not have. The `tansu` that `scripts/stack.sh` installs is built
//! with this storage (`--features dynostore,libsql`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::process::{Child, Command};

/// A running tansu on a free port, stopped when dropped.
pub struct SqliteTansu {
    _child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
}

impl SqliteTansu {
    /// Starts it with maintenance every `maintenance`; waits until it takes connections.
    pub async fn start(maintenance: Duration) -> Self {
        let addr = crate::procs::free_addr();
        let dir = std::env::temp_dir().join(crate::unique("tansu-sqlite"));
        std::fs::create_dir_all(&dir).expect("tansu dir");
        let url = format!("tcp://{addr}");
        // The database path is relative to the working directory (tansu reads the URL's host).
        let storage = format!(
            "sqlite://tansu.db?maintenance_interval={}ms",
            maintenance.as_millis()
        );
        let log = std::fs::File::create(dir.join("tansu.log")).expect("tansu log");
        let child = Command::new(binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", &storage])
            .current_dir(&dir)
            .stdout(log.try_clone().expect("tansu log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("tansu in PATH or ~/.cargo/bin (scripts/stack.sh installs it)");
        crate::eventually(
            "tansu (sqlite) to listen",
            Duration::from_secs(30),
            || async { tokio::net::TcpStream::connect(addr).await.is_ok() },
        )
        .await;
        Self {
            _child: child,
            addr,
            dir,
        }
    }

    pub fn brokers(&self) -> String {
        self.addr.to_string()
    }
}

/// The `tansu` binary: `~/.cargo/bin/tansu` when there, else the one in PATH.
pub fn binary() -> String {
    let home = std::env::var("HOME").unwrap_or_default();
    let cargo_bin = format!("{home}/.cargo/bin/tansu");
    if std::path::Path::new(&cargo_bin).exists() {
        cargo_bin
    } else {
        "tansu".into()
    }
}
