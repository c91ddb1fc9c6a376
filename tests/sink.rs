//! Upload → broker → sink → table, against real Postgres and the real broker: exactly once
//! across kills, database outages and rebalances; bad values rejected with their lines.

#![allow(clippy::unwrap_used, clippy::type_complexity)]

use std::time::Duration;

use csvbus_shared::config::Env;
use csvbus_tests::nums::{assert_nums_exact, nums_csv, NUMS};
use csvbus_tests::{
    env, metric, spawn_sink, spawn_upload, unique, wait_final, KillableSink, Service, TestDb,
};
use reqwest::StatusCode;
use serde_json::Value;

async fn post(
    upload: &Service<csvbus_upload::UploadError>,
    table: &str,
    body: reqwest::Body,
) -> Value {
    let r = reqwest::Client::new()
        .post(upload.url(&format!("/v1/imports?table={table}")))
        .header("content-type", "text/csv")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    r.json().await.unwrap()
}

/// A fresh database with `nums`, a topic and group of the test's own, and their environment.
async fn nums_stack() -> (TestDb, String, String, Env) {
    csvbus_tests::init_logs();
    let db = TestDb::new().await;
    db.exec(NUMS).await;
    let topic = unique("sink");
    let group = unique("g");
    let e = test_env(&db, &topic, &group);
    (db, topic, group, e)
}

