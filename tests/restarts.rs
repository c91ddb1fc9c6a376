//! PostgreSQL restarted under the release sink while it writes: the outage is waited out and the
//! table ends exact. A test binary of its own (cargo runs test binaries one after the other), so
//! the restart disturbs no other test. Restarting the cluster needs root (as CI runs).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use csvbus_tests::nums::{assert_nums_exact, nums_csv, NUMS};
use csvbus_tests::procs::Proc;
use csvbus_tests::{env, spawn_upload, unique, wait_final, TestDb};

/// `pg_ctlcluster <version> <cluster> restart` of the cluster on port 5432.
async fn restart_postgres() {
    let clusters = tokio::process::Command::new("pg_lsclusters")
        .arg("-h")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&clusters.stdout);
    let line = text
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some("5432"))
        .expect("a cluster on port 5432 (scripts/stack.sh)");
    let mut words = line.split_whitespace();
    let (version, cluster) = (words.next().unwrap(), words.next().unwrap());
    let status = tokio::process::Command::new("pg_ctlcluster")
        .args([version, cluster, "restart"])
        .status()
        .await
        .unwrap();
    assert!(status.success(), "pg_ctlcluster restart (needs root)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_waits_out_a_postgres_restart_and_every_row_lands_once() {
    csvbus_tests::init_logs();
    let db = TestDb::new().await;
    db.exec(NUMS).await;
    let mut e = env(&db, &unique("restart"));
    e.set("CSVBUS_SINK_GROUP", unique("g"));
    e.set("CSVBUS_SINK_LINGER_MS", "50");
    let upload = spawn_upload(&e).await;
    let mut sink = Proc::sink(&e, &[("CSVBUS_SINK_INSTANCE_ID", "restart-1")]);
    sink.ready(Duration::from_secs(60)).await;

    let n = 300_000u64;
    let r = reqwest::Client::new()
        .post(upload.url("/v1/imports?table=nums"))
        .body(reqwest::Body::wrap_stream(nums_csv(1, n)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let accepted: serde_json::Value = r.json().await.unwrap();
    let id = accepted["import_id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while db.rows_written().await < 30_000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no progress before the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started_before: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT pg_postmaster_start_time()")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let before = db.rows_written().await;
    restart_postgres().await;
    let rec = wait_final(&upload, &id, Duration::from_secs(300)).await;
    assert_eq!(rec["status"], "completed", "{rec}\n{}", sink.log_tail());
    assert!(
        before < n as i64,
        "the restart came before the last row was written"
    );
    assert_nums_exact(&db, n as i64).await;
    let started_after: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT pg_postmaster_start_time()")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(started_after > started_before, "Postgres really restarted");
    sink.stop().await;
    upload.stop().await;
}
