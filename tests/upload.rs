//! The upload service against real Postgres and the real broker: what lands on the topic, what
//! lands in rejected rows, and every error answer.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::Duration;

use csvbus_shared::config::Env;
use csvbus_tests::kafka::{read_topic, Received};
use csvbus_tests::{
    brokers, env, eventually, post_import, spawn_upload, stalled_body, unique, Service, TestDb,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

struct Ctx {
    db: TestDb,
    topic: String,
    svc: Service<csvbus_upload::UploadError>,
    http: reqwest::Client,
}

const TABLE: &str =
    "CREATE TABLE people (id int NOT NULL, name text, note text, born date DEFAULT '2000-01-01');";

async fn setup(extra: &[(&str, &str)]) -> Ctx {
    csvbus_tests::init_logs();
    let db = TestDb::new().await;
    db.exec(TABLE).await;
    let topic = unique("upload");
    let mut e: Env = env(&db, &topic);
    for (k, v) in extra {
        e.set(*k, *v);
    }
    let svc = spawn_upload(&e).await;
    Ctx {
        db,
        topic,
        svc,
        http: reqwest::Client::new(),
    }
}

impl Ctx {
    async fn post(&self, query: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
        self.post_with(query, body, &[("content-type", "text/csv")])
            .await
    }

    async fn post_with(
        &self,
        query: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        post_import(&self.http, &self.svc.url(""), query, body, headers).await
    }

    async fn topic(&self, expected: usize) -> Vec<Received> {
        let quiet = Duration::from_millis(if expected == 0 { 2000 } else { 500 });
        let mut got = read_topic(
            &brokers(),
            &self.topic,
            expected,
            Duration::from_secs(60),
            quiet,
        )
        .await;
        got.sort_by_key(line);
        got
    }

    async fn imports(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM csvbus.imports")
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    async fn rejected(&self) -> Vec<(i64, String, String)> {
        sqlx::query_as(
            "SELECT line, reason, coalesce(raw, '') FROM csvbus.rejected_rows ORDER BY line",
        )
        .fetch_all(&self.db.pool)
        .await
        .unwrap()
    }

    async fn import(&self, id: &str) -> Value {
        self.get(&format!("/v1/imports/{id}")).await
    }

    /// GET `path` of the service: its JSON body.
    async fn get(&self, path: &str) -> Value {
        let resp = self.http.get(self.svc.url(path)).send().await.unwrap();
        resp.json().await.unwrap()
    }
}

fn line(m: &Received) -> i64 {
    m.headers["csvbus-line"].parse().unwrap()
}

#[tokio::test]
async fn rows_land_on_the_topic_with_exact_values_lines_and_headers() {
    let ctx = setup(&[]).await;
    let csv = "\u{feff}id,name,note\r\n\
               1,\"Smith, John\",\"said \"\"hi\"\"\"\r\n\
               2,\"multi\nline\",Zoë 漢字\r\n\
               3,,\"\"\r\n\
               4,plain,\n";
    let (status, body) = ctx.post("table=people", csv).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["rows_produced"], 4);
    assert_eq!(body["rows_rejected"], 0);
    assert_eq!(body["table"], "public.people");
    assert_eq!(body["bytes_read"], csv.len());
    let id = body["import_id"].as_str().unwrap().to_owned();
    assert_eq!(body["status_url"], format!("/v1/imports/{id}"));

    let got = ctx.topic(4).await;
    assert_eq!(got.len(), 4);
    let values: Vec<&Value> = got.iter().map(|m| &m.value).collect();
    assert_eq!(
        values[0],
        &json!({"id": "1", "name": "Smith, John", "note": "said \"hi\""})
    );
    assert_eq!(
        values[1],
        &json!({"id": "2", "name": "multi\nline", "note": "Zoë 漢字"})
    );
    assert_eq!(
        values[2],
        &json!({"id": "3", "name": null, "note": ""}),
        "unquoted empty is NULL, quoted empty is ''"
    );
    assert_eq!(
        values[3],
        &json!({"id": "4", "name": "plain", "note": null})
    );
    assert_eq!(got.iter().map(line).collect::<Vec<_>>(), [2, 3, 5, 6]);
    assert!(got
        .iter()
        .all(|m| m.headers["csvbus-import"] == id && m.headers["csvbus-table"] == "public.people"));
    assert!(got.iter().all(|m| m.key.is_none()));

    let rec = ctx.import(&id).await;
    assert_eq!(rec["status"], "produced");
    assert_eq!(rec["rows_produced"], 4);
    assert_eq!(rec["columns"], json!(["id", "name", "note"]));
    ctx.svc.stop().await;
}

#[tokio::test]
async fn options_set_delimiter_null_text_and_key() {
    let ctx = setup(&[]).await;
    let csv = "id;name;note\n1;NULL;\n2;b;NULL\n1;c;x\n";
    let (status, body) = ctx
        .post("table=people&delimiter=;&null=NULL&key=id", csv)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let got = ctx.topic(3).await;
    assert_eq!(got[0].value, json!({"id": "1", "name": null, "note": ""}));
    assert_eq!(got[1].value, json!({"id": "2", "name": "b", "note": null}));
    assert_eq!(got[0].key.as_deref(), Some(&b"1"[..]));
    assert_eq!(
        got[0].partition, got[2].partition,
        "same key, same partition"
    );
    ctx.svc.stop().await;
}

#[tokio::test]
async fn gzip_and_zstd_bodies_are_decompressed_as_they_stream() {
    let ctx = setup(&[]).await;
    let csv: String = std::iter::once("id,name\n".to_owned())
        .chain((1..=1000).map(|i| format!("{i},n{i}\n")))
        .collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(csv.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let (status, body) = ctx
        .post_with(
            "table=people",
            gz.clone(),
            &[("content-type", "text/csv"), ("content-encoding", "gzip")],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["rows_produced"], 1000);
    assert_eq!(body["bytes_read"], gz.len(), "bytes as sent, compressed");
    let zst = zstd::encode_all(csv.as_bytes(), 3).unwrap();
    let (status, body) = ctx
        .post_with(
            "table=people",
            zst,
            &[("content-type", "text/csv"), ("content-encoding", "zstd")],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["rows_produced"], 1000);
    let got = ctx.topic(2000).await;
    assert_eq!(got.len(), 2000);
    assert_eq!(got[1998].value, json!({"id": "1000", "name": "n1000"}));
    assert_eq!(got[1999].value, json!({"id": "1000", "name": "n1000"}));
    ctx.svc.stop().await;
}

#[tokio::test]
async fn bad_records_are_rejected_with_line_and_reason_and_the_rest_goes_on() {
    let ctx = setup(&[]).await;
    let mut csv = b"id,name\n1,ok\n2,too,many\n3\n".to_vec();
    csv.extend_from_slice(b"4,bad \xff utf8\n5,fine\n6,\"never closed\n");
    let (status, body) = ctx.post("table=people", csv).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["rows_produced"], 2);
    assert_eq!(body["rows_rejected"], 4);
    let rejected = ctx.rejected().await;
    let lines: Vec<i64> = rejected.iter().map(|r| r.0).collect();
    assert_eq!(lines, [3, 4, 5, 7]);
    assert_eq!(rejected[0].1, "expected 2 fields, found 3");
    assert_eq!(rejected[0].2, "2,too,many");
    assert_eq!(rejected[1].1, "expected 2 fields, found 1");
    assert!(
        rejected[2].1.contains("invalid UTF-8 in field 2"),
        "{:?}",
        rejected[2]
    );
    assert_eq!(rejected[3].1, "unterminated quoted field");
    let got = ctx.topic(2).await;
    assert_eq!(got.iter().map(line).collect::<Vec<_>>(), [2, 6]);

    let id = body["import_id"].as_str().unwrap();
    let page = ctx.get(&format!("/v1/imports/{id}/rejected?limit=3")).await;
    assert_eq!(page["rows"].as_array().unwrap().len(), 3);
    let after = page["next_after"].as_i64().unwrap();
    let page = ctx
        .get(&format!("/v1/imports/{id}/rejected?after={after}"))
        .await;
    assert_eq!(page["rows"][0]["line"], 7);
    assert_eq!(page["next_after"], Value::Null);
    // A query string that does not parse gets the JSON error shape, on every route.
    for path in [
        format!("/v1/imports/{id}/rejected?after=soon"),
        format!("/v1/imports/{id}/rejected?limit=-"),
        "/v1/imports?table=people&max_rejected=many".to_owned(),
    ] {
        let req = if path.contains("/rejected") {
            ctx.http.get(ctx.svc.url(&path))
        } else {
            ctx.http.post(ctx.svc.url(&path)).body("id\n1\n")
        };
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
        let err: Value = r.json().await.unwrap();
        assert_eq!(err["error"], "invalid_query", "{path}: {err}");
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    ctx.svc.stop().await;
}

#[tokio::test]
async fn too_many_bad_rows_fail_the_import_with_422_and_keep_what_was_produced() {
    let ctx = setup(&[]).await;
    let csv = "id,name\n1,a\n2\n3,b\n4\n5\n6,c\n";
    let (status, body) = ctx.post("table=people&max_rejected=2", csv).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"], "too_many_rejected_rows");
    assert_eq!(body["line"], 6);
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM csvbus.imports")
        .fetch_one(&ctx.db.pool)
        .await
        .unwrap();
    let rec = ctx.import(&id.to_string()).await;
    assert_eq!(rec["status"], "failed");
    assert_eq!(rec["rows_produced"], 2);
    assert_eq!(rec["rows_rejected"], 3);
    assert_eq!(ctx.topic(2).await.len(), 2);
    ctx.svc.stop().await;
}

/// Each check that comes before the first row: its status, its JSON, and nothing produced.
#[tokio::test]
async fn checks_before_the_first_row_answer_4xx_and_produce_nothing() {
    let ctx = setup(&[("CSVBUS_MAX_BODY_BYTES", "1000")]).await;
    ctx.db
        .exec("CREATE TABLE gen (a int, b int GENERATED ALWAYS AS (a * 2) STORED)")
        .await;
    type Case<'a> = (
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "table=nope",
            "id\n1\n",
            vec![],
            StatusCode::NOT_FOUND,
            "unknown_table",
        ),
        (
            "table=csvbus.imports",
            "id\n1\n",
            vec![],
            StatusCode::NOT_FOUND,
            "unknown_table",
        ),
        (
            "table=pg_catalog.pg_class",
            "id\n1\n",
            vec![],
            StatusCode::NOT_FOUND,
            "unknown_table",
        ),
        (
            "table=people",
            "id,wat\n1,2\n",
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_column",
        ),
        (
            "table=people",
            "id,id\n1,2\n",
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "duplicate_column",
        ),
        (
            "table=people",
            "name\nx\n",
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_column",
        ),
        (
            "table=gen",
            "a,b\n1,2\n",
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "generated_column",
        ),
        (
            "table=people&key=name",
            "id\n1\n",
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_key_column",
        ),
        (
            "table=people",
            "",
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_header",
        ),
        (
            "table=people&delimiter=ab",
            "id\n1\n",
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_delimiter",
        ),
        (
            "nothing=1",
            "id\n1\n",
            vec![],
            StatusCode::BAD_REQUEST,
            "unknown_parameter",
        ),
        (
            "table=people",
            "id\n1\n",
            vec![("content-type", "application/json")],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "table=people",
            "id\n1\n",
            vec![("content-type", "text/csv"), ("content-encoding", "br")],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
        ),
        (
            "table=people",
            "id\n1\n",
            vec![("content-type", "text/csv"), ("content-encoding", "gzip")],
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
    ];
    for (query, csv, headers, status, code) in cases {
        let headers = if headers.is_empty() {
            vec![("content-type", "text/csv")]
        } else {
            headers
        };
        let (got, body) = ctx.post_with(query, csv, &headers).await;
        assert_eq!(
            (got, body["error"].as_str().unwrap_or("")),
            (status, code),
            "{query} {csv:?}: {body}"
        );
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        if code.ends_with("column") || code == "missing_header" {
            assert_eq!(body["line"], 1, "{body}");
        }
    }
    // 413 on a declared length, before reading.
    let big = format!("id\n{}", "1\n".repeat(600));
    let (got, body) = ctx.post("table=people", big.clone()).await;
    assert_eq!(
        (got, body["error"].as_str().unwrap()),
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
    );
    assert_eq!(ctx.imports().await, 0, "no check above created an import");
    // 413 on a chunked body, counted while streaming: the import fails.
    let chunks = futures::stream::iter(
        big.into_bytes()
            .chunks(100)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let (got, body) = ctx
        .post("table=people", reqwest::Body::wrap_stream(chunks))
        .await;
    assert_eq!(
        (got, body["error"].as_str().unwrap()),
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
    );
    let status: String = sqlx::query_scalar("SELECT status FROM csvbus.imports")
        .fetch_one(&ctx.db.pool)
        .await
        .unwrap();
    assert_eq!(status, "failed");
    // Rows of that failed upload may be on the topic; nothing from the checks before it.
    let produced: i64 = sqlx::query_scalar("SELECT rows_produced FROM csvbus.imports")
        .fetch_one(&ctx.db.pool)
        .await
        .unwrap();
    assert_eq!(ctx.topic(produced as usize).await.len() as i64, produced);
    // Unknown imports.
    let r = ctx
        .http
        .get(
            ctx.svc
                .url("/v1/imports/0190a1a1-0000-7000-8000-000000000000"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unknown_import");
    ctx.svc.stop().await;
}

#[tokio::test]
async fn api_keys_guard_every_v1_route() {
    let ctx = setup(&[("CSVBUS_API_KEYS", "k1,k2")]).await;
    let (status, body) = ctx.post("table=people", "id\n1\n").await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let (status, _) = ctx
        .post_with(
            "table=people",
            "id\n1\n",
            &[("authorization", "Bearer nope")],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let r = ctx
        .http
        .get(ctx.svc.url("/v1/imports/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (status, body) = ctx
        .post_with(
            "table=people",
            "id\n1\n",
            &[("authorization", "Bearer k2"), ("content-type", "text/csv")],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        ctx.http
            .get(ctx.svc.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    ctx.svc.stop().await;
}

/// `dry_run=true` answers how the file would be read — its first rows as they would be
/// written (day-first dates already in ISO order), the rejections among them, the table
/// `create=true` would make — and stores nothing: no import, no table, no message, and an
/// Idempotency-Key is left free.
#[tokio::test]
async fn a_dry_run_shows_the_first_rows_as_they_would_be_written_and_stores_nothing() {
    let ctx = setup(&[]).await;
    let body = "id;name;born\n1;Zoë;31/12/1990\n2;x;13/02/2001;extra\nnot a number;y;01/02/2003\n";
    let (status, p) = ctx
        .post_with(
            "table=people&delimiter=auto&dry_run=true",
            body,
            &[("content-type", "text/csv"), ("idempotency-key", "k-dry")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(p["dry_run"], true);
    assert_eq!(p["table"], "public.people");
    assert_eq!(p["read_as"]["delimiter"], ";");
    assert_eq!(p["read_as"]["dateformat"], "dmy", "{p}");
    assert_eq!(p["columns"], serde_json::json!(["id", "name", "born"]));
    assert_eq!(
        p["rows"],
        serde_json::json!([
            {"line": 2, "values": {"id": "1", "name": "Zoë", "born": "1990-12-31"}},
            // The table refuses "not a number" only when written: a preview shows the row.
            {"line": 4, "values": {"id": "not a number", "name": "y", "born": "2003-02-01"}},
        ]),
        "{p}"
    );
    assert_eq!(p["rejected"][0]["line"], 3, "{p}");
    assert_eq!(p["records_read"], 3);

    // create=true: the table that would be made, not made.
    let (status, p) = ctx
        .post(
            "table=fresh&create=true&dry_run=true",
            "a,b\n1,2024-01-31\n",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(
        p["read_as"]["created"],
        "CREATE TABLE \"public\".\"fresh\" (\"a\" bigint, \"b\" date)"
    );
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass('public.fresh')::text")
        .fetch_one(&ctx.db.pool)
        .await
        .unwrap();
    assert_eq!(exists, None, "a dry run creates no table");
    assert_eq!(ctx.imports().await, 0, "a dry run records no import");
    assert!(ctx.topic(0).await.is_empty(), "a dry run produces nothing");
    // The key is free: the real upload under it goes through.
    let (status, acc) = ctx
        .post_with(
            "table=people",
            "id,name\n1,a\n",
            &[("content-type", "text/csv"), ("idempotency-key", "k-dry")],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{acc}");
    ctx.svc.stop().await;
}

/// A key scoped to tables (`key@table|schema.*`) writes and sees only those, in every route:
/// uploads elsewhere are 403, other tables' imports are 404 and left out of the list, and
/// `/v1/tables` shows only its own. A key without a scope still reaches everything.
#[tokio::test]
async fn a_scoped_api_key_sees_and_writes_only_its_tables() {
    let ctx = setup(&[("CSVBUS_API_KEYS", "full,narrow@public.people|sales.*")]).await;
    ctx.db.exec("CREATE TABLE other (id int)").await;
    let as_key = |key: &str| [("authorization", format!("Bearer {key}"))];
    let post = |key: &'static str, table: &'static str| {
        let auth = format!("Bearer {key}");
        let ctx = &ctx;
        async move {
            let headers = [
                ("authorization", auth.as_str()),
                ("content-type", "text/csv"),
            ];
            ctx.post_with(&format!("table={table}"), "id\n1\n", &headers)
                .await
        }
    };
    let (status, mine) = post("narrow", "people").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{mine}");
    let (status, body) = post("narrow", "other").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("out_of_scope")),
        "{body}"
    );
    // Refused before anything is created.
    let (status, body) = post("narrow", "public.fresh&create=true").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, theirs) = post("full", "other").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{theirs}");
    let get = |path: String, key: &str| {
        let [(k, v)] = as_key(key);
        ctx.http.get(ctx.svc.url(&path)).header(k, v).send()
    };
    let theirs_id = theirs["import_id"].as_str().unwrap();
    for path in ["", "/rejected", "/rejected.csv"] {
        let r = get(format!("/v1/imports/{theirs_id}{path}"), "narrow")
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        let r = get(format!("/v1/imports/{theirs_id}{path}"), "full")
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    let list: Value = get("/v1/imports".into(), "narrow")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [mine["import_id"].as_str().unwrap()], "{list}");
    let list: Value = get("/v1/imports".into(), "full")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["imports"].as_array().unwrap().len(), 2, "{list}");
    let tables: Value = get("/v1/tables".into(), "narrow")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = tables
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["public.people"], "{tables}");
    ctx.svc.stop().await;
}

#[tokio::test]
async fn one_client_cannot_hold_every_upload_slot() {
    let ctx = setup(&[
        ("CSVBUS_MAX_UPLOADS", "4"),
        ("CSVBUS_MAX_UPLOADS_PER_CLIENT", "1"),
        ("CSVBUS_API_KEYS", "key-a,key-b"),
    ])
    .await;
    let post = |key: &str, body: reqwest::Body| {
        ctx.http
            .post(ctx.svc.url("/v1/imports?table=people"))
            .header("content-type", "text/csv")
            .bearer_auth(key)
            .body(body)
    };
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let held = tokio::spawn(post("key-a", stalled_body("id\n1\n", release.clone())).send());
    eventually("the held import", Duration::from_secs(10), || async {
        ctx.imports().await == 1
    })
    .await;
    // Client a has its one slot; 3 of the service's 4 are free, but not for a.
    let r = post("key-a", "id\n2\n".into()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "too_many_uploads");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("CSVBUS_MAX_UPLOADS_PER_CLIENT"),
        "{body}"
    );
    // Another client goes on.
    let r = post("key-b", "id\n3\n".into()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    release.notify_waiters();
    assert_eq!(held.await.unwrap().unwrap().status(), StatusCode::ACCEPTED);
    // Its slot given back, a goes on too.
    let r = post("key-a", "id\n4\n".into()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    ctx.svc.stop().await;
}

#[tokio::test]
async fn uploads_past_the_limit_get_429_with_retry_after_and_idle_clients_are_cut_off() {
    let ctx = setup(&[
        ("CSVBUS_MAX_UPLOADS", "1"),
        ("CSVBUS_BODY_IDLE_TIMEOUT_MS", "3000"),
    ])
    .await;
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let first = {
        let req = ctx
            .http
            .post(ctx.svc.url("/v1/imports?table=people"))
            .header("content-type", "text/csv")
            .body(stalled_body("id\n1\n", release.clone()));
        tokio::spawn(req.send())
    };
    // The first upload holds the only slot once its import exists.
    eventually("the first import", Duration::from_secs(10), || async {
        ctx.imports().await == 1
    })
    .await;
    let r = ctx
        .http
        .post(ctx.svc.url("/v1/imports?table=people"))
        .header("content-type", "text/csv")
        .body("id\n1\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "too_many_uploads"
    );

    // The stalled first upload is cut off by the idle timeout and marked aborted.
    let resp = first.await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "body_idle_timeout"
    );
    let (status, produced): (String, i64) =
        sqlx::query_as("SELECT status, rows_produced FROM csvbus.imports")
            .fetch_one(&ctx.db.pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), produced), ("aborted", 1));
    release.notify_waiters();
    // The slot is free again.
    let (status, _) = ctx.post("table=people", "id\n1\n").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    ctx.svc.stop().await;
}

#[tokio::test]
async fn a_client_that_disconnects_mid_body_leaves_an_aborted_import() {
    let ctx = setup(&[]).await;
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let req = ctx
        .http
        .post(ctx.svc.url("/v1/imports?table=people"))
        .header("content-type", "text/csv")
        .body(stalled_body("id\n1\n2\n", release.clone()));
    let task = tokio::spawn(req.send());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while ctx.imports().await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "import never created"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
    let _ = task.await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, err): (String, Option<String>) =
            sqlx::query_as("SELECT status, error FROM csvbus.imports")
                .fetch_one(&ctx.db.pool)
                .await
                .unwrap();
        if status == "aborted" {
            assert!(err.is_some());
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "import still {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ctx.svc.stop().await;
}

/// `people` rows for lines 2..=n+1, made as the body streams (the file is never in memory).
fn people_csv(n: u64) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    let header = futures::stream::iter([Ok(b"id,name,note\n".to_vec())]);
    let chunks = futures::stream::iter((1..=n).step_by(10_000).map(move |s| {
        let mut out = Vec::with_capacity(400_000);
        for i in s..=(s + 9_999).min(n) {
            writeln!(
                out,
                "{i},\"n{i}, \"\"q\"\"\",{}",
                if i.is_multiple_of(7) { "" } else { "x" }
            )
            .unwrap();
        }
        Ok(out)
    }));
    futures::StreamExt::chain(header, chunks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_rows_land_on_the_topic_exactly_with_their_lines_after_the_acks() {
    let t = setup(&[]).await;
    let n: u64 = 1_000_000;
    let (status, body) = t
        .post("table=people", reqwest::Body::wrap_stream(people_csv(n)))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["rows_produced"], n);
    assert_eq!(body["rows_rejected"], 0);
    // Answered after the acks: the topic is read right after the 202 and already holds every
    // row. (Not checked through high watermarks: tansu's ListOffsets answers the base offset of
    // a partition's last record batch, a few hundred short of the end.)
    // Every line exactly once, with its values.
    let id = body["import_id"].as_str().unwrap().to_owned();
    let mut seen = vec![false; n as usize + 2];
    let mut wrong = Vec::new();
    let read = csvbus_tests::kafka::scan_topic(
        &brokers(),
        &t.topic,
        n as usize,
        Duration::from_secs(300),
        Duration::from_secs(1),
        |m| {
            use rdkafka::message::{Headers, Message};
            let header = |k: &str| {
                m.headers()
                    .and_then(|h| h.iter().find(|x| x.key == k))
                    .and_then(|x| x.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            };
            for (line, v) in csvbus_tests::kafka::message_rows(m) {
                let line = line as usize;
                let v: Value = serde_json::from_slice(&v).unwrap();
                let i = line as u64 - 1;
                let note = if i.is_multiple_of(7) {
                    Value::Null
                } else {
                    json!("x")
                };
                let expected =
                    json!({"id": i.to_string(), "name": format!("n{i}, \"q\""), "note": note});
                if v != expected || header("csvbus-import").as_deref() != Some(&id) || seen[line] {
                    wrong.push((line, v));
                }
                seen[line] = true;
            }
        },
    )
    .await;
    assert_eq!(read, n as usize);
    assert!(
        wrong.is_empty(),
        "{} wrong, first {:?}",
        wrong.len(),
        wrong.first()
    );
    assert!(seen[2..].iter().all(|s| *s));
    let rec = t.import(&id).await;
    assert_eq!(rec["status"], "produced", "{rec}");
    assert_eq!(rec["rows_produced"], n);
    t.svc.stop().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_request_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ctx = setup(&[("CSVBUS_HEADER_READ_TIMEOUT_MS", "300")]).await;
    let mut conn = tokio::net::TcpStream::connect(ctx.svc.addr).await.unwrap();
    conn.write_all(b"POST /v1/imports?table=people HTTP/1.1\r\nHost: csvbus\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer)).await;
    assert!(closed.is_ok(), "the connection is still open after 10 s");
    // A complete request on a new connection is still served.
    let (status, _) = ctx.post("table=people", "id\n1\n").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    ctx.svc.stop().await;
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    use tokio::io::AsyncReadExt;
    let ctx = setup(&[("CSVBUS_HEADER_READ_TIMEOUT_MS", "300")]).await;
    let mut conn = tokio::net::TcpStream::connect(ctx.svc.addr).await.unwrap();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer)).await;
    assert!(
        closed.is_ok(),
        "a silent connection is still open after 10 s"
    );
    ctx.svc.stop().await;
}

#[tokio::test]
async fn past_the_connection_cap_new_connections_wait_until_one_closes() {
    let ctx = setup(&[
        ("CSVBUS_MAX_CONNECTIONS", "2"),
        ("CSVBUS_HEADER_READ_TIMEOUT_MS", "60000"),
    ])
    .await;
    let idle_a = tokio::net::TcpStream::connect(ctx.svc.addr).await.unwrap();
    let _idle_b = tokio::net::TcpStream::connect(ctx.svc.addr).await.unwrap();
    let url = ctx.svc.url("/healthz");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let held = client.get(&url).send().await;
    assert!(
        held.is_err(),
        "both connections are held: not served, {held:?}"
    );
    drop(idle_a);
    let served = reqwest::Client::new().get(&url).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    ctx.svc.stop().await;
}

#[tokio::test]
async fn a_trickled_repeat_whose_body_is_only_dropped_is_cut_off_at_the_minimum_rate() {
    let ctx = setup(&[
        ("CSVBUS_BODY_IDLE_TIMEOUT_MS", "300"),
        ("CSVBUS_BODY_MIN_BYTES_PER_SEC", "1000"),
    ])
    .await;
    let key = [
        ("content-type", "text/csv"),
        ("idempotency-key", "trickle-1"),
    ];
    let (status, v) = ctx.post_with("table=people", "id\n1\n", &key).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    // The same key again, one byte every 50 ms for up to 10 s: a body read only to be dropped,
    // and it would hold an upload slot all that time.
    let trickle = futures::stream::unfold(0u32, |i| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        (i < 200).then(|| (Ok::<_, std::io::Error>(b"1".to_vec()), i + 1))
    });
    let (status, v) = ctx
        .post_with("table=people", reqwest::Body::wrap_stream(trickle), &key)
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (StatusCode::REQUEST_TIMEOUT, Some("body_too_slow")),
        "{v}"
    );
    ctx.svc.stop().await;
}

#[tokio::test]
async fn long_polls_past_the_limit_get_429_and_plain_reads_still_work() {
    let ctx = setup(&[("CSVBUS_MAX_WAITERS", "1")]).await;
    // An import that stays `produced` (no sink runs here), so a long-poll waits its full time.
    let (status, v) = ctx.post("table=people", "id\n1\n").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let url = ctx
        .svc
        .url(&format!("/v1/imports/{}", v["import_id"].as_str().unwrap()));
    // Two long-polls at once: one holds the only slot for its 3 s, the other is refused.
    let (a, b) = tokio::join!(
        ctx.http.get(format!("{url}?wait=3s")).send(),
        ctx.http.get(format!("{url}?wait=3s")).send()
    );
    let mut answers = [a.unwrap(), b.unwrap()];
    answers.sort_by_key(|r| r.status());
    let [served, refused] = answers;
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "too_many_waiters");
    // Reads without wait are never refused.
    let plain = ctx.http.get(&url).send().await.unwrap();
    assert_eq!(plain.status(), StatusCode::OK);
    ctx.svc.stop().await;
}

#[tokio::test]
async fn a_failure_after_rows_were_accepted_names_the_import_and_says_what_a_retry_does() {
    let ctx = setup(&[]).await;
    let body = "id\n1\n2\n3,x\n4,y\n";
    let (status, v) = ctx.post("table=people&max_rejected=1", body).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("too_many_rejected_rows")
        ),
        "{v}"
    );
    assert!(v["import_id"].is_string(), "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains("2 rows before it were accepted") && message.contains("Idempotency-Key"),
        "{message}"
    );
    // All or nothing: nothing was written, and the answer says so.
    let (_, v) = ctx
        .post("table=people&max_rejected=1&mode=atomic", body)
        .await;
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("none of its rows were written"),
        "{v}"
    );
    ctx.svc.stop().await;
}

