//! Replays against the real stack: an import's rows read back from the topic into another
//! table, exactly once, with the original's columns mapped as an upload's header would be; and
//! the refusals — an original that did not finish producing, a topic that lost part of it.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use csvbus_shared::config::Env;
use csvbus_tests::nums::{nums_csv, NUMS};
use csvbus_tests::tansu::SqliteTansu;
use csvbus_tests::{
    brokers, env, post_import, spawn_sink, spawn_upload, unique, wait_final, Service, TestDb,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use serde_json::Value;

type Upload = Service<csvbus_upload::UploadError>;
type Sink = Service<csvbus_sink::SinkError>;

async fn stack(ddl: &str) -> (TestDb, Env, Upload, Sink) {
    stack_with(ddl, &unique("replay"), &[]).await
}

/// `stack` on `topic` with `extra` settings.
async fn stack_with(ddl: &str, topic: &str, extra: &[(&str, &str)]) -> (TestDb, Env, Upload, Sink) {
    csvbus_tests::init_logs();
    let db = TestDb::new().await;
    db.exec(ddl).await;
    let mut e = env(&db, topic);
    e.set("CSVBUS_SINK_GROUP", unique("g"));
    e.set("CSVBUS_SINK_LINGER_MS", "20");
    for (k, v) in extra {
        e.set(*k, *v);
    }
    let upload = spawn_upload(&e).await;
    let sink = spawn_sink(&e).await;
    (db, e, upload, sink)
}

/// Asserts that no table `nums_copy` and no replay were made.
async fn nothing_replayed(db: &TestDb) {
    let (tables, replays): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM pg_tables WHERE tablename = 'nums_copy'),
                (SELECT count(*) FROM csvbus.imports WHERE replay_of IS NOT NULL)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((tables, replays), (0, 0));
}

