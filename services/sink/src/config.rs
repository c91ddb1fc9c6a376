//! Settings of the sink, read from the environment (see the configuration table in
//! docs/operations.md).

/// This module's text: `--help` lists the variables its doc comments document.
pub const SOURCE: &str = include_str!("config.rs");

use std::net::SocketAddr;
use std::time::Duration;

use csvbus_shared::config::{CommonConfig, ConfigError, Env};

#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub common: CommonConfig,
    /// `CSVBUS_SINK_ADDR`: where `/healthz`, `/readyz` and `/metrics` are served.
    pub addr: SocketAddr,
    /// `CSVBUS_SINK_GROUP`: the consumer group. Replicas with one group share the partitions;
    /// another group receives every row as well.
    pub group_id: String,
    /// `CSVBUS_SINK_ASSIGNMENT`: who decides which replica writes which partition: `group`
    /// (default; the brokers' consumer-group protocol) or `postgres` (advisory locks next to the
    /// positions, see [`crate::assign::claims`]).
    pub assignment: Assignment,
    /// `CSVBUS_SINK_CLAIM_INTERVAL_MS`: how often a replica looks at the live members and the
    /// partitions it should hold (`postgres` assignment).
    pub claim_interval: Duration,
    /// `CSVBUS_SINK_INSTANCE_ID`: librdkafka's `group.instance.id` (static membership, KIP-345):
    /// a replica restarted within the session timeout gets its partitions back at once, without a
    /// rebalance (`group` assignment only). Default: `<host name>-<port of CSVBUS_SINK_ADDR>`; none (dynamic membership)
    /// when that port is 0 or the variable is `none`. Must differ between replicas of a group.
    pub instance_id: Option<String>,
    /// `CSVBUS_SINK_WATCHDOG_MS`: a sink holding no partition this long while its group has
    /// work left rejoins the group.
    pub watchdog: Duration,
    /// `CSVBUS_SINK_BATCH_ROWS`: rows of one partition written in one transaction, at most.
    pub batch_rows: usize,
    /// `CSVBUS_SINK_LINGER_MS`: how long a partial batch waits for more rows.
    pub linger: Duration,
    /// `CSVBUS_SINK_QUIET_MS`: a partial batch is written once no record came for its
    /// partition for this long (the partition is caught up), before the linger is over.
    pub quiet: Duration,
    /// `CSVBUS_SINK_CONCURRENCY`: batch writes in flight at once (the pool has this many
    /// connections plus two).
    pub concurrency: usize,
    /// `CSVBUS_SHUTDOWN_GRACE_MS`: how long in-flight batches may take to commit at shutdown.
    pub shutdown_grace: Duration,
    /// `CSVBUS_SINK_PREFETCH_BYTES`: messages librdkafka may fetch ahead of the batches
    /// (`queued.max.messages.kbytes`). Memory is about this plus `batch_rows × (concurrency + 2)`
    /// records.
    pub prefetch_bytes: u64,
    /// `CSVBUS_SINK_BUFFER_BYTES`: message bytes held for batches, at most (past it the sink
    /// stops fetching), besides the record-count bound above.
    pub buffer_bytes: usize,
    /// `CSVBUS_SINK_COPY_FORMAT`: `binary` (a group goes as binary COPY when every column and
    /// value allows it, else as CSV: less Postgres CPU, more of the sink's) or `csv` (always CSV:
    /// the sink's CPU is the scarcer one).
    pub copy_format: CopyFormat,
    /// `CSVBUS_SINK_MAX_ATTEMPTS`: failures of a batch that are not outages before its errors
    /// are bisected as data errors (outages are waited out without limit).
    pub max_attempts: u32,
    /// `CSVBUS_SINK_STATEMENT_TIMEOUT_MS`: `statement_timeout` of batch transactions; a COPY
    /// that takes longer (a slow trigger) is bisected and its rows rejected.
    pub statement_timeout: Duration,
    /// `CSVBUS_SINK_MOVE_TIMEOUT_MS`: `statement_timeout` of the transaction that moves a
    /// complete atomic or replace import from staging into its target (one statement for all
    /// its rows).
    pub move_timeout: Duration,
    /// `CSVBUS_SINK_FINALIZE_INTERVAL_MS`: how often complete atomic and replace imports are
    /// looked for.
    pub finalize_interval: Duration,
}

