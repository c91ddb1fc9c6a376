//! Hostile input against one upload service and one sink (release processes): every class ends
//! in a documented 4xx, rejected rows with line and reason, or dead letters — and afterwards a
//! normal 100,000-row import into the same services completes exactly, within memory bounds.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::Duration;

use csvbus_shared::config::Env;
use csvbus_tests::procs::Proc;
use csvbus_tests::{env, post_import, unique, wait_final_at, TestDb};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

struct Suite {
    db: TestDb,
    env: Env,
    upload: Proc,
    sink: Proc,
    http: reqwest::Client,
}

impl Suite {
    async fn post(&self, query: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        self.post_with(query, body, &[]).await
    }

    async fn post_with(
        &self,
        query: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let url = self.upload.url("");
        let (status, json) = post_import(&self.http, &url, query, body, headers).await;
        (status.as_u16(), json)
    }

    /// Posts `body` to `table`, expects 202, waits until the import completes; returns it.
    async fn import(&self, table: &str, body: impl Into<reqwest::Body>) -> Value {
        let (status, v) = self
            .post(&format!("table={table}&max_rejected=1000"), body)
            .await;
        assert_eq!(status, 202, "{table}: {v}");
        self.completed(v["import_id"].as_str().unwrap()).await
    }

    async fn completed(&self, id: &str) -> Value {
        let rec = wait_final_at(&self.upload.url(""), id, Duration::from_secs(120)).await;
        assert_eq!(
            rec["status"],
            "completed",
            "{rec}\n{}",
            self.sink.log_tail()
        );
        rec
    }

