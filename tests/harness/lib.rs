//! Test harness: real Postgres, a real Kafka-API broker, services spawned in-process.
//!
//! Every test gets a fresh database (created from `CSVBUS_TEST_ADMIN_URL`), a random topic and
//! random consumer groups, so tests run in parallel without seeing each other. Services run on
//! port 0 and are stopped by cancelling their `CancellationToken`; [`Service::stop`] asserts they
//! returned `Ok`. The broker is the one `scripts/stack.sh` starts (tansu on 127.0.0.1:9092) or
//! `KAFKA_BROKERS`; librdkafka's mock cluster is used only by fault-injection tests.
//!
//! Layout:
//! - this file: databases, topics, environments, spawning services;
//! - [`kafka`]: reading a topic back whole;
//! - [`nums`]: the `nums` table whose contents can be checked whole;
//! - [`procs`]: the services as separate processes (release binaries) for kill tests.

pub mod kafka;
pub mod nums;
pub mod procs;
pub mod tansu;

use std::net::SocketAddr;
use std::time::Duration;

use csvbus_shared::config::Env;
use sqlx::{Connection, PgPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The broker tests use.
pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

fn admin_url() -> String {
    std::env::var("CSVBUS_TEST_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://csvbus:csvbus@127.0.0.1:5432/postgres".into())
}

/// A random name with a prefix, for topics and groups.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A database of its own for one test, with csvbus' schema applied.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl TestDb {
    /// Creates a fresh database and applies the migrations.
    pub async fn new() -> Self {
        let db = Self::empty().await;
        csvbus_shared::db::migrate(&db.pool)
            .await
            .expect("migrations apply");
        db
    }

    /// A fresh database without csvbus' schema.
    pub async fn empty() -> Self {
        let name = format!("csvbus_test_{}", uuid::Uuid::new_v4().simple());
        let admin = admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("connect to Postgres as the test admin (run scripts/stack.sh)");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        conn.close().await.ok();
        let url = match admin.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("admin url has no database part"),
        };
        let pool = csvbus_shared::db::connect(&url, 10, &CancellationToken::new())
            .await
            .expect("connect to test database");
        Self { name, url, pool }
    }

    /// Drops the database (see the `Drop` below), for a test that must be done with it earlier.
    fn drop_database(name: &str) {
        let name = name.to_owned();
        // Drop runs outside async code, maybe inside a runtime: a thread with a runtime of its
        // own. Errors are ignored: a database left over is only disk space.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin_url()).await.ok()?;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                sqlx::query(&sql).execute(&mut conn).await.ok()?;
                conn.close().await.ok()
            })
        })
        .join();
    }

    /// `rows_written` of the database's one import (0 before it exists).
    pub async fn rows_written(&self) -> i64 {
        sqlx::query_scalar::<_, i64>("SELECT rows_written FROM csvbus.imports")
            .fetch_optional(&self.pool)
            .await
            .expect("at most one import")
            .unwrap_or(0)
    }

    /// Waits until the one import has `n` rows written; fails the test after `timeout`.
    pub async fn wait_rows_written(&self, n: i64, timeout: Duration) {
        eventually(&format!("{n} rows written"), timeout, || async {
            self.rows_written().await >= n
        })
        .await;
    }

    /// The one `bigint` a query answers (a count, usually).
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .expect("test query")
    }

    /// The one text value `sql` selects.
    pub async fn text(&self, sql: &str) -> String {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .expect("test query")
    }

    /// The lines of the rows `import` (its id as text) had rejected, in order.
    pub async fn rejected_lines(&self, import: &str) -> Vec<i64> {
        sqlx::query_scalar(
            "SELECT line FROM csvbus.rejected_rows WHERE import_id = $1::uuid ORDER BY line",
        )
        .bind(import)
        .fetch_all(&self.pool)
        .await
        .expect("rejected rows")
    }

    /// The rejected rows of an import: line and reason, by line.
    pub async fn rejected(&self, import: &str) -> Vec<(i64, String)> {
        sqlx::query_as(
            "SELECT line, reason FROM csvbus.rejected_rows WHERE import_id = $1::uuid ORDER BY line",
        )
        .bind(import)
        .fetch_all(&self.pool)
        .await
        .expect("rejected rows")
    }

    /// Runs SQL (DDL for target tables).
    pub async fn exec(&self, sql: &str) {
        sqlx::raw_sql(sql)
            .execute(&self.pool)
            .await
            .expect("test SQL");
    }
}

/// Each test's database goes when the test ends (passed or failed: hundreds of them filled a
/// disk once); `CSVBUS_TEST_KEEP_DB=1` keeps them to look at.
impl Drop for TestDb {
    fn drop(&mut self) {
        if std::env::var_os("CSVBUS_TEST_KEEP_DB").is_none() {
            Self::drop_database(&self.name);
        }
    }
}

