//! The CLI tells the truth: every file named gets its own import or is reported refused, a
//! repeat is said out loud, compressed files are read, partial writes are called so, and each
//! exit status means one thing.

use std::io::Write as _;

use super::*;

/// The `i`-th JSON report of `out`.
fn report(out: &Output, i: usize) -> Value {
    json_lines(out).remove(i)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_given_key_is_a_prefix_and_every_file_is_imported_or_refused() {
    let s = stack(&[], true).await;
    let g2 = s.write("g2.csv", "id,name\n2,two\n");
    let bad = s.write("gbad.csv", "id,name,colour\n3,three,red\n");
    let mut child = s
        .csvbus()
        .args(["import", &g2, &bad, "-", "-t", "people", "--json", "--wait"])
        .args(["--idempotency-key", "multi-X"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"id,name\n1,one\n").await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    let reports = json_lines(&out);
    assert_eq!(reports.len(), 3, "{reports:?}");
    // The refused file makes the run fail, but the files after it were still sent.
    assert_eq!(out.status.code(), Some(1), "{reports:?}");
    assert_eq!(reports[0]["idempotency_key"], "multi-X-1");
    assert_eq!(reports[0]["rows_written"], 1);
    assert_eq!(
        (reports[1]["status"].as_str(), reports[1]["error"].as_str()),
        (Some("refused"), Some("unknown_column"))
    );
    assert_eq!(reports[2]["idempotency_key"], "multi-X-3");
    assert_eq!(reports[2]["file"], "<stdin>");
    assert_eq!(reports[2]["rows_written"], 1);
    assert_ne!(reports[0]["import_id"], reports[2]["import_id"]);
    let ids: Vec<i32> = sqlx::query_scalar("SELECT id FROM people ORDER BY id")
        .fetch_all(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(ids, [1, 2]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_an_import_again_says_so_and_again_imports_anew() {
    let s = stack(&[], true).await;
    let sales = s.file("sales.csv", 1..=2);
    let out = s.run(&["import", &sales, "-t", "people", "--wait"]).await;
    assert_eq!(out.status.code(), Some(0));
    s.db.exec("TRUNCATE people").await;

    // The same file, the same table by another name, a copy: each is the earlier import.
    let copy = s.write(
        "copy of sales.csv",
        &std::fs::read_to_string(&sales).unwrap(),
    );
    for (file, table) in [
        (&sales, "people"),
        (&sales, "public.people"),
        (&copy, "people"),
    ] {
        let out = s.run(&["import", file, "-t", table, "--wait"]).await;
        assert_eq!(out.status.code(), Some(4), "{file} into {table}");
        let text = stdout(&out);
        assert!(
            text.contains("already imported as") && text.contains("nothing sent"),
            "{text}"
        );
        assert!(text.contains("--again imports it anew"), "{text}");
    }
    assert_eq!(s.count().await, 0, "nothing was imported again");

    // --idempotent: the earlier import completed, so the file counts as imported.
    let out = s
        .run(&["import", &sales, "-t", "people", "--idempotent", "--json"])
        .await;
    assert_eq!(out.status.code(), Some(0));
    let r = report(&out, 0);
    assert_eq!(
        (
            r["replayed"].as_bool(),
            r["result"].as_str(),
            r["status"].as_str()
        ),
        (Some(true), Some("imported"), Some("completed")),
        "{r}"
    );
    assert!(r["imported_at"].is_string(), "{r}");

    // --again: a new import, the rows land again.
    let out = s
        .run(&[
            "import", &sales, "-t", "people", "--again", "--wait", "--json",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0));
    let again = report(&out, 0);
    assert_ne!(again["import_id"], r["import_id"]);
    assert_eq!(again["rows_written"], 2);
    assert_eq!(s.count().await, 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_file_under_a_used_key_is_refused_and_the_same_one_is_a_repeat() {
    let s = stack(&[], true).await;
    let a = s.file("a.csv", 1..=3);
    let b = s.file("b.csv", 4..=6);
    let key = ["--idempotency-key", "nightly-2026-12-05"];
    let out = s
        .run(&[&["import", &a, "-t", "people", "--wait"][..], &key].concat())
        .await;
    assert_eq!(out.status.code(), Some(0));

    let out = s
        .run(&[&["import", &b, "-t", "people"][..], &key].concat())
        .await;
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("refused: 422 idempotency_key_mismatch"),
        "{text}"
    );

    let out = s
        .run(&[&["import", &a, "-t", "people"][..], &key].concat())
        .await;
    assert_eq!(out.status.code(), Some(4));
    let text = stdout(&out);
    assert!(
        text.contains("already imported as") && text.contains("the same bytes were sent"),
        "{text}"
    );
    assert_eq!(s.count().await, 3);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_and_zstd_files_are_sent_compressed_by_name_or_by_their_first_bytes() {
    let s = stack(&[], true).await;
    let csv = |from: u32| -> Vec<u8> {
        let mut t = String::from("id,name\n");
        for i in from..from + 1000 {
            t += &format!("{i},n{i}\n");
        }
        t.into_bytes()
    };
    let gz = |data: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    let put = |name: &str, bytes: Vec<u8>| {
        let p = s.dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    };
    let files = [
        put("b.csv.gz", gz(&csv(1))),
        put("c.csv.zst", zstd::encode_all(&csv(1001)[..], 3).unwrap()),
        // Compressed, named as plain CSV: its first bytes tell.
        put("d.csv", gz(&csv(2001))),
    ];
    let out = s
        .run(
            &[
                &["import", "-t", "people", "--wait", "--json", "--gzip"][..],
                &files.each_ref().map(String::as_str),
            ]
            .concat(),
        )
        .await;
    assert_eq!(out.status.code(), Some(0));
    for r in json_lines(&out) {
        assert_eq!(r["rows_written"], 1000, "{r}");
    }
    // stdin, gzip-compressed: its first bytes tell too.
    let mut child = s
        .csvbus()
        .args(["import", "-", "-t", "people", "--wait", "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&gz(&csv(3001))).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(s.count().await, 4000);

    // A key is derived from the content: the plain copy of an imported .gz is a repeat.
    let plain = s.write("b.csv", std::str::from_utf8(&csv(1)).unwrap());
    let out = s.run(&["import", &plain, "-t", "people", "--gzip"]).await;
    assert_eq!(out.status.code(), Some(4), "{}", stdout(&out));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_rows_were_written_is_not_called_a_refusal() {
    let s = stack(&[], true).await;
    // Two good rows, then two bad ones: the second is one more than allowed.
    let file = s.write("partly.csv", "id,name\n1,a\n2,b\n3,c,extra\n4,d,extra\n");
    let out = s
        .run(&[
            "import",
            &file,
            "-t",
            "people",
            "--max-rejected",
            "1",
            "--wait",
        ])
        .await;
    assert_eq!(out.status.code(), Some(5));
    let text = stdout(&out);
    assert!(
        text.contains("failed after 2 rows were written (import "),
        "{text}"
    );
    assert!(text.contains("--mode atomic"), "{text}");
    assert_eq!(s.count().await, 2);

    // Without --wait, the same is said of the rows on their way.
    let file = s.write(
        "partly2.csv",
        "id,name\n11,a\n12,b\n13,c,extra\n14,d,extra\n",
    );
    let out = s
        .run(&[
            "import",
            &file,
            "-t",
            "people",
            "--max-rejected",
            "1",
            "--json",
        ])
        .await;
    assert_eq!(out.status.code(), Some(5));
    let r = report(&out, 0);
    assert_eq!(
        (
            r["result"].as_str(),
            r["status"].as_str(),
            r["rows_produced"].as_u64()
        ),
        (Some("partly_written"), Some("failed"), Some(2)),
        "{r}"
    );

    // Atomic: all or nothing, so nothing was written and the file was refused.
    let file = s.write(
        "atomic.csv",
        "id,name\n21,a\n22,b\n23,c,extra\n24,d,extra\n",
    );
    let out = s
        .run(&[
            "import",
            &file,
            "-t",
            "people",
            "--max-rejected",
            "1",
            "--mode",
            "atomic",
            "--wait",
        ])
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("refused: 422 too_many_rejected"),
        "{}",
        stdout(&out)
    );
    eventually(
        "the rows of the append imports",
        Duration::from_secs(30),
        || async { s.count().await == 4 },
    )
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_refused_by_postgres_count_against_max_rejected_stop_the_import_and_are_listed_in_file_order(
) {
    let s = stack(&[], true).await;
    // Lines 4 and 5 are refused by Postgres (duplicate keys), line 7 while reading.
    let file = s.write(
        "order.csv",
        "id,name\n400,a\n401,b\n400,dup\n401,dup\n402,c\n403,d,extra\n",
    );
    let out = s
        .run(&[
            "import",
            &file,
            "-t",
            "people",
            "--wait",
            "--json",
            "--max-rejected",
            "1",
        ])
        .await;
    // 3 rows refused, 1 allowed: the sink stops the import once Postgres' refusals pass it;
    // the two rows written before stay (exit 5), line 6 is set aside unwritten.
    assert_eq!(out.status.code(), Some(5), "{}", stdout(&out));
    let r = report(&out, 0);
    assert_eq!(r["rows_written"], 2, "{r}");
    let lines = |rows: &Value| -> Vec<i64> {
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| r["line"].as_i64().unwrap())
            .collect()
    };
    assert!(
        r["error"].as_str().unwrap().contains("stopped taking rows"),
        "{r}"
    );
    // Line 5 is refused too, or set aside when the read refusal of line 7 was counted first.
    let first = lines(&r["first_rejected"]);
    assert!(first == [4, 5, 7] || first == [4, 7], "{r}");

    let id = r["import_id"].as_str().unwrap();
    let out = s.run(&["rejected", id, "--json"]).await;
    let listed: Vec<i64> = json_lines(&out)
        .iter()
        .map(|r| r["line"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, first);
    // Paged one line at a time, and as CSV.
    let http = reqwest::Client::new();
    let get = |path: String| http.get(s.upload.url(&path)).send();
    let page: Value = get(format!("/v1/imports/{id}/rejected?limit=1"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (lines(&page["rows"]), &page["next_after"]),
        (vec![4], &Value::from(4))
    );
    let page: Value = get(format!("/v1/imports/{id}/rejected?limit=2&after=4"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(lines(&page["rows"]), first[1..]);
    let csv = get(format!("/v1/imports/{id}/rejected.csv"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csv_lines: Vec<i64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(csv_lines, first);

    // Allowed: the same rejections within --max-rejected exit 0.
    let file = s.write("order2.csv", "id,name\n500,a\n500,dup\n");
    let out = s
        .run(&[
            "import",
            &file,
            "-t",
            "people",
            "--wait",
            "--max-rejected",
            "1",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_before_any_request() {
    // No service at all: a request would be exit 1, "cannot reach".
    let dir = std::env::temp_dir().join(unique("csvbus-usage"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("f.csv");
    std::fs::write(&file, "1,a\n").unwrap();
    let file = file.display().to_string();
    for args in [
        vec!["import", &file, "-t", "people", "--no-header"],
        vec![
            "import",
            &file,
            "-t",
            "people",
            "--again",
            "--idempotency-key",
            "k",
        ],
        vec!["import", &file, "-t", "people", "--again", "--idempotent"],
        vec!["import", &file],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_csvbus"))
            .args(&args)
            .env("CSVBUS_SERVER", "http://127.0.0.1:9")
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("cannot reach"), "{err}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_its_key_expired_the_same_file_is_imported_anew() {
    let s = stack(&[], true).await;
    let f = s.file("f.csv", 1..=3);
    let args = [
        "import",
        &f,
        "-t",
        "people",
        "--wait",
        "--json",
        "--retries",
        "0",
    ];
    let out = s.run(&args).await;
    assert_eq!(out.status.code(), Some(0));
    let first = report(&out, 0);
    s.db.exec("TRUNCATE people").await;
    // The key's TTL (CSVBUS_IDEMPOTENCY_TTL_SECS) has passed.
    s.db.exec("UPDATE csvbus.imports SET key_expires_at = now() - interval '1 second'")
        .await;
    let out = s.run(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let again = report(&out, 0);
    assert_ne!(again["import_id"], first["import_id"]);
    assert_eq!(again["rows_written"], 3);
    assert_eq!(s.count().await, 3);
    s.stop().await;
}

/// `--dry-run` prints how each file would be read — the first rows as they would be written,
/// the rejections, the table `--create` would make — and stores nothing: no row, no import,
/// no table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_shows_how_files_would_be_read_and_imports_nothing() {
    let s = stack(&[], false).await;
    let file = s.write("preview.csv", "id;name\n1;Zoë\n2;x;extra\n3;\"a;b\"\n");
    let out = s
        .run(&[
            "import",
            &file,
            "-t",
            "people",
            "--delimiter",
            "auto",
            "--dry-run",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    for expected in [
        "dry run, nothing stored: would append into public.people (delimiter \";\"",
        "columns: id, name",
        "line 2: id=1, name=Zoë",
        "line 3: rejected: expected 2 fields, found 3",
        "line 4: id=3, name=a;b",
        "(3 records read)",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }
    let out = s
        .run(&[
            "import",
            &file,
            "-t",
            "fresh",
            "--create",
            "--delimiter",
            "auto",
            "--dry-run",
            "--json",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0));
    let p = report(&out, 0);
    assert_eq!(p["dry_run"], true);
    assert_eq!(
        p["read_as"]["created"],
        "CREATE TABLE \"public\".\"fresh\" (\"id\" bigint, \"name\" text)"
    );
    // Refused as an import would be: exit 1.
    let out = s
        .run(&["import", &file, "-t", "nowhere", "--dry-run"])
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("404 unknown_table"),
        "{}",
        stdout(&out)
    );
    assert_eq!(s.count().await, 0);
    let imports: i64 = sqlx::query_scalar("SELECT count(*) FROM csvbus.imports")
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(imports, 0);
    let fresh: Option<String> = sqlx::query_scalar("SELECT to_regclass('public.fresh')::text")
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(fresh, None);
    s.stop().await;
}

/// Dates no value of the first rows settles (`01/02/2024`, `03/04/2024`) are read in the
/// default order, month first: a guess, which the import says and exits 6 for — not 0 — as a
/// preview does; told the order, it exits 0 and reads them so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guessed_order_of_dates_is_said_and_exits_6() {
    let s = stack(&[], true).await;
    s.db.exec("CREATE TABLE visits (id int, day date)").await;
    let file = s.write("visits.csv", "id,day\n1,01/02/2024\n2,03/04/2024\n");
    let run = |extra: &'static [&'static str]| {
        let mut args = vec!["import", &file, "-t", "visits", "--wait", "--again"];
        args.extend(extra);
        args
    };
    let out = s.run(&run(&[])).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(6), "{text}");
    assert!(
        text.contains("the order of the dates was a guess"),
        "{text}"
    );
    assert!(
        text.contains("dates read month first (the default)"),
        "{text}"
    );
    let out = s.run(&run(&["--json"])).await;
    let r = report(&out, 0);
    assert_eq!(r["result"], "dates_guessed", "{r}");
    assert_eq!(r["read_as"]["dateformat_guessed"], true, "{r}");
    let out = s.run(&["import", &file, "-t", "visits", "--dry-run"]).await;
    assert_eq!(out.status.code(), Some(6), "{}", stdout(&out));
    // Told, nothing is guessed.
    let out = s.run(&run(&["--dateformat", "dmy"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let days =
        s.db.text("SELECT string_agg(day::text, ',' ORDER BY day) FROM visits WHERE id = 1")
            .await;
    assert_eq!(days, "2024-01-02,2024-01-02,2024-02-01");
    // A value over 12 settles the order: no guess.
    let settled = s.write("settled.csv", "id,day\n3,01/02/2024\n4,13/02/2024\n");
    let out = s.run(&["import", &settled, "-t", "visits", "--wait"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    s.stop().await;
}
