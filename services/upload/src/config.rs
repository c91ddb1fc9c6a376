//! Settings of the upload service, read from the environment (see the configuration table in
//! docs/operations.md).

/// This module's text: `--help` lists the variables its doc comments document.
pub const SOURCE: &str = include_str!("config.rs");

use std::net::SocketAddr;
use std::time::Duration;

use csvbus_shared::config::{CommonConfig, ConfigError, Env, Secret};
use csvbus_shared::scope::Scope;

/// Everything the upload service can be told.
#[derive(Debug, Clone)]
pub struct UploadConfig {
    pub common: CommonConfig,
    /// `CSVBUS_UPLOAD_ADDR`: where the HTTP API listens (loopback unless told otherwise).
    pub addr: SocketAddr,
    /// `CSVBUS_API_KEYS`: bearer tokens accepted on `/v1` (comma-separated); empty = no auth,
    /// which is refused beyond loopback unless `allow_unauthenticated`. A key may be scoped
    /// to schemas and tables, `key@sales.*|public.orders`: it sees and writes only those.
    pub api_keys: Vec<ApiKey>,
    /// `CSVBUS_ALLOW_UNAUTHENTICATED`: listen beyond loopback without API keys, on purpose
    /// (behind a proxy that authenticates, say).
    pub allow_unauthenticated: bool,
    /// `CSVBUS_ALLOWED_HOSTS`: the `Host` names the service answers to (comma-separated; `*`:
    /// any). Default: `localhost`, `127.0.0.1`, `::1`, and the address it listens on.
    pub allowed_hosts: Vec<String>,
    /// `CSVBUS_MAX_BODY_BYTES`: largest request body, as sent (compressed) — 413 beyond.
    pub max_body_bytes: u64,
    /// `CSVBUS_MAX_UPLOADS`: uploads served at once; more are answered 429 + Retry-After.
    pub max_uploads: usize,
    /// `CSVBUS_MAX_UPLOADS_PER_CLIENT`: uploads one client (its API key, else its IP address)
    /// may have running at once (default: a quarter of `CSVBUS_MAX_UPLOADS`, at least 1); more
    /// are answered 429 while other clients go on.
    pub max_uploads_per_client: usize,
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
    /// `CSVBUS_REQUEST_TIMEOUT_MS`: whole-request limit, uploads included (408 `request_timeout`).
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
    /// `CSVBUS_MAX_MESSAGE_BYTES`: the largest message (value, key, headers) sent to the broker
    /// (librdkafka `message.max.bytes`; keep it within the broker's limit). A row whose message
    /// would be larger is rejected with its line.
    pub max_message_bytes: usize,
    /// `CSVBUS_MESSAGE_ROWS`: the most rows of one import bound for one partition gathered into
    /// one message (a pack, docs/api.md: keyless rows, upsert/skip rows without `key=`; at most
    /// `CSVBUS_MESSAGE_PACK_BYTES` of them). `1`: a message per row.
    pub message_rows: u32,
    /// `CSVBUS_MESSAGE_PACK_BYTES`: the most bytes of rows gathered into one message (within
    /// `CSVBUS_MAX_MESSAGE_BYTES`).
    pub message_pack_bytes: usize,
    /// `CSVBUS_MAX_DECOMPRESSED_BYTES`: the most bytes a body may decompress to (413 beyond).
    pub max_decompressed_bytes: u64,
    /// `CSVBUS_MAX_ROWS_PER_IMPORT`: the most rows one upload may have (413 beyond).
    pub max_rows_per_import: u64,
    /// `CSVBUS_MAX_DECOMPRESSION_RATIO`: the most bytes a gzip or zstd body may decompress to
    /// per byte sent, past the first 16 MiB (413 beyond).
    pub max_decompression_ratio: u64,
    /// `CSVBUS_MAX_REJECTED_LIMIT`: the largest `max_rejected` a client may ask for (400 beyond).
    pub max_rejected_limit: u64,
    /// `CSVBUS_BODY_MIN_BYTES_PER_SEC`: a client sending slower than this, measured over
    /// `CSVBUS_BODY_IDLE_TIMEOUT_MS` of waiting for it, is cut off (408, import `aborted`).
    pub body_min_bytes_per_sec: u64,
    /// `CSVBUS_ZSTD_WINDOW_LOG_MAX`: the largest zstd window accepted, as a power of two.
    pub zstd_window_log_max: u32,
    /// `CSVBUS_ORPHAN_AFTER_MS`: an import `receiving` whose upload saved no progress for this
    /// long (its service died) is marked `aborted` by any upload service instance.
    pub orphan_after: Duration,
    /// `CSVBUS_HEADER_READ_TIMEOUT_MS`: a connection that has not sent its request headers
    /// within this time of being accepted (or of its previous request) is closed.
    pub header_read_timeout: Duration,
    /// `CSVBUS_RETENTION_DAYS`: ended imports (with their rejected rows) and dead letters
    /// older than this are deleted by the upload service's janitor; 0 keeps them forever.
    pub retention: Option<Duration>,
    /// `CSVBUS_MAX_CONNECTIONS`: open connections at most; beyond, new ones wait in the
    /// kernel's backlog until one closes (file descriptors stay bounded).
    pub max_connections: usize,
    /// `CSVBUS_MAX_WAITERS`: long-polls (`?wait=`) served at once; more are answered 429.
    pub max_waiters: usize,
    /// `CSVBUS_IDEMPOTENCY_TTL_SECS`: how long an `Idempotency-Key` names its import (a retry
    /// within it resumes or replays; after it, the key starts a new import). Default 24 h.
    pub idempotency_ttl: Duration,
}

