//! compose's Postgres roles (deploy/postgres/roles.sql), against the real Postgres: migrations
//! applied as `csvbus_migrate`, the services running as `csvbus_app` through every mode and
//! `create=true` — and `csvbus_app` unable to do more than that.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use csvbus_tests::{env, post_import, spawn_sink, spawn_upload, unique, wait_ended, TestDb};
use sqlx::Connection;

/// `url` with another user (whose password is its name, as roles.sql sets them).
fn as_role(url: &str, role: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (_, host) = rest.split_once('@').unwrap();
    format!("{scheme}://{role}:{role}@{host}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_run_with_only_the_grants_roles_sql_gives() {
    csvbus_tests::init_logs();
    let db = TestDb::empty().await;
    let roles = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/postgres/roles.sql"),
    )
    .unwrap();
    db.exec(&roles).await;
    // The operator's tables, made after the roles: readable and writable by csvbus_app.
    db.exec("CREATE TABLE people (id int PRIMARY KEY, name text)")
        .await;
    let migrate_url = as_role(&db.url, "csvbus_migrate");
    let pool = sqlx::PgPool::connect(&migrate_url).await.unwrap();
    csvbus_shared::db::migrate(&pool).await.unwrap();
    pool.close().await;

    let app_url = as_role(&db.url, "csvbus_app");
    let mut e = env(&db, &unique("roles"));
    e.set("DATABASE_URL", &app_url);
    e.set("CSVBUS_SINK_GROUP", unique("g"));
    let upload = spawn_upload(&e).await;
    let sink = spawn_sink(&e).await;
    let http = reqwest::Client::new();
    let csv = [("content-type", "text/csv")];
    for (query, body) in [
        ("table=people", "id,name\n1,a\n2,b\n"),
        ("table=people&mode=upsert", "id,name\n2,B\n3,c\n"),
        ("table=people&mode=atomic", "id,name\n4,d\n"),
        (
            "table=people&mode=replace",
            "id,name\n1,A\n2,B\n3,C\n4,D\n5,E\n",
        ),
        ("table=fresh&create=true", "x,y\n1,2024-01-31\n"),
    ] {
        let (status, acc) = post_import(&http, &upload.url(""), query, body, &csv).await;
        assert_eq!(status, 202, "{query}: {acc}");
        let rec = wait_ended(
            &upload,
            acc["import_id"].as_str().unwrap(),
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(rec["status"], "completed", "{query}: {rec}");
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM people")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(n, 5);

    // What csvbus_app may not do.
    let mut app = sqlx::PgConnection::connect(&app_url).await.unwrap();
    let superuser: bool = sqlx::query_scalar("SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = current_user")
        .fetch_one(&mut app)
        .await
        .unwrap();
    assert!(!superuser);
    for sql in [
        "ALTER TABLE csvbus.imports ADD COLUMN x int",
        "DROP TABLE csvbus.rejected_rows",
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (1, 'x', true, '', 0)",
        "CREATE SCHEMA elsewhere",
    ] {
        let e = sqlx::query(sql).execute(&mut app).await.unwrap_err();
        assert!(e.to_string().contains("permission denied") || e.to_string().contains("must be owner"), "{sql}: {e}");
    }
    sink.stop().await;
    upload.stop().await;
}
