//! The write stage's bound: `max_rejected` counts the rows Postgres refuses as well as those
//! refused while reading, in every mode; past it the import stops, its later rows are set
//! aside without being tried, and what it stored of its refusals stays small.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use csvbus_tests::{env, post_import, spawn_sink, spawn_upload, stalled_body, unique, TestDb};
use reqwest::StatusCode;
use tokio::sync::Notify;

/// A table whose check refuses `v = 0`: rows the upload reads fine and Postgres refuses.
const CHECKED: &str = "CREATE TABLE checked (id int PRIMARY KEY, v int CHECK (v <> 0))";

async fn stack() -> (TestDb, csvbus_shared::config::Env) {
    csvbus_tests::init_logs();
    let db = TestDb::new().await;
    db.exec(CHECKED).await;
    let mut e = env(&db, &unique("limits"));
    e.set("CSVBUS_SINK_GROUP", unique("g"));
    e.set("CSVBUS_SINK_BATCH_ROWS", "2000");
    e.set("CSVBUS_SINK_LINGER_MS", "50");
    (db, e)
}

/// Posts `body` as CSV with `query`, expects 202, and waits for the import to end: its id and
/// its record.
async fn accepted_and_ended(
    upload: &csvbus_tests::Service<csvbus_upload::UploadError>,
    query: &str,
    body: String,
) -> (String, serde_json::Value) {
    let http = reqwest::Client::new();
    let headers = [("content-type", "text/csv")];
    let (status, accepted) = post_import(&http, &upload.url(""), query, body, &headers).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let id = accepted["import_id"].as_str().unwrap().to_owned();
    let rec = csvbus_tests::wait_ended(upload, &id, Duration::from_secs(60)).await;
    (id, rec)
}

/// `n` rows with ids from `from`; `v` is 0 (refused by the table) where `bad(id)`.
fn rows(from: i64, n: i64, bad: impl Fn(i64) -> bool) -> String {
    (from..from + n)
        .map(|i| format!("{i},{}\n", if bad(i) { 0 } else { 1 }))
        .collect()
}

/// An append import whose every row Postgres refuses, with `max_rejected=10`: it ends `failed`
/// and stopped, 11 refusals counted and stored, the other rows set aside unwritten (not
/// bisected one by one, not stored) — and the record says so. Before the bound, the import
/// ended `completed` with 20,000 refusals stored.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_refused_by_postgres_count_toward_max_rejected_and_stop_the_import() {
    let (db, e) = stack().await;
    let upload = spawn_upload(&e).await;
    let sink = spawn_sink(&e).await;
    let body = format!("id,v\n{}", rows(1, 20_000, |_| true));
    let http = reqwest::Client::new();
    let (status, accepted) = post_import(
        &http,
        &upload.url(""),
        "table=checked&max_rejected=10",
        body,
        &[("content-type", "text/csv")],
    )
    .await;
    // The sink may stop the import while its body is still read (then the upload stops too).
    assert!(
        status == StatusCode::ACCEPTED || accepted["error"] == "too_many_rejected_rows",
        "{status} {accepted}"
    );
    let id = accepted["import_id"].as_str().unwrap();
    let rec = csvbus_tests::wait_ended(&upload, id, Duration::from_secs(60)).await;
    assert_eq!(rec["status"], "failed", "{rec}");
    assert_eq!(rec["stopped"], true, "{rec}");
    assert_eq!(rec["rows_written"], 0, "{rec}");
    assert_eq!(rec["rows_write_rejected"], 11, "{rec}");
    let produced = rec["rows_produced"].as_i64().unwrap();
    assert!(produced > 2_000, "{rec}");
    assert_eq!(rec["rows_set_aside"].as_i64(), Some(produced - 11), "{rec}");
    let error = rec["error"].as_str().unwrap();
    assert!(error.contains("max_rejected=10"), "{error}");
    assert!(error.contains("0 rows were written"), "{error}");
    let stored = db.count("SELECT count(*) FROM csvbus.rejected_rows").await;
    assert_eq!(stored, 11);
    assert_eq!(db.count("SELECT count(*) FROM checked").await, 0);
    sink.stop().await;
    upload.stop().await;
}