/// One of `CSVBUS_API_KEYS`: the token and what it reaches.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub secret: Secret,
    pub scope: Scope,
}

impl ApiKey {
    /// `token` (every table) or `token@scope` ([`Scope::parse`]).
    fn parse(entry: &str) -> Result<Self, ConfigError> {
        let (token, scope) = match entry.split_once('@') {
            None => (entry, Scope::all()),
            Some((token, scope)) => {
                let scope = Scope::parse(scope).map_err(|reason| ConfigError::Invalid {
                    name: "CSVBUS_API_KEYS".into(),
                    value: "(a key's scope; keys are not shown)".into(),
                    reason,
                })?;
                (token, scope)
            }
        };
        Ok(Self {
            secret: Secret::new(token),
            scope,
        })
    }
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
        Self {
            common: CommonConfig::from_env(env)?,
            addr: env.parse(
                "CSVBUS_UPLOAD_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 8080)),
            )?,
            api_keys: env
                .list("CSVBUS_API_KEYS", &[])
                .into_iter()
                .map(|k| ApiKey::parse(&k))
                .collect::<Result<_, _>>()?,
            allow_unauthenticated: env.parse("CSVBUS_ALLOW_UNAUTHENTICATED", false)?,
            allowed_hosts: env
                .list("CSVBUS_ALLOWED_HOSTS", &["localhost", "127.0.0.1", "::1"])
                .into_iter()
                .map(|h| host_name(&h))
                .collect(),
            max_body_bytes: env.parse("CSVBUS_MAX_BODY_BYTES", 16 << 30)?,
            max_uploads: env.parse("CSVBUS_MAX_UPLOADS", 16)?,
            max_uploads_per_client: env.parse("CSVBUS_MAX_UPLOADS_PER_CLIENT", 0)?,
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
            max_message_bytes: env.parse("CSVBUS_MAX_MESSAGE_BYTES", 1_000_000)?,
            message_rows: env.parse("CSVBUS_MESSAGE_ROWS", 100)?,
            message_pack_bytes: env.parse("CSVBUS_MESSAGE_PACK_BYTES", 64 << 10)?,
            max_decompressed_bytes: env.parse("CSVBUS_MAX_DECOMPRESSED_BYTES", 16 << 30)?,
            max_rows_per_import: env.parse("CSVBUS_MAX_ROWS_PER_IMPORT", 100_000_000)?,
            max_decompression_ratio: env.parse("CSVBUS_MAX_DECOMPRESSION_RATIO", 100)?,
            max_rejected_limit: env.parse("CSVBUS_MAX_REJECTED_LIMIT", 100_000)?,
            body_min_bytes_per_sec: env.parse("CSVBUS_BODY_MIN_BYTES_PER_SEC", 1024)?,
            zstd_window_log_max: env.parse("CSVBUS_ZSTD_WINDOW_LOG_MAX", 23)?,
            orphan_after: env.millis("CSVBUS_ORPHAN_AFTER_MS", 60_000)?,
            header_read_timeout: env.millis("CSVBUS_HEADER_READ_TIMEOUT_MS", 10_000)?,
            max_connections: env.parse("CSVBUS_MAX_CONNECTIONS", 1024)?,
            retention: match env.parse::<u64>("CSVBUS_RETENTION_DAYS", 30)? {
                0 => None,
                days => Some(Duration::from_secs(days * 86_400)),
            },
            max_waiters: env.parse("CSVBUS_MAX_WAITERS", 256)?,
            idempotency_ttl: Duration::from_secs(
                env.parse("CSVBUS_IDEMPOTENCY_TTL_SECS", 24 * 3600)?,
            ),
        }
        .checked()
        .map(Self::with_client_share)
    }

    /// `CSVBUS_MAX_UPLOADS_PER_CLIENT` unset (0): a quarter of the upload slots, at least one.
    fn with_client_share(mut self) -> Self {
        if self.max_uploads_per_client == 0 {
            self.max_uploads_per_client = (self.max_uploads / 4).max(1);
        }
        self
    }

    /// Whether the service answers to a request's `Host` (see `http::edge`).
    pub fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host);
        self.allowed_hosts.iter().any(|h| h == "*" || *h == name)
            || (!self.addr.ip().is_unspecified() && name == self.addr.ip().to_string())
    }

    /// Refuses settings that cannot work together.
    fn checked(self) -> Result<Self, ConfigError> {
        let invalid = |name: &str, value: String, reason: String| {
            Err(ConfigError::Invalid {
                name: name.into(),
                value,
                reason,
            })
        };
        // Closed by default: beyond loopback, every client needs a key unless told otherwise.
        if !self.addr.ip().is_loopback() && self.api_keys.is_empty() && !self.allow_unauthenticated
        {
            return invalid(
                "CSVBUS_UPLOAD_ADDR",
                self.addr.to_string(),
                "listening beyond loopback needs CSVBUS_API_KEYS (or \
                 CSVBUS_ALLOW_UNAUTHENTICATED=true, on purpose)"
                    .into(),
            );
        }
        // A message must fit the in-flight budgets, or its send waits forever.
        let message = self.max_message_bytes as u64 + MESSAGE_OVERHEAD as u64;
        for (name, budget) in [
            (
                "CSVBUS_INFLIGHT_BYTES_PER_UPLOAD",
                self.inflight_bytes_per_upload,
            ),
            ("CSVBUS_INFLIGHT_BYTES_TOTAL", self.inflight_bytes_total),
        ] {
            if budget < message {
                let reason = format!(
                    "must be at least CSVBUS_MAX_MESSAGE_BYTES + {} = {message}",
                    MESSAGE_OVERHEAD
                );
                return invalid(name, budget.to_string(), reason);
            }
        }
        if self.max_message_bytes < 1024 || self.max_message_bytes > 1_000_000_000 {
            return invalid(
                "CSVBUS_MAX_MESSAGE_BYTES",
                self.max_message_bytes.to_string(),
                "must be 1024 to 1000000000".into(),
            );
        }
        if self.message_rows == 0 || self.message_rows > 10_000 {
            let reason = "must be 1 to 10000".to_owned();
            return invalid("CSVBUS_MESSAGE_ROWS", self.message_rows.to_string(), reason);
        }
        if self.max_uploads == 0 || self.db_pool_size < 2 {
            let reason = "CSVBUS_MAX_UPLOADS must be at least 1 and CSVBUS_DB_POOL_SIZE at least 2"
                .to_owned();
            return invalid("CSVBUS_MAX_UPLOADS", self.max_uploads.to_string(), reason);
        }
        if self.orphan_after < self.progress_interval * 4 {
            let reason = "must be at least 4 × CSVBUS_PROGRESS_INTERVAL_MS".to_owned();
            return invalid(
                "CSVBUS_ORPHAN_AFTER_MS",
                self.orphan_after.as_millis().to_string(),
                reason,
            );
        }
        if !(10..=31).contains(&self.zstd_window_log_max) {
            return invalid(
                "CSVBUS_ZSTD_WINDOW_LOG_MAX",
                self.zstd_window_log_max.to_string(),
                "must be 10 to 31".into(),
            );
        }
        Ok(self)
    }
}