/// Waits until `check` holds, looking every 20 ms; fails the test, naming `what`, after
/// `timeout` (a loop without a deadline hangs instead of failing).
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `POST {base}/v1/imports?{query}` with `headers`: the status and the JSON body (panics
/// naming the answer when the body is not JSON: every answer of the API is).
pub async fn post_import(
    http: &reqwest::Client,
    base: &str,
    query: &str,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> (reqwest::StatusCode, serde_json::Value) {
    let body: reqwest::Body = body.into();
    let in_memory = body.as_bytes().map(<[u8]>::to_vec);
    let request = |body: reqwest::Body| {
        let mut req = http.post(format!("{base}/v1/imports?{query}")).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req
    };
    let mut resp = request(body).send().await;
    // A request refused before its body is read is answered and its connection closed; a
    // client still writing a small in-memory body may see only the broken pipe. Sent again, it
    // is answered the same way. (A streamed body is sent once.)
    if let Some(bytes) = in_memory {
        for _ in 0..3 {
            match &resp {
                Err(e) if e.is_request() => resp = request(bytes.clone().into()).send().await,
                _ => break,
            }
        }
    }
    let resp = resp.expect("request");
    let status = resp.status();
    let text = resp.text().await.expect("answer body");
    let json =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON body, got {status} {text:?}"));
    (status, json)
}

/// POSTs `body` as `text/csv` to `url` (an upload), answering with the response.
pub async fn post_csv(url: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "text/csv")
        .body(body)
        .send()
        .await
        .expect("upload request")
}

/// A counter or gauge of a service's `/metrics`, summed over its labels (0 when absent).
pub async fn metric(base_url: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{base_url}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The environment for services under test: this database, this topic, the test broker.
pub fn env(db: &TestDb, topic: &str) -> Env {
    Env::from_pairs([
        ("DATABASE_URL", db.url.as_str()),
        ("KAFKA_BROKERS", brokers().as_str()),
        ("CSVBUS_TOPIC", topic),
        ("CSVBUS_TOPIC_PARTITIONS", "4"),
        ("CSVBUS_PROGRESS_INTERVAL_MS", "100"),
        // In-process services listen on port 0: no static group membership (the default id
        // would derive from the default port and be shared by every sink of a test).
        ("CSVBUS_SINK_ADDR", "127.0.0.1:0"),
    ])
}

/// A service running in-process.
pub struct Service<E> {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub join: JoinHandle<Result<(), E>>,
}

impl<E: std::fmt::Debug + Send + 'static> Service<E> {
    /// Binds port 0 on loopback; `start` spawns the service on the listener and token.
    pub async fn spawn(
        start: impl FnOnce(tokio::net::TcpListener, CancellationToken) -> JoinHandle<Result<(), E>>,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let shutdown = CancellationToken::new();
        let join = start(listener, shutdown.clone());
        Self {
            addr,
            shutdown,
            join,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Waits until `/readyz` answers 200.
    pub async fn ready(&mut self) {
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(r) = client.get(self.url("/readyz")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if self.join.is_finished() {
                let r = (&mut self.join).await;
                panic!("service ended before it was ready: {r:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("service not ready after 30 s");
    }

    /// Cancels the shutdown token and asserts the service returned `Ok` in time.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let r = tokio::time::timeout(Duration::from_secs(60), self.join).await;
        let r = r
            .expect("service stops within 60 s after cancellation")
            .expect("service task did not panic");
        r.expect("service returns Ok on shutdown");
    }
}

/// Starts the upload service for a test.
pub async fn spawn_upload(env: &Env) -> Service<csvbus_upload::UploadError> {
    let config = csvbus_upload::UploadConfig::from_env(env).expect("upload config");
    let mut svc = Service::spawn(move |l, s| tokio::spawn(csvbus_upload::run(config, l, s))).await;
    svc.ready().await;
    svc
}

/// Installs a test-friendly tracing subscriber (RUST_LOG applies).
pub fn init_logs() {
    csvbus_shared::telemetry::init_tracing(false);
}

/// Starts the sink for a test (not waiting for readiness: it has no rows to show for it).
pub async fn spawn_sink(env: &Env) -> Service<csvbus_sink::SinkError> {
    let config = csvbus_sink::SinkConfig::from_env(env).expect("sink config");
    let mut svc = Service::spawn(move |l, s| tokio::spawn(csvbus_sink::run(config, l, s))).await;
    svc.ready().await;
    svc
}

/// A sink on a runtime of its own, on its own threads, that can be killed abruptly: dropping
/// the runtime stops every task at its next await, without any of the sink's cleanup — no
/// batch is finished, nothing more is committed.
pub struct KillableSink {
    runtime: Option<tokio::runtime::Runtime>,
}

impl KillableSink {
    pub fn start(env: &Env) -> Self {
        let config = csvbus_sink::SinkConfig::from_env(env).expect("sink config");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let _ = csvbus_sink::run(config, listener, CancellationToken::new()).await;
        });
        Self {
            runtime: Some(runtime),
        }
    }

    /// Drops the runtime at once.
    pub fn kill(mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Polls `GET /v1/imports/{id}?wait=…` until the import is final; returns its record.
pub async fn wait_final(
    upload: &Service<csvbus_upload::UploadError>,
    id: &str,
    timeout: Duration,
) -> serde_json::Value {
    wait_final_at(&upload.url(""), id, timeout).await
}

/// [`wait_final`] against the upload service at `base` (`http://host:port`).
pub async fn wait_final_at(base: &str, id: &str, timeout: Duration) -> serde_json::Value {
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let rec = long_poll(&client, base, id).await;
        if rec["status"] == "completed" || tokio::time::Instant::now() >= deadline {
            return rec;
        }
    }
}

/// One long-poll of an import's record (`?wait=5s`: answers early when it changes).
async fn long_poll(client: &reqwest::Client, base: &str, id: &str) -> serde_json::Value {
    client
        .get(format!("{base}/v1/imports/{id}?wait=5s"))
        .send()
        .await
        .expect("status request")
        .json()
        .await
        .expect("status JSON")
}

/// Polls the import until it will change no more (completed; or failed/aborted with every
/// produced row handled — staged modes at once); returns its record.
pub async fn wait_ended(
    upload: &Service<csvbus_upload::UploadError>,
    id: &str,
    timeout: Duration,
) -> serde_json::Value {
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let rec = long_poll(&client, &upload.url(""), id).await;
        let s = rec["status"].as_str().unwrap_or_default();
        let n = |k: &str| rec[k].as_i64().unwrap_or_default();
        let handled =
            n("rows_written") + n("rows_write_rejected") + n("rows_skipped") + n("rows_set_aside")
                >= n("rows_produced");
        if s == "completed"
            || (matches!(s, "failed" | "aborted") && (rec["mode"] != "append" || handled))
        {
            return rec;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "import not final: {rec}"
        );
    }
}

/// A body that sends `head`, then nothing until `release` is notified, then ends.
pub fn stalled_body(
    head: &'static str,
    release: std::sync::Arc<tokio::sync::Notify>,
) -> reqwest::Body {
    let s = futures::stream::unfold(0, move |state| {
        let release = release.clone();
        async move {
            match state {
                0 => Some((Ok::<_, std::io::Error>(head.as_bytes().to_vec()), 1)),
                1 => {
                    release.notified().await;
                    None
                }
                _ => None,
            }
        }
    });
    reqwest::Body::wrap_stream(s)
}

/// Posts `body()` under the Idempotency-Key `key` to `url` until the service answers 202, as a
/// retrying client does: answers whose status is in `retry_on`, and lost connections, are tried
/// again every 250 ms for at most `within`; any other answer fails the test. Returns the 202
/// body and the refusals on the way (`"<status> <error code>"`, or `"connection: …"`).
pub async fn post_keyed_until_accepted(
    url: &str,
    key: &str,
    body: impl Fn() -> reqwest::Body,
    retry_on: &[u16],
    within: Duration,
) -> (serde_json::Value, Vec<String>) {
    let mut refused = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let r = reqwest::Client::new()
            .post(url)
            .header("idempotency-key", key)
            .body(body())
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 202 => return (r.json().await.expect("202 JSON"), refused),
            Ok(r) => {
                let status = r.status();
                let v: serde_json::Value = r.json().await.unwrap_or_default();
                assert!(retry_on.contains(&status.as_u16()), "{status}: {v}");
                refused.push(format!("{} {}", status.as_u16(), v["error"]));
            }
            Err(e) => refused.push(format!("connection: {e}")),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never accepted: {refused:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The upload service's state on `db` (settings from [`env`], then `settings`), for requests
/// through [`oneshot`]: no socket, no server task.
pub async fn upload_app(
    db: &TestDb,
    settings: &[(&str, &str)],
) -> std::sync::Arc<csvbus_upload::App> {
    let mut e = env(db, &unique("app"));
    for (k, v) in settings {
        e.set(*k, *v);
    }
    let config = csvbus_upload::UploadConfig::from_env(&e).expect("settings");
    csvbus_upload::App::connect(config, &tokio_util::sync::CancellationToken::new())
        .await
        .expect("the upload service connects")
}

/// Sends one request through a fresh router of the upload service (no socket): the status
/// and the JSON body (`null` when the body is not JSON).
pub async fn oneshot(
    app: &std::sync::Arc<csvbus_upload::App>,
    req: axum::http::Request<axum::body::Body>,
) -> (axum::http::StatusCode, serde_json::Value) {
    use tower::ServiceExt;
    let resp = csvbus_upload::router(app.clone())
        .oneshot(req)
        .await
        .expect("the router answers");
    let status = resp.status();
    let mut bytes = Vec::new();
    let mut stream = resp.into_body().into_data_stream();
    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
        bytes.extend_from_slice(&chunk.expect("body chunk"));
    }
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}