/// A `multipart/form-data` body as `curl -F` sends it: `(name, filename, content)` parts.
fn form(boundary: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, file, content) in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let disposition = match file {
            Some(f) => format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: text/csv\r\n"),
            None => format!("Content-Disposition: form-data; name=\"{name}\"\r\n"),
        };
        out.extend_from_slice(disposition.as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(content);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

#[tokio::test]
async fn the_content_types_people_send_are_read_and_the_risky_ones_refused_with_a_hint() {
    let ctx = setup(&[]).await;
    // What browsers on Windows call a .csv, and a generic binary upload.
    for ct in ["application/vnd.ms-excel", "application/octet-stream"] {
        let (status, v) = ctx
            .post_with("table=people", "id,name\n1,a\n", &[("content-type", ct)])
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{ct}: {v}");
    }
    // What a page on another site can send without asking, and curl --data-binary's default.
    for ct in ["text/plain", "application/x-www-form-urlencoded"] {
        let (status, v) = ctx
            .post_with("table=people", "id,name\n1,a\n", &[("content-type", ct)])
            .await;
        assert_eq!(
            (status, v["error"].as_str()),
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Some("unsupported_media_type")
            ),
            "{ct}"
        );
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("-H 'Content-Type: text/csv'"),
            "{v}"
        );
    }
    // charset= names the encoding.
    let latin = b"id,name\n1,Zo\xeb\n".to_vec();
    let (status, v) = ctx
        .post_with(
            "table=people",
            latin,
            &[("content-type", "text/csv; charset=windows-1252")],
        )
        .await;
    assert_eq!(
        (status, v["read_as"]["encoding"].as_str()),
        (StatusCode::ACCEPTED, Some("windows-1252")),
        "{v}"
    );
    ctx.svc.stop().await;
}

