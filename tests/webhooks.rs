//! Webhooks against the real stack: a local receiver that checks each delivery's signature the
//! way docs/api.md tells receivers to (written here from the documentation, not with csvbus'
//! code), failing deliveries retried, a receiver down for the whole window, a sink killed
//! before the delivery, two sink replicas, and `notify=` inside and outside the allowlist.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use csvbus_shared::config::Env;
use csvbus_tests::nums::NUMS;
use csvbus_tests::procs::free_addr;
use csvbus_tests::{
    env, eventually, post_import, spawn_sink, spawn_upload, unique, wait_final, KillableSink,
    TestDb,
};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

const SECRET: &str = "whsec-0123456789abcdef0123456789abcdef";

/// One request the receiver got: its path, delivery id, event and body, and whether its
/// signature verified.
#[derive(Debug, Clone)]
struct Got {
    path: String,
    delivery: String,
    event: String,
    body: Value,
    signed: bool,
}

/// A webhook receiver on `addr` that answers 503 to its first `fail_first` requests, then 200.
#[derive(Clone)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
}

impl Receiver {
    async fn start(addr: SocketAddr, fail_first: usize, delay: Duration) -> Self {
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let state = got.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
                let got = state.clone();
                async move {
                    tokio::time::sleep(delay).await;
                    let n = {
                        let mut g = got.lock().unwrap();
                        g.push(received(uri.path(), &headers, &body));
                        g.len()
                    };
                    if n <= fail_first {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                }
            },
        );
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { got }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

/// What a receiver checks, as docs/api.md describes it: `Csvbus-Signature: t=<ts>,v1=<hex>`,
/// the hex an HMAC-SHA256 with the secret of `<ts>.<body>`; a timestamp within 5 minutes.
fn received(path: &str, headers: &HeaderMap, body: &[u8]) -> Got {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let sig = header("csvbus-signature");
    let mut parts = sig.split(',').filter_map(|p| p.split_once('='));
    let signed = match (parts.next(), parts.next()) {
        (Some(("t", ts)), Some(("v1", hex_mac))) => {
            let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
            mac.update(format!("{ts}.").as_bytes());
            mac.update(body);
            let fresh = ts
                .parse::<i64>()
                .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() < 300);
            fresh
                && mac
                    .verify_slice(&hex::decode(hex_mac).unwrap_or_default())
                    .is_ok()
        }
        _ => false,
    };
    Got {
        path: path.to_owned(),
        delivery: header("csvbus-delivery"),
        event: header("csvbus-event"),
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
        signed,
    }
}

/// A database with `nums`, and an environment whose webhook goes to `url`, retried every
/// 100 ms (doubling up to 400 ms) for `retry_for_ms`.
async fn stack(url: Option<&str>, retry_for_ms: u64, extra: &[(&str, &str)]) -> (TestDb, Env) {
    csvbus_tests::init_logs();
    let db = TestDb::new().await;
    db.exec(NUMS).await;
    let mut e = env(&db, &unique("hooks"));
    e.set("CSVBUS_SINK_GROUP", unique("g"));
    e.set("CSVBUS_SINK_LINGER_MS", "20");
    e.set("CSVBUS_WEBHOOK_SECRET", SECRET);
    e.set("CSVBUS_WEBHOOK_BACKOFF_MS", "100");
    e.set("CSVBUS_WEBHOOK_BACKOFF_MAX_MS", "400");
    e.set("CSVBUS_WEBHOOK_POLL_MS", "50");
    e.set("CSVBUS_WEBHOOK_RETRY_FOR_MS", retry_for_ms.to_string());
    e.set("CSVBUS_PUBLIC_URL", "https://csvbus.example.com/");
    if let Some(u) = url {
        e.set("CSVBUS_WEBHOOK_URL", u);
    }
    for (k, v) in extra {
        e.set(*k, *v);
    }
    (db, e)
}

fn nums(from: u64, to: u64) -> String {
    let mut s = String::from("id,v,half\n");
    for i in from..=to {
        s.push_str(&format!("{i},v{i},{}\n", i / 2));
    }
    s
}

async fn upload_nums(base: &str, query: &str, body: String) -> (reqwest::StatusCode, Value) {
    let http = reqwest::Client::new();
    post_import(&http, base, query, body, &[("content-type", "text/csv")]).await
}

