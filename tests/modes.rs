//! Import modes (append, atomic, replace, upsert, skip) and Idempotency-Key retries, against
//! real Postgres and the real broker, with the services in process.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use csvbus_shared::config::Env;
use csvbus_tests::nums::{assert_nums_exact, nums_csv, NUMS};
use csvbus_tests::{
    env, post_import, post_keyed_until_accepted, spawn_sink, spawn_upload, unique, wait_ended,
    Service, TestDb,
};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;

type Upload = Service<csvbus_upload::UploadError>;

async fn stack(sql: &str) -> (TestDb, Env) {
    csvbus_tests::init_logs();
    let db = TestDb::new().await;
    db.exec(sql).await;
    let mut e = env(&db, &unique("modes"));
    e.set("CSVBUS_SINK_GROUP", unique("g"));
    e.set("CSVBUS_SINK_LINGER_MS", "50");
    e.set("CSVBUS_SINK_FINALIZE_INTERVAL_MS", "100");
    e.set("CSVBUS_ORPHAN_AFTER_MS", "4000");
    (db, e)
}

async fn post(
    upload: &Upload,
    query: &str,
    key: Option<&str>,
    body: reqwest::Body,
) -> (StatusCode, Value) {
    let headers: Vec<(&str, &str)> = [("content-type", "text/csv")]
        .into_iter()
        .chain(key.map(|k| ("idempotency-key", k)))
        .collect();
    let http = reqwest::Client::new();
    post_import(&http, &upload.url(""), query, body, &headers).await
}

/// Waits until the import will change no more; its record.
async fn wait_done(upload: &Upload, id: &Value) -> Value {
    wait_ended(upload, id.as_str().unwrap(), Duration::from_secs(120)).await
}

