//! The upload service's HTTP API as the CLI uses it: status, long-poll, rejected rows, and the
//! service's JSON errors.

use std::time::Duration;

use csvbus_shared::imports::list::ImportPage;
use csvbus_shared::imports::{ImportRecord, RejectedPage, RejectedRow};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Why a request did not give what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The service answered with an error body (`{error, message, line?}`).
    #[error("{status} {code}: {message}{}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Api {
        status: u16,
        code: String,
        message: String,
        line: Option<u64>,
        /// The import the error is about, when the service names one.
        import_id: Option<uuid::Uuid>,
        retry_after: Option<Duration>,
    },
    #[error("cannot reach {server}: {source}")]
    Connect {
        server: String,
        source: reqwest::Error,
    },
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("reading the input: {0}")]
    Input(#[from] std::io::Error),
    /// A success whose body is not what this version of the CLI knows.
    #[error("unexpected answer from the service: {0}")]
    Decode(#[from] serde_json::Error),
}

impl ClientError {
    /// Worth trying again later: overload, unavailability, the same import still ending
    /// (409 `import_running`), or a connection lost. Uploads carry an Idempotency-Key, so a
    /// retry resumes the import instead of writing its rows again.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Api { status, code, .. } => {
                *status == 429 || *status == 503 || (*status == 409 && code == "import_running")
            }
            Self::Connect { .. } | Self::Http(_) => true,
            Self::Input(_) | Self::Decode(_) => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: String,
    message: String,
    line: Option<u64>,
    import_id: Option<uuid::Uuid>,
}

/// A client of one upload service.
#[derive(Clone)]
pub struct Client {
    pub server: String,
    api_key: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(server: &str, api_key: Option<String>) -> Self {
        Self {
            server: server.trim_end_matches('/').to_owned(),
            api_key,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, self.url(path));
        match &self.api_key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    /// Sends `req` and returns its JSON body as `T`, or the service's error.
    pub async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                ClientError::Connect {
                    server: self.server.clone(),
                    source: e,
                }
            } else {
                ClientError::Http(e)
            }
        })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .map(Duration::from_secs);
        let text = resp.text().await?;
        if status.is_success() {
            return Ok(serde_json::from_str(&text)?);
        }
        let body: Option<ErrorBody> = serde_json::from_str(&text).ok();
        Err(ClientError::Api {
            status: status.as_u16(),
            code: body
                .as_ref()
                .map_or("http_error".into(), |b| b.error.clone()),
            message: body.as_ref().map_or(text, |b| b.message.clone()),
            line: body.as_ref().and_then(|b| b.line),
            import_id: body.and_then(|b| b.import_id),
            retry_after,
        })
    }

    /// The import's record now.
    pub async fn status(&self, id: &str) -> Result<ImportRecord, ClientError> {
        self.send(self.request(reqwest::Method::GET, &format!("/v1/imports/{id}")))
            .await
    }

    /// The import an Idempotency-Key names now, if any.
    pub async fn by_key(&self, key: &str) -> Result<Option<ImportRecord>, ClientError> {
        let q = form_urlencoded::Serializer::new(String::new())
            .append_pair("idempotency_key", key)
            .append_pair("limit", "1")
            .finish();
        let page: ImportPage = self
            .send(self.request(reqwest::Method::GET, &format!("/v1/imports?{q}")))
            .await?;
        Ok(page.imports.into_iter().next())
    }

    /// Follows the import until it will change no more ([`ImportRecord::is_final`]), calling
    /// `progress` with each record seen on the way.
    pub async fn wait(
        &self,
        id: &str,
        mut progress: impl FnMut(&ImportRecord),
    ) -> Result<ImportRecord, ClientError> {
        loop {
            let rec: ImportRecord = self
                .send(self.request(reqwest::Method::GET, &format!("/v1/imports/{id}?wait=10s")))
                .await?;
            progress(&rec);
            if rec.is_final() {
                return Ok(rec);
            }
        }
    }

    /// Up to `limit` rejected rows after row id `after`, and where the next page starts.
    pub async fn rejected(
        &self,
        id: &str,
        after: i64,
        limit: usize,
    ) -> Result<RejectedPage, ClientError> {
        self.send(self.request(
            reqwest::Method::GET,
            &format!("/v1/imports/{id}/rejected?after={after}&limit={limit}"),
        ))
        .await
    }
}

/// A rejected row as one line for people.
pub fn describe_rejected(row: &RejectedRow) -> String {
    format!("line {}: {} ({})", row.line, row.reason, row.stage)
}
