//! Packs of rows (several keyless rows in one message, docs/api.md "Wire format"): through
//! upload → broker → sink they land exactly like row messages; a batch never splits one; a
//! slow body's rows are not held back; a pack the sink cannot read or trust is dead-lettered
//! whole, with the reason.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use csvbus_shared::catalog::TableName;
use csvbus_shared::message::{Pack, Packed, RowHeaders, Signer};
use csvbus_tests::kafka::read_topic;
use csvbus_tests::nums::{assert_nums_exact, nums_csv, NUMS};
use csvbus_tests::{brokers, env, spawn_sink, spawn_upload, unique, wait_final, TestDb};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use reqwest::StatusCode;
use serde_json::Value;

async fn nums_env(extra: &[(&str, &str)]) -> (TestDb, String, csvbus_shared::config::Env) {
    csvbus_tests::init_logs();
    let db = TestDb::new().await;
    db.exec(NUMS).await;
    let topic = unique("packs");
    let mut e = env(&db, &topic);
    e.set("CSVBUS_SINK_GROUP", unique("g").as_str());
    for (k, v) in extra {
        e.set(*k, *v);
    }
    (db, topic, e)
}

async fn post(url: &str, body: reqwest::Body) -> Value {
    let r = csvbus_tests::post_csv(url, body).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    r.json().await.unwrap()
}

/// Packs of 7 rows and batches of 10: nearly every batch would end inside a pack if batches
/// were cut by rows alone (the rows after the cut would be below the stored position, and
/// skipped). Every row lands once, and the topic holds packs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packs_land_exactly_once_and_a_batch_never_splits_one() {
    let (db, topic, mut e) = nums_env(&[("CSVBUS_MESSAGE_ROWS", "7")]).await;
    e.set("CSVBUS_SINK_BATCH_ROWS", "10");
    let upload = spawn_upload(&e).await;
    let sink = spawn_sink(&e).await;
    let n = 3_000;
    let url = upload.url("/v1/imports?table=nums");
    let accepted = post(&url, reqwest::Body::wrap_stream(nums_csv(1, n))).await;
    let id = accepted["import_id"].as_str().unwrap().to_owned();
    let rec = wait_final(&upload, &id, Duration::from_secs(120)).await;
    assert_eq!(rec["status"], "completed", "{rec}");
    assert_eq!(rec["rows_written"], n);
    assert_nums_exact(&db, n as i64).await;

    let got = read_topic(
        &brokers(),
        &topic,
        n as usize,
        Duration::from_secs(60),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(got.len(), n as usize);
    let packed = got.iter().filter(|r| r.rows_in_message == 7).count();
    assert!(packed > 2_900, "{packed} rows in packs of 7");
    assert!(got.iter().all(|r| r.rows_in_message <= 7));
    sink.stop().await;
    upload.stop().await;
}

/// An upsert import without `key=` is packed by partition: no message keys, every row of a key
/// on one partition, the file's last row of each key in the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_rows_are_packed_by_their_key_s_partition() {
    let (db, topic, e) = nums_env(&[]).await;
    let upload = spawn_upload(&e).await;
    let sink = spawn_sink(&e).await;
    let mut csv = String::from("id,v,half\n");
    for i in 1..=2_000 {
        csv.push_str(&format!("{i},first {i},0\n"));
    }
    for i in 1..=500 {
        csv.push_str(&format!("{i},second {i},1\n"));
    }
    let url = upload.url("/v1/imports?table=nums&mode=upsert");
    let accepted = post(&url, csv.into()).await;
    let id = accepted["import_id"].as_str().unwrap().to_owned();
    let rec = wait_final(&upload, &id, Duration::from_secs(120)).await;
    assert_eq!(rec["status"], "completed", "{rec}");
    let (rows, second): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE v = 'second ' || id AND half = 1 AND id <= 500)
           FROM nums",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((rows, second), (2_000, 500));

    let got = read_topic(
        &brokers(),
        &topic,
        2_500,
        Duration::from_secs(60),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(got.len(), 2_500);
    assert!(got.iter().all(|r| r.key.is_none()));
    let packed = got.iter().filter(|r| r.rows_in_message > 1).count();
    assert!(packed > 2_000, "{packed} of 2,500 rows in packs");
    let mut partition_of = std::collections::HashMap::new();
    for r in &got {
        let key = r.value["id"].as_str().unwrap().to_owned();
        let p = *partition_of.entry(key).or_insert(r.partition);
        assert_eq!(p, r.partition, "a key on two partitions");
    }
    sink.stop().await;
    upload.stop().await;
}