#[tokio::test]
async fn a_form_upload_streams_its_file_part_under_its_file_name() {
    let ctx = setup(&[]).await;
    let (b1, b2) = ("------csvbus-a", "------csvbus-b");
    let csv: &[u8] = b"id,name\n1,a\n2,b\n";
    let c = &ctx;
    let post = |boundary: &str, parts: &[(&str, Option<&str>, &[u8])], key: &str| {
        let ct = format!("multipart/form-data; boundary={boundary}");
        let body = form(boundary, parts);
        let key = key.to_owned();
        async move {
            c.post_with(
                "table=people",
                body,
                &[
                    ("content-type", ct.as_str()),
                    ("idempotency-key", key.as_str()),
                ],
            )
            .await
        }
    };
    let (status, v) = post(
        b1,
        &[("file", Some("C:\\exports\\sales.csv"), csv)],
        "form-1",
    )
    .await;
    assert_eq!(
        (status, v["rows_produced"].as_u64()),
        (StatusCode::ACCEPTED, Some(2)),
        "{v}"
    );
    let rec = ctx
        .get(&format!("/v1/imports/{}", v["import_id"].as_str().unwrap()))
        .await;
    assert_eq!(rec["source"], "sales.csv");
    // The same file again in another form (another boundary): a repeat, not another file.
    let (status, again) = post(b2, &[("file", Some("sales.csv"), csv)], "form-1").await;
    assert_eq!(
        (status, &again["replayed"]),
        (StatusCode::OK, &Value::Bool(true)),
        "{again}"
    );
    // A field before the file, or no file at all: said so, nothing stored.
    let (status, v) = post(
        b1,
        &[("mode", None, b"upsert"), ("file", Some("x.csv"), csv)],
        "form-2",
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_form")),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("\"mode\""), "{v}");
    // A second file after the first: the first is imported, and the answer names the other.
    let parts: &[(&str, Option<&str>, &[u8])] = &[
        ("file", Some("one.csv"), b"id,name\n7,g\n"),
        ("file2", Some("two.csv"), b"id,name\n8,h\n"),
    ];
    let (status, v) = post(b1, parts, "form-4").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let notes = v["read_as"]["notes"].to_string();
    assert!(
        notes.contains("\\\"two.csv\\\" after the file was not read"),
        "{notes}"
    );
    let (status, v) = post(b1, &[], "form-3").await;
    assert_eq!(
        (status, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_form")),
        "{v}"
    );
    assert_eq!(ctx.imports().await, 2);
    ctx.svc.stop().await;
}