/// The rows a stopped append import wrote before its refusals passed the limit stay, and are
/// reported; a staged (atomic) import that passes it writes nothing. The upload still
/// reading when the sink stops its import stops too, answering 422 with the import's id and
/// what it wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_still_reading_stops_when_the_sink_stops_its_import() {
    let (db, e) = stack().await;
    let upload = spawn_upload(&e).await;
    let sink = spawn_sink(&e).await;
    // 100 good rows, then 5 refused ones; then the body stalls until the import is stopped.
    let head: &'static str = Box::leak(
        format!(
            "id,v\n{}{}",
            rows(1, 100, |_| false),
            rows(101, 5, |_| true)
        )
        .into_boxed_str(),
    );
    let release = Arc::new(Notify::new());
    let posting = tokio::spawn({
        let (url, body) = (upload.url(""), stalled_body(head, release.clone()));
        async move {
            let http = reqwest::Client::new();
            let headers = [("content-type", "text/csv")];
            post_import(&http, &url, "table=checked&max_rejected=2", body, &headers).await
        }
    });
    let stopped = "SELECT count(*) FROM csvbus.imports WHERE stopped AND status = 'failed'";
    csvbus_tests::eventually("the sink stops the import", Duration::from_secs(60), || {
        let db = &db;
        async move { db.count(stopped).await == 1 }
    })
    .await;
    // The client is still sending: the upload notices at its next progress tick.
    let (status, answer) = tokio::time::timeout(Duration::from_secs(30), posting)
        .await
        .expect("the upload answers while its body is still open")
        .unwrap();
    release.notify_one();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"], "too_many_rejected_rows", "{answer}");
    assert!(answer["import_id"].is_string(), "{answer}");
    let message = answer["message"].as_str().unwrap();
    assert!(message.contains("rows written: 100"), "{message}");
    assert_eq!(db.count("SELECT count(*) FROM checked").await, 100);

    // Atomic, its values refused on the way into its staging table: nothing written at all.
    let body = rows(1000, 500, |_| false).replace(",1\n", ",x\n");
    let body = format!("id,v\n{body}");
    let http = reqwest::Client::new();
    let (status, accepted) = post_import(
        &http,
        &upload.url(""),
        "table=checked&mode=atomic&max_rejected=3",
        body,
        &[("content-type", "text/csv")],
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let id = accepted["import_id"].as_str().unwrap();
    let rec = csvbus_tests::wait_ended(&upload, id, Duration::from_secs(60)).await;
    assert_eq!(
        (rec["status"].as_str(), rec["stopped"].as_bool()),
        (Some("failed"), Some(true)),
        "{rec}"
    );
    assert!(
        rec["error"]
            .as_str()
            .unwrap()
            .contains("nothing was written"),
        "{rec}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM checked WHERE id >= 1000")
            .await,
        0
    );
    sink.stop().await;
    upload.stop().await;
}

/// Refusals dense enough for the sink to write the rest of a batch a row at a time inside
/// Postgres (every third row refused): the import still stops at exactly `max_rejected + 1`
/// refusals, the rows before the last of them written, none after it. One partition, so that
/// "before" is the file's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dense_refusals_written_a_row_at_a_time_stop_exactly_at_max_rejected() {
    let (db, mut e) = stack().await;
    e.set("CSVBUS_TOPIC_PARTITIONS", "1");
    let upload = spawn_upload(&e).await;
    let sink = spawn_sink(&e).await;
    let body = format!("id,v\n{}", rows(1, 3_000, |i| i % 3 == 0));
    let http = reqwest::Client::new();
    let query = "table=checked&max_rejected=50";
    let headers = [("content-type", "text/csv")];
    let (status, accepted) = post_import(&http, &upload.url(""), query, body, &headers).await;
    assert!(
        status == StatusCode::ACCEPTED || accepted["error"] == "too_many_rejected_rows",
        "{status} {accepted}"
    );
    let id = accepted["import_id"].as_str().unwrap();
    let rec = csvbus_tests::wait_ended(&upload, id, Duration::from_secs(60)).await;
    assert_eq!(rec["stopped"], true, "{rec}");
    // The 51st refused row is id 153: the 102 good rows before it are written.
    assert_eq!(rec["rows_write_rejected"], 51, "{rec}");
    assert_eq!(rec["rows_written"], 102, "{rec}");
    assert_eq!(db.count("SELECT count(*) FROM checked").await, 102);
    assert_eq!(db.count("SELECT max(id)::bigint FROM checked").await, 152);
    let reasons = db.rejected(id).await;
    let lines: Vec<i64> = reasons.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, (1..=51).map(|k| 3 * k + 1).collect::<Vec<i64>>());
    for (line, reason) in &reasons {
        assert!(
            reason.contains("violates check constraint \"checked_v_check\"")
                && reason.ends_with("(SQLSTATE 23514)"),
            "line {line}: {reason}"
        );
    }
    let metrics = reqwest::get(sink.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("csvbus_sink_copies_total{format=\"one_by_one\"}")),
        "the rows after the second refusal went one by one"
    );
    sink.stop().await;
    upload.stop().await;
}

