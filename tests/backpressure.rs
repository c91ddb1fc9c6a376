//! The services against a broker that stalls or goes away, using librdkafka's mock cluster for
//! the fault injection (a broker down). The data stays small:
//! the mock drops messages past ~5 MiB per partition.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use csvbus_tests::kafka::read_topic;
use csvbus_tests::{env, spawn_sink, spawn_upload, unique, wait_final, Service, TestDb};
use rdkafka::mocking::MockCluster;
use reqwest::StatusCode;
use serde_json::Value;

const TABLE: &str = "CREATE TABLE people (id int NOT NULL, name text)";
const INFLIGHT: u64 = 64 << 10;

/// `rows` rows of ~64 bytes, made as the client sends them; `offered` counts the bytes the
/// HTTP client has taken from the generator so far.
fn body(rows: u64, offered: Arc<AtomicU64>) -> reqwest::Body {
    let header = futures::stream::iter([Ok::<_, std::io::Error>(b"id,name\n".to_vec())]);
    let chunks = futures::stream::iter((1..=rows).step_by(256).map(move |s| {
        let mut out = Vec::new();
        for i in s..(s + 256).min(rows + 1) {
            out.extend_from_slice(format!("{i},{:0>58}\n", i).as_bytes());
        }
        offered.fetch_add(out.len() as u64, Ordering::Relaxed);
        Ok(out)
    }));
    reqwest::Body::wrap_stream(futures::StreamExt::chain(header, chunks))
}

async fn bytes_received(db: &TestDb) -> Option<i64> {
    sqlx::query_scalar("SELECT bytes_received FROM csvbus.imports")
        .fetch_optional(&db.pool)
        .await
        .unwrap()
}

type Mock = MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