    /// (line, stage, reason) of an import's rejected rows.
    async fn rejected(&self, id: &Value) -> Vec<(i64, String, String)> {
        sqlx::query_as("SELECT line, stage, reason FROM csvbus.rejected_rows WHERE import_id = $1::uuid ORDER BY line")
            .bind(id.as_str().unwrap())
            .fetch_all(&self.db.pool)
            .await
            .unwrap()
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    async fn expect_4xx(
        &self,
        what: &str,
        query: &str,
        body: impl Into<reqwest::Body>,
        status: u16,
        code: &str,
    ) {
        let (s, v) = self.post(query, body).await;
        assert_eq!(
            (s, v["error"].as_str().unwrap_or("")),
            (status, code),
            "{what}: {v}"
        );
    }
}

const TABLES: &str = "
CREATE TABLE t (id int PRIMARY KEY, name text);
CREATE TABLE checked (id int PRIMARY KEY, n int CHECK (n >= 0));
CREATE TABLE indexed (id int, v text);
CREATE UNIQUE INDEX indexed_v ON indexed (v);
CREATE TABLE raising (id int, v text);
CREATE FUNCTION refuse_bad() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.v = 'bad' THEN RAISE EXCEPTION 'trigger refuses %', NEW.v; END IF;
  IF NEW.v = 'slow' THEN PERFORM pg_sleep(5); END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER raising_check BEFORE INSERT ON raising FOR EACH ROW EXECUTE FUNCTION refuse_bad();
CREATE TABLE deferred (id int, CONSTRAINT deferred_id UNIQUE (id) DEFERRABLE INITIALLY DEFERRED);
CREATE TABLE parent (id int PRIMARY KEY);
INSERT INTO parent VALUES (1), (2);
CREATE TABLE child (id int, parent int REFERENCES parent DEFERRABLE INITIALLY DEFERRED);
CREATE TABLE guarded (id int, v text);
ALTER TABLE guarded ENABLE ROW LEVEL SECURITY;
ALTER TABLE guarded FORCE ROW LEVEL SECURITY;
CREATE POLICY guarded_small ON guarded USING (true) WITH CHECK (id < 100);
CREATE TABLE dropped (id int, v text);
CREATE TABLE scratch (id int, name text);
CREATE TABLE nums (id bigint PRIMARY KEY, v text NOT NULL);
";

async fn suite() -> Suite {
    csvbus_tests::init_logs();
    let db = TestDb::new().await;
    db.exec(TABLES).await;
    let mut e = env(&db, &unique("hostile"));
    for (k, v) in [
        ("CSVBUS_SINK_GROUP", unique("g").as_str()),
        ("CSVBUS_SINK_LINGER_MS", "50"),
        ("CSVBUS_SINK_STATEMENT_TIMEOUT_MS", "1000"),
        ("CSVBUS_SINK_MAX_ATTEMPTS", "2"),
        ("CSVBUS_MAX_DECOMPRESSED_BYTES", "16000000"),
        ("CSVBUS_MAX_ROWS_PER_IMPORT", "150000"),
    ] {
        e.set(k, v);
    }
    let mut upload = Proc::upload(&e, &[]);
    let mut sink = Proc::sink(&e, &[("CSVBUS_SINK_INSTANCE_ID", "none")]);
    upload.ready(Duration::from_secs(60)).await;
    sink.ready(Duration::from_secs(60)).await;
    Suite {
        db,
        env: e,
        upload,
        sink,
        http: reqwest::Client::new(),
    }
}

/// Text that TOAST cannot compress below the index row limit.
fn incompressible(n: usize) -> String {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 90) as u8)
        })
        .collect::<String>()
        .replace('"', "'")
        .replace(',', ";")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    g.write_all(bytes).unwrap();
    g.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_input_jams_the_pipeline_and_a_normal_import_completes_afterwards() {
    let s = suite().await;
    let mut classes = 0;

    // 1. Requests refused before any row: documented 4xx, nothing stored.
    for (what, query, body, status, code) in [
        ("empty body", "table=t", b"".to_vec(), 422, "missing_header"),
        (
            "invalid UTF-8 in the header",
            "table=t",
            b"id,na\xffme\n1,a\n".to_vec(),
            422,
            "invalid_header",
        ),
        (
            "unterminated quote in the header",
            "table=t",
            b"id,\"name".to_vec(),
            422,
            "invalid_header",
        ),
        (
            "duplicate headers",
            "table=t",
            b"id,id\n1,2\n".to_vec(),
            422,
            "duplicate_column",
        ),
        (
            "SQL in a column name",
            "table=t",
            b"id,\"name\"\"); DROP TABLE t; --\"\n1,a\n".to_vec(),
            422,
            "unknown_column",
        ),
        (
            "table name with quotes and dots",
            "table=a.%22b.c%22",
            b"id\n1\n".to_vec(),
            404,
            "unknown_table",
        ),
        (
            "the migration history",
            "table=_sqlx_migrations",
            b"version\n1\n".to_vec(),
            404,
            "unknown_table",
        ),
        (
            "csvbus' own tables",
            "table=csvbus.imports",
            b"id\n1\n".to_vec(),
            404,
            "unknown_table",
        ),
        (
            "max_rejected past its ceiling",
            "table=t&max_rejected=100000000",
            b"id\n1\n".to_vec(),
            400,
            "invalid_query",
        ),
    ] {
        s.expect_4xx(what, query, body, status, code).await;
        classes += 1;
    }
    let cols: Vec<String> = (0..10_000).map(|i| format!("c{i}")).collect();
    s.expect_4xx(
        "10,000 columns",
        "table=t",
        format!("{}\n", cols.join(",")),
        422,
        "too_many_columns",
    )
    .await;
    s.expect_4xx(
        "a 10 MB field",
        "table=t",
        format!("id,name\n1,{}\n", "x".repeat(10 << 20)),
        422,
        "record_too_long",
    )
    .await;
    // Distinct ids: a bomb of one repeated row would be stopped by the sink first (its
    // refused duplicates pass max_rejected), not by the decompressed size.
    let pad = "a".repeat(200);
    let rows: String = (0..100_000)
        .map(|i| format!("{},{pad}\n", 10_000_000 + i))
        .collect();
    let bomb = gzip(&format!("id,name\n{rows}").into_bytes());
    let (st, v) = s
        .post_with("table=t", bomb, &[("content-encoding", "gzip")])
        .await;
    assert_eq!(
        (st, v["error"].as_str().unwrap_or("")),
        (413, "body_too_large"),
        "gzip bomb: {v}"
    );
    let many = format!("id,name\n{}", "1,a\n".repeat(150_001));
    let (st, v) = s.post("table=scratch", many).await;
    assert_eq!(
        (st, v["error"].as_str().unwrap_or("")),
        (413, "too_many_rows"),
        "rows limit: {v}"
    );
    let r = s
        .http
        .get(
            s.upload
                .url("/v1/imports/00000000-0000-0000-0000-000000000000?wait=inf"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "wait=inf");
    // A zstd frame asking for a 128 MiB window (past CSVBUS_ZSTD_WINDOW_LOG_MAX = 23).
    let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
    enc.include_contentsize(false).unwrap();
    enc.window_log(27).unwrap();
    enc.long_distance_matching(true).unwrap();
    enc.write_all(b"id,name\n1,a\n").unwrap();
    let frame = enc.finish().unwrap();
    let (st, v) = s
        .post_with("table=t", frame, &[("content-encoding", "zstd")])
        .await;
    assert_eq!(
        (st, v["error"].as_str().unwrap_or("")),
        (400, "invalid_body"),
        "zstd window: {v}"
    );
    classes += 6;

    // 2. Rows the parser or the table refuses: rejected with line and reason, the rest written.
    let rec = s.import("t", &b"\xef\xbb\xbfid,name\n1,a\x00b\n2,ok\n3,\"x\"\"\x01\x1f\"\n4,too,many\n5,\xff\n6,\x00,x\n7\r\n"[..]).await;
    let rej = s.rejected(&rec["id"]).await;
    let lines: Vec<i64> = rej.iter().map(|r| r.0).collect();
    assert_eq!(lines, [2, 5, 6, 7, 8], "{rej:?}");
    assert!(
        rej[0].2.contains("22021") || rej[0].2.contains("0x00"),
        "{rej:?}"
    );
    assert_eq!(
        s.count("SELECT count(*) FROM t WHERE name = E'x\"\\x01\\x1f'")
            .await,
        1,
        "control characters round trip"
    );
    classes += 6; // NUL, BOM, control characters, ragged rows, invalid UTF-8, NUL in a parse reject

    let rec = s
        .import("t", &b"id,name\r\r10,\"\"\r\r11,a,b\r12,\r"[..])
        .await;
    assert_eq!(
        s.rejected(&rec["id"])
            .await
            .iter()
            .map(|r| r.0)
            .collect::<Vec<_>>(),
        [5],
        "bare CR lines"
    );
    assert_eq!(
        s.count("SELECT count(*) FROM t WHERE id = 10 AND name = ''")
            .await,
        1,
        "quoted empty after blank lines"
    );
    assert_eq!(
        s.count("SELECT count(*) FROM t WHERE id = 12 AND name IS NULL")
            .await,
        1
    );
    classes += 2;
    let big = format!("id,name\n20,{}\n21,small\n", "\u{1}".repeat(400_000));
    let rec = s.import("t", big).await;
    let rej = s.rejected(&rec["id"]).await;
    assert_eq!(rej.len(), 1, "{rej:?}");
    assert!(rej[0].2.contains("CSVBUS_MAX_MESSAGE_BYTES"), "{rej:?}");
    classes += 1;

    for (what, table, body, bad) in [
        (
            "CHECK constraint",
            "checked",
            "id,n\n1,1\n2,-1\n3,3\n",
            vec![3],
        ),
        (
            "unique index on a huge value",
            "indexed",
            &*format!("id,v\n1,a\n2,{}\n3,b\n", incompressible(10_000)),
            vec![3],
        ),
        (
            "trigger that raises",
            "raising",
            "id,v\n1,ok\n2,bad\n3,ok\n",
            vec![3],
        ),
        (
            "statement timeout",
            "raising",
            "id,v\n4,slow\n5,ok\n",
            vec![2],
        ),
        ("deferred unique", "deferred", "id\n1\n2\n1\n", vec![4]),
        (
            "deferred foreign key",
            "child",
            "id,parent\n1,1\n2,9\n",
            vec![3],
        ),
        // COPY refuses tables with forced row-level security (0A000): the sink stages the rows
        // and INSERTs them, and the policy refuses the one row it does not allow.
        (
            "row-level security",
            "guarded",
            "id,v\n1,a\n500,b\n2,c\n",
            vec![3],
        ),
    ] {
        let rec = s.import(table, body.to_owned()).await;
        let rej = s.rejected(&rec["id"]).await;
        assert_eq!(
            rej.iter().map(|r| r.0).collect::<Vec<_>>(),
            bad,
            "{what}: {rej:?}"
        );
        assert!(
            rej.iter()
                .all(|r| r.1 == "write" && r.2.contains("SQLSTATE")),
            "{what}: {rej:?}"
        );
        classes += 1;
    }

    // 3. A table dropped mid-import: its remaining rows are rejected, the import completes.
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
    tx.unbounded_send(Ok(b"id,v\n1,a\n".to_vec())).unwrap();
    let url = s.upload.url("/v1/imports?table=dropped");
    let post = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .body(reqwest::Body::wrap_stream(rx))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while s.count("SELECT count(*) FROM dropped").await < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "first row of `dropped` never written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.db.exec("DROP TABLE dropped").await;
    tx.unbounded_send(Ok(b"2,b\n3,c\n".to_vec())).unwrap();
    drop(tx);
    let accepted = post.await.unwrap();
    let rec = s.completed(accepted["import_id"].as_str().unwrap()).await;
    assert_eq!(
        (
            rec["rows_written"].as_i64(),
            rec["rows_write_rejected"].as_i64()
        ),
        (Some(1), Some(2)),
        "{rec}"
    );
    classes += 1;

    // 4. Forged messages on the topic: dead letters, nothing written.
    let producer: FutureProducer = csvbus_shared::kafka::client_config(&csvbus_tests::brokers())
        .create()
        .unwrap();
    let topic = s.env.raw("CSVBUS_TOPIC").unwrap().to_owned();
    let forged_import = uuid::Uuid::now_v7();
    sqlx::query("INSERT INTO csvbus.imports (id, target_schema, target_table, columns, status, rows_produced) VALUES ($1, 'csvbus', 'imports', '{id}', 'produced', 0)")
        .bind(forged_import)
        .execute(&s.db.pool)
        .await
        .unwrap();
    let headers = |import: &str, table: &str| {
        OwnedHeaders::new()
            .insert(Header {
                key: "csvbus-import",
                value: Some(import),
            })
            .insert(Header {
                key: "csvbus-line",
                value: Some("2"),
            })
            .insert(Header {
                key: "csvbus-table",
                value: Some(table),
            })
    };
    let unknown = uuid::Uuid::now_v7().to_string();
    let forged = forged_import.to_string();
    let sends = [
        (b"not json".to_vec(), None),
        (
            br#"{"id":"1"}"#.to_vec(),
            Some(headers(&unknown, "public.t")),
        ),
        (
            br#"{"id":"1"}"#.to_vec(),
            Some(headers(&forged, "csvbus.imports")),
        ),
        (
            br#"{"id":"1"}"#.to_vec(),
            Some(headers(&forged, "public._sqlx_migrations")),
        ),
    ];
    for (payload, h) in sends {
        let mut rec = FutureRecord::<(), [u8]>::to(&topic).payload(&payload);
        if let Some(h) = h {
            rec = rec.headers(h);
        }
        producer.send(rec, Duration::from_secs(10)).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while s.count("SELECT count(*) FROM csvbus.dead_letters").await < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "forged messages were not dead-lettered:\n{}",
            s.sink.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    classes += 4;

    // After all of it: a normal 100,000-row import completes exactly.
    let mut body = b"id,v\n".to_vec();
    for i in 1..=100_000 {
        writeln!(body, "{i},v{i}").unwrap();
    }
    let rec = s.import("nums", body).await;
    assert_eq!(rec["rows_written"], 100_000, "{rec}");
    assert_eq!(
        s.count("SELECT count(DISTINCT id) FROM nums").await,
        100_000
    );
    assert_eq!(s.count("SELECT count(*) FROM nums").await, 100_000);
    assert!(classes >= 25, "{classes} classes");

    // Memory stayed within bounds.
    for (name, p, bound) in [
        ("upload", &s.upload, 256u64 << 20),
        ("sink", &s.sink, 256 << 20),
    ] {
        let peak = p.peak_rss();
        eprintln!("{name} peak RSS {} MiB", peak >> 20);
        assert!(peak < bound, "{name} peak RSS {peak} bytes");
    }
    s.sink.stop().await;
    s.upload.stop().await;
}