/// Batches smaller than their import's allowance count their refusals without its lock, side
/// by side; together they pass `max_rejected`, and the import still stops at exactly
/// `max_rejected + 1` refusals: a batch that finds, under the lock, that the others spent what
/// it counted on is written again the exact way. Four partitions' batches of 100 refused rows
/// go through the sink's writer at once (the sink's fetching does not line them up so on
/// demand) while the test holds the import's row, until at least two wait for it, each having
/// counted its 100 against the 150 allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_counted_side_by_side_still_stop_exactly_at_max_rejected() {
    use csvbus_sink::diagnostics::{write_with_retry, Batch, Record, RowMeta, Settings, Signal};
    let (db, e) = stack().await;
    let table = csvbus_shared::catalog::TableName::parse("checked", "public").unwrap();
    let columns = ["id".to_owned(), "v".to_owned()];
    let import = uuid::Uuid::now_v7();
    let mut new = csvbus_shared::imports::NewImport::append(import, &table, &columns);
    new.max_rejected = 150;
    let mut conn = db.pool.acquire().await.unwrap();
    csvbus_shared::imports::create(&mut conn, &new)
        .await
        .unwrap();
    drop(conn);
    let encoder = csvbus_shared::message::RowEncoder::new(&columns);
    let shared = std::sync::Arc::new(table.clone());
    let batch = |partition: i32| {
        let records = (0..100)
            .map(|i| {
                let id = (partition * 100 + i + 1).to_string();
                let mut payload = Vec::new();
                encoder.encode(&mut payload, [Some(id.as_str()), Some("0")].into_iter());
                Record {
                    offset: i64::from(i),
                    partition,
                    meta: Some(RowMeta {
                        import,
                        line: i64::from(partition * 100 + i + 2),
                        table: shared.clone(),
                    }),
                    payload: payload.into(),
                    ..Record::default()
                }
            })
            .collect();
        Batch::new("limits-writer".into(), partition, records)
    };
    let config = csvbus_sink::SinkConfig::from_env(&e).unwrap();
    let settings = Settings {
        group_id: unique("writer"),
        allowed_schemas: vec!["public".to_owned()],
        max_attempts: config.max_attempts,
        statement_timeout: config.statement_timeout,
        signer: None,
        copy_format: config.copy_format,
        key_conflicts: Default::default(),
        staged: Default::default(),
    };
    let mut hold = db.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM csvbus.imports WHERE id = $1 FOR NO KEY UPDATE")
        .bind(import)
        .execute(&mut *hold)
        .await
        .unwrap();
    let writers: Vec<_> = (0..4)
        .map(|p| {
            let (pool, settings, batch) = (db.pool.clone(), settings.clone(), batch(p));
            tokio::spawn(async move {
                let stop = tokio_util::sync::CancellationToken::new();
                write_with_retry(&pool, &settings, &batch, &stop, &Signal::default()).await
            })
        })
        .collect();
    let waiting = "SELECT count(*) FROM pg_stat_activity
                    WHERE datname = current_database() AND wait_event_type = 'Lock'
                      AND query LIKE '%max_rejected - rows_rejected - rows_write_rejected%'";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while db.count(waiting).await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "two batches did not come to wait for the import's row"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hold.rollback().await.unwrap();
    for w in writers {
        assert!(w.await.unwrap().is_some());
    }
    let (rejected, stopped): (i64, bool) =
        sqlx::query_as("SELECT rows_write_rejected, stopped FROM csvbus.imports WHERE id = $1")
            .bind(import)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((rejected, stopped), (151, true));
    assert_eq!(
        db.count("SELECT count(*) FROM csvbus.rejected_rows").await,
        151
    );
    assert_eq!(db.count("SELECT count(*) FROM checked").await, 0);
}