/// Memory a message in flight takes beyond its key and value: librdkafka's message and
/// headers, the delivery future and its slot here. Counted against the in-flight bounds so
/// that they bound memory, not just payload bytes.
pub const MESSAGE_OVERHEAD: usize = 512;

/// The host name of a `Host` header value, without its port or IPv6 brackets, lower-cased.
pub fn host_name(host: &str) -> String {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        // A bare IPv6 address (in the settings) has more than one colon and no port.
        None if host.matches(':').count() > 1 => host,
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        },
    };
    name.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_lose_their_port_and_brackets() {
        assert_eq!(host_name("LocalHost:8080"), "localhost");
        assert_eq!(host_name("[::1]:8080"), "::1");
        assert_eq!(host_name("::1"), "::1");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_name("csvbus.internal"), "csvbus.internal");
    }

    #[test]
    fn settings_that_cannot_work_together_are_refused() {
        assert!(UploadConfig::from_env(&Env::default()).is_ok());
        let env = Env::from_pairs([("CSVBUS_INFLIGHT_BYTES_PER_UPLOAD", "100000")]);
        let err = UploadConfig::from_env(&env).unwrap_err().to_string();
        assert!(err.contains("CSVBUS_INFLIGHT_BYTES_PER_UPLOAD"), "{err}");
        let env = Env::from_pairs([("CSVBUS_MAX_MESSAGE_BYTES", "100000000")]);
        let err = UploadConfig::from_env(&env).unwrap_err().to_string();
        assert!(err.contains("CSVBUS_INFLIGHT_BYTES_PER_UPLOAD"), "{err}");
    }

    #[test]
    fn closed_by_default_loopback_or_keys_and_loopback_hosts() {
        let c = UploadConfig::from_env(&Env::default()).unwrap();
        assert!(c.addr.ip().is_loopback(), "{}", c.addr);
        let open = [("CSVBUS_UPLOAD_ADDR", "0.0.0.0:8080")];
        let err = UploadConfig::from_env(&Env::from_pairs(open)).unwrap_err();
        assert!(err.to_string().contains("CSVBUS_API_KEYS"), "{err}");
        let keyed = [open[0], ("CSVBUS_API_KEYS", "k")];
        assert!(UploadConfig::from_env(&Env::from_pairs(keyed)).is_ok());
        let allowed = [open[0], ("CSVBUS_ALLOW_UNAUTHENTICATED", "true")];
        assert!(UploadConfig::from_env(&Env::from_pairs(allowed)).is_ok());

        for host in [
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "LOCALHOST",
        ] {
            assert!(c.host_allowed(host), "{host}");
        }
        assert!(!c.host_allowed("evil.example:8080"));
        let named = [
            ("CSVBUS_UPLOAD_ADDR", "10.0.0.5:8080"),
            ("CSVBUS_API_KEYS", "k"),
            ("CSVBUS_ALLOWED_HOSTS", "csvbus.internal"),
        ];
        let c = UploadConfig::from_env(&Env::from_pairs(named)).unwrap();
        assert!(c.host_allowed("csvbus.internal:8080") && c.host_allowed("10.0.0.5:8080"));
        assert!(
            !c.host_allowed("localhost:8080"),
            "the list replaces the default"
        );
        let any = [("CSVBUS_ALLOWED_HOSTS", "*")];
        assert!(UploadConfig::from_env(&Env::from_pairs(any))
            .unwrap()
            .host_allowed("a.b"));
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