async fn import(upload: &Upload, query: &str, csv: &'static str) -> Value {
    let (status, body) = post(upload, query, None, csv.into()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    wait_done(upload, &body["import_id"]).await
}

async fn people(db: &TestDb) -> Vec<(i32, String)> {
    sqlx::query_as("SELECT id, name FROM people ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

fn rows(v: &[(i32, &str)]) -> Vec<(i32, String)> {
    v.iter().map(|(i, s)| (*i, (*s).to_owned())).collect()
}

async fn rejected_lines(db: &TestDb, id: &Value) -> Vec<i64> {
    db.rejected_lines(id.as_str().unwrap()).await
}

const PEOPLE: &str =
    "CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL, email text UNIQUE);
                      CREATE TABLE tags (tag text, n int);
                      INSERT INTO people (id, name) VALUES (1, 'ann'), (2, 'bob'), (3, 'cy');";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mode_does_what_it_says_to_a_table_with_data() {
    let (db, e) = stack(PEOPLE).await;
    let upload = spawn_upload(&e).await;
    let _sink = spawn_sink(&e).await;

    let rec = import(&upload, "table=people", "id,name\n4,dee\n5,eve\n").await;
    assert_eq!(
        (rec["status"].as_str(), rec["mode"].as_str()),
        (Some("completed"), Some("append"))
    );
    assert_eq!(people(&db).await.len(), 5);

    // atomic: the duplicate id is rejected at its line when moved in; the rest lands.
    let rec = import(
        &upload,
        "table=people&mode=atomic",
        "id,name\n6,fay\n1,dup\n7,gus\n",
    )
    .await;
    assert_eq!(rec["status"], "completed", "{rec}");
    assert_eq!(
        (
            rec["rows_written"].as_i64(),
            rec["rows_write_rejected"].as_i64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(rejected_lines(&db, &rec["id"]).await, [3]);
    assert_eq!(people(&db).await.len(), 7);

    // atomic with max_rejected=0: one refused row fails the import and nothing lands.
    let rec = import(
        &upload,
        "table=people&mode=atomic&max_rejected=0",
        "id,name\n8,hal\n2,dup\n",
    )
    .await;
    assert_eq!(rec["status"], "failed", "{rec}");
    assert!(
        rec["error"].as_str().unwrap().contains("max_rejected"),
        "{rec}"
    );
    assert_eq!(
        people(&db).await.len(),
        7,
        "a failed atomic import leaves the table as it was"
    );

    // upsert: the file's last row per key wins, also for a key twice in one batch.
    let rec = import(
        &upload,
        "table=people&mode=upsert",
        "id,name\n1,ann2\n12,x\n12,y\n",
    )
    .await;
    assert_eq!(rec["status"], "completed", "{rec}");
    let p = people(&db).await;
    assert!(
        p.contains(&(1, "ann2".into())) && p.contains(&(12, "y".into())),
        "{p:?}"
    );
    assert_eq!(p.len(), 8);

    // skip: rows whose key is there already are counted, not written.
    let rec = import(
        &upload,
        "table=people&mode=skip",
        "id,name\n1,zed\n13,kim\n13,kit\n",
    )
    .await;
    assert_eq!(rec["status"], "completed", "{rec}");
    assert_eq!(
        (rec["rows_written"].as_i64(), rec["rows_skipped"].as_i64()),
        (Some(1), Some(2))
    );
    let p = people(&db).await;
    assert!(
        p.contains(&(1, "ann2".into())) && p.contains(&(13, "kim".into())),
        "{p:?}"
    );

    // replace: the table is exactly the file afterwards.
    let rec = import(
        &upload,
        "table=people&mode=replace",
        "id,name\n20,new\n21,newer\n",
    )
    .await;
    assert_eq!(rec["status"], "completed", "{rec}");
    assert_eq!(people(&db).await, rows(&[(20, "new"), (21, "newer")]));

    // No staging table is left behind.
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'csvbus' AND tablename LIKE 'stage_%'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_and_conflict_columns_are_checked_before_the_body() {
    let (_db, e) = stack(PEOPLE).await;
    let upload = spawn_upload(&e).await;
    let cases = [
        (
            "table=people&mode=merge",
            StatusCode::BAD_REQUEST,
            "invalid_mode",
        ),
        (
            "table=tags&mode=upsert",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_conflict",
        ),
        (
            "table=people&mode=upsert&conflict=name",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_conflict",
        ),
        (
            "table=people&mode=append&conflict=id",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "table=people&mode=skip&conflict=email",
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_conflict_column",
        ),
    ];
    for (query, status, code) in cases {
        let (s, body) = post(&upload, query, None, "id,name\n1,a\n".into()).await;
        assert_eq!(
            (s, body["error"].as_str()),
            (status, Some(code)),
            "{query}: {body}"
        );
    }
    // A unique index other than the primary key may be named.
    let (s, body) = post(
        &upload,
        "table=people&mode=upsert&conflict=email",
        None,
        "id,name,email\n9,i,i@x\n".into(),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
}

/// A body of nums rows `1..=n` that then never ends (the client is cut off by the test).
fn stalled_nums(n: u64) -> reqwest::Body {
    reqwest::Body::wrap_stream(nums_csv(1, n).chain(futures::stream::pending()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_import_cut_off_and_retried_with_its_key_lands_exactly_once() {
    let (db, e) = stack(NUMS).await;
    let upload = spawn_upload(&e).await;
    let _sink = spawn_sink(&e).await;
    let key = unique("key");
    let first = {
        let url = upload.url("/v1/imports?table=nums");
        let key = key.clone();
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .header("idempotency-key", key)
                .body(stalled_nums(30_000))
                .send()
                .await
        })
    };
    // Rows reach the table while the upload runs; then the client goes away.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while db.count("SELECT count(*) FROM nums").await < 20_000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "rows never reached the table"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // While it runs, the same key is refused with the import's id.
    let (s, v) = post(&upload, "table=nums", Some(&key), "id,v,half\n".into()).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("import_running")),
        "{v}"
    );
    let id = v["import_id"].clone();
    first.abort();

    // A different body under the key is refused once it reaches the checkpoint.
    let other = || reqwest::Body::from("id,v,half\n1,other,0\n");
    let (s, v) = loop {
        let (s, v) = post(&upload, "table=nums", Some(&key), other()).await;
        if s != StatusCode::CONFLICT {
            break (s, v);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (s, v["error"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("idempotency_key_mismatch")
        ),
        "{v}"
    );

    let full = || reqwest::Body::wrap_stream(nums_csv(1, 50_000));
    let url = upload.url("/v1/imports?table=nums");
    let within = Duration::from_secs(60);
    let (v, refused) = post_keyed_until_accepted(&url, &key, full, &[409], within).await;
    // Refused only while the first attempt was still ending.
    assert!(
        refused.iter().all(|r| r.contains("import_running")),
        "{refused:?}"
    );
    assert_eq!(v["import_id"], id, "the retry resumes the same import");
    assert!(v["resumed_from_line"].as_u64().unwrap() > 1_000, "{v}");
    let rec = wait_done(&upload, &id).await;
    assert_eq!(rec["status"], "completed", "{rec}");
    // The cut-off upload, the mismatching one (refused at the checkpoint), the resume.
    assert_eq!(rec["attempts"], 3);
    assert_nums_exact(&db, 50_000).await;

    // Once accepted, the same key answers as before (200, `replayed`) and produces nothing
    // again.
    let (s, again) = post(&upload, "table=nums", Some(&key), full()).await;
    assert_eq!(
        (s, &again["import_id"], &again["replayed"]),
        (StatusCode::OK, &id, &Value::Bool(true)),
        "{again}"
    );
    assert_eq!(again["rows_produced"], 50_000);
    // Another file under the key is not answered from the import: its bytes differ.
    let (s, v) = post(&upload, "table=nums", Some(&key), other()).await;
    assert_eq!(
        (s, v["error"].as_str(), &v["import_id"]),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("idempotency_key_mismatch"),
            &id
        ),
        "{v}"
    );
    assert_nums_exact(&db, 50_000).await;
}

/// A complete atomic import is moved in when the sink writes its last rows, not at the
/// finalizer's next look (an hour away here): the sink starts after the upload ended, looks
/// once at its start (nothing complete yet), and only its writes can tell it to look again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_import_moves_in_as_soon_as_its_last_rows_are_written() {
    let (db, mut e) = stack(NUMS).await;
    e.set("CSVBUS_SINK_FINALIZE_INTERVAL_MS", "3600000");
    let mut upload = spawn_upload(&e).await;
    upload.ready().await;
    let body500 = reqwest::Body::wrap_stream(nums_csv(1, 500));
    let (status, body) = post(&upload, "table=nums&mode=atomic", None, body500).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "produced", "{body}");
    let mut sink = spawn_sink(&e).await;
    sink.ready().await;
    let rec = wait_ended(
        &upload,
        body["import_id"].as_str().unwrap(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(rec["status"], "completed", "{rec}");
    assert_nums_exact(&db, 500).await;
    upload.stop().await;
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_import_is_seen_whole_or_not_at_all() {
    seen_whole_or_not_at_all("atomic", 40_001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_import_is_seen_whole_or_not_at_all() {
    seen_whole_or_not_at_all("replace", 40_000).await;
}

/// An import in `mode` into `nums` holding one old row: cut off half way it leaves the table as
/// it was; complete, a reader sees the old table or the new one (`after` rows), never a part.
async fn seen_whole_or_not_at_all(mode: &str, after: i64) {
    let (db, e) = stack(&format!(
        "{NUMS}; INSERT INTO nums VALUES (0, 'v0, \"q\"', 0)"
    ))
    .await;
    let query = format!("table=nums&mode={mode}");
    let upload = spawn_upload(&e).await;
    let _sink = spawn_sink(&e).await;

    // Cut off half way: nothing reaches the table, and the staging table goes.
    let first = {
        let url = upload.url(&format!("/v1/imports?{query}"));
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .body(stalled_nums(20_000))
                .send()
                .await
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let staged = "SELECT coalesce(sum(rows_written), 0)::bigint FROM csvbus.imports";
    while db.count(staged).await < 10_000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "rows were never staged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        db.count("SELECT count(*) FROM nums").await,
        1,
        "staged rows are not in the table"
    );
    first.abort();
    let stages =
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'csvbus' AND tablename LIKE 'stage_%'";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while db.count(stages).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the staging table of the aborted import stays"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status: String = sqlx::query_scalar("SELECT status FROM csvbus.imports")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(status, "aborted");
    assert_eq!(db.count("SELECT count(*) FROM nums").await, 1);

    // A whole one: a reader sees 1 row (the old one) or all of them, never part.
    let (s, v) = post(
        &upload,
        &query,
        None,
        reqwest::Body::wrap_stream(nums_csv(1, 40_000)),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let mut seen = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let n = db.count("SELECT count(*) FROM nums").await;
        seen.insert(n);
        if n == after {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the import never landed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), [1, after]);
    db.exec("DELETE FROM nums WHERE id = 0").await;
    assert_nums_exact(&db, 40_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_named_like_csvbus_own_is_an_ordinary_column_in_every_mode() {
    let (db, e) = stack(
        "CREATE TABLE lines (id int PRIMARY KEY, csvbus_line text);
         CREATE TABLE odd (id int PRIMARY KEY, \"csvbus line\" int)",
    )
    .await;
    let upload = spawn_upload(&e).await;
    let _sink = spawn_sink(&e).await;
    for (mode, body) in [
        ("atomic", "id,csvbus_line\n1,a\n2,b\n"),
        ("upsert", "id,csvbus_line\n2,B\n3,c\n"),
        ("skip", "id,csvbus_line\n3,x\n4,d\n"),
        ("replace", "id,csvbus_line\n1,a\n2,B\n3,c\n4,d\n"),
    ] {
        let (s, v) = post(
            &upload,
            &format!("table=lines&mode={mode}"),
            None,
            body.into(),
        )
        .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{mode}: {v}");
        let rec = wait_done(&upload, &v["import_id"]).await;
        assert_eq!(rec["status"], "completed", "{mode}: {rec}");
    }
    let rows: Vec<(i32, String)> = sqlx::query_as("SELECT id, csvbus_line FROM lines ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        rows,
        [
            (1, "a".into()),
            (2, "B".into()),
            (3, "c".into()),
            (4, "d".into())
        ]
    );
    // csvbus' own staging name: refused in the modes that stage, plain in append.
    let (s, v) = post(&upload, "table=odd&mode=atomic", None, "id\n1\n".into()).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("reserved_column")),
        "{v}"
    );
    let (s, v) = post(&upload, "table=odd", None, "id\n1\n".into()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
}

/// A file without a header (`create=true` read its first line as a row), cut off and retried
/// under its key, is read without a header again: the retry resumes the import, and every
/// row lands once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_headerless_import_cut_off_and_retried_resumes_without_a_header() {
    let (db, e) = stack("SELECT 1").await;
    let upload = spawn_upload(&e).await;
    let _sink = spawn_sink(&e).await;
    let key = unique("key");
    let headerless = |n: u64| nums_csv(1, n).skip(1);
    let url = upload.url("/v1/imports?table=dump&create=true");
    let first = {
        let (url, key) = (url.clone(), key.clone());
        let body = reqwest::Body::wrap_stream(headerless(20_000).chain(futures::stream::pending()));
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .header("idempotency-key", key)
                .body(body)
                .send()
                .await
        })
    };
    let rows = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM dump")
            .fetch_one(&db.pool)
            .await
            .unwrap_or(0)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while rows().await < 5_000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "rows never reached the table"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.abort();
    let full = || reqwest::Body::wrap_stream(headerless(30_000));
    let within = Duration::from_secs(60);
    let (v, _) = post_keyed_until_accepted(&url, &key, full, &[409], within).await;
    assert!(v["resumed_from_line"].as_u64().unwrap() > 1, "{v}");
    assert_eq!(v["read_as"]["header"], false, "{v}");
    let rec = wait_done(&upload, &v["import_id"]).await;
    assert_eq!(rec["status"], "completed", "{rec}");
    let (n, distinct, min, max): (i64, i64, Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT column_1), min(column_1), max(column_1) FROM dump",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        (n, distinct, min, max),
        (30_000, 30_000, Some(1), Some(30_000))
    );
}
