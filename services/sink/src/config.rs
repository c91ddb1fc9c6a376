//! Settings of the sink, read from the environment (see the README's table).

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
    /// `CSVBUS_SINK_BATCH_ROWS`: rows of one partition written in one transaction, at most.
    pub batch_rows: usize,
    /// `CSVBUS_SINK_LINGER_MS`: how long a partial batch waits for more rows.
    pub linger: Duration,
    /// `CSVBUS_SINK_CONCURRENCY`: batch writes in flight at once (the pool has this many
    /// connections plus two).
    pub concurrency: usize,
    /// `CSVBUS_SHUTDOWN_GRACE_MS`: how long in-flight batches may take to commit at shutdown.
    pub shutdown_grace: Duration,
    /// `CSVBUS_SINK_PREFETCH_BYTES`: messages librdkafka may fetch ahead of the batches
    /// (`queued.max.messages.kbytes`). Memory is about this plus `batch_rows × (concurrency + 2)`
    /// records.
    pub prefetch_bytes: u64,
}

impl SinkConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            common: CommonConfig::from_env(env)?,
            addr: env.parse("CSVBUS_SINK_ADDR", SocketAddr::from(([0, 0, 0, 0], 8081)))?,
            group_id: env.string("CSVBUS_SINK_GROUP", "csvbus-sink"),
            batch_rows: env.parse("CSVBUS_SINK_BATCH_ROWS", 5_000)?,
            linger: env.millis("CSVBUS_SINK_LINGER_MS", 200)?,
            concurrency: env.parse("CSVBUS_SINK_CONCURRENCY", 4)?,
            shutdown_grace: env.millis("CSVBUS_SHUTDOWN_GRACE_MS", 30_000)?,
            prefetch_bytes: env.parse("CSVBUS_SINK_PREFETCH_BYTES", 8 << 20)?,
        })
    }
}