/// A one-broker mock cluster with a 4-partition topic, a fresh database, and the upload
/// service on them.
async fn setup(
    extra: &[(&str, &str)],
) -> (
    Mock,
    TestDb,
    String,
    Service<csvbus_upload::UploadError>,
    csvbus_shared::config::Env,
) {
    csvbus_tests::init_logs();
    let mock = MockCluster::new(1).unwrap();
    let topic = unique("mock");
    mock.create_topic(&topic, 4, 1).unwrap();
    let db = TestDb::new().await;
    db.exec(TABLE).await;
    let mut e = env(&db, &topic);
    e.set("KAFKA_BROKERS", mock.bootstrap_servers());
    // The mock has no CreateTopics: the service waits for the topic made above.
    e.set("CSVBUS_TOPIC_CREATE", "false");
    for (k, v) in extra {
        e.set(*k, *v);
    }
    let svc = spawn_upload(&e).await;
    (mock, db, topic, svc, e)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_down_the_service_stops_reading_the_body_then_resumes() {
    let (mock, db, topic, svc, _) = setup(&[
        ("CSVBUS_INFLIGHT_BYTES_PER_UPLOAD", &INFLIGHT.to_string()),
        // A message must fit the in-flight bound (checked at start).
        ("CSVBUS_MAX_MESSAGE_BYTES", "16384"),
        ("CSVBUS_DELIVERY_TIMEOUT_MS", "120000"),
    ])
    .await;

    // 40,000 rows, ~2.6 MB of CSV: 40 times the in-flight bound.
    let rows = 40_000;
    mock.broker_down(1).unwrap();
    let offered = Arc::new(AtomicU64::new(0));
    let request = tokio::spawn(
        reqwest::Client::new()
            .post(svc.url("/v1/imports?table=people"))
            .header("content-type", "text/csv")
            .body(body(rows, offered.clone()))
            .send(),
    );

    // The service reads up to the bound, then stops: what it has read stays flat.
    let mut plateau = Vec::new();
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        plateau.push(bytes_received(&db).await.unwrap_or(0));
    }
    let read = *plateau.last().unwrap();
    let sent = offered.load(Ordering::Relaxed);
    eprintln!(
        "broker down: service read {read} bytes (bound {INFLIGHT} message bytes), client offered {sent}"
    );
    assert!(read > 0, "the upload started");
    assert_eq!(
        plateau[15..].iter().min(),
        plateau[15..].iter().max(),
        "read stays flat: {plateau:?}"
    );
    // Raw CSV bytes read ≤ the in-flight message bytes (a message is at least as long as its
    // CSV text) plus what sits in the parser's buffer and one body chunk.
    assert!(read as u64 <= INFLIGHT + (256 << 10), "read {read}");
    assert!(
        sent > read as u64 * 2,
        "the client kept trying: offered {sent}"
    );
    assert!(!request.is_finished());

    // Broker back: the upload reads on and completes with every row.
    mock.broker_up(1).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(120), request)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let accepted: Value = resp.json().await.unwrap();
    assert_eq!(accepted["rows_produced"], rows);
    let got = read_topic(
        &mock.bootstrap_servers(),
        &topic,
        rows as usize,
        Duration::from_secs(60),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(got.len(), rows as usize);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_stays_down_fails_the_upload_with_503_and_how_far_it_got() {
    let (mock, db, _topic, svc, _) = setup(&[("CSVBUS_DELIVERY_TIMEOUT_MS", "1500")]).await;

    mock.broker_down(1).unwrap();
    let resp = reqwest::Client::new()
        .post(svc.url("/v1/imports?table=people"))
        .header("content-type", "text/csv")
        .body(body(1_000, Arc::default()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"));
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"], "broker_unavailable", "{err}");
    assert!(err["message"].as_str().unwrap().contains("retry"), "{err}");

    let (status, received, error): (String, i64, Option<String>) =
        sqlx::query_as("SELECT status, rows_received, error FROM csvbus.imports")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(status, "failed");
    assert!(received > 0, "the record says how far it got");
    assert!(error.is_some_and(|e| !e.is_empty()));
    mock.broker_up(1).unwrap();
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_waits_out_a_broker_outage_and_writes_every_row_once() {
    let (mock, db, _topic, upload, mut e) = setup(&[]).await;
    // Small batches, so the outage lands mid-import.
    e.set("CSVBUS_SINK_GROUP", unique("g"));
    e.set("CSVBUS_SINK_BATCH_ROWS", "500");
    e.set("CSVBUS_SINK_LINGER_MS", "20");
    // Small fetches, so the sink cannot have the whole topic in hand when the broker goes.
    e.set("CSVBUS_KAFKA_CONSUMER_MAX_PARTITION_FETCH_BYTES", "65536");
    e.set("CSVBUS_KAFKA_CONSUMER_FETCH_MAX_BYTES", "1048576");
    e.set("CSVBUS_KAFKA_CONSUMER_QUEUED_MIN_MESSAGES", "1000");
    let rows = 100_000;
    let resp = reqwest::Client::new()
        .post(upload.url("/v1/imports?table=people"))
        .header("content-type", "text/csv")
        .body(body(rows, Arc::default()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let id = resp.json::<Value>().await.unwrap()["import_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sink = spawn_sink(&e).await;
    db.wait_rows_written(1, Duration::from_secs(60)).await;
    mock.broker_down(1).unwrap();
    let at_outage = db.rows_written().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = db.rows_written().await;
    mock.broker_up(1).unwrap();
    let rec = wait_final(&upload, &id, Duration::from_secs(120)).await;
    eprintln!("outage at {at_outage} rows written, {during} after 3 s down");
    assert!(
        during < rows as i64,
        "the sink finished during the outage ({at_outage} then {during}): it did not wait one out"
    );
    assert_eq!(rec["status"], "completed", "{rec}");
    assert_eq!(rec["rows_written"], rows);
    let (count, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT id) FROM people")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((count, distinct), (rows as i64, rows as i64));
    let rejected: i64 = sqlx::query_scalar("SELECT count(*) FROM csvbus.rejected_rows")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(rejected, 0);
    sink.stop().await;
    upload.stop().await;
}
