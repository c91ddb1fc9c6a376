//! A partition's batches pipelined (the next one writes its rows while the one before commits):
//! file order and exactly-once hold. Each test fills a one-partition topic first and starts the
//! sink afterwards with small batches, so that every batch has one before it in flight.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use csvbus_shared::config::Env;
use csvbus_tests::nums::{nums_csv, NUMS};
use csvbus_tests::{env, spawn_sink, spawn_upload, unique, wait_final, TestDb};
use reqwest::StatusCode;
use serde_json::Value;

async fn stack(sql: &str) -> (TestDb, Env) {
    csvbus_tests::init_logs();
    let db = TestDb::new().await;
    db.exec(sql).await;
    let mut e = env(&db, &unique("pipeline"));
    e.set("CSVBUS_TOPIC_PARTITIONS", "1");
    e.set("CSVBUS_SINK_GROUP", unique("g"));
    e.set("CSVBUS_SINK_BATCH_ROWS", "100");
    e.set("CSVBUS_SINK_LINGER_MS", "50");
    (db, e)
}

async fn post(url: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
    let r = csvbus_tests::post_csv(url, body).await;
    (r.status(), r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_repeated_in_the_next_batch_is_refused_there_not_in_the_first() {
    let (db, e) = stack("CREATE TABLE kv (id int PRIMARY KEY, line int NOT NULL)").await;
    let upload = spawn_upload(&e).await;
    // Line n holds id n, except every line 50 past the first hundred, which repeats the id of
    // line n - 90 (a line 60: never a repeat itself), in the batch before, while that batch is
    // still writing.
    let mut csv = String::from("id,line\n");
    let repeats = |n: u32| n > 100 && n % 100 == 50;
    for n in 1..=3_000u32 {
        let id = if repeats(n) { n - 90 } else { n };
        csv += &format!("{id},{}\n", n + 1);
    }
    let (s, v) = post(&upload.url("/v1/imports?table=kv"), csv).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["import_id"].as_str().unwrap().to_owned();
    let _sink = spawn_sink(&e).await;
    let rec = wait_final(&upload, &id, Duration::from_secs(120)).await;
    let refused: Vec<i64> = (1..=3_000u32)
        .filter(|n| repeats(*n))
        .map(|n| i64::from(n) + 1)
        .collect();
    assert_eq!(rec["status"], "completed", "{rec}");
    assert_eq!(rec["rows_write_rejected"], refused.len(), "{rec}");
    let lines = db.rejected_lines(&id).await;
    assert_eq!(
        lines, refused,
        "the later line of each repeated id is refused"
    );
    // Every id keeps the line that came first.
    let wrong = db
        .count("SELECT count(*) FROM kv WHERE line <> id + 1")
        .await;
    let rows = db.count("SELECT count(*) FROM kv").await;
    assert_eq!((rows, wrong), (3_000 - refused.len() as i64, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upserts_of_a_key_in_consecutive_batches_keep_the_last_row() {
    let (db, e) = stack("CREATE TABLE kv (k int PRIMARY KEY, v int NOT NULL)").await;
    let upload = spawn_upload(&e).await;
    let mut csv = String::from("k,v\n");
    for n in 1..=3_000u32 {
        csv += &format!("{},{n}\n", n % 150);
    }
    let (s, v) = post(&upload.url("/v1/imports?table=kv&mode=upsert"), csv).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["import_id"].as_str().unwrap().to_owned();
    let _sink = spawn_sink(&e).await;
    let rec = wait_final(&upload, &id, Duration::from_secs(120)).await;
    assert_eq!(rec["status"], "completed", "{rec}");
    // The last line of key k is the largest n ≤ 3000 with n % 150 = k.
    let wrong = db
        .count("SELECT count(*) FROM kv WHERE v <> 3000 - ((3000 - k) % 150)")
        .await;
    let rows = db.count("SELECT count(*) FROM kv").await;
    assert_eq!((rows, wrong), (150, 0));
}

/// Rows a resumed upload sends again sit right after their originals, so a batch of them can
/// be written while the batch holding the originals has not committed: it must not take them
/// for new rows. The topic holds lines 2–401 (an upload), then 302–401 again, 402–801, 702–801
/// again, …: what resumptions of the import would leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_sent_again_are_written_once_behind_their_originals() {
    // No key: a row written twice would show.
    let (db, e) = stack(&NUMS.replace(" PRIMARY KEY", "")).await;
    let upload = spawn_upload(&e).await;
    let body = reqwest::Body::wrap_stream(nums_csv(1, 400));
    let (s, v) = post(&upload.url("/v1/imports?table=nums"), body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["import_id"].as_str().unwrap().to_owned();
    let import: uuid::Uuid = id.parse().unwrap();
    // The rest of the import comes as its resumptions would send it.
    sqlx::query("UPDATE csvbus.imports SET rows_produced = 1200 WHERE id = $1")
        .bind(import)
        .execute(&db.pool)
        .await
        .unwrap();
    let topic = e.raw("CSVBUS_TOPIC").unwrap().to_owned();
    // Line n holds id n - 1 (the header is line 1): the upload sent lines 2–401.
    let mut lines: Vec<u64> = (302..=401).collect();
    for from in [402, 802] {
        lines.extend(from..from + 400);
        lines.extend(from + 300..from + 400);
    }
    send_rows(&topic, import, &lines).await;
    let _sink = spawn_sink(&e).await;
    let rec = wait_final(&upload, &id, Duration::from_secs(60)).await;
    assert_eq!(rec["status"], "completed", "{rec}");
    assert_eq!(rec["rows_written"], 1_200, "{rec}");
    let (count, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT id) FROM nums")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((count, distinct), (1_200, 1_200));
}

/// Produces `nums` rows at `lines`, in order (one idempotent producer keeps a partition's
/// order), with import `import`'s headers.
async fn send_rows(topic: &str, import: uuid::Uuid, lines: &[u64]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = csvbus_shared::kafka::client_config(&csvbus_tests::brokers())
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let table = csvbus_shared::catalog::TableName::parse("public.nums", "public").unwrap();
    let headers = csvbus_shared::message::RowHeaders::new(import, &table, None);
    let sends = lines.iter().map(|&line| {
        let id = line - 1;
        let payload = format!(r#"{{"id":"{id}","v":"v{id}","half":"{}"}}"#, id / 2);
        let headers = headers.for_row(line, payload.as_bytes());
        let producer = &producer;
        async move {
            let record = FutureRecord::<(), str>::to(topic)
                .payload(&payload)
                .headers(headers);
            producer
                .send(record, Duration::from_secs(10))
                .await
                .unwrap()
        }
    });
    futures::future::join_all(sends).await;
}