/// The import's deliveries once the first of them is no longer pending.
async fn settled_deliveries(base: &str, id: &str) -> Vec<Value> {
    let url = format!("{base}/v1/imports/{id}");
    let mut last = Value::Null;
    for _ in 0..500 {
        last = reqwest::get(&url).await.unwrap().json().await.unwrap();
        let d = last["deliveries"].as_array().cloned().unwrap_or_default();
        if d.first().is_some_and(|d| d["state"] != "pending") {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no delivery settled: {last}");
}

#[tokio::test]
async fn a_failing_receiver_gets_the_signed_delivery_again_until_it_takes_it() {
    let addr = free_addr();
    let receiver = Receiver::start(addr, 2, Duration::ZERO).await;
    let (_db, e) = stack(Some(&format!("http://{addr}/hook")), 60_000, &[]).await;
    let upload = spawn_upload(&e).await;
    let sink = spawn_sink(&e).await;
    let (status, a) = upload_nums(&upload.url(""), "table=nums", nums(1, 500)).await;
    assert_eq!(status, 202, "{a}");
    let id = a["import_id"].as_str().unwrap();
    let rec = wait_final(&upload, id, Duration::from_secs(60)).await;
    assert_eq!(rec["status"], "completed", "{rec}");

    let d = settled_deliveries(&upload.url(""), id).await;
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        (&d[0]["state"], &d[0]["attempts"]),
        (&"delivered".into(), &3.into())
    );
    assert_eq!(d[0]["event"], "completed");
    let got = receiver.got();
    assert_eq!(got.len(), 3, "two 503s, then a 200: {got:?}");
    for g in &got {
        assert!(g.signed, "signature verifies: {g:?}");
        assert_eq!(g.path, "/hook");
        assert_eq!(
            g.delivery,
            d[0]["id"].as_str().unwrap(),
            "one id on every retry"
        );
        assert_eq!(g.event, "import.completed");
        assert_eq!(g.body["type"], "import.completed");
        assert_eq!(g.body["id"], d[0]["id"]);
        let import = &g.body["data"]["import"];
        assert_eq!(import["id"], id);
        assert_eq!(import["table"], "public.nums");
        assert_eq!(import["mode"], "append");
        assert_eq!(import["status"], "completed");
        assert_eq!(import["rows_written"], 500);
        assert!(import["finished_at"].is_string(), "{import}");
        let status_url = format!("https://csvbus.example.com/v1/imports/{id}");
        assert_eq!(g.body["data"]["status_url"], status_url.as_str());
    }

    // A failed import is announced too, once the sink has handled what it produced: here the
    // sink stops it at the first row Postgres refuses.
    let bad = format!("{}x,bad,1\n", nums(1001, 1010));
    let (status, a) = upload_nums(&upload.url(""), "table=nums&max_rejected=0", bad).await;
    assert_eq!(status, 202, "{a}");
    let id = a["import_id"].as_str().unwrap();
    let d = settled_deliveries(&upload.url(""), id).await;
    assert_eq!(
        (&d[0]["event"], &d[0]["state"]),
        (&"failed".into(), &"delivered".into())
    );
    let last = receiver.got().pop().unwrap();
    assert_eq!(last.event, "import.failed");
    assert_eq!(
        last.body["data"]["import"]["rows_written"], 10,
        "{:?}",
        last.body
    );
    sink.stop().await;
    upload.stop().await;
}

#[tokio::test]
async fn a_receiver_down_for_the_whole_window_is_recorded_failed_and_the_import_stands() {
    let addr = free_addr(); // nothing listens there
    let (db, e) = stack(Some(&format!("http://{addr}/hook")), 1_500, &[]).await;
    let upload = spawn_upload(&e).await;
    let sink = spawn_sink(&e).await;
    let (status, a) = upload_nums(&upload.url(""), "table=nums", nums(1, 100)).await;
    assert_eq!(status, 202, "{a}");
    let id = a["import_id"].as_str().unwrap();
    let d = settled_deliveries(&upload.url(""), id).await;
    assert_eq!(d[0]["state"], "failed", "{d:?}");
    assert!(d[0]["attempts"].as_i64().unwrap() >= 3, "{d:?}");
    assert!(
        d[0]["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{d:?}"
    );
    assert!(
        !d[0]["last_error"]
            .as_str()
            .unwrap()
            .contains(&addr.to_string()),
        "{d:?}"
    );
    let rec = wait_final(&upload, id, Duration::from_secs(10)).await;
    assert_eq!(
        (&rec["status"], &rec["rows_written"]),
        (&"completed".into(), &100.into())
    );
    assert_eq!(db.rows_written().await, 100);
    sink.stop().await;
    upload.stop().await;
}

#[tokio::test]
async fn a_sink_killed_before_the_delivery_delivers_once_after_its_restart() {
    let addr = free_addr(); // the receiver comes up only after the kill
    let (_db, e) = stack(Some(&format!("http://{addr}/hook")), 60_000, &[]).await;
    let upload = spawn_upload(&e).await;
    let first = KillableSink::start(&e);
    let (status, a) = upload_nums(&upload.url(""), "table=nums", nums(1, 300)).await;
    assert_eq!(status, 202, "{a}");
    let id = a["import_id"].as_str().unwrap().to_owned();
    let rec = wait_final(&upload, &id, Duration::from_secs(60)).await;
    assert_eq!(rec["status"], "completed");
    // The import is final and its delivery owed, tried and not yet taken.
    let url = upload.url(&format!("/v1/imports/{id}"));
    eventually("a failed attempt", Duration::from_secs(20), || async {
        let r: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        r["deliveries"][0]["attempts"].as_i64().unwrap_or(0) >= 1
    })
    .await;
    first.kill();
    let receiver = Receiver::start(addr, 0, Duration::ZERO).await;
    let second = spawn_sink(&e).await;
    let d = settled_deliveries(&upload.url(""), &id).await;
    assert_eq!(d[0]["state"], "delivered", "{d:?}");
    // Whatever the restarted sink does next, the delivery is not sent again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = receiver.got();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].signed);
    assert_eq!(got[0].body["data"]["import"]["id"], id.as_str());
    second.stop().await;
    upload.stop().await;
}

#[tokio::test]
async fn two_sink_replicas_deliver_each_end_once() {
    let addr = free_addr();
    // A slow receiver: both replicas' senders are busy at once.
    let receiver = Receiver::start(addr, 0, Duration::from_millis(150)).await;
    let (_db, e) = stack(Some(&format!("http://{addr}/hook")), 60_000, &[]).await;
    let upload = spawn_upload(&e).await;
    let sinks = [spawn_sink(&e).await, spawn_sink(&e).await];
    let mut ids = Vec::new();
    for k in 0..8u64 {
        let body = nums(k * 100 + 1, k * 100 + 100);
        let (status, a) = upload_nums(&upload.url(""), "table=nums", body).await;
        assert_eq!(status, 202, "{a}");
        ids.push(a["import_id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        let d = settled_deliveries(&upload.url(""), id).await;
        assert_eq!(
            (&d[0]["state"], &d[0]["attempts"]),
            (&"delivered".into(), &1.into())
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = receiver.got();
    let mut announced: Vec<String> = got
        .iter()
        .map(|g| g.body["data"]["import"]["id"].as_str().unwrap().to_owned())
        .collect();
    announced.sort();
    ids.sort();
    assert_eq!(announced, ids, "each import announced once");
    for s in sinks {
        s.stop().await;
    }
    upload.stop().await;
}

#[tokio::test]
async fn notify_is_taken_only_under_the_allowlist() {
    let addr = free_addr();
    let receiver = Receiver::start(addr, 0, Duration::ZERO).await;
    let allow = format!("http://{addr}/hooks/");
    let (_db, e) = stack(None, 60_000, &[("CSVBUS_WEBHOOK_ALLOW", &allow)]).await;
    let upload = spawn_upload(&e).await;
    let sink = spawn_sink(&e).await;
    let base = upload.url("");

    let mine = format!("http://{addr}/hooks/team-a");
    let q = format!("table=nums&notify={}", urlencode(&mine));
    let (status, a) = upload_nums(&base, &q, nums(1, 10)).await;
    assert_eq!(status, 202, "{a}");
    let id = a["import_id"].as_str().unwrap();
    let d = settled_deliveries(&base, id).await;
    assert_eq!(d[0]["state"], "delivered");
    assert_eq!(receiver.got()[0].path, "/hooks/team-a");

    for refused in [
        format!("http://{addr}/other"),
        format!("http://{addr}/hooksX"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        format!("http://user@{addr}/hooks/x"),
    ] {
        let q = format!("table=nums&notify={}", urlencode(&refused));
        let (status, a) = upload_nums(&base, &q, nums(11, 20)).await;
        assert_eq!(status, 400, "{refused}: {a}");
        assert_eq!(a["error"], "notify_not_allowed", "{a}");
    }
    // Without an operator URL, an import that names none owes no delivery.
    let (status, a) = upload_nums(&base, "table=nums", nums(21, 30)).await;
    assert_eq!(status, 202);
    let rec = wait_final(
        &upload,
        a["import_id"].as_str().unwrap(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(rec["deliveries"], serde_json::json!([]));
    assert_eq!(receiver.got().len(), 1);
    sink.stop().await;
    upload.stop().await;
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("x", s)]).unwrap()[2..].to_owned()
}

/// A sink's senders each hold the transaction that claimed their delivery, on a pool of one
/// connection per sender; one that asked its pool for a second connection (to read the import)
/// waited while every sender held one — for ever with one sender, now and then with two (a CI
/// run caught it). Twelve deliveries due at once on one sender: every one delivered.
#[tokio::test]
async fn a_sender_needs_no_second_connection_to_deliver() {
    let addr = free_addr();
    let receiver = Receiver::start(addr, 0, Duration::ZERO).await;
    let one = [("CSVBUS_WEBHOOK_SENDERS", "1")];
    let (_db, e) = stack(Some(&format!("http://{addr}/hook")), 60_000, &one).await;
    let upload = spawn_upload(&e).await;
    let mut ids = Vec::new();
    for k in 0..12u64 {
        let body = nums(k * 10 + 1, k * 10 + 10);
        let (status, a) = upload_nums(&upload.url(""), "table=nums", body).await;
        assert_eq!(status, 202, "{a}");
        ids.push(a["import_id"].as_str().unwrap().to_owned());
    }
    // The sink comes after the uploads: every import ends, and owes its delivery, at once.
    let sink = spawn_sink(&e).await;
    for id in &ids {
        let d = settled_deliveries(&upload.url(""), id).await;
        assert_eq!(d[0]["state"], "delivered", "{d:?}");
    }
    assert_eq!(receiver.got().len(), 12);
    sink.stop().await;
    upload.stop().await;
}
