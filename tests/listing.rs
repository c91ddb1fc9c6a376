//! What the page browses, on a running upload service: the tables csvbus may write, recent
//! imports a page at a time with their filters, and rejected rows as CSV across pages.

#![allow(clippy::unwrap_used)]

use csvbus_tests::{env, post_import, spawn_sink, spawn_upload, unique, TestDb};
use serde_json::Value;

async fn get(http: &reqwest::Client, url: String) -> Value {
    let resp = http.get(&url).send().await.unwrap();
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_are_those_csvbus_may_write_with_their_columns() {
    let db = TestDb::new().await;
    db.exec("CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL, note text DEFAULT 'x', n int GENERATED ALWAYS AS (id * 2) STORED)").await;
    db.exec("CREATE SCHEMA other").await;
    db.exec("CREATE TABLE other.hidden (a int)").await;
    db.exec("CREATE VIEW people_view AS SELECT * FROM people")
        .await;
    let mut upload = spawn_upload(&env(&db, &unique("tables"))).await;
    upload.ready().await;
    let http = reqwest::Client::new();
    let tables = get(&http, upload.url("/v1/tables")).await;
    // Only `public` is allowed by default; csvbus' own tables, the migration history and
    // views are never listed.
    assert_eq!(
        tables,
        serde_json::json!([{"name": "public.people", "columns": [
            {"name": "id", "type": "integer", "required": true, "generated": false},
            {"name": "name", "type": "text", "required": true, "generated": false},
            {"name": "note", "type": "text", "required": false, "generated": false},
            {"name": "n", "type": "integer", "required": false, "generated": true},
        ]}])
    );
    upload.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_are_listed_newest_first_a_page_at_a_time_and_filtered() {
    let db = TestDb::new().await;
    db.exec("CREATE TABLE a (x int)").await;
    db.exec("CREATE TABLE b (x int)").await;
    let mut upload = spawn_upload(&env(&db, &unique("list"))).await;
    upload.ready().await;
    let http = reqwest::Client::new();
    let base = upload.url("");
    let base = base.trim_end_matches('/');
    let mut ids = Vec::new();
    for (i, table) in ["a", "b", "a", "a", "b"].iter().enumerate() {
        let key = format!("key-{i}");
        let (status, body) = post_import(
            &http,
            base,
            &format!("table={table}"),
            "x\n1\n",
            &[("idempotency-key", &key)],
        )
        .await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["import_id"].as_str().unwrap().to_owned());
    }
    let page_ids = |v: &Value| -> Vec<String> {
        v["imports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    // Newest first, two at a time, until a page says there is no more.
    let mut seen = Vec::new();
    let mut url = format!("{base}/v1/imports?limit=2");
    loop {
        let page = get(&http, url.clone()).await;
        seen.extend(page_ids(&page));
        match page["next_before"].as_str() {
            Some(before) => url = format!("{base}/v1/imports?limit=2&before={before}"),
            None => break,
        }
        assert!(seen.len() <= 6, "paging does not end: {seen:?}");
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let only_b = get(&http, format!("{base}/v1/imports?table=public.b")).await;
    assert_eq!(page_ids(&only_b), [ids[4].clone(), ids[1].clone()]);
    let by_key = get(&http, format!("{base}/v1/imports?idempotency_key=key-2")).await;
    assert_eq!(page_ids(&by_key), [ids[2].clone()]);
    let failed = get(&http, format!("{base}/v1/imports?status=failed")).await;
    assert_eq!(page_ids(&failed), Vec::<String>::new());
    upload.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_rows_download_as_csv_across_pages() {
    let db = TestDb::new().await;
    db.exec("CREATE TABLE t (id int, name text)").await;
    let mut upload = spawn_upload(&env(&db, &unique("rejcsv"))).await;
    upload.ready().await;
    let http = reqwest::Client::new();
    let base = upload.url("");
    let base = base.trim_end_matches('/');
    // 2,500 records with a field too many (parse rejects), one good row between each.
    let mut body = String::from("id,name\n");
    for i in 0..2500 {
        body.push_str(&format!("{i},ok\n{i},\"bad, quoted\",extra\n"));
    }
    let (status, acc) = post_import(&http, base, "table=t&max_rejected=3000", body, &[]).await;
    assert_eq!(status, 202, "{acc}");
    assert_eq!(acc["rows_rejected"], 2500);
    let id = acc["import_id"].as_str().unwrap();

    let text = http
        .get(format!("{base}/v1/imports/{id}/rejected.csv"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut r = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        r.headers().unwrap(),
        vec!["line", "stage", "reason", "raw", "id", "name"]
    );
    let rows: Vec<csv::StringRecord> = r.records().map(|r| r.unwrap()).collect();
    assert_eq!(
        rows.len(),
        2500,
        "every rejected row, across the 1000-row pages"
    );
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(&row[0], (2 * i + 3).to_string(), "line of row {i}");
        assert_eq!(&row[1], "parse");
        assert_eq!(&row[3], format!("{i},\"bad, quoted\",extra"));
    }
    // Ready to fix and upload again: the header, then each record as it was in the file.
    let again = http
        .get(format!(
            "{base}/v1/imports/{id}/rejected.csv?format=reupload"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut expected = String::from("id,name\n");
    for i in 0..2500 {
        expected.push_str(&format!("{i},\"bad, quoted\",extra\n"));
    }
    assert_eq!(again, expected);
    upload.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_say_which_file_and_what_they_came_to_and_filter_by_both() {
    let db = TestDb::new().await;
    db.exec("CREATE TABLE p (id int PRIMARY KEY, name text)")
        .await;
    let mut e = env(&db, &unique("outcome"));
    e.set("CSVBUS_SINK_GROUP", unique("g"));
    e.set("CSVBUS_SINK_LINGER_MS", "50");
    let mut upload = spawn_upload(&e).await;
    upload.ready().await;
    let sink = spawn_sink(&e).await;
    let http = reqwest::Client::new();
    let base = upload.url("");
    let base = base.trim_end_matches('/');

    let (s, clean) = post_import(
        &http,
        base,
        "table=p&name=clean.csv",
        "id,name\n1,a\n2,b\n",
        &[],
    )
    .await;
    assert_eq!(s, 202, "{clean}");
    // Every row refused by Postgres; the name from Content-Disposition, without its folder.
    let disposition = [(
        "content-disposition",
        "attachment; filename=\"exports/refused.csv\"",
    )];
    let (s, refused) =
        post_import(&http, base, "table=p", "id,name\nx,a\ny,b\n", &disposition).await;
    assert_eq!(s, 202, "{refused}");
    let (s, v) = post_import(
        &http,
        base,
        "table=p&name=bad.csv&max_rejected=0",
        "id,name\n3,c,extra\n",
        &[],
    )
    .await;
    assert_eq!(s, 422, "{v}");
    let long = format!("table=p&name={}", "n".repeat(256));
    let (s, v) = post_import(&http, base, &long, "id,name\n4,d\n", &[]).await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str()),
        (400, Some("invalid_name")),
        "{v}"
    );

    for id in [&clean["import_id"], &refused["import_id"]] {
        let id = id.as_str().unwrap();
        let mut rec = get(&http, format!("{base}/v1/imports/{id}")).await;
        for _ in 0..30 {
            if rec["status"] == "completed" {
                break;
            }
            rec = get(&http, format!("{base}/v1/imports/{id}?wait=2s")).await;
        }
        assert_eq!(rec["status"], "completed", "{rec}");
    }
    let list = |q: &str| {
        let url = format!("{base}/v1/imports?{q}");
        let http = http.clone();
        async move { get(&http, url).await }
    };
    let seen = |page: &Value| -> Vec<(String, String)> {
        page["imports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["source"].as_str().unwrap_or("-").to_owned(),
                    r["outcome"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let all = list("").await;
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        seen(&all),
        [
            pair("bad.csv", "failed"),
            pair("refused.csv", "completed_with_rejections"),
            pair("clean.csv", "completed")
        ]
    );
    assert_eq!(
        all["totals"],
        serde_json::json!({"rows_written": 2, "rows_rejected": 3})
    );
    assert_eq!(
        seen(&list("outcome=completed_with_rejections").await),
        [pair("refused.csv", "completed_with_rejections")]
    );
    assert_eq!(
        seen(&list("outcome=completed").await),
        [pair("clean.csv", "completed")]
    );
    assert_eq!(
        seen(&list("rejected=true").await),
        [
            pair("bad.csv", "failed"),
            pair("refused.csv", "completed_with_rejections")
        ]
    );
    assert_eq!(
        seen(&list("source=REFUSED").await),
        [pair("refused.csv", "completed_with_rejections")]
    );
    let long = format!("{base}/v1/imports?source={}", "x".repeat(256));
    let r = http.get(long).send().await.unwrap();
    assert_eq!(r.status(), 400, "a source longer than any stored one");
    sink.stop().await;
    upload.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_imports_and_dead_letters_past_their_retention_are_deleted_in_batches() {
    let db = TestDb::new().await;
    db.exec("CREATE TABLE r (id int)").await;
    // The janitor's own purge is off: the test calls it.
    let mut e = env(&db, &unique("retention"));
    e.set("CSVBUS_RETENTION_DAYS", "0");
    let mut upload = spawn_upload(&e).await;
    upload.ready().await;
    let http = reqwest::Client::new();
    let base = upload.url("");
    let base = base.trim_end_matches('/');
    // Three failed imports, each with a rejected row: two to age, one to keep.
    let mut ids = Vec::new();
    for i in 0..3 {
        let body = format!("id\n{i},extra\n");
        let (status, v) = post_import(&http, base, "table=r&max_rejected=0", body, &[]).await;
        assert_eq!(status, 422, "{v}");
        ids.push(v["import_id"].as_str().unwrap().to_owned());
    }
    // 40 days pass for two of them (and a dead letter); one of those still has a live key.
    let old = "now() - interval '40 days'";
    db.exec(&format!(
        "UPDATE csvbus.imports SET finished_at = {old} WHERE id IN ('{}', '{}')",
        ids[0], ids[1]
    ))
    .await;
    db.exec(&format!("UPDATE csvbus.imports SET idempotency_key = 'k', key_expires_at = now() + interval '1 hour' WHERE id = '{}'", ids[1])).await;
    db.exec(&format!(
        "INSERT INTO csvbus.dead_letters (group_id, topic, partition, \"offset\", reason, payload_bytes, created_at)
         VALUES ('g', 't', 0, 1, 'old', 0, {old}), ('g', 't', 0, 2, 'new', 0, now())"
    ))
    .await;
    let purged = csvbus_shared::imports::retention::purge(
        &db.pool,
        std::time::Duration::from_secs(30 * 86_400),
        1,
    )
    .await
    .unwrap();
    assert_eq!(
        purged,
        csvbus_shared::imports::retention::Purged {
            imports: 1,
            rejected_rows: 1,
            dead_letters: 1
        }
    );
    let left: Vec<String> =
        sqlx::query_scalar("SELECT id::text FROM csvbus.imports ORDER BY created_at")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        left,
        [ids[1].clone(), ids[2].clone()],
        "the aged one whose key still holds stays"
    );
    let rejected: i64 = sqlx::query_scalar("SELECT count(*) FROM csvbus.rejected_rows")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(rejected, 2);
    upload.stop().await;
}