fn test_env(db: &TestDb, topic: &str, group: &str) -> Env {
    let mut e = env(db, topic);
    e.set("CSVBUS_SINK_GROUP", group);
    e.set("CSVBUS_SINK_BATCH_ROWS", "5000");
    e.set("CSVBUS_SINK_LINGER_MS", "50");
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_of_every_type_round_trip_and_bad_values_are_rejected_at_their_lines() {
    csvbus_tests::init_logs();
    let db = TestDb::new().await;
    db.exec(
        "CREATE TYPE mood AS ENUM ('ok', 'meh');
         CREATE TABLE typed (i int, b bigint, n numeric(10,2), d double precision, ok bool, t text,
                             vc varchar(5), day date, ts timestamptz, u uuid, j jsonb, arr text[],
                             m mood, pos int CHECK (pos > 0), uniq int UNIQUE)",
    )
    .await;
    let topic = unique("sink");
    let e = test_env(&db, &topic, &unique("g"));
    let upload = spawn_upload(&e).await;
    let sink = spawn_sink(&e).await;
    let csv = "i,b,n,d,ok,t,vc,day,ts,u,j,arr,m,pos,uniq\n\
        1,9000000000,12.34,1.5e10,true,\"a, \"\"b\"\"\",abc,2024-02-29,2024-01-02 03:04:05+02,0190a1a1-0000-7000-8000-000000000001,\"{\"\"k\"\": [1, null]}\",\"{x,\"\"y z\"\"}\",meh,1,1\n\
        x,1,1,1,true,t,a,2024-01-01,2024-01-01T00:00:00Z,0190a1a1-0000-7000-8000-000000000002,{},{},ok,1,2\n\
        3,1,1,1,true,,abcdefgh,2024-01-01,2024-01-01T00:00:00Z,0190a1a1-0000-7000-8000-000000000003,{},{},ok,1,3\n\
        4,1,1,1,true,\"\",a,2024-13-01,2024-01-01T00:00:00Z,0190a1a1-0000-7000-8000-000000000004,{},{},ok,1,4\n\
        5,1,1,1,true,t,a,2024-01-01,2024-01-01T00:00:00Z,0190a1a1-0000-7000-8000-000000000005,{},{},ok,0,5\n\
        6,1,1,1,true,t,a,2024-01-01,2024-01-01T00:00:00Z,0190a1a1-0000-7000-8000-000000000006,{},{},ok,1,1\n\
        7,,,,,,,,,,,,,,\n";
    // Keyed by `uniq`: lines 2 and 7 share a key, so they share a partition and keep their
    // order; line 7 is the duplicate. Unkeyed, they could land on two partitions written in
    // either order.
    let accepted = post(&upload, "typed&key=uniq", csv.into()).await;
    assert_eq!(accepted["rows_produced"], 7);
    let id = accepted["import_id"].as_str().unwrap().to_owned();
    let rec = wait_final(&upload, &id, Duration::from_secs(60)).await;
    assert_eq!(rec["status"], "completed", "{rec}");
    assert_eq!(
        (
            rec["rows_written"].as_i64(),
            rec["rows_write_rejected"].as_i64()
        ),
        (Some(2), Some(5)),
        "{rec}"
    );

    let row: (i32, i64, String, f64, bool, String, String, String, String, String, String, String, String) = sqlx::query_as(
        "SELECT i, b, n::text, d, ok, t, vc, day::text, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), u::text, j::text, arr::text, m::text
           FROM typed WHERE i = 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(row.0, 1);
    assert_eq!(row.1, 9_000_000_000);
    assert_eq!(row.2, "12.34");
    assert_eq!(row.3, 1.5e10);
    assert!(row.4);
    assert_eq!(row.5, "a, \"b\"");
    assert_eq!(row.6, "abc");
    assert_eq!(row.7, "2024-02-29");
    assert_eq!(row.8, "2024-01-02 01:04:05");
    assert_eq!(row.9, "0190a1a1-0000-7000-8000-000000000001");
    assert_eq!(row.10, r#"{"k": [1, null]}"#);
    assert_eq!(row.11, r#"{x,"y z"}"#);
    assert_eq!(row.12, "meh");
    let nulls: i64 = sqlx::query_scalar("SELECT count(*) FROM typed WHERE i = 7 AND b IS NULL AND t IS NULL AND j IS NULL AND arr IS NULL")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(nulls, 1);

    let rejected: Vec<(i64, String, String, Value)> = sqlx::query_as(
        "SELECT line, stage, reason, fields FROM csvbus.rejected_rows ORDER BY line",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let lines: Vec<i64> = rejected.iter().map(|r| r.0).collect();
    assert_eq!(lines, [3, 4, 5, 6, 7]);
    assert!(rejected.iter().all(|r| r.1 == "write"));
    assert!(
        rejected[0]
            .2
            .contains("invalid input syntax for type integer"),
        "{}",
        rejected[0].2
    );
    assert!(rejected[1].2.contains("too long"), "{}", rejected[1].2);
    assert!(
        rejected[2].2.contains("out of range") || rejected[2].2.contains("date"),
        "{}",
        rejected[2].2
    );
    assert!(
        rejected[3].2.contains("check constraint"),
        "{}",
        rejected[3].2
    );
    assert!(rejected[4].2.contains("duplicate key"), "{}", rejected[4].2);
    assert_eq!(rejected[0].3["i"], "x");
    sink.stop().await;
    upload.stop().await;
}

/// Postgres counts a quoted value's line break as a line of the COPY: the row an error names
/// by its COPY line is not the row at that place when an earlier value has one, and the row
/// after the bad one must not be refused in its stead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_with_a_line_break_does_not_shift_the_row_a_refusal_names() {
    csvbus_tests::init_logs();
    let db = TestDb::new().await;
    db.exec("CREATE TABLE notes (id int, note text, day date)")
        .await;
    let topic = unique("sink");
    let e = test_env(&db, &topic, &unique("g"));
    let upload = spawn_upload(&e).await;
    let sink = spawn_sink(&e).await;
    // (Postgres counts the line break only once it has seen a line's end: not in the first row.)
    let csv = "id,note,day\n0,a,2024-01-01\n1,\"two\nlines\",2024-01-01\n2,b,not a date\n\
               3,c,2024-01-03\n";
    let accepted = post(&upload, "notes", csv.into()).await;
    let id = accepted["import_id"].as_str().unwrap().to_owned();
    let rec = wait_final(&upload, &id, Duration::from_secs(60)).await;
    let ids: Vec<i32> = sqlx::query_scalar("SELECT id FROM notes ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(ids, [0, 1, 3], "{rec}");
    let rejected: Vec<(i64, String)> =
        sqlx::query_as("SELECT line, reason FROM csvbus.rejected_rows ORDER BY line")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].0, 5);
    assert!(rejected[0].1.contains("not a date"), "{rejected:?}");
    sink.stop().await;
    upload.stop().await;
}

/// Dense refusals (every 7th row, and one key twice) in batches of thousands: each refused
/// row is rejected at its line, every other row is written once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dense_refusals_reject_exactly_their_rows() {
    csvbus_tests::init_logs();
    let db = TestDb::new().await;
    db.exec("CREATE TABLE dense (id int PRIMARY KEY, v int CHECK (v % 7 <> 0))")
        .await;
    let topic = unique("sink");
    let mut e = test_env(&db, &topic, &unique("g"));
    e.set("CSVBUS_TOPIC_PARTITIONS", "1");
    let upload = spawn_upload(&e).await;
    let sink = spawn_sink(&e).await;
    let n = 5_000;
    let mut csv = "id,v\n".to_owned();
    for id in 1..=n {
        csv.push_str(&format!("{id},{id}\n"));
    }
    csv.push_str("3,1\n"); // line n + 2: a key already written
    let url = upload.url("/v1/imports?table=dense&max_rejected=10000");
    let r = csvbus_tests::post_csv(&url, csv).await;
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["import_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let rec = wait_final(&upload, &id, Duration::from_secs(120)).await;
    let refused: Vec<i64> = (1..=n).filter(|i| i % 7 == 0).map(|i| i + 1).collect();
    assert_eq!(rec["rows_written"], n - refused.len() as i64, "{rec}");
    let mut expected = refused.clone();
    expected.push(n + 2);
    assert_eq!(db.rejected_lines(&id).await, expected);
    let ids: Vec<i32> = sqlx::query_scalar("SELECT id FROM dense ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let kept: Vec<i32> = (1..=n as i32).filter(|i| i % 7 != 0).collect();
    assert_eq!(ids, kept);
    sink.stop().await;
    upload.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_rows_land_exactly_once_and_the_import_completes() {
    let (db, topic, _group, e) = nums_stack().await;
    let upload = spawn_upload(&e).await;
    let sink = spawn_sink(&e).await;
    let n = 1_000_000;
    let accepted = post(&upload, "nums", reqwest::Body::wrap_stream(nums_csv(1, n))).await;
    assert_eq!(accepted["rows_produced"], n);
    let rec = wait_final(
        &upload,
        accepted["import_id"].as_str().unwrap(),
        Duration::from_secs(600),
    )
    .await;
    assert_eq!(rec["status"], "completed", "{rec}");
    assert_eq!(rec["rows_written"], n);
    assert_nums_exact(&db, n as i64).await;

    // Lag per partition shows up within a statistics interval (5 s) and reaches 0.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = reqwest::get(sink.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let lags: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.starts_with("csvbus_sink_consumer_lag{") && l.contains(&format!("\"{topic}\""))
            })
            .collect();
        if lags.len() == 4 && lags.iter().all(|l| l.ends_with(" 0")) {
            assert!(text.contains("csvbus_sink_rows_written_total"));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "lag gauges: {lags:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    sink.stop().await;
    upload.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_sinks_and_a_database_outage_leave_every_row_exactly_once() {
    let (db, _topic, _group, e) = nums_stack().await;
    let upload = spawn_upload(&e).await;
    let n = 300_000;
    let accepted = post(&upload, "nums", reqwest::Body::wrap_stream(nums_csv(1, n))).await;
    let id = accepted["import_id"].as_str().unwrap().to_owned();

    // Kill the sink abruptly at different moments: right after start, and mid-write.
    for (round, wait_for) in [(0, 0), (1, 20_000), (2, 90_000), (3, 160_000)] {
        let sink = KillableSink::start(&e);
        db.wait_rows_written(wait_for, Duration::from_secs(120))
            .await;
        sink.kill();
        eprintln!(
            "round {round}: sink killed at rows_written={}",
            db.rows_written().await
        );
    }
    // Writes cut off for certain: the test holds a lock on `nums`, so the sink's write waits
    // on it. Three times, the waiting write's connection is terminated and a new write (the
    // retry) must come and wait; then the whole database goes away (every connection but the
    // lock's) while a write waits. Only the writes' own connections are cut the first three
    // times: when every connection goes, the claims session goes too, and a write cancelled
    // with its partition is redone after the claim instead of retried.
    let mut lock = db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE nums IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let lock_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *lock)
        .await
        .unwrap();
    let sink = spawn_sink(&e).await;
    let retries_before = metric(&sink.url(""), "csvbus_sink_retries_total").await;
    let mut cut = Vec::new();
    for round in 0..4 {
        let writer = waiting_writer(&db, lock_pid, &cut).await;
        // Not from the lock's transaction: it would see the backends of its first statement.
        let all = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                    WHERE datname = current_database() AND pid NOT IN ($1, pg_backend_pid())";
        let one = "SELECT pg_terminate_backend($1)";
        let (sql, pid) = if round < 3 {
            (one, writer)
        } else {
            (all, lock_pid)
        };
        sqlx::query(sql).bind(pid).execute(&db.pool).await.unwrap();
        cut.push(writer);
    }
    lock.commit().await.unwrap();
    let rec = wait_final(&upload, &id, Duration::from_secs(300)).await;
    assert_eq!(rec["status"], "completed", "{rec}");
    assert_eq!(rec["rows_written"], n);
    assert_nums_exact(&db, n as i64).await;
    // Each write whose connection was cut failed and was retried.
    let retries = metric(&sink.url(""), "csvbus_sink_retries_total").await - retries_before;
    assert!(retries >= 3.0, "{retries} retries after 3 cut writes");
    sink.stop().await;
    upload.stop().await;
}

/// Waits for a backend, not one of `cut`, that waits on the lock `lock_pid` holds: a sink write
/// (a client's: an autovacuum worker analysing the freshly written table may wait there too,
/// and cutting it is no cut write).
async fn waiting_writer(db: &TestDb, lock_pid: i32, cut: &[i32]) -> i32 {
    let found = std::sync::Mutex::new(None);
    csvbus_tests::eventually(
        "a sink write waiting on the test's lock",
        Duration::from_secs(60),
        || async {
            let pid: Option<i32> = sqlx::query_scalar(
                "SELECT pid FROM pg_stat_activity
                  WHERE $1 = ANY(pg_blocking_pids(pid)) AND NOT pid = ANY($2)
                    AND backend_type = 'client backend' LIMIT 1",
            )
            .bind(lock_pid)
            .bind(cut)
            .fetch_optional(&db.pool)
            .await
            .unwrap();
            *found.lock().unwrap() = pid;
            pid.is_some()
        },
    )
    .await;
    let pid = found.lock().unwrap().take();
    pid.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sinks_share_a_group_through_a_rebalance_and_another_group_sees_every_row() {
    let (db, topic, _group, e) = nums_stack().await;
    let other_db = TestDb::new().await;
    other_db.exec(NUMS).await;
    let upload = spawn_upload(&e).await;
    let a = spawn_sink(&e).await;
    let b = spawn_sink(&e).await;
    let mut other = test_env(&other_db, &topic, &unique("other"));
    other.set("CSVBUS_SINK_BATCH_ROWS", "20000");
    let c = spawn_sink(&other).await;

    let n = 200_000;
    let accepted = post(&upload, "nums", reqwest::Body::wrap_stream(nums_csv(1, n))).await;
    let id = accepted["import_id"].as_str().unwrap().to_owned();
    // Stop one replica of the group mid-import: its partitions move to the other.
    db.wait_rows_written(50_000, Duration::from_secs(120)).await;
    a.stop().await;
    let rec = wait_final(&upload, &id, Duration::from_secs(300)).await;
    assert_eq!(rec["status"], "completed", "{rec}");
    assert_nums_exact(&db, n as i64).await;

    // The other group got every row too. Its database does not know the import, so it writes
    // none of them: each is a dead letter there, exactly once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let dead = loop {
        let (dead, distinct): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(DISTINCT (partition, \"offset\", row_in_message)) FROM csvbus.dead_letters
              WHERE reason LIKE 'unknown import%'",
        )
        .fetch_one(&other_db.pool)
        .await
        .unwrap();
        assert_eq!(dead, distinct);
        if dead >= n as i64 || tokio::time::Instant::now() >= deadline {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(dead, n as i64);
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM nums")
        .fetch_one(&other_db.pool)
        .await
        .unwrap();
    assert_eq!(written, 0);
    b.stop().await;
    c.stop().await;
    upload.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_left_by_an_earlier_incarnation_of_the_topic_do_not_skip_new_rows() {
    let (db, topic, group, e) = nums_stack().await;
    // The topic "was" deleted and created again: the group's positions from before are far
    // ahead of the new log's offsets.
    sqlx::query(
        "INSERT INTO csvbus.sink_offsets (group_id, topic, partition, next_offset, updated_at)
         SELECT $1, $2, p, 1000000, now() - interval '1 hour' FROM generate_series(0, 3) p",
    )
    .bind(&group)
    .bind(&topic)
    .execute(&db.pool)
    .await
    .unwrap();
    let upload = spawn_upload(&e).await;
    let n = 20_000;
    let accepted = post(&upload, "nums", reqwest::Body::wrap_stream(nums_csv(1, n))).await;
    let sink = spawn_sink(&e).await;
    let rec = wait_final(
        &upload,
        accepted["import_id"].as_str().unwrap(),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(rec["status"], "completed", "{rec}");
    assert_nums_exact(&db, n as i64).await;
    let behind: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM csvbus.sink_offsets WHERE group_id = $1 AND next_offset < 1000000",
    )
    .bind(&group)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(behind, 4, "every partition started over");
    sink.stop().await;
    upload.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_naming_a_completed_import_are_not_written() {
    let (db, topic, _group, e) = nums_stack().await;
    let upload = spawn_upload(&e).await;
    let sink = spawn_sink(&e).await;
    let accepted = post(
        &upload,
        "nums",
        reqwest::Body::wrap_stream(nums_csv(1, 10_000)),
    )
    .await;
    let id = accepted["import_id"].as_str().unwrap().to_owned();
    let rec = wait_final(&upload, &id, Duration::from_secs(60)).await;
    assert_eq!(rec["status"], "completed", "{rec}");

    // Two rows with the completed import's headers, past its last line (so not taken for
    // rows an earlier attempt sent), as anyone who can write to the topic could send them.
    let import: uuid::Uuid = id.parse().unwrap();
    for line in [20_001, 20_002] {
        send_forged(&topic, import, line, None).await;
    }
    wait_dead_letters(&db, 2).await;
    assert_nums_exact(&db, 10_000).await;
    // Handled all the same: delivered again below the position, they are no sign of a
    // recreated topic.
    let handled: Option<i64> = sqlx::query_scalar(
        "SELECT max(max_line) FROM csvbus.import_partitions WHERE import_id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(handled, Some(20_002));
    let rec = wait_final(&upload, &id, Duration::from_secs(10)).await;
    assert_eq!(
        (rec["rows_written"].as_i64(), rec["rows_produced"].as_i64()),
        (Some(10_000), Some(10_000))
    );
    sink.stop().await;
    upload.stop().await;
}

/// With `CSVBUS_SIGNING_KEY` on both services, the rows csvbus produced land, and rows anyone
/// else writes to the topic — with a live import's own headers, unsigned or signed with
/// another key — are dead-lettered, not written, and leave the import's handled line alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_signing_key_only_rows_csvbus_signed_are_written() {
    use csvbus_shared::message::Signer;

    let (db, topic, _group, mut e) = nums_stack().await;
    e.set(
        "CSVBUS_SIGNING_KEY",
        "0123456789abcdef0123456789abcdef-csvbus",
    );
    let upload = spawn_upload(&e).await;
    let sink = spawn_sink(&e).await;
    // A live import: its body stops after its first row until released.
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let body = csvbus_tests::stalled_body("id,v,half\n1,one,0\n", release.clone());
    let posting = tokio::spawn({
        let url = upload.url("/v1/imports?table=nums");
        async move {
            let r = csvbus_tests::post_csv(&url, body).await;
            (r.status(), r.json::<Value>().await.unwrap())
        }
    });
    let receiving = "SELECT id FROM csvbus.imports WHERE status = 'receiving'";
    csvbus_tests::eventually(
        "the import is receiving",
        Duration::from_secs(30),
        || async {
            sqlx::query(receiving)
                .fetch_optional(&db.pool)
                .await
                .unwrap()
                .is_some()
        },
    )
    .await;
    let id: uuid::Uuid = sqlx::query_scalar(receiving)
        .fetch_one(&db.pool)
        .await
        .unwrap();

    // Rows 5 and 6 with the live import's headers: one unsigned, one signed with another key.
    send_forged(&topic, id, 5, None).await;
    let other = Signer::new(b"not the key csvbus was given, but as long");
    send_forged(&topic, id, 6, Some(other)).await;
    wait_dead_letters(&db, 2).await;
    let reason: String = sqlx::query_scalar("SELECT reason FROM csvbus.dead_letters LIMIT 1")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(reason.contains("CSVBUS_SIGNING_KEY"), "{reason}");

    release.notify_one();
    let (status, accepted) = posting.await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let rec = wait_final(&upload, &id.to_string(), Duration::from_secs(60)).await;
    assert_eq!(rec["status"], "completed", "{rec}");
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM nums ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(ids, [1], "only the signed row is in the table");
    let handled: Option<i64> = sqlx::query_scalar(
        "SELECT max(max_line) FROM csvbus.import_partitions WHERE import_id = $1",
    )
    .bind(id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        handled,
        Some(2),
        "the forged lines left the handled line alone"
    );
    sink.stop().await;
    upload.stop().await;
}

/// Produces a `nums` row at `line` with import `import`'s headers (signed by `signer`, if any),
/// as anyone who can write to the topic could.
async fn send_forged(
    topic: &str,
    import: uuid::Uuid,
    line: u64,
    signer: Option<csvbus_shared::message::Signer>,
) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = csvbus_shared::kafka::client_config(&csvbus_tests::brokers())
        .create()
        .unwrap();
    let table = csvbus_shared::catalog::TableName::parse("public.nums", "public").unwrap();
    let payload = format!(r#"{{"id":"{line}","v":"forged","half":"0"}}"#);
    let headers = csvbus_shared::message::RowHeaders::new(import, &table, signer)
        .for_row(line, payload.as_bytes());
    let record = FutureRecord::<(), str>::to(topic)
        .payload(&payload)
        .headers(headers);
    producer
        .send(record, Duration::from_secs(10))
        .await
        .unwrap();
}

/// Waits until `n` dead letters are stored.
async fn wait_dead_letters(db: &TestDb, n: i64) {
    csvbus_tests::eventually(
        &format!("{n} rows dead-lettered"),
        Duration::from_secs(60),
        || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM csvbus.dead_letters")
                .fetch_one(&db.pool)
                .await
                .unwrap()
                == n
        },
    )
    .await;
}