impl SinkConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let addr = env.parse("CSVBUS_SINK_ADDR", SocketAddr::from(([127, 0, 0, 1], 8081)))?;
        Ok(Self {
            common: CommonConfig::from_env(env)?,
            addr,
            group_id: env.string("CSVBUS_SINK_GROUP", "csvbus-sink"),
            assignment: env.parse("CSVBUS_SINK_ASSIGNMENT", Assignment::Postgres)?,
            claim_interval: env.millis("CSVBUS_SINK_CLAIM_INTERVAL_MS", 1_000)?,
            instance_id: instance_id(env.raw("CSVBUS_SINK_INSTANCE_ID"), &addr),
            watchdog: env.millis("CSVBUS_SINK_WATCHDOG_MS", 30_000)?,
            batch_rows: env.parse("CSVBUS_SINK_BATCH_ROWS", 10_000)?,
            linger: env.millis("CSVBUS_SINK_LINGER_MS", 200)?,
            quiet: env.millis("CSVBUS_SINK_QUIET_MS", 20)?,
            concurrency: env.parse("CSVBUS_SINK_CONCURRENCY", 4)?,
            shutdown_grace: env.millis("CSVBUS_SHUTDOWN_GRACE_MS", 30_000)?,
            prefetch_bytes: env.parse("CSVBUS_SINK_PREFETCH_BYTES", 4 << 20)?,
            buffer_bytes: env.parse("CSVBUS_SINK_BUFFER_BYTES", 64 << 20)?,
            copy_format: env.parse("CSVBUS_SINK_COPY_FORMAT", CopyFormat::Binary)?,
            max_attempts: env.parse("CSVBUS_SINK_MAX_ATTEMPTS", 5)?,
            statement_timeout: env.millis("CSVBUS_SINK_STATEMENT_TIMEOUT_MS", 60_000)?,
            move_timeout: env.millis("CSVBUS_SINK_MOVE_TIMEOUT_MS", 3_600_000)?,
            finalize_interval: env.millis("CSVBUS_SINK_FINALIZE_INTERVAL_MS", 250)?,
        })
    }
}

/// Who assigns partitions to the replicas of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignment {
    /// Advisory locks in Postgres ([`crate::assign::claims`]).
    Postgres,
    /// The brokers' consumer-group protocol (subscribe, rebalances, static membership).
    Group,
}

impl std::str::FromStr for Assignment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "postgres" => Ok(Self::Postgres),
            "group" => Ok(Self::Group),
            other => Err(format!("`{other}` is neither `postgres` nor `group`")),
        }
    }
}

/// How the sink COPYs rows ([`SinkConfig::copy_format`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    Binary,
    Csv,
}

impl std::str::FromStr for CopyFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "binary" => Ok(Self::Binary),
            "csv" => Ok(Self::Csv),
            other => Err(format!("`{other}` is neither `binary` nor `csv`")),
        }
    }
}

/// The static member id: as given, none for `none`, else derived from the host and the port —
/// stable across restarts of one replica, distinct between replicas on one host (they cannot
/// share a port) and between containers (their host names differ).
fn instance_id(given: Option<&str>, addr: &SocketAddr) -> Option<String> {
    match given.map(str::trim) {
        Some("none") => None,
        Some(id) => Some(id.to_owned()),
        None if addr.port() == 0 => None,
        None => {
            let host = gethostname::gethostname().to_string_lossy().into_owned();
            Some(format!("{host}-{}", addr.port()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instance_id_is_derived_from_host_and_port_unless_given() {
        let addr: SocketAddr = "0.0.0.0:8081".parse().unwrap();
        let derived = instance_id(None, &addr).unwrap();
        assert!(derived.ends_with("-8081"), "{derived}");
        assert_eq!(
            instance_id(Some("sink-1"), &addr).as_deref(),
            Some("sink-1")
        );
        assert_eq!(instance_id(Some("none"), &addr), None);
        assert_eq!(instance_id(None, &"127.0.0.1:0".parse().unwrap()), None);
    }

    #[test]
    fn help_lists_every_variable_this_config_reads() {
        let args = ["--help".to_owned()];
        let sources = [SOURCE, csvbus_shared::config::SOURCE];
        let (help, _) = csvbus_shared::usage::answer("svc", "", &sources, &args).unwrap();
        let read: Vec<&str> = SOURCE
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|s| s.starts_with("CSVBUS_") && !s.contains(' '))
            .collect();
        assert!(read.len() > 5, "{read:?}");
        for var in read {
            assert!(help.contains(var), "{var} is read but not in --help");
        }
    }
}