/// The rows written a row at a time read their values as COPY does: a value too long for
/// `varchar(3)` is refused (a cast to `varchar(3)` would cut it), `numeric(5,2)` rounds and
/// refuses what overflows, an empty value is NULL and `NOT NULL` refuses it, a bad date is
/// refused — each at its line with Postgres' message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_written_a_row_at_a_time_read_their_values_as_copy_does() {
    let (db, mut e) = stack().await;
    e.set("CSVBUS_TOPIC_PARTITIONS", "1");
    db.exec(
        "CREATE TABLE typed (id int PRIMARY KEY, code varchar(3), amount numeric(5,2) NOT NULL,
                             day date)",
    )
    .await;
    let upload = spawn_upload(&e).await;
    let sink = spawn_sink(&e).await;
    // Every fourth row is bad, in turn: too long, overflowing, empty, not a date.
    let bad = [
        "abcd,1.00,2024-01-01",
        "abc,1000.00,2024-01-01",
        "abc,,2024-01-01",
        "abc,1.00,2024-13-01",
    ];
    let mut body = "id,code,amount,day\n".to_owned();
    for id in 1..=400 {
        let row = match id % 4 {
            0 => bad[(id / 4 - 1) % 4].to_owned(),
            _ => format!("c{},{}.005,2024-02-{:02}", id % 10, id % 100, id % 28 + 1),
        };
        body.push_str(&format!("{id},{row}\n"));
    }
    let query = "table=typed&max_rejected=1000";
    let (id, rec) = accepted_and_ended(&upload, query, body).await;
    let id = id.as_str();
    assert_eq!(rec["status"], "completed", "{rec}");
    assert_eq!(
        (
            rec["rows_written"].as_i64(),
            rec["rows_write_rejected"].as_i64()
        ),
        (Some(300), Some(100)),
        "{rec}"
    );
    let reasons = db.rejected(id).await;
    let expect = [
        "value too long for type character varying(3) (SQLSTATE 22001)",
        "numeric field overflow (SQLSTATE 22003)",
        "null value in column \"amount\" of relation \"typed\" violates not-null constraint (SQLSTATE 23502)",
        "date/time field value out of range: \"2024-13-01\" (SQLSTATE 22008)",
    ];
    for (k, (line, reason)) in reasons.iter().enumerate() {
        assert_eq!(*line, 4 * (k as i64 + 1) + 1);
        assert_eq!(reason, expect[k % 4], "line {line}");
    }
    // 1.005 rounds to 1.01 as COPY rounds it; codes are kept whole.
    let (sum, codes): (String, i64) = sqlx::query_as(
        "SELECT sum(amount)::text, count(*) FILTER (WHERE length(code) = 2) FROM typed",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let expected: f64 = (1..=400)
        .filter(|i| i % 4 != 0)
        .map(|i| f64::from(i % 100) + 0.01)
        .sum();
    assert_eq!(sum, format!("{expected:.2}"));
    assert_eq!(codes, 300);
    let metrics = reqwest::get(sink.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("csvbus_sink_copies_total{format=\"one_by_one\"}"));
    sink.stop().await;
    upload.stop().await;
}

