//! The broker stops answering under a running import for longer than the upload's delivery
//! timeout: the upload answers 503 (nothing went wrong with the data) with rows in flight whose
//! fate it cannot know, the client retries with its Idempotency-Key, the import resumes after its
//! checkpoint — and every row lands exactly once, also the ones the frozen broker took after all.
//!
//! The broker is a tansu of the test's own (memory storage) on a free port, frozen with SIGSTOP
//! and thawed with SIGCONT; the services are the release binaries. A test binary of its own.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use csvbus_tests::nums::{assert_nums_exact, nums_csv, NUMS};
use csvbus_tests::procs::{free_addr, Proc};
use csvbus_tests::{env, post_keyed_until_accepted, unique, TestDb};
use serde_json::Value;
use tokio::process::{Child, Command};

/// A tansu broker (memory storage) of the test's own, logging into `dir`.
fn start_broker(dir: &Path, addr: SocketAddr) -> Child {
    let url = format!("tcp://{addr}");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("tansu.log"))
        .unwrap();
    Command::new("tansu")
        .args(["broker", "--storage-engine", "memory://tansu/"])
        .args(["--listener-url", &url, "--advertised-listener-url", &url])
        .current_dir(dir)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("tansu on PATH (scripts/stack.sh installs it)")
}

async fn wait_listening(addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "tansu did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// nums `1..=n`, 10,000 rows every 150 ms: a client on a modest line, so that the upload is
/// still running when the broker freezes.
fn paced(n: u64) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    futures::StreamExt::then(nums_csv(1, n), |chunk| async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        chunk
    })
}

/// Posts paced nums `1..=n` under `key` until accepted, retrying 503, 409 and lost
/// connections as a client does; the 202 body and the refusals on the way.
async fn post_with_retries(url: String, key: String, n: u64) -> (Value, Vec<String>) {
    let within = Duration::from_secs(300);
    let body = || reqwest::Body::wrap_stream(paced(n));
    post_keyed_until_accepted(&url, &key, body, &[503, 409], within).await
}

/// A test's own broker, database and release services.
struct Stack {
    db: TestDb,
    /// The broker's working directory (its log).
    dir: PathBuf,
    broker_addr: SocketAddr,
    broker: Child,
    upload: Proc,
    sink: Proc,
    /// The services' environment, to start a sink again.
    env: csvbus_shared::config::Env,
}

/// A tansu of the test's own on a free port, a fresh database with `nums`, and the upload
/// service and sink as release processes on `topic` (delivery timeout 4 s); `upload_env` and
/// `sink_env` on top.
async fn stack(topic: &str, upload_env: &[(&str, &str)], sink_env: &[(&str, &str)]) -> Stack {
    csvbus_tests::init_logs();
    let db = TestDb::new().await;
    db.exec(NUMS).await;
    let dir: PathBuf = std::env::temp_dir().join(unique("tansu"));
    std::fs::create_dir_all(&dir).unwrap();
    let broker_addr = free_addr();
    let broker = start_broker(&dir, broker_addr);
    wait_listening(broker_addr).await;
    let mut e = env(&db, topic);
    e.set("KAFKA_BROKERS", broker_addr.to_string());
    e.set("CSVBUS_SINK_GROUP", unique("g"));
    e.set("CSVBUS_SINK_LINGER_MS", "50");
    e.set("CSVBUS_DELIVERY_TIMEOUT_MS", "4000");
    let mut upload = Proc::upload(&e, upload_env);
    upload.ready(Duration::from_secs(60)).await;
    let mut sink = Proc::sink(&e, sink_env);
    sink.ready(Duration::from_secs(60)).await;
    Stack {
        db,
        dir,
        broker_addr,
        broker,
        upload,
        sink,
        env: e,
    }
}

/// Kills `broker` and starts it again on `addr` — memory storage: empty — with `topic` created
/// again (what a broker with durable storage would still have).
async fn restart_empty(mut broker: Child, dir: &Path, addr: SocketAddr, topic: &str) -> Child {
    broker.kill().await.unwrap();
    let broker = start_broker(dir, addr);
    wait_listening(addr).await;
    let config = csvbus_shared::kafka::client_config(&addr.to_string());
    csvbus_shared::kafka::ensure_topic(&config, topic, 4)
        .await
        .unwrap();
    broker
}

