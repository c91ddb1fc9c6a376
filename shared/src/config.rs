//! Settings from the environment: defaults first, then `CSVBUS_*` / `DATABASE_URL` /
//! `KAFKA_BROKERS` variables. The environment is a value ([`Env`]) so tests inject their own.

/// This module's text: `--help` lists the variables its doc comments document.
pub const SOURCE: &str = include_str!("config.rs");

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A configuration value that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name}={value:?} is not valid: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
}

/// A snapshot of environment variables.
#[derive(Debug, Clone, Default)]
pub struct Env(HashMap<String, String>);

impl Env {
    /// The process environment.
    pub fn from_process() -> Self {
        Self(std::env::vars().collect())
    }

    /// An environment made of the given pairs only (tests).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// Sets one variable (tests and the all-in-one dev mode).
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.insert(name.into(), value.into());
    }

    /// Every variable, for handing the environment to a child process (tests).
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The raw value of `name`, if set and not empty.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// `name` parsed as `T`, or `default` when unset.
    pub fn parse<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.raw(name) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
                name: name.to_owned(),
                value: v.to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    /// A string setting with a default.
    pub fn string(&self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or(default).to_owned()
    }

    /// A duration given in milliseconds.
    pub fn millis(&self, name: &str, default_ms: u64) -> Result<Duration, ConfigError> {
        self.parse(name, default_ms).map(Duration::from_millis)
    }

    /// A comma-separated list (empty entries dropped).
    pub fn list(&self, name: &str, default: &[&str]) -> Vec<String> {
        match self.raw(name) {
            None => default.iter().map(|s| (*s).to_owned()).collect(),
            Some(v) => v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }
}

/// A value that must never be printed (passwords, API keys).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where Postgres and Kafka are, and the topic rows travel on: read by every binary.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    /// `DATABASE_URL`: Postgres holding csvbus' state and the target tables.
    pub database_url: Secret,
    /// `KAFKA_BROKERS`: bootstrap servers, comma-separated.
    pub kafka_brokers: String,
    /// `CSVBUS_TOPIC`: the topic rows are produced to and consumed from.
    pub topic: String,
    /// `CSVBUS_TOPIC_PARTITIONS`: partitions of the topic when csvbus creates it.
    pub topic_partitions: i32,
    /// `CSVBUS_TOPIC_CREATE`: create the topic at start if it is missing (`true`); with
    /// `false` the services wait for it to exist (topics managed by operators, or brokers
    /// without the CreateTopics API).
    pub topic_create: bool,
    /// `CSVBUS_LOG_FORMAT`: `text` or `json`.
    pub log_json: bool,
    /// `CSVBUS_ALLOWED_SCHEMAS`: schemas whose tables may be targets (comma-separated). The
    /// upload service refuses other tables; the sink dead-letters messages naming them.
    pub allowed_schemas: Vec<String>,
    /// `CSVBUS_SIGNING_KEY`: when set (the same on both services, at least 32 characters), the
    /// upload signs every row message (HMAC-SHA256) and the sink dead-letters rows without a
    /// valid signature: only who holds the key can write rows through the topic.
    pub signing_key: Option<Secret>,
    /// `CSVBUS_KAFKA_CLIENT_<PROPERTY>`: librdkafka settings of every Kafka client csvbus makes
    /// (the topic's admin client, the health probes, the producer, the consumer): TLS and SASL
    /// belong here (`CSVBUS_KAFKA_CLIENT_SECURITY_PROTOCOL=sasl_ssl`).
    pub kafka_client: Vec<(String, String)>,
    /// `CSVBUS_KAFKA_CONSUMER_<PROPERTY>` / `CSVBUS_KAFKA_PRODUCER_<PROPERTY>`: librdkafka
    /// settings for the sink's consumer / the upload's producer only, applied after csvbus' own
    /// and the client-wide ones (`CSVBUS_KAFKA_CONSUMER_FETCH_WAIT_MAX_MS=50` sets
    /// `fetch.wait.max.ms`).
    pub kafka_consumer: Vec<(String, String)>,
    pub kafka_producer: Vec<(String, String)>,
    /// Webhooks: `CSVBUS_WEBHOOK_*` (see [`crate::webhook::WebhookConfig`]).
    pub webhook: crate::webhook::WebhookConfig,
}

/// Prefix of the variables that set librdkafka properties of every Kafka client.
pub const KAFKA_CLIENT_PREFIX: &str = "CSVBUS_KAFKA_CLIENT_";
/// Prefix of the variables that set librdkafka properties of the sink's consumer.
pub const KAFKA_CONSUMER_PREFIX: &str = "CSVBUS_KAFKA_CONSUMER_";
/// Prefix of the variables that set librdkafka properties of the upload's producer.
pub const KAFKA_PRODUCER_PREFIX: &str = "CSVBUS_KAFKA_PRODUCER_";

