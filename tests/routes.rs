//! Every route's error answers, through the router itself (`tower::ServiceExt::oneshot`, no
//! socket) on a real database and broker: each is the JSON error shape `{error, message}` with
//! the status and code docs/api.md lists.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use csvbus_tests::{env, unique, TestDb};
use serde_json::Value;

const TABLE: &str = "CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL)";

async fn app(keys: Option<&str>) -> (TestDb, Arc<csvbus_upload::App>) {
    app_with(keys.map(|k| ("CSVBUS_API_KEYS", k)).as_slice()).await
}

async fn app_with(settings: &[(&str, &str)]) -> (TestDb, Arc<csvbus_upload::App>) {
    let db = TestDb::new().await;
    db.exec(TABLE).await;
    let app = csvbus_tests::upload_app(&db, settings).await;
    (db, app)
}

/// Sends one request through a fresh router: (status, JSON body or `null`).
async fn call(app: &Arc<csvbus_upload::App>, req: Request<Body>) -> (StatusCode, Value) {
    csvbus_tests::oneshot(app, req).await
}

/// `r` with one more header.
fn with(mut r: Request<Body>, name: &'static str, value: &str) -> Request<Body> {
    r.headers_mut().insert(name, value.parse().unwrap());
    r
}

fn req(method: Method, uri: &str, body: &'static str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "text/csv")
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_its_errors_as_json() {
    let (_db, app) = app(None).await;
    let id = uuid::Uuid::new_v4();
    let post_people = || req(Method::POST, "/v1/imports?table=people", "id,name\n1,a\n");
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        // POST /v1/imports
        (
            req(Method::POST, "/v1/imports", "id\n1\n"),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            req(
                Method::POST,
                "/v1/imports?table=people&max_rejected=x",
                "id\n",
            ),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            req(Method::POST, "/v1/imports?table=nope", "id\n1\n"),
            StatusCode::NOT_FOUND,
            "unknown_table",
        ),
        (
            req(Method::POST, "/v1/imports?table=people&mode=merge", "id\n"),
            StatusCode::BAD_REQUEST,
            "invalid_mode",
        ),
        (
            req(
                Method::POST,
                "/v1/imports?table=people&delimiter=ab",
                "id\n",
            ),
            StatusCode::BAD_REQUEST,
            "invalid_delimiter",
        ),
        (
            req(
                Method::POST,
                "/v1/imports?table=people&dateformat=dd.mm.yyyy",
                "id\n",
            ),
            StatusCode::BAD_REQUEST,
            "invalid_dateformat",
        ),
        (
            req(Method::POST, "/v1/imports?table=people", ""),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_header",
        ),
        (
            req(Method::POST, "/v1/imports?table=people", "id,nope\n1,2\n"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_column",
        ),
        (
            req(Method::POST, "/v1/imports?table=people", "id\n1\n"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_column",
        ),
        (
            with(post_people(), "content-encoding", "br"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
        ),
        (
            with(post_people(), "idempotency-key", "with space"),
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
        ),
        // GET /v1/imports/{id}
        (
            req(Method::GET, "/v1/imports/not-a-uuid", ""),
            StatusCode::NOT_FOUND,
            "unknown_import",
        ),
        (
            req(Method::GET, &format!("/v1/imports/{id}"), ""),
            StatusCode::NOT_FOUND,
            "unknown_import",
        ),
        (
            req(Method::GET, &format!("/v1/imports/{id}?wait=soon"), ""),
            StatusCode::BAD_REQUEST,
            "invalid_wait",
        ),
        // GET /v1/imports/{id}/rejected
        (
            req(Method::GET, &format!("/v1/imports/{id}/rejected"), ""),
            StatusCode::NOT_FOUND,
            "unknown_import",
        ),
        (
            req(
                Method::GET,
                &format!("/v1/imports/{id}/rejected?limit=many"),
                "",
            ),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        // No such route, or not this method.
        (
            req(Method::GET, "/v2/imports", ""),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            req(Method::DELETE, "/v1/imports", ""),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            req(Method::GET, "/v1/imports?limit=0", ""),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        // Paging parameters are checked alike on every route: out of range is refused.
        (
            req(
                Method::GET,
                &format!("/v1/imports/{id}/rejected?limit=0"),
                "",
            ),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            req(
                Method::GET,
                &format!("/v1/imports/{id}/rejected?limit=-1"),
                "",
            ),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            req(Method::GET, "/v1/imports?status=done", ""),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            req(Method::GET, "/v1/imports?table=a.b.c", ""),
            StatusCode::BAD_REQUEST,
            "invalid_table",
        ),
        // A NUL the database cannot compare is the request's fault: 400, not 503.
        (
            req(Method::GET, "/v1/imports?idempotency_key=a%00b", ""),
            StatusCode::BAD_REQUEST,
            "invalid_value",
        ),
        (
            req(Method::POST, "/v1/imports?table=peo%00ple", "id\n1\n"),
            StatusCode::BAD_REQUEST,
            "invalid_value",
        ),
        (
            req(Method::GET, &format!("/v1/imports/{id}/rejected.csv"), ""),
            StatusCode::NOT_FOUND,
            "unknown_import",
        ),
        (
            req(
                Method::GET,
                &format!("/v1/imports/{id}/rejected.csv?format=xml"),
                "",
            ),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
    ];
    for (request, status, code) in cases {
        let what = format!("{} {}", request.method(), request.uri());
        let (got, body) = call(&app, request).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(body["error"], code, "{what}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
    }
    // The routes without errors of their own answer.
    let (status, _) = call(&app, req(Method::GET, "/healthz", "")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(&app, req(Method::GET, "/readyz", "")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_keys_configured_every_api_route_asks_for_one() {
    let (_db, app) = app(Some("k1,k2")).await;
    let id = uuid::Uuid::new_v4();
    for (method, uri) in [
        (Method::POST, "/v1/imports?table=people".to_owned()),
        (Method::GET, format!("/v1/imports/{id}")),
        (Method::GET, format!("/v1/imports/{id}/rejected")),
        (Method::GET, format!("/v1/imports/{id}/rejected.csv")),
        (Method::GET, "/v1/imports".to_owned()),
        (Method::GET, "/v1/tables".to_owned()),
    ] {
        let (status, body) = call(&app, req(method.clone(), &uri, "id,name\n1,a\n")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}: {body}");
        assert_eq!(body["error"], "unauthorized");
        let wrong = with(
            req(method.clone(), &uri, "id,name\n1,a\n"),
            "authorization",
            "Bearer k3",
        );
        assert_eq!(call(&app, wrong).await.0, StatusCode::UNAUTHORIZED);
    }
    // The right key passes the check (and meets the route's own answer).
    let right = with(
        req(Method::GET, &format!("/v1/imports/{id}"), ""),
        "authorization",
        "Bearer k2",
    );
    assert_eq!(call(&app, right).await.1["error"], "unknown_import");
    // Health, the page and the API document need no key (the page asks for it).
    for uri in ["/healthz", "/", "/app.js", "/v1/openapi.json"] {
        assert_eq!(
            call(&app, req(Method::GET, uri, "")).await.0,
            StatusCode::OK,
            "{uri}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_the_whole_request_limit_answers_408_in_the_error_shape() {
    let (db, app) = app_with(&[("CSVBUS_REQUEST_TIMEOUT_MS", "300")]).await;
    // An import that will not become final: a long-poll on it outlasts the limit.
    let id = uuid::Uuid::new_v4();
    db.exec(&format!(
        "INSERT INTO csvbus.imports (id, target_schema, target_table, columns)
         VALUES ('{id}', 'public', 'people', ARRAY['id'])"
    ))
    .await;
    let started = std::time::Instant::now();
    let (status, body) = call(
        &app,
        req(Method::GET, &format!("/v1/imports/{id}?wait=20s"), ""),
    )
    .await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
    assert_eq!(body["error"], "request_timeout");
    assert!(
        body["message"].as_str().unwrap().contains("300ms"),
        "{body}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_query_parameter_is_refused_and_named_with_the_closest_known_one() {
    let (db, app) = app(None).await;
    let id = uuid::Uuid::new_v4();
    let cases = [
        (
            Method::POST,
            "/v1/imports?table=people&mdoe=upsert".to_owned(),
            "mdoe",
            "mode",
        ),
        (
            Method::GET,
            "/v1/imports?tabel=people".to_owned(),
            "tabel",
            "table",
        ),
        (
            Method::GET,
            format!("/v1/imports/{id}?wiat=1s"),
            "wiat",
            "wait",
        ),
        (
            Method::GET,
            format!("/v1/imports/{id}/rejected?limt=5"),
            "limt",
            "limit",
        ),
        (
            Method::GET,
            format!("/v1/imports/{id}/rejected.csv?fromat=reupload"),
            "fromat",
            "format",
        ),
    ];
    for (method, uri, unknown, closest) in cases {
        let (status, body) = call(&app, req(method, &uri, "id,name\n1,a\n")).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("unknown_parameter")),
            "{uri}: {body}"
        );
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("`{unknown}`"))
                && message.contains(&format!("did you mean `{closest}`")),
            "{uri}: {message}"
        );
    }
    // Nothing far from a known name: the known ones are listed.
    let (_, body) = call(&app, req(Method::GET, "/v1/imports?zzzzzzzz=1", "")).await;
    assert!(
        body["message"].as_str().unwrap().contains("known: table"),
        "{body}"
    );
    // The typo'd upload stored nothing.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM csvbus.imports")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_or_a_cross_site_write_is_refused_before_its_route() {
    let (db, app) = app(None).await;
    let upload = |extra: &[(&'static str, &str)]| {
        let mut r = req(Method::POST, "/v1/imports?table=people", "id,name\n1,a\n");
        r = with(r, "host", "127.0.0.1:8080");
        for (k, v) in extra {
            r = with(r, k, v);
        }
        r
    };
    // What a page on another site sends (a form or fetch with text/plain needs no preflight).
    for extra in [
        vec![
            ("origin", "http://evil.example"),
            ("content-type", "text/plain"),
        ],
        vec![("origin", "null")],
        vec![("sec-fetch-site", "cross-site")],
    ] {
        let (status, body) = call(&app, upload(&extra)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::FORBIDDEN, Some("cross_origin")),
            "{extra:?}: {body}"
        );
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM csvbus.imports")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(n, 0, "nothing was written");
    // The service's own page, and a client without Origin, go through.
    let (status, body) = call(&app, upload(&[("origin", "http://127.0.0.1:8080")])).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // DNS rebinding: a name this service does not answer to, on any route but the probes.
    let get = |path: &str, host: &str| with(req(Method::GET, path, ""), "host", host);
    let (status, body) = call(&app, get("/v1/imports", "evil.example:8080")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden_host")),
        "{body}"
    );
    let (status, _) = call(&app, get("/", "evil.example:8080")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(&app, get("/healthz", "10.1.2.3:8080")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&app, get("/v1/imports", "localhost:8080")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_those_the_docs_list_each_described_and_counters_present_from_the_start() {
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/operations.md"
    ))
    .unwrap();
    let section = docs.split("## Metrics").nth(1).unwrap();
    let documented: std::collections::BTreeSet<&str> = section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.split('`').nth(1))
        .collect();
    let exported: std::collections::BTreeSet<&str> = csvbus_upload::METRICS
        .iter()
        .chain(csvbus_sink::METRICS)
        .map(|m| m.name)
        .collect();
    assert_eq!(
        documented, exported,
        "docs/operations.md's metrics table and the services' lists"
    );

    let db = TestDb::new().await;
    let mut e = env(&db, &unique("metrics"));
    e.set("CSVBUS_SINK_GROUP", unique("g"));
    let upload = csvbus_tests::spawn_upload(&e).await;
    let sink = csvbus_tests::spawn_sink(&e).await;
    let get = |url: String| async move { reqwest::get(url).await.unwrap().text().await.unwrap() };
    let upload_text = get(upload.url("/metrics")).await;
    let sink_text = get(sink.url("/metrics")).await;
    for (text, list) in [
        (&upload_text, csvbus_upload::METRICS),
        (&sink_text, csvbus_sink::METRICS),
    ] {
        // A labelled series (the sink's lag) appears with its first value.
        for m in list.iter().filter(|m| m.labels.is_empty()) {
            assert!(
                text.contains(&format!("# HELP {} ", m.name)),
                "{} undescribed:\n{text}",
                m.name
            );
            let sample = text.lines().any(|l| {
                l.strip_prefix(m.name)
                    .is_some_and(|rest| rest.starts_with([' ', '_']) && !l.starts_with('#'))
            });
            assert!(sample, "{} is not exported from the start:\n{text}", m.name);
        }
    }
    // Rows per batch in buckets of rows, not of seconds.
    assert!(
        sink_text.contains("csvbus_sink_batch_rows_bucket{le=\"5000\"}"),
        "{sink_text}"
    );
    sink.stop().await;
    upload.stop().await;
}
