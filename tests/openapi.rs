//! The OpenAPI document covers every route: each documented path answers exactly its
//! documented methods (405 for the others), the served document is the router's own, and no
//! route is added to the router outside `routes::documented` (where `routes!` takes each
//! route's path and method from its documentation).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use csvbus_tests::TestDb;
use serde_json::Value;

async fn app() -> (TestDb, Arc<csvbus_upload::App>) {
    let db = TestDb::new().await;
    db.exec("CREATE TABLE people (id int PRIMARY KEY, name text)")
        .await;
    let app = csvbus_tests::upload_app(&db, &[]).await;
    (db, app)
}

async fn call(app: &Arc<csvbus_upload::App>, method: Method, uri: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "text/csv")
        .body(Body::from("id,name\n1,a\n"))
        .unwrap();
    csvbus_tests::oneshot(app, req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_exactly_its_documented_methods() {
    let (_db, app) = app().await;
    let (status, served) = call(&app, Method::GET, "/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served["openapi"], "3.1.0");
    let doc = serde_json::to_value(csvbus_upload::documented(app.clone()).into_openapi()).unwrap();
    assert_eq!(served, doc, "the served document is the router's own");

    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 12, "{:?}", paths.keys());
    let id = uuid::Uuid::new_v4().to_string();
    for (path, item) in paths {
        let uri = path.replace("{id}", &id);
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ] {
            let documented = item.get(method.as_str().to_lowercase()).is_some();
            let (status, body) = call(&app, method.clone(), &uri).await;
            if documented {
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert_ne!(body["error"], "not_found", "{method} {path}: no such route");
                let op = &item[method.as_str().to_lowercase()];
                assert!(
                    op["responses"].get(status.as_str()).is_some(),
                    "{method} {path} answered {status}, which its documentation does not list"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is served but not documented: {body}"
                );
            }
        }
    }
    // A path outside the document is no route.
    for uri in ["/v1", "/v1/imports/x/y", "/docs", "/v2/imports"] {
        assert_eq!(
            call(&app, Method::GET, uri).await.1["error"],
            "not_found",
            "{uri}"
        );
    }
}

/// Routes reach the router only through `routes!` in `routes::documented`: a plain `.route(`,
/// `.nest(` or `.merge(` anywhere in the upload service would add one without documentation.
#[test]
fn no_route_is_added_without_documentation() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../services/upload/src");
    let mut dirs = vec![src];
    let mut files = Vec::new();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 30, "the stage folders were not walked");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for call in [
            ".route(",
            ".route_service(",
            ".nest(",
            ".nest_service(",
            ".merge(",
        ] {
            assert!(
                !text.contains(call),
                "{} calls {call}: add routes with `routes!` in routes::documented",
                path.display()
            );
        }
    }
}