/// With `CSVBUS_MESSAGE_ROWS=1` every row is a message of its own, as before packs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_row_per_message_when_asked() {
    let (_db, topic, e) = nums_env(&[("CSVBUS_MESSAGE_ROWS", "1")]).await;
    let upload = spawn_upload(&e).await;
    let url = upload.url("/v1/imports?table=nums");
    post(&url, reqwest::Body::wrap_stream(nums_csv(1, 500))).await;
    let got = read_topic(
        &brokers(),
        &topic,
        500,
        Duration::from_secs(60),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(got.len(), 500);
    assert!(got.iter().all(|r| r.rows_in_message == 1));
    assert!(got.iter().all(|r| !r.headers.contains_key("csvbus-lines")));
    upload.stop().await;
}

/// A client that sends three rows and then pauses: the rows are sent (and written) while the
/// upload waits for more, not held in a pack until the body goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_body_s_rows_are_not_held_back() {
    let (db, _topic, e) = nums_env(&[]).await;
    let upload = spawn_upload(&e).await;
    let sink = spawn_sink(&e).await;
    let release = Arc::new(tokio::sync::Notify::new());
    let head = "id,v,half\n1,\"v1, \"\"q\"\"\",0\n2,\"v2, \"\"q\"\"\",1\n3,\"v3, \"\"q\"\"\",1\n";
    let body = csvbus_tests::stalled_body(head, release.clone());
    let url = upload.url("/v1/imports?table=nums");
    let posting = tokio::spawn(async move { post(&url, body).await });
    csvbus_tests::eventually(
        "the paused body's rows are written",
        Duration::from_secs(30),
        || async { db.count("SELECT count(*) FROM nums").await == 3 },
    )
    .await;
    release.notify_one();
    let accepted = posting.await.unwrap();
    let id = accepted["import_id"].as_str().unwrap().to_owned();
    let rec = wait_final(&upload, &id, Duration::from_secs(60)).await;
    assert_eq!(rec["status"], "completed", "{rec}");
    assert_nums_exact(&db, 3).await;
    sink.stop().await;
    upload.stop().await;
}

/// The lines a forged pack says it has, and the lines its signature covers (what the upload
/// would write when `None`).
#[derive(Default, Clone, Copy)]
struct Lines<'a> {
    header: Option<&'a str>,
    signed: Option<&'a str>,
}

/// While the body waits, the checkpoint a retry would resume from covers every row sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_body_s_checkpoint_covers_the_rows_sent() {
    let (db, _topic, e) = nums_env(&[("CSVBUS_PROGRESS_INTERVAL_MS", "100")]).await;
    let upload = spawn_upload(&e).await;
    let release = Arc::new(tokio::sync::Notify::new());
    let head: &'static str = {
        let mut h = String::from("id,v,half\n");
        for i in 1..=250 {
            h.push_str(&format!("{i},v{i},{}\n", i / 2));
        }
        h.leak()
    };
    let body = csvbus_tests::stalled_body(head, release.clone());
    let url = upload.url("/v1/imports?table=nums");
    let posting = tokio::spawn(async move { post(&url, body).await });
    csvbus_tests::eventually(
        "the checkpoint is at the last row sent",
        Duration::from_secs(30),
        || async {
            db.count("SELECT coalesce(max(acked_line), 0) FROM csvbus.imports")
                .await
                == 251
        },
    )
    .await;
    release.notify_one();
    posting.await.unwrap();
    upload.stop().await;
}

/// Sends a pack of `rows` (line, value) of `import`, signed by `signer`.
async fn send_pack(
    topic: &str,
    import: uuid::Uuid,
    rows: &[(u64, String)],
    lines: Lines<'_>,
    signer: Option<Signer>,
) {
    let table = TableName::parse("public.nums", "public").unwrap();
    let mut pack = Pack::default();
    for (line, value) in rows {
        pack.push(*line, value.as_bytes());
    }
    let Packed::Many {
        first_line,
        lines: own,
        value,
    } = pack.take()
    else {
        panic!("a pack of one row");
    };
    let signed: OwnedHeaders = RowHeaders::new(import, &table, signer).for_pack(
        first_line,
        lines.signed.unwrap_or(own),
        value,
    );
    let mut headers = OwnedHeaders::new();
    for h in signed.iter() {
        let value = match h.key {
            "csvbus-lines" => Some(lines.header.unwrap_or(own).as_bytes()),
            _ => h.value,
        };
        headers = headers.insert(Header { key: h.key, value });
    }
    let producer: FutureProducer = csvbus_shared::kafka::client_config(&brokers())
        .create()
        .unwrap();
    let record = FutureRecord::<(), [u8]>::to(topic)
        .payload(value)
        .headers(headers);
    producer
        .send(record, Duration::from_secs(10))
        .await
        .unwrap();
}

