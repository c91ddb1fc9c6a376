//! The upload service as a separate process (the release binary), SIGKILLed with a request open:
//! the import ends aborted (or, for atomic and replace, the table untouched) and a keyed retry
//! resumes it; no row lands twice. The sink's crashes are in `sink_crash.rs`.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use csvbus_tests::nums::{assert_nums_exact, nums_csv, NUMS};
use csvbus_tests::procs::Proc;
use csvbus_tests::{env, unique, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_service_killed_mid_upload_leaves_an_aborted_import_and_no_row_twice() {
    csvbus_tests::init_logs();
    let db = TestDb::new().await;
    db.exec(NUMS).await;
    let mut e = env(&db, &unique("crash-up"));
    e.set("CSVBUS_SINK_GROUP", unique("g"));
    e.set("CSVBUS_SINK_LINGER_MS", "50");
    e.set("CSVBUS_ORPHAN_AFTER_MS", "2000");
    let sink = csvbus_tests::spawn_sink(&e).await;
    let mut first = Proc::upload(&e, &[]);
    first.ready(Duration::from_secs(60)).await;

    // A client that sends 1,000 rows, then holds the request open.
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
    let mut head = b"id,v,half\n".to_vec();
    for i in 1..=1000 {
        head.extend(format!("{i},\"v{i}, \"\"q\"\"\",{}\n", i / 2).bytes());
    }
    tx.unbounded_send(Ok(head)).unwrap();
    let url = first.url("/v1/imports?table=nums");
    let client = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .body(reqwest::Body::wrap_stream(rx))
            .send()
            .await
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let id: uuid::Uuid = loop {
        let row: Option<(uuid::Uuid, i64)> =
            sqlx::query_as("SELECT id, rows_produced FROM csvbus.imports")
                .fetch_optional(&db.pool)
                .await
                .unwrap();
        if let Some((id, produced)) = row {
            if produced >= 1000 {
                break id;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rows were never produced"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    first.kill().await;
    let answer = client.await.unwrap();
    assert!(
        answer.is_err() || !answer.unwrap().status().is_success(),
        "the client must see a failure"
    );
    drop(tx);

    // Another instance finds the orphan; every row that reached the topic is written once.
    let mut second = Proc::upload(&e, &[]);
    second.ready(Duration::from_secs(60)).await;
    let topic = e.raw("CSVBUS_TOPIC").unwrap().to_owned();
    let on_topic = csvbus_tests::kafka::scan_topic(
        &csvbus_tests::brokers(),
        &topic,
        1000,
        Duration::from_secs(20),
        Duration::from_secs(2),
        |_| {},
    )
    .await as i64;
    assert!(on_topic > 0, "nothing reached the topic");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, written): (String, i64) =
            sqlx::query_as("SELECT status, rows_written FROM csvbus.imports WHERE id = $1")
                .bind(id)
                .fetch_one(&db.pool)
                .await
                .unwrap();
        if status == "aborted" && written == on_topic {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "import {status}, written {written} of {on_topic}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (count, distinct, max): (i64, i64, Option<i64>) =
        sqlx::query_as("SELECT count(*), count(DISTINCT id), max(id) FROM nums")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((count, distinct), (on_topic, on_topic));
    assert!(max <= Some(1000));
    second.stop().await;
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atomic_and_replace_imports_whose_upload_service_dies_leave_the_table_and_resume() {
    use futures::StreamExt;
    csvbus_tests::init_logs();
    let db = TestDb::new().await;
    db.exec(NUMS).await;
    let mut e = env(&db, &unique("crash-atomic"));
    e.set("CSVBUS_SINK_GROUP", unique("g"));
    e.set("CSVBUS_SINK_LINGER_MS", "50");
    e.set("CSVBUS_SINK_FINALIZE_INTERVAL_MS", "100");
    e.set("CSVBUS_ORPHAN_AFTER_MS", "2000");
    let sink = csvbus_tests::spawn_sink(&e).await;
    for mode in ["atomic", "replace"] {
        db.exec("TRUNCATE nums; TRUNCATE csvbus.imports CASCADE")
            .await;
        db.exec("INSERT INTO nums VALUES (0, 'v0, \"q\"', 0)").await;
        let key = unique("key");
        let mut first = Proc::upload(&e, &[]);
        first.ready(Duration::from_secs(60)).await;
        let url = first.url(&format!("/v1/imports?table=nums&mode={mode}"));
        let client = {
            let (url, key) = (url.clone(), key.clone());
            tokio::spawn(async move {
                let body = nums_csv(1, 20_000).chain(futures::stream::pending());
                reqwest::Client::new()
                    .post(url)
                    .header("idempotency-key", key)
                    .body(reqwest::Body::wrap_stream(body))
                    .send()
                    .await
            })
        };
        // Rows are staged while the upload runs, and its checkpoint is saved; none is in the
        // table.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let staged = "SELECT coalesce(min(least(rows_written, acked_line)), 0) FROM csvbus.imports";
        while sqlx::query_scalar::<_, i64>(staged)
            .fetch_one(&db.pool)
            .await
            .unwrap()
            < 10_000
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{mode}: nothing staged"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        first.kill().await;
        assert!(
            client.await.unwrap().is_err(),
            "{mode}: the client sees the failure"
        );
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM nums")
            .fetch_all(&db.pool)
            .await
            .unwrap();
        assert_eq!(ids, [0], "{mode}: the table is as it was");

        // Another instance takes over: once it finds the import orphaned, the retry resumes it.
        let mut second = Proc::upload(&e, &[]);
        second.ready(Duration::from_secs(60)).await;
        let url = second.url(&format!("/v1/imports?table=nums&mode={mode}"));
        let full = || reqwest::Body::wrap_stream(nums_csv(1, 30_000));
        // 409 until the killed attempt is found orphaned.
        let within = Duration::from_secs(90);
        let (v, _) =
            csvbus_tests::post_keyed_until_accepted(&url, &key, full, &[409], within).await;
        assert!(v["resumed_from_line"].as_u64().unwrap() > 1, "{mode}: {v}");
        let rec = csvbus_tests::wait_final_at(
            &second.url(""),
            v["import_id"].as_str().unwrap(),
            Duration::from_secs(120),
        )
        .await;
        assert_eq!(rec["status"], "completed", "{mode}: {rec}");
        if mode == "atomic" {
            db.exec("DELETE FROM nums WHERE id = 0").await;
        }
        assert_nums_exact(&db, 30_000).await;
        second.stop().await;
    }
    sink.stop().await;
}

/// The `202` comes only once the broker acknowledged every row: the service SIGKILLed the moment
/// it answers loses none of them (rows still queued in librdkafka would die with it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_service_killed_right_after_its_202_lost_no_row() {
    csvbus_tests::init_logs();
    let db = TestDb::new().await;
    db.exec(NUMS).await;
    let topic = unique("acks");
    let e = env(&db, &topic);
    let mut upload = Proc::upload(&e, &[]);
    upload.ready(Duration::from_secs(60)).await;
    let n = 200_000;
    let resp = reqwest::Client::new()
        .post(upload.url("/v1/imports?table=nums"))
        .body(reqwest::Body::wrap_stream(nums_csv(1, n)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    upload.kill().await;
    let read = csvbus_tests::kafka::scan_topic(
        &csvbus_tests::brokers(),
        &topic,
        n as usize,
        Duration::from_secs(60),
        Duration::from_secs(2),
        |_| {},
    )
    .await;
    assert_eq!(
        read, n as usize,
        "rows acknowledged after the 202 died with the service"
    );
}

/// The sink runs with two malloc arenas (`csvbus_shared::malloc`: a lower peak RSS at the same
/// speed) unless the operator set `MALLOC_ARENA_MAX`; it re-executes itself to get them, and
/// still starts and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_runs_with_two_malloc_arenas_unless_told_otherwise() {
    csvbus_tests::init_logs();
    let db = TestDb::new().await;
    let mut e = env(&db, &unique("arenas"));
    e.set("CSVBUS_SINK_GROUP", unique("g"));
    for (given, runs_with) in [(None, "2"), (Some("4"), "4")] {
        let extra: Vec<(&str, &str)> = given.map(|v| ("MALLOC_ARENA_MAX", v)).into_iter().collect();
        let mut sink = Proc::sink(&e, &extra);
        sink.ready(Duration::from_secs(60)).await;
        assert_eq!(sink.environ("MALLOC_ARENA_MAX").as_deref(), Some(runs_with));
        sink.stop().await;
    }
}

#[test]
fn service_binaries_answer_help_and_version_instead_of_starting() {
    for bin in ["csvbus-upload", "csvbus-sink"] {
        let run = |arg: &str| {
            std::process::Command::new(csvbus_tests::procs::release_binary(bin))
                .arg(arg)
                .env_clear()
                .output()
                .unwrap()
        };
        let help = run("--help");
        let text = String::from_utf8_lossy(&help.stdout);
        assert_eq!(help.status.code(), Some(0), "{bin}: {text}");
        assert!(
            text.contains("DATABASE_URL") && text.contains("CSVBUS_TOPIC"),
            "{bin}: {text}"
        );
        let version = run("--version");
        assert_eq!(version.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&version.stdout).starts_with(bin));
        assert_eq!(run("--port=1").status.code(), Some(2), "{bin}");
    }
}
