//! Webhooks: the operator's settings, the allowlist an import's own `notify=` URL must match,
//! and the signature every delivery carries (the shape Stripe and GitHub use: an HMAC-SHA256 of
//! `<timestamp>.<body>`, sent as `Csvbus-Signature: t=<timestamp>,v1=<hex>`).

/// This module's text: `--help` lists the variables its doc comments document.
pub const SOURCE: &str = include_str!("webhook.rs");

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use url::Url;

use crate::config::{ConfigError, Env, Secret};

/// The header with the delivery's signature.
pub const HEADER_SIGNATURE: &str = "csvbus-signature";
/// The header with the delivery's id: the same on every retry of one delivery (receivers
/// deduplicate on it).
pub const HEADER_DELIVERY: &str = "csvbus-delivery";
/// The header with the event, `import.completed`, `import.failed` or `import.aborted`.
pub const HEADER_EVENT: &str = "csvbus-event";

/// Where and how imports' ends are announced (read by both services: the upload fixes an
/// import's endpoint when it creates it, the sink delivers).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// `CSVBUS_WEBHOOK_URL`: the endpoint told of every import's end (none by default).
    pub url: Option<Url>,
    /// `CSVBUS_WEBHOOK_SECRET`: the key deliveries are signed with, at least 32 characters;
    /// required when `CSVBUS_WEBHOOK_URL` or `CSVBUS_WEBHOOK_ALLOW` is set.
    pub secret: Option<Secret>,
    /// `CSVBUS_WEBHOOK_ALLOW`: URL prefixes (comma-separated) an upload's own `notify=` may
    /// name; without it `notify=` is refused. Scheme, host and port must be equal, the path
    /// must start with the prefix's path.
    pub allow: Vec<Url>,
    /// `CSVBUS_WEBHOOK_TIMEOUT_MS`: how long one delivery attempt may take.
    pub timeout: Duration,
    /// `CSVBUS_WEBHOOK_BACKOFF_MS`: the wait after a first failed attempt; doubled after each
    /// further one, up to `CSVBUS_WEBHOOK_BACKOFF_MAX_MS`.
    pub backoff: Duration,
    /// `CSVBUS_WEBHOOK_BACKOFF_MAX_MS`: the longest wait between two attempts.
    pub backoff_max: Duration,
    /// `CSVBUS_WEBHOOK_RETRY_FOR_MS`: how long after the import's end a delivery is retried
    /// before it is recorded as failed.
    pub retry_for: Duration,
    /// `CSVBUS_WEBHOOK_POLL_MS`: how often the sink looks for deliveries due.
    pub poll: Duration,
    /// `CSVBUS_WEBHOOK_SENDERS`: deliveries a sink sends at once (each holds a connection of
    /// its own pool while it waits for the receiver).
    pub senders: usize,
    /// `CSVBUS_PUBLIC_URL`: the upload service's address as clients reach it, for the
    /// `status_url` of deliveries (a path only when unset).
    pub public_url: Option<String>,
}

fn url(name: &str, value: &str) -> Result<Url, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        name: name.into(),
        value: value.into(),
        reason,
    };
    let u = Url::parse(value).map_err(|e| invalid(e.to_string()))?;
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        return Err(invalid("expected an http(s) URL with a host".into()));
    }
    Ok(u)
}

