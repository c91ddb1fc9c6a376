//! Upsert and skip imports COPY their rows straight into the table while no key is there yet,
//! and go the staged `INSERT … ON CONFLICT` way from the first key that is — with the same
//! result either way. A row trigger on the table records which statement inserted each row.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use csvbus_shared::config::Env;
use csvbus_tests::{env, spawn_sink, spawn_upload, unique, wait_final, TestDb};
use reqwest::StatusCode;
use serde_json::Value;

type Upload = csvbus_tests::Service<csvbus_upload::UploadError>;

const PEOPLE: &str = "
    CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL CHECK (name <> 'refused'));
    CREATE TABLE inserted_by (id int NOT NULL, statement text NOT NULL);
    CREATE FUNCTION note_statement() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO inserted_by VALUES (NEW.id, split_part(ltrim(current_query()), ' ', 1));
        RETURN NEW;
    END $$;
    CREATE TRIGGER note_statement BEFORE INSERT ON people
        FOR EACH ROW EXECUTE FUNCTION note_statement();";

/// One partition, batches of about 10 rows, one batch at a time: which batch comes after the
/// one that met a key is certain.
async fn stack(format: &str) -> (TestDb, Env) {
    csvbus_tests::init_logs();
    let db = TestDb::new().await;
    db.exec(PEOPLE).await;
    let mut e = env(&db, &unique("upsert-copy"));
    e.set("CSVBUS_TOPIC_PARTITIONS", "1");
    e.set("CSVBUS_MESSAGE_ROWS", "5");
    e.set("CSVBUS_SINK_BATCH_ROWS", "10");
    e.set("CSVBUS_SINK_CONCURRENCY", "1");
    e.set("CSVBUS_SINK_GROUP", unique("g"));
    e.set("CSVBUS_SINK_LINGER_MS", "50");
    e.set("CSVBUS_SINK_COPY_FORMAT", format);
    (db, e)
}

async fn import(upload: &Upload, query: &str, csv: String) -> Value {
    let url = upload.url(&format!("/v1/imports?table=people&{query}"));
    let r = csvbus_tests::post_csv(&url, csv).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["import_id"].clone();
    let rec = wait_final(upload, id.as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!(rec["status"], "completed", "{rec}");
    rec
}

fn csv(ids: impl IntoIterator<Item = i32>, name: &str) -> String {
    let mut s = "id,name\n".to_owned();
    for id in ids {
        s.push_str(&format!("{id},{name}{id}\n"));
    }
    s
}

/// The statements that inserted the rows of `ids`, each once per statement name.
async fn inserted_by(db: &TestDb, ids: std::ops::RangeInclusive<i32>) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT statement, count(*) FROM inserted_by WHERE id BETWEEN $1 AND $2
          GROUP BY statement ORDER BY statement",
    )
    .bind(ids.start())
    .bind(ids.end())
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_keys_are_copied_and_an_import_that_meets_a_key_is_staged_from_then_on() {
    copied_then_staged("binary").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_keys_are_copied_and_then_staged_with_csv_copies_too() {
    copied_then_staged("csv").await;
}

async fn copied_then_staged(format: &str) {
    let (db, e) = stack(format).await;
    let upload = spawn_upload(&e).await;
    let sink = spawn_sink(&e).await;

    // New keys only: every row COPYd straight in.
    let rec = import(&upload, "mode=upsert", csv(1..=30, "a")).await;
    assert_eq!(rec["rows_written"], 30);
    assert_eq!(inserted_by(&db, 1..=30).await, [("COPY".to_owned(), 30)]);

    // Key 5 is there, as the 9th row of the first batch: that COPY is rolled back (the trigger's
    // rows with it) and the batch is upserted; every later batch of the import is upserted
    // without trying a COPY first, although its keys are all new.
    let ids = (31..=38).chain([5]).chain(39..=60);
    let rec = import(&upload, "mode=upsert", csv(ids, "b")).await;
    assert_eq!(rec["rows_written"], 31, "{rec}");
    assert_eq!(inserted_by(&db, 31..=60).await, [("INSERT".to_owned(), 30)]);
    let five: String = sqlx::query_scalar("SELECT name FROM people WHERE id = 5")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(five, "b5");

    // Another import starts with a COPY again; a key repeated within a batch is upserted, the
    // file's last row winning.
    let rec = import(&upload, "mode=upsert", csv([61, 62, 61], "c")).await;
    assert_eq!(rec["rows_written"], 3, "{rec}");
    let names: Vec<String> =
        sqlx::query_scalar("SELECT name FROM people WHERE id > 60 ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(names, ["c61", "c62"]);

    // skip: a key that is there is skipped, new keys are written, whichever way they went.
    let rec = import(&upload, "mode=skip", csv((70..=79).chain([1, 80]), "d")).await;
    assert_eq!(
        (&rec["rows_written"], &rec["rows_skipped"]),
        (&11.into(), &1.into())
    );
    assert_eq!(count(&db, "SELECT count(*) FROM people").await, 73);
    let one: String = sqlx::query_scalar("SELECT name FROM people WHERE id = 1")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(one, "a1");

    // Every row in the table once (the primary key says so) and inserted once.
    let inserted = count(&db, "SELECT count(DISTINCT id) FROM inserted_by").await;
    assert_eq!(inserted, 73);
    sink.stop().await;
    upload.stop().await;
}

/// A value Postgres refuses fails the direct COPY like a key would: the staged way then rejects
/// that row at its line and writes the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_value_in_a_copied_upsert_is_rejected_at_its_line() {
    let (db, e) = stack("binary").await;
    let upload = spawn_upload(&e).await;
    let sink = spawn_sink(&e).await;
    let body = "id,name\n1,a\n2,refused\n3,c\n4,refused\n5,d\n".to_owned();
    let rec = import(&upload, "mode=upsert&max_rejected=5", body).await;
    assert_eq!(
        (&rec["rows_written"], &rec["rows_write_rejected"]),
        (&3.into(), &2.into()),
        "{rec}"
    );
    let id = rec["id"].as_str().unwrap();
    assert_eq!(db.rejected_lines(id).await, [3, 5]);
    assert_eq!(count(&db, "SELECT count(*) FROM people").await, 3);
    sink.stop().await;
    upload.stop().await;
}