/// An atomic import whose every fifth row the target refuses when it is moved in (a check the
/// staging table does not have): after the second refused row found by halving, the rest are
/// inserted from the staging table a row at a time. Each refused row is rejected at its line
/// with its values, the others land; past `max_rejected` nothing does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_import_with_dense_refusals_is_moved_in_a_row_at_a_time() {
    let (db, e) = stack().await;
    let upload = spawn_upload(&e).await;
    let sink = spawn_sink(&e).await;
    let body = format!("id,v\n{}", rows(1, 2_000, |i| i % 5 == 0));
    let query = "table=checked&mode=atomic&max_rejected=1000";
    let (id, rec) = accepted_and_ended(&upload, query, body).await;
    let id = id.as_str();
    assert_eq!(rec["status"], "completed", "{rec}");
    assert_eq!(rec["rows_written"], 1_600, "{rec}");
    assert_eq!(rec["rows_write_rejected"], 400, "{rec}");
    let reasons = db.rejected(id).await;
    let lines: Vec<i64> = reasons.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, (1..=400).map(|k| 5 * k + 1).collect::<Vec<i64>>());
    assert!(
        reasons.iter().all(|(_, r)| r.contains("checked_v_check")),
        "{reasons:?}"
    );
    let fields: i64 = db
        .count(&format!(
            "SELECT count(*) FROM csvbus.rejected_rows
              WHERE import_id = '{id}' AND fields->>'v' = '0' AND (fields->>'id')::int % 5 = 0"
        ))
        .await;
    assert_eq!(fields, 400, "each refused row keeps its values");
    assert_eq!(db.count("SELECT count(*) FROM checked").await, 1_600);
    let metrics = reqwest::get(sink.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("csvbus_sink_copies_total{format=\"one_by_one\"}"));

    // Past max_rejected: the move is given up, nothing lands.
    let body = format!("id,v\n{}", rows(10_001, 2_000, |i| i % 5 == 0));
    let query = "table=checked&mode=atomic&max_rejected=250";
    let (_, rec) = accepted_and_ended(&upload, query, body).await;
    assert_eq!(rec["status"], "failed", "{rec}");
    let error = rec["error"].as_str().unwrap();
    assert!(error.contains("251 rows were refused"), "{error}");
    assert_eq!(
        db.count("SELECT count(*) FROM checked WHERE id > 10000")
            .await,
        0
    );
    sink.stop().await;
    upload.stop().await;
}

/// Upsert and skip imports with dense refusals (every fifth row refused by the table's check):
/// after the second refused row the rest of a group is staged and each row inserted
/// `ON CONFLICT` in line order, as the staged statement would have it — the last row of a key
/// wins an upsert, existing keys are skipped — and each refused row is rejected at its line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_and_skip_with_dense_refusals_keep_their_meaning() {
    let (db, mut e) = stack().await;
    e.set("CSVBUS_TOPIC_PARTITIONS", "1");
    db.exec("INSERT INTO checked SELECT i, 1 FROM generate_series(1, 100) i")
        .await;
    let upload = spawn_upload(&e).await;
    let sink = spawn_sink(&e).await;
    // ids 1..=1000 (every fifth refused), then 1..=50 again with v=3, then id 7 refused.
    let mut body = format!("id,v\n{}", rows(1, 1_000, |i| i % 5 == 0)).replace(",1\n", ",2\n");
    for id in 1..=50 {
        body.push_str(&format!("{id},3\n"));
    }
    body.push_str("7,0\n");
    let query = "table=checked&mode=upsert&key=id&max_rejected=1000";
    let (id, rec) = accepted_and_ended(&upload, query, body).await;
    let id = id.as_str();
    assert_eq!(rec["status"], "completed", "{rec}");
    assert_eq!(rec["rows_write_rejected"], 201, "{rec}");
    assert_eq!(rec["rows_written"], 1_050 - 200, "{rec}");
    let mut refused: Vec<i64> = (1..=200).map(|k| 5 * k + 1).collect();
    refused.push(1_052);
    assert_eq!(db.rejected_lines(id).await, refused);
    let expected = |i: i64| match (i <= 50, i % 5 != 0, i <= 100) {
        (true, ..) => Some(3),
        (false, true, _) => Some(2),
        (false, false, true) => Some(1),
        (false, false, false) => None,
    };
    let got: Vec<(i32, i32)> = sqlx::query_as("SELECT id, v FROM checked ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let want: Vec<(i32, i32)> = (1..=1_000)
        .filter_map(|i| expected(i).map(|v| (i as i32, v)))
        .collect();
    assert_eq!(got, want);

    // Skip: every key up to 1000 that is there is skipped, the new ones written.
    let body = format!("id,v\n{}", rows(1, 1_200, |i| i % 5 == 0));
    let query = "table=checked&mode=skip&key=id&max_rejected=1000";
    let (_, rec) = accepted_and_ended(&upload, query, body).await;
    assert_eq!(rec["status"], "completed", "{rec}");
    assert_eq!(rec["rows_write_rejected"], 240, "{rec}");
    assert_eq!(rec["rows_skipped"], 800, "{rec}");
    assert_eq!(rec["rows_written"], 160, "{rec}");
    assert_eq!(
        db.count("SELECT count(*) FROM checked WHERE v = 1 AND id > 1000")
            .await,
        160
    );
    let metrics = reqwest::get(sink.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("csvbus_sink_copies_total{format=\"one_by_one\"}"));
    sink.stop().await;
    upload.stop().await;
}