impl WebhookConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let target = env
            .raw("CSVBUS_WEBHOOK_URL")
            .map(|v| url("CSVBUS_WEBHOOK_URL", v))
            .transpose()?;
        let allow = env
            .list("CSVBUS_WEBHOOK_ALLOW", &[])
            .iter()
            .map(|v| url("CSVBUS_WEBHOOK_ALLOW", v))
            .collect::<Result<Vec<_>, _>>()?;
        let secret = env.raw("CSVBUS_WEBHOOK_SECRET").map(Secret::new);
        let needed = target.is_some() || !allow.is_empty();
        match &secret {
            Some(s) if s.expose().len() < 32 => {
                return Err(ConfigError::Invalid {
                    name: "CSVBUS_WEBHOOK_SECRET".into(),
                    value: "***".into(),
                    reason: "a webhook secret needs at least 32 characters".into(),
                })
            }
            None if needed => {
                return Err(ConfigError::Invalid {
                    name: "CSVBUS_WEBHOOK_SECRET".into(),
                    value: String::new(),
                    reason: "deliveries are always signed: set a secret with the webhook URL \
                             or allowlist"
                        .into(),
                })
            }
            _ => {}
        }
        Ok(Self {
            url: target,
            secret,
            allow,
            timeout: env.millis("CSVBUS_WEBHOOK_TIMEOUT_MS", 10_000)?,
            backoff: env.millis("CSVBUS_WEBHOOK_BACKOFF_MS", 1_000)?,
            backoff_max: env.millis("CSVBUS_WEBHOOK_BACKOFF_MAX_MS", 600_000)?,
            retry_for: env.millis("CSVBUS_WEBHOOK_RETRY_FOR_MS", 86_400_000)?,
            poll: env.millis("CSVBUS_WEBHOOK_POLL_MS", 1_000)?,
            senders: env.parse("CSVBUS_WEBHOOK_SENDERS", 2)?,
            public_url: env
                .raw("CSVBUS_PUBLIC_URL")
                .map(|u| u.trim_end_matches('/').to_owned()),
        })
    }

    /// The endpoint of a new import: its own `notify=` when the allowlist admits it, else the
    /// operator's. `Err` names why a `notify=` is refused.
    pub fn endpoint(&self, notify: Option<&str>) -> Result<Option<Url>, String> {
        let Some(asked) = notify else {
            return Ok(self.url.clone());
        };
        let u = Url::parse(asked).map_err(|e| format!("notify= is not a URL: {e}"))?;
        if self.allow.iter().any(|a| allowed_by(a, &u)) {
            Ok(Some(u))
        } else if self.allow.is_empty() {
            Err("notify= is not enabled on this service (CSVBUS_WEBHOOK_ALLOW is empty)".into())
        } else {
            Err("notify= names a URL outside the service's allowlist (CSVBUS_WEBHOOK_ALLOW)".into())
        }
    }

    /// The wait before the attempt after `attempts` failed ones.
    pub fn backoff_after(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1));
        self.backoff.saturating_mul(factor).min(self.backoff_max)
    }
}

/// `u` is under `prefix`: same scheme, host and port, and the path starts with the prefix's at
/// a segment boundary; no user info (a URL cannot smuggle another host in).
fn allowed_by(prefix: &Url, u: &Url) -> bool {
    let (p, path) = (prefix.path(), u.path());
    let under = path == p
        || (path.starts_with(p) && (p.ends_with('/') || path[p.len()..].starts_with('/')));
    u.scheme() == prefix.scheme()
        && u.host() == prefix.host()
        && u.port_or_known_default() == prefix.port_or_known_default()
        && u.username().is_empty()
        && u.password().is_none()
        && under
}

/// The `Csvbus-Signature` header of `body` sent at `timestamp` (Unix seconds):
/// `t=<timestamp>,v1=<hex of HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    #[allow(clippy::expect_used)] // HMAC takes keys of any length
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<WebhookConfig, ConfigError> {
        WebhookConfig::from_env(&Env::from_pairs(pairs.iter().copied()))
    }
    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_url_without_a_secret_is_refused() {
        let e = config(&[("CSVBUS_WEBHOOK_URL", "http://h/x")]).unwrap_err();
        assert!(e.to_string().contains("CSVBUS_WEBHOOK_SECRET"), "{e}");
        let short = [
            ("CSVBUS_WEBHOOK_URL", "http://h/x"),
            ("CSVBUS_WEBHOOK_SECRET", "short"),
        ];
        assert!(config(&short).is_err());
    }

    #[test]
    fn notify_must_be_under_an_allowed_prefix() {
        let c = config(&[
            ("CSVBUS_WEBHOOK_SECRET", SECRET),
            (
                "CSVBUS_WEBHOOK_ALLOW",
                "https://hooks.example.com/csvbus, http://127.0.0.1:9000/",
            ),
        ])
        .unwrap();
        for ok in [
            "https://hooks.example.com/csvbus",
            "https://hooks.example.com/csvbus/team-a",
            "https://hooks.example.com:443/csvbus/x",
            "http://127.0.0.1:9000/anything",
        ] {
            assert!(c.endpoint(Some(ok)).unwrap().is_some(), "{ok}");
        }
        for refused in [
            "https://hooks.example.com/csvbusX",
            "https://hooks.example.com/other",
            "http://hooks.example.com/csvbus",
            "https://hooks.example.com.evil.net/csvbus",
            "https://user@hooks.example.com/csvbus",
            "http://127.0.0.1:9001/",
            "http://169.254.169.254/latest/meta-data",
            "not a url",
        ] {
            assert!(c.endpoint(Some(refused)).is_err(), "{refused}");
        }
        assert_eq!(c.endpoint(None).unwrap(), None);
    }

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let c = config(&[
            ("CSVBUS_WEBHOOK_BACKOFF_MS", "100"),
            ("CSVBUS_WEBHOOK_BACKOFF_MAX_MS", "350"),
        ])
        .unwrap();
        let waits: Vec<u128> = (1..=4).map(|n| c.backoff_after(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 350, 350]);
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac key
        let s = signature(b"key", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(
            s,
            "t=1700000000,v1=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03"
        );
    }
}
