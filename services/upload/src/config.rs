//! Settings of the upload service, read from the environment (see the README's table).

use std::net::SocketAddr;
use std::time::Duration;

use csvbus_shared::config::{CommonConfig, ConfigError, Env, Secret};

/// Everything the upload service can be told.
#[derive(Debug, Clone)]
pub struct UploadConfig {
    pub common: CommonConfig,
    /// `CSVBUS_UPLOAD_ADDR`: where the HTTP API listens.
    pub addr: SocketAddr,
    /// `CSVBUS_ALLOWED_SCHEMAS`: schemas whose tables may be targets (comma-separated).
    pub allowed_schemas: Vec<String>,
    /// `CSVBUS_API_KEYS`: bearer tokens accepted on `/v1` (comma-separated); empty = no auth.
    pub api_keys: Vec<Secret>,
    /// `CSVBUS_MAX_BODY_BYTES`: largest request body, as sent (compressed) — 413 beyond.
    pub max_body_bytes: u64,
    /// `CSVBUS_MAX_UPLOADS`: uploads served at once; more are answered 429 + Retry-After.
    pub max_uploads: usize,
    /// `CSVBUS_INFLIGHT_BYTES_PER_UPLOAD`: message bytes of one upload awaiting broker
    /// acknowledgement; at the bound the upload stops reading its body.
    pub inflight_bytes_per_upload: u64,
    /// `CSVBUS_INFLIGHT_BYTES_TOTAL`: the same bound across all uploads.
    pub inflight_bytes_total: u64,
    /// `CSVBUS_MAX_RECORD_BYTES`: the longest CSV record; a longer one fails the upload (422),
    /// so an unterminated quote cannot make memory grow with the file.
    pub max_record_bytes: usize,
    /// `CSVBUS_BODY_IDLE_TIMEOUT_MS`: a client that sends nothing for this long is cut off and
    /// its import marked `aborted`.
    pub body_idle_timeout: Duration,
    /// `CSVBUS_REQUEST_TIMEOUT_MS`: whole-request limit (tower-http), uploads included.
    pub request_timeout: Duration,
    /// `CSVBUS_SHUTDOWN_GRACE_MS`: how long running uploads may go on after SIGTERM.
    pub shutdown_grace: Duration,
    /// `CSVBUS_PROGRESS_INTERVAL_MS`: how often an upload's live counters are saved.
    pub progress_interval: Duration,
    /// `CSVBUS_PRODUCER_LINGER_MS`: librdkafka `linger.ms`.
    pub producer_linger_ms: u64,
    /// `CSVBUS_PRODUCER_BATCH_BYTES`: librdkafka `batch.size`.
    pub producer_batch_bytes: u64,
    /// `CSVBUS_PRODUCER_COMPRESSION`: `lz4`, `zstd`, `snappy`, `gzip` or `none`.
    pub producer_compression: String,
    /// `CSVBUS_DELIVERY_TIMEOUT_MS`: librdkafka `message.timeout.ms`; a row not acknowledged by
    /// then fails the upload with 503.
    pub delivery_timeout: Duration,
    /// `CSVBUS_DB_POOL_SIZE`: Postgres connections.
    pub db_pool_size: u32,
}

impl UploadConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let compression = env.string("CSVBUS_PRODUCER_COMPRESSION", "lz4");
        if !["lz4", "zstd", "snappy", "gzip", "none"].contains(&compression.as_str()) {
            return Err(ConfigError::Invalid {
                name: "CSVBUS_PRODUCER_COMPRESSION".into(),
                value: compression,
                reason: "expected lz4, zstd, snappy, gzip or none".into(),
            });
        }
        Ok(Self {
            common: CommonConfig::from_env(env)?,
            addr: env.parse("CSVBUS_UPLOAD_ADDR", SocketAddr::from(([0, 0, 0, 0], 8080)))?,
            allowed_schemas: env.list("CSVBUS_ALLOWED_SCHEMAS", &["public"]),
            api_keys: env
                .list("CSVBUS_API_KEYS", &[])
                .into_iter()
                .map(Secret::new)
                .collect(),
            max_body_bytes: env.parse("CSVBUS_MAX_BODY_BYTES", 16 << 30)?,
            max_uploads: env.parse("CSVBUS_MAX_UPLOADS", 16)?,
            inflight_bytes_per_upload: env.parse("CSVBUS_INFLIGHT_BYTES_PER_UPLOAD", 4 << 20)?,
            inflight_bytes_total: env.parse("CSVBUS_INFLIGHT_BYTES_TOTAL", 32 << 20)?,
            max_record_bytes: env.parse("CSVBUS_MAX_RECORD_BYTES", 1 << 20)?,
            body_idle_timeout: env.millis("CSVBUS_BODY_IDLE_TIMEOUT_MS", 30_000)?,
            request_timeout: env.millis("CSVBUS_REQUEST_TIMEOUT_MS", 6 * 3_600_000)?,
            shutdown_grace: env.millis("CSVBUS_SHUTDOWN_GRACE_MS", 30_000)?,
            progress_interval: env.millis("CSVBUS_PROGRESS_INTERVAL_MS", 500)?,
            producer_linger_ms: env.parse("CSVBUS_PRODUCER_LINGER_MS", 5)?,
            producer_batch_bytes: env.parse("CSVBUS_PRODUCER_BATCH_BYTES", 1_000_000)?,
            producer_compression: compression,
            delivery_timeout: env.millis("CSVBUS_DELIVERY_TIMEOUT_MS", 30_000)?,
            db_pool_size: env.parse("CSVBUS_DB_POOL_SIZE", 8)?,
        })
    }
}
