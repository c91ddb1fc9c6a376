//! One delivery attempt: the event's JSON body, signed, posted to the import's endpoint
//! without following redirects (a redirect could lead anywhere).

use std::time::Duration;

use csvbus_shared::imports::deliveries::Due;
use csvbus_shared::imports::ImportRecord;
use csvbus_shared::webhook::{self, WebhookConfig};
use serde_json::json;

/// Posts deliveries, signed with the configured secret.
#[derive(Clone)]
pub(super) struct Sender {
    client: reqwest::Client,
    secret: Vec<u8>,
    public_url: Option<String>,
}

/// Why an attempt got no 2xx.
pub(super) struct Failed {
    pub status: Option<i32>,
    pub error: String,
}

impl Sender {
    /// `None` without a secret.
    pub fn new(config: &WebhookConfig) -> Option<Self> {
        let secret = config.secret.as_ref()?.expose().as_bytes().to_vec();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("csvbus/", env!("CARGO_PKG_VERSION")))
            .build()
            .ok()?;
        Some(Self {
            client,
            secret,
            public_url: config.public_url.clone(),
        })
    }

    /// The body of `due`: the event, and the import as `GET /v1/imports/{id}` shows it.
    fn body(&self, due: &Due, import: &ImportRecord) -> Vec<u8> {
        let mut record = serde_json::to_value(import).unwrap_or_default();
        if let Some(r) = record.as_object_mut() {
            r.remove("deliveries");
        }
        let path = format!("/v1/imports/{}", import.id);
        let status_url = match &self.public_url {
            Some(base) => format!("{base}{path}"),
            None => path,
        };
        let body = json!({
            "id": due.id,
            "type": format!("import.{}", due.event),
            "created_at": due.created_at,
            "data": { "import": record, "status_url": status_url },
        });
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// Posts `due`; the receiver's status when it is 2xx.
    pub async fn send(&self, due: &Due, import: &ImportRecord) -> Result<i32, Failed> {
        let body = self.body(due, import);
        let signature = webhook::signature(&self.secret, chrono::Utc::now().timestamp(), &body);
        let r = self
            .client
            .post(&due.url)
            .header("content-type", "application/json")
            .header(webhook::HEADER_SIGNATURE, signature)
            .header(webhook::HEADER_DELIVERY, due.id.to_string())
            .header(webhook::HEADER_EVENT, format!("import.{}", due.event))
            .body(body)
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => Ok(i32::from(r.status().as_u16())),
            Ok(r) => Err(Failed {
                status: Some(i32::from(r.status().as_u16())),
                error: format!("the receiver answered {}", r.status()),
            }),
            // Without the URL: it may hold a token.
            Err(e) => Err(Failed {
                status: None,
                error: e.without_url().to_string(),
            }),
        }
    }
}