/// librdkafka properties given as `<prefix><PROPERTY>` variables: the property is the rest of
/// the name, lower-cased, `_` as `.`.
fn passthrough(env: &Env, prefix: &str) -> Vec<(String, String)> {
    let mut props: Vec<(String, String)> = env
        .vars()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix(prefix)?;
            Some((name.to_ascii_lowercase().replace('_', "."), v.to_owned()))
        })
        .filter(|(k, _)| !k.is_empty())
        .collect();
    props.sort();
    props
}

/// `CSVBUS_SIGNING_KEY`: none when unset or empty; a short key is refused (it could be guessed).
fn signing_key(env: &Env) -> Result<Option<Secret>, ConfigError> {
    let key = env.string("CSVBUS_SIGNING_KEY", "");
    match key.len() {
        0 => Ok(None),
        n if n < 32 => Err(ConfigError::Invalid {
            name: "CSVBUS_SIGNING_KEY".into(),
            value: "***".into(),
            reason: format!("{n} characters; a signing key needs at least 32"),
        }),
        _ => Ok(Some(Secret::new(key))),
    }
}

impl CommonConfig {
    /// The signer of row messages, when a signing key is set.
    pub fn signer(&self) -> Option<crate::message::Signer> {
        self.signing_key
            .as_ref()
            .map(|k| crate::message::Signer::new(k.expose().as_bytes()))
    }
}

pub const DEFAULT_DATABASE_URL: &str = "postgres://csvbus:csvbus@127.0.0.1:5432/csvbus";
pub const DEFAULT_KAFKA_BROKERS: &str = "127.0.0.1:9092";
pub const DEFAULT_TOPIC: &str = "csvbus.rows";

impl CommonConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let log_format = env.string("CSVBUS_LOG_FORMAT", "text");
        if log_format != "text" && log_format != "json" {
            return Err(ConfigError::Invalid {
                name: "CSVBUS_LOG_FORMAT".into(),
                value: log_format,
                reason: "expected text or json".into(),
            });
        }
        Ok(Self {
            database_url: Secret::new(env.string("DATABASE_URL", DEFAULT_DATABASE_URL)),
            kafka_brokers: env.string("KAFKA_BROKERS", DEFAULT_KAFKA_BROKERS),
            topic: env.string("CSVBUS_TOPIC", DEFAULT_TOPIC),
            topic_partitions: env.parse("CSVBUS_TOPIC_PARTITIONS", 4)?,
            topic_create: env.parse("CSVBUS_TOPIC_CREATE", true)?,
            log_json: log_format == "json",
            allowed_schemas: env.list("CSVBUS_ALLOWED_SCHEMAS", &["public"]),
            signing_key: signing_key(env)?,
            kafka_client: passthrough(env, KAFKA_CLIENT_PREFIX),
            kafka_consumer: passthrough(env, KAFKA_CONSUMER_PREFIX),
            kafka_producer: passthrough(env, KAFKA_PRODUCER_PREFIX),
            webhook: crate::webhook::WebhookConfig::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_unset_and_values_override_them() {
        let env = Env::from_pairs([("CSVBUS_TOPIC", "t1"), ("CSVBUS_TOPIC_PARTITIONS", "")]);
        let c = CommonConfig::from_env(&env).unwrap();
        assert_eq!(c.topic, "t1");
        assert_eq!(c.topic_partitions, 4);
        assert_eq!(c.kafka_brokers, DEFAULT_KAFKA_BROKERS);
    }

    #[test]
    fn a_bad_number_names_the_variable() {
        let env = Env::from_pairs([("CSVBUS_TOPIC_PARTITIONS", "many")]);
        let err = CommonConfig::from_env(&env).unwrap_err().to_string();
        assert!(err.contains("CSVBUS_TOPIC_PARTITIONS"), "{err}");
    }

    #[test]
    fn librdkafka_settings_pass_through_by_prefix() {
        let env = Env::from_pairs([
            (format!("{KAFKA_CONSUMER_PREFIX}FETCH_WAIT_MAX_MS"), "50"),
            (format!("{KAFKA_PRODUCER_PREFIX}SECURITY_PROTOCOL"), "ssl"),
            (KAFKA_CONSUMER_PREFIX.to_owned(), "ignored"),
        ]);
        let c = CommonConfig::from_env(&env).unwrap();
        assert_eq!(
            c.kafka_consumer,
            [("fetch.wait.max.ms".into(), "50".into())]
        );
        assert_eq!(
            c.kafka_producer,
            [("security.protocol".into(), "ssl".into())]
        );
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}
