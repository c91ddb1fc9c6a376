//! The sink as separate processes (release binaries), SIGKILLed and restarted the way systemd,
//! Kubernetes or a shell loop would: with static group membership (`CSVBUS_SINK_INSTANCE_ID`)
//! every row lands exactly once and the import completes.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use csvbus_shared::config::Env;
use csvbus_tests::nums::{assert_nums_exact, nums_csv, NUMS};
use csvbus_tests::procs::Proc;
use csvbus_tests::{env, spawn_upload, unique, wait_final, Service, TestDb};
use serde_json::Value;

type Upload = Service<csvbus_upload::UploadError>;

async fn stack(extra: &[(&str, &str)]) -> (TestDb, Env, Upload) {
    csvbus_tests::init_logs();
    let db = TestDb::new().await;
    db.exec(NUMS).await;
    let mut e = env(&db, &unique("crash"));
    e.set("CSVBUS_SINK_GROUP", unique("g"));
    e.set("CSVBUS_SINK_LINGER_MS", "50");
    e.set("CSVBUS_SINK_WATCHDOG_MS", "8000");
    for (k, v) in extra {
        e.set(*k, *v);
    }
    let upload = spawn_upload(&e).await;
    (db, e, upload)
}

/// Posts `n` nums rows in the background; the task yields the 202 body.
fn post_nums(upload: &Upload, n: u64) -> tokio::task::JoinHandle<Value> {
    let url = upload.url("/v1/imports?table=nums");
    tokio::spawn(async move {
        let r = reqwest::Client::new()
            .post(url)
            .header("content-type", "text/csv")
            .body(reqwest::Body::wrap_stream(nums_csv(1, n)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        r.json().await.unwrap()
    })
}

/// A random duration in `lo..hi` milliseconds.
fn random_ms(lo: u64, hi: u64) -> Duration {
    Duration::from_millis(lo + (uuid::Uuid::new_v4().as_u128() % u128::from(hi - lo)) as u64)
}

/// How many partitions the sink says it holds.
async fn partitions(p: &Proc) -> u64 {
    p.readyz().await.1["partitions"].as_u64().unwrap_or(0)
}

async fn wait_for_partitions(p: &Proc, want: impl Fn(u64) -> bool, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !want(partitions(p).await) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}:\n{}",
            p.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_rows(db: &TestDb, at_least: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while db.rows_written().await < at_least {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fewer than {at_least} rows written in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the import to complete; on failure shows the sink's log.
async fn assert_completed(
    upload: &Upload,
    post: tokio::task::JoinHandle<Value>,
    sink: &Proc,
    n: u64,
) -> Value {
    let accepted = post.await.unwrap();
    assert_eq!(accepted["rows_produced"], n);
    let rec = wait_final(
        upload,
        accepted["import_id"].as_str().unwrap(),
        Duration::from_secs(180),
    )
    .await;
    assert_eq!(
        rec["status"],
        "completed",
        "{rec}\nsink log:\n{}",
        sink.log_tail()
    );
    assert_eq!(rec["rows_written"], n);
    rec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_killed_five_times_and_restarted_at_once_writes_every_row_once() {
    let instance = "crash-replica-1";
    let (db, e, upload) = stack(&[("CSVBUS_SINK_INSTANCE_ID", instance)]).await;
    let n = 400_000;
    let addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut sink = Proc::sink_at(addr, &e, &[]);
    sink.ready(Duration::from_secs(60)).await;
    let post = post_nums(&upload, n);
    wait_for_rows(&db, 1).await;
    for round in 0..5 {
        tokio::time::sleep(random_ms(200, 1500)).await;
        eprintln!("kill {round} at rows_written={}", db.rows_written().await);
        sink.kill().await;
        sink = Proc::sink_at(addr, &e, &[]);
    }
    assert_completed(&upload, post, &sink, n).await;
    assert_nums_exact(&db, n as i64).await;
    wait_for_partitions(
        &sink,
        |n| n == 4,
        "the restarted sink does not hold every partition",
    )
    .await;
    let (status, body) = sink.readyz().await;
    assert_eq!(status, 200, "{body}");
    sink.stop().await;
    upload.stop().await;
}