async fn signal(child: &Child, sig: &str) {
    let pid = child.id().unwrap().to_string();
    let status = Command::new("kill")
        .args([sig, &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}

async fn produced(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT coalesce(max(rows_produced), 0) FROM csvbus.imports")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

async fn status_of(db: &TestDb) -> Option<String> {
    sqlx::query_scalar("SELECT status FROM csvbus.imports")
        .fetch_optional(&db.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_frozen_mid_import_ends_exact_after_a_keyed_retry() {
    let topic = unique("brestart");
    let Stack {
        db,
        dir,
        broker_addr: _,
        mut broker,
        upload,
        sink,
        ..
    } = stack(&topic, &[], &[]).await;

    let n = 200_000u64;
    let client = tokio::spawn(post_with_retries(
        upload.url("/v1/imports?table=nums"),
        unique("key"),
        n,
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while produced(&db).await < 30_000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rows before the restart: {:?}\n{}\n{}",
            status_of(&db).await,
            upload.log_tail(),
            sink.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&broker, "-STOP").await;
    // Frozen for longer than the upload's delivery timeout: the upload fails with 503.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while status_of(&db).await.as_deref() != Some("failed") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upload did not fail while the broker was down:\n{}",
            upload.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let written_before = db.rows_written().await;
    signal(&broker, "-CONT").await;

    let (accepted, refused) = client.await.unwrap();
    assert!(
        refused.iter().any(|r| r.starts_with("503")),
        "the client saw the 503: {refused:?}"
    );
    assert!(
        accepted["resumed_from_line"].as_u64().unwrap() > 1,
        "the retry resumed: {accepted}"
    );
    let id = accepted["import_id"].as_str().unwrap();
    let rec = csvbus_tests::wait_final_at(&upload.url(""), id, Duration::from_secs(180)).await;
    assert_eq!(rec["status"], "completed", "{rec}\n{}", sink.log_tail());
    assert!(written_before < n as i64);
    assert_nums_exact(&db, n as i64).await;
    sink.stop().await;
    upload.stop().await;
    broker.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The broker is killed and started again while an upload holds its request open: the producer
/// reconnects (or the upload answers 503 and the keyed retry resumes), the sink rejoins, and the
/// table ends exact.
///
/// tansu's memory storage forgets everything on a restart, which no durable broker does: the
/// test restarts it only once every acknowledged row was written, and creates the topic again
/// before the client goes on — what a broker with durable storage would still have. The sink
/// then sees offsets start over below its stored positions, and recognises them as new by its
/// per-import line marks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restarted_mid_import_ends_exact() {
    broker_restarted_mid_import(&[]).await;
}

/// The same under the group protocol. With librdkafka 2.12 unpatched, the sink died here with
/// SIGSEGV in most runs (see `vendor/rdkafka-sys/PATCHES.md`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restarted_mid_import_ends_exact_under_the_group_protocol() {
    broker_restarted_mid_import(&[
        ("CSVBUS_SINK_ASSIGNMENT", "group"),
        ("CSVBUS_SINK_INSTANCE_ID", "none"),
    ])
    .await;
}

async fn broker_restarted_mid_import(sink_env: &[(&str, &str)]) {
    let topic = unique("brestart");
    let Stack {
        db,
        dir,
        broker_addr,
        broker,
        upload,
        sink,
        ..
    } = stack(&topic, &[], sink_env).await;

    // The client sends the first 30,000 rows, then waits (its request open) for the restart.
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
    let mut rows = nums_csv(1, 60_000);
    let key = unique("key");
    let first = {
        let (url, key) = (upload.url("/v1/imports?table=nums"), key.clone());
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .header("idempotency-key", key)
                .body(reqwest::Body::wrap_stream(rx))
                .send()
                .await
        })
    };
    for _ in 0..4 {
        tx.unbounded_send(futures::StreamExt::next(&mut rows).await.unwrap())
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while db.rows_written().await < 30_000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first rows were not written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut broker = restart_empty(broker, &dir, broker_addr, &topic).await;
    while let Some(chunk) = futures::StreamExt::next(&mut rows).await {
        tx.unbounded_send(chunk).unwrap();
    }
    drop(tx);

    // The first attempt ends one way or the other; a keyed retry finishes it when it failed.
    let answer = first.await.unwrap();
    let accepted = match answer {
        Ok(r) if r.status() == 202 => r.json::<Value>().await.unwrap(),
        other => {
            eprintln!("the upload did not survive the restart ({other:?}): retrying");
            post_with_retries(upload.url("/v1/imports?table=nums"), key, 60_000)
                .await
                .0
        }
    };
    let id = accepted["import_id"].as_str().unwrap();
    let rec = csvbus_tests::wait_final_at(&upload.url(""), id, Duration::from_secs(180)).await;
    assert_eq!(rec["status"], "completed", "{rec}\n{}", sink.log_tail());
    assert_nums_exact(&db, 60_000).await;
    sink.stop().await;
    upload.stop().await;
    broker.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The sink is down while a broker without durable storage restarts and a new import refills the
/// topic past the positions the sink stored: started again, the sink must not take the new log's
/// records below its stored positions for the ones it wrote before (the high watermark is past
/// them, so nothing but the records themselves tells the two logs apart). A record batch a message:
/// tansu answers a fetch from the batch after the one holding the offset asked for, which would
/// hide the defect by chance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_refilled_past_the_positions_while_the_sink_is_down_is_written_whole() {
    let topic = unique("brefill");
    let Stack {
        db,
        dir,
        broker_addr,
        broker,
        upload,
        sink,
        env,
    } = stack(&topic, &[("CSVBUS_PRODUCER_BATCH_BYTES", "1")], &[]).await;
    let url = upload.url("/v1/imports?table=nums");
    // About 10 runs of 1,024 lines: two or three records a partition.
    let first = csvbus_tests::post_csv(&url, reqwest::Body::wrap_stream(nums_csv(1, 10_000))).await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let rec = csvbus_tests::wait_final_at(
        &upload.url(""),
        first["import_id"].as_str().unwrap(),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(rec["status"], "completed", "{rec}");
    sink.stop().await;

    let mut broker = restart_empty(broker, &dir, broker_addr, &topic).await;
    // About 40 runs: ten records a partition, past every stored position.
    let second = post_keyed_until_accepted(
        &url,
        &unique("key"),
        || reqwest::Body::wrap_stream(nums_csv(10_001, 50_000)),
        &[503],
        Duration::from_secs(60),
    )
    .await
    .0;
    let mut sink = Proc::sink(&env, &[]);
    sink.ready(Duration::from_secs(60)).await;
    let id = second["import_id"].as_str().unwrap();
    let rec = csvbus_tests::wait_final_at(&upload.url(""), id, Duration::from_secs(60)).await;
    assert_eq!(rec["status"], "completed", "{rec}\n{}", sink.log_tail());
    assert_nums_exact(&db, 50_000).await;
    sink.stop().await;
    upload.stop().await;
    broker.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