fn nums_rows(lines: std::ops::RangeInclusive<u64>) -> Vec<(u64, String)> {
    lines
        .map(|l| {
            let id = l - 1;
            let v = format!(r#"{{"id":"{id}","v":"v{id}, \"q\"","half":"{}"}}"#, id / 2);
            (l, v)
        })
        .collect()
}

async fn dead_letters(db: &TestDb) -> Vec<(String, Value)> {
    sqlx::query_as("SELECT reason, headers FROM csvbus.dead_letters ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

/// With a signing key: a pack signed with it is written row by row; one signed with another key
/// and one whose lines were changed after signing are each one dead letter; one signed whose
/// lines do not match its value is one dead letter with that reason. None writes anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_that_cannot_be_read_or_trusted_is_dead_lettered_whole() {
    let key = "0123456789abcdef0123456789abcdef-csvbus";
    let (db, topic, e) = nums_env(&[
        ("CSVBUS_SIGNING_KEY", key),
        ("CSVBUS_BODY_IDLE_TIMEOUT_MS", "600000"),
    ])
    .await;
    let upload = spawn_upload(&e).await;
    let sink = spawn_sink(&e).await;
    // A live import: its body stops after its header until released.
    let release = Arc::new(tokio::sync::Notify::new());
    let body = csvbus_tests::stalled_body("id,v,half\n", release.clone());
    let url = upload.url("/v1/imports?table=nums");
    let posting = tokio::spawn(async move { post(&url, body).await });
    let receiving = "SELECT id FROM csvbus.imports WHERE status = 'receiving'";
    csvbus_tests::eventually(
        "the import is receiving",
        Duration::from_secs(30),
        || async {
            db.count("SELECT count(*) FROM csvbus.imports WHERE status = 'receiving'")
                .await
                == 1
        },
    )
    .await;
    let id: uuid::Uuid = sqlx::query_scalar(receiving)
        .fetch_one(&db.pool)
        .await
        .unwrap();

    let ours = Signer::new(key.as_bytes());
    let other = Signer::new(b"not the key csvbus was given, but as long");
    let plain = Lines::default();
    send_pack(&topic, id, &nums_rows(2..=4), plain, Some(ours.clone())).await;
    send_pack(&topic, id, &nums_rows(5..=6), plain, Some(other)).await;
    let changed = Lines {
        header: Some("7,9"),
        signed: None,
    };
    send_pack(&topic, id, &nums_rows(7..=8), changed, Some(ours.clone())).await;
    csvbus_tests::eventually("two dead letters", Duration::from_secs(60), || async {
        db.count("SELECT count(*) FROM csvbus.dead_letters").await == 2
    })
    .await;
    // Signed, but its lines are not its rows: read, and refused.
    let short = Lines {
        header: Some("10"),
        signed: Some("10"),
    };
    send_pack(&topic, id, &nums_rows(10..=11), short, Some(ours.clone())).await;
    csvbus_tests::eventually("three dead letters", Duration::from_secs(60), || async {
        db.count("SELECT count(*) FROM csvbus.dead_letters").await == 3
    })
    .await;
    // Signed, its last string cut after a backslash: read to the value's end and no further.
    let cut = vec![
        (12, r#"{"id":"11"}"#.to_owned()),
        (13, r#"{"id":"\"#.to_owned()),
    ];
    send_pack(&topic, id, &cut, plain, Some(ours)).await;
    csvbus_tests::eventually("four dead letters", Duration::from_secs(60), || async {
        db.count("SELECT count(*) FROM csvbus.dead_letters").await == 4
    })
    .await;
    let dead = dead_letters(&db).await;
    assert!(
        dead[..2]
            .iter()
            .all(|(r, _)| r.contains("CSVBUS_SIGNING_KEY")),
        "{dead:?}"
    );
    assert!(
        dead[2].0.contains("lists 1 lines but holds 2 rows"),
        "{dead:?}"
    );
    assert_eq!(dead[2].1["csvbus-lines"], "10", "{dead:?}");
    assert!(
        dead[3].0.contains("not a JSON array of objects"),
        "{dead:?}"
    );
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM nums ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        ids,
        [1, 2, 3],
        "only the pack signed with the key is written"
    );
    release.notify_one();
    posting.await.unwrap();
    sink.stop().await;
    upload.stop().await;
}