async fn replay(upload: &Upload, id: &str, query: &str, key: Option<&str>) -> (u16, Value) {
    let mut req =
        reqwest::Client::new().post(upload.url(&format!("/v1/imports/{id}/replay?{query}")));
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// A replay answered `202`, followed until final: the answer and the record.
async fn replay_final(upload: &Upload, id: &str, query: &str, key: Option<&str>) -> (Value, Value) {
    let (status, a) = replay(upload, id, query, key).await;
    assert_eq!(status, 202, "{a}");
    let id = a["import_id"].as_str().unwrap();
    let rec = wait_final(upload, id, Duration::from_secs(600)).await;
    (a, rec)
}

async fn upload_final(upload: &Upload, query: &str, body: impl Into<reqwest::Body>) -> Value {
    let http = reqwest::Client::new();
    let (status, a) = post_import(
        &http,
        &upload.url(""),
        query,
        body,
        &[("content-type", "text/csv")],
    )
    .await;
    assert_eq!(status, 202, "{a}");
    wait_final(
        upload,
        a["import_id"].as_str().unwrap(),
        Duration::from_secs(600),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_of_a_million_rows_lands_each_once_in_a_new_table() {
    let (db, _e, upload, sink) = stack(NUMS).await;
    let n = 1_000_000i64;
    let body = reqwest::Body::wrap_stream(nums_csv(1, n as u64));
    let original = upload_final(&upload, "table=nums", body).await;
    assert_eq!(original["rows_written"], n, "{original}");
    let id = original["id"].as_str().unwrap();

    let (a, copy) = replay_final(&upload, id, "table=nums_copy&create=true", None).await;
    assert_eq!(a["rows_produced"], n);
    assert_eq!(
        (&copy["status"], &copy["rows_written"]),
        (&"completed".into(), &n.into()),
        "{copy}"
    );
    assert_eq!(copy["replay_of"], id);
    assert_eq!(copy["source"], format!("replay of {id}").as_str());
    let (count, distinct, differ): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM nums_copy), (SELECT count(DISTINCT id) FROM nums_copy),
                (SELECT count(*) FROM nums n FULL JOIN nums_copy c USING (id)
                  WHERE c.v IS DISTINCT FROM n.v OR c.half::text IS DISTINCT FROM n.half::text)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((count, distinct, differ), (n, n, 0));
    sink.stop().await;
    upload.stop().await;
}

/// id, name, note, born, extra.
type Person = (i32, Option<String>, Option<String>, Option<String>, String);

const PEOPLE: &str = "CREATE TABLE people (id int PRIMARY KEY, name text, note text, born date);
     CREATE TABLE people2 (born text, extra text NOT NULL DEFAULT 'x', note text, name text,
                           id int PRIMARY KEY CHECK (id < 100))";

#[tokio::test]
async fn a_replay_maps_the_columns_onto_another_order_and_keeps_the_original_lines() {
    let (db, _e, upload, sink) = stack(PEOPLE).await;
    // An empty unquoted field is NULL, `""` an empty string, in both. Line 4 spans two lines;
    // line 7 has a born Postgres refuses into `date` (a write rejection the replay into a text
    // column then lands); line 8's id is refused by people2.
    let csv = "id,name,note,born\n1,Ann,,2000-01-02\n2,,\"said \"\"hi\"\", ok\",\n\
               3,\"Bo\nb\",x,1999-12-31\n\n4,Dee,\"\",2001-01-01\n5,Eve,e,not a date\n\
               150,Fay,f,2002-02-02\n";
    let original = upload_final(&upload, "table=people", csv).await;
    assert_eq!(
        (&original["rows_written"], &original["rows_write_rejected"]),
        (&5.into(), &1.into()),
        "{original}"
    );
    let id = original["id"].as_str().unwrap();

    let (a, rec) = replay_final(&upload, id, "table=people2", Some("replay-key-1")).await;
    assert_eq!(
        a["rows_produced"], 6,
        "every row on the topic, the refused one too: {a}"
    );
    assert_eq!(
        (&rec["rows_written"], &rec["rows_write_rejected"]),
        (&5.into(), &1.into()),
        "{rec}"
    );
    let rows: Vec<Person> =
        sqlx::query_as("SELECT id, name, note, born, extra FROM people2 ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        rows,
        [
            (1, s("Ann"), None, s("2000-01-02"), "x".into()),
            (2, None, s("said \"hi\", ok"), None, "x".into()),
            (3, s("Bo\nb"), s("x"), s("1999-12-31"), "x".into()),
            (4, s("Dee"), s(""), s("2001-01-01"), "x".into()),
            (5, s("Eve"), s("e"), s("not a date"), "x".into()),
        ]
    );
    // The refused row is named by its line in the original file.
    let url = upload.url(&format!(
        "/v1/imports/{}/rejected",
        rec["id"].as_str().unwrap()
    ));
    let rejected: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    assert_eq!(rejected["rows"][0]["line"], 9, "{rejected}");

    // A repeat under its key is answered from the first replay, nothing written twice.
    let (status, again) = replay(&upload, id, "table=people2", Some("replay-key-1")).await;
    assert_eq!((status, &again["replayed"]), (200, &true.into()), "{again}");
    assert_eq!(again["import_id"], rec["id"]);
    // An unknown option is refused, not ignored.
    let (status, e) = replay(&upload, id, "table=people2&delimiter=;", None).await;
    assert_eq!(
        (status, &e["error"]),
        (400, &"unknown_parameter".into()),
        "{e}"
    );
    sink.stop().await;
    upload.stop().await;
}

#[tokio::test]
async fn a_replay_is_refused_when_the_original_is_not_all_on_the_topic() {
    let (db, e, upload, sink) = stack(NUMS).await;
    // Never produced whole: the upload failed while reading (a record with too many fields).
    let http = reqwest::Client::new();
    let bad = "id,v,half\n1,a,0\n2,b,1,extra\n3,c,1\n";
    let (status, a) = post_import(
        &http,
        &upload.url(""),
        "table=nums&max_rejected=0",
        bad,
        &[("content-type", "text/csv")],
    )
    .await;
    assert_eq!(status, 422, "{a}");
    let failed = a["import_id"].as_str().unwrap();
    let (status, r) = replay(&upload, failed, "table=nums_copy&create=true", None).await;
    assert_eq!(
        (status, &r["error"]),
        (409, &"import_not_produced".into()),
        "{r}"
    );
    let (status, r) = replay(
        &upload,
        &uuid::Uuid::now_v7().to_string(),
        "table=nums",
        None,
    )
    .await;
    assert_eq!(
        (status, &r["error"]),
        (404, &"unknown_import".into()),
        "{r}"
    );

    // Produced and written, then lost from the topic: tansu's memory storage implements
    // neither DeleteRecords nor retention, so the topic is deleted and made again, and filled
    // past the import's offsets with other messages (what a recreated topic holds).
    let body = reqwest::Body::wrap_stream(nums_csv(1, 5_000));
    let original = upload_final(&upload, "table=nums", body).await;
    let id = original["id"].as_str().unwrap();
    let last: i64 = sqlx::query_scalar(
        "SELECT max(last_offset) FROM csvbus.import_partitions WHERE import_id = $1::uuid",
    )
    .bind(id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    sink.stop().await;
    let topic = e.raw("CSVBUS_TOPIC").unwrap();
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let opts = AdminOptions::new();
    admin.delete_topics(&[topic], &opts).await.unwrap();
    let new = rdkafka::admin::NewTopic::new(topic, 4, rdkafka::admin::TopicReplication::Fixed(1));
    csvbus_tests::eventually("the topic made again", Duration::from_secs(30), || async {
        let made = admin.create_topics([&new], &opts).await;
        made.is_ok_and(|r| r.iter().all(Result::is_ok))
    })
    .await;
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let sends = (0..4)
        .flat_map(|partition| (0..=last).map(move |_| partition))
        .map(|p| {
            let r = rdkafka::producer::FutureRecord::<(), str>::to(topic)
                .partition(p)
                .payload("{}");
            producer.send(r, Duration::from_secs(30))
        });
    for sent in futures::future::join_all(sends).await {
        sent.unwrap();
    }

    let (status, r) = replay(&upload, id, "table=nums_copy&create=true", None).await;
    assert_eq!((status, &r["error"]), (410, &"replay_gone".into()), "{r}");
    let message = r["message"].as_str().unwrap();
    assert!(message.contains("recreated"), "{message}");
    nothing_replayed(&db).await;
    upload.stop().await;
}

/// Retention removes the first half of an import's rows (tansu's SQLite storage deletes records
/// older than `retention.ms`): its replay is `410`, naming the offsets gone, and nothing is
/// created or recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_retention_removed_part_of_the_import_is_gone() {
    let broker = SqliteTansu::start(Duration::from_millis(300)).await;
    let topic = unique("retained");
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .create()
        .unwrap();
    let new = NewTopic::new(&topic, 4, TopicReplication::Fixed(1))
        .set("cleanup.policy", "delete")
        .set("retention.ms", "4000");
    let made = admin
        .create_topics([&new], &AdminOptions::new())
        .await
        .unwrap();
    assert!(made.iter().all(Result::is_ok), "{made:?}");
    let brokers = broker.brokers();
    let (db, _e, upload, sink) = stack_with(NUMS, &topic, &[("KAFKA_BROKERS", &brokers)]).await;

    // 1,000 rows: one run of lines, one partition. The halves are sent 4 s apart, so that their
    // records are of different ages when retention looks at them.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    let post =
        {
            let url = upload.url("/v1/imports?table=nums");
            tokio::spawn(async move {
                let chunks = futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|c| (c, rx))
                });
                let body = reqwest::Body::wrap_stream(chunks);
                let r = csvbus_tests::post_csv(&url, body).await;
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            })
        };
    let half = |from: u64| {
        let rows: String = (from..from + 500)
            .map(|i| format!("{i},v{i},{}\n", i / 2))
            .collect();
        Ok(rows.into_bytes())
    };
    tx.send(Ok(b"id,v,half\n".to_vec())).await.unwrap();
    tx.send(half(1)).await.unwrap();
    db.wait_rows_written(500, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    tx.send(half(501)).await.unwrap();
    drop(tx);
    let (status, a) = post.await.unwrap();
    assert_eq!(status, 202, "{a}");
    let id = a["import_id"].as_str().unwrap();
    let rec = wait_final(&upload, id, Duration::from_secs(30)).await;
    assert_eq!(rec["rows_written"], 1000, "{rec}");

    let (p, first, last): (i32, i64, i64) = sqlx::query_as(
        "SELECT partition, first_offset, last_offset FROM csvbus.import_partitions
          WHERE import_id = $1::uuid",
    )
    .bind(id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    // Retention has taken the first half, not yet the second: the partition starts inside
    // the import.
    let probe: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .create()
        .unwrap();
    csvbus_tests::eventually(
        "retention to delete the first half",
        Duration::from_secs(20),
        || {
            let low = probe
                .fetch_watermarks(&topic, p, Duration::from_secs(5))
                .map_or(0, |w| w.0);
            async move { low > first && low <= last }
        },
    )
    .await;

    let (status, r) = replay(&upload, id, "table=nums_copy&create=true", None).await;
    assert_eq!((status, &r["error"]), (410, &"replay_gone".into()), "{r}");
    let message = r["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("partition {p}: offsets {first}..")),
        "{message}"
    );
    assert!(message.contains("retention"), "{message}");
    nothing_replayed(&db).await;
    sink.stop().await;
    upload.stop().await;
}

/// With `CSVBUS_SIGNING_KEY` the reader checks each row's signature as the sink does, and the
/// replay's rows are signed anew as its own.
#[tokio::test]
async fn a_replay_under_a_signing_key_reads_the_signed_rows_and_signs_its_own() {
    let key = [(
        "CSVBUS_SIGNING_KEY",
        "replay-test-signing-key-0123456789abcdef",
    )];
    let (db, _e, upload, sink) = stack_with(NUMS, &unique("signed"), &key).await;
    let original = upload_final(
        &upload,
        "table=nums",
        reqwest::Body::wrap_stream(nums_csv(1, 2_000)),
    )
    .await;
    let id = original["id"].as_str().unwrap();
    let (_, rec) = replay_final(&upload, id, "table=nums_copy&create=true", None).await;
    assert_eq!(
        (&rec["status"], &rec["rows_written"]),
        (&"completed".into(), &2000.into()),
        "{rec}"
    );
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM csvbus.dead_letters")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(dead, 0);
    sink.stop().await;
    upload.stop().await;
}
