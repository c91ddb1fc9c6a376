//! The built `csvbus` binary against the upload service and the sink, started in-process on
//! real Postgres and the real broker.

#![allow(clippy::unwrap_used)]

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use csvbus_shared::config::Env;
use csvbus_tests::{
    env, eventually, metric, spawn_sink, spawn_upload, stalled_body, unique, Service, TestDb,
};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const TABLE: &str = "CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL)";

struct Stack {
    db: TestDb,
    upload: Service<csvbus_upload::UploadError>,
    sink: Option<Service<csvbus_sink::SinkError>>,
    dir: std::path::PathBuf,
}

async fn stack(extra: &[(&str, &str)], with_sink: bool) -> Stack {
    csvbus_tests::init_logs();
    let db = TestDb::new().await;
    db.exec(TABLE).await;
    let mut e: Env = env(&db, &unique("cli"));
    e.set("CSVBUS_SINK_GROUP", unique("g"));
    e.set("CSVBUS_SINK_LINGER_MS", "50");
    for (k, v) in extra {
        e.set(*k, *v);
    }
    let upload = spawn_upload(&e).await;
    let sink = if with_sink {
        Some(spawn_sink(&e).await)
    } else {
        None
    };
    let dir = std::env::temp_dir().join(unique("csvbus-cli"));
    std::fs::create_dir_all(&dir).unwrap();
    Stack {
        db,
        upload,
        sink,
        dir,
    }
}

impl Stack {
    fn file(&self, name: &str, rows: std::ops::RangeInclusive<u32>) -> String {
        let mut text = String::from("id,name\n");
        for i in rows {
            text += &format!("{i},\"name {i}, \"\"quoted\"\"\"\n");
        }
        self.write(name, &text)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    fn csvbus(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_csvbus"));
        c.env("CSVBUS_SERVER", self.upload.url(""))
            .env_remove("CSVBUS_API_KEY")
            .kill_on_drop(true);
        c
    }

    async fn run(&self, args: &[&str]) -> Output {
        let out = self.csvbus().args(args).output().await.unwrap();
        eprintln!(
            "csvbus {args:?} -> {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    async fn count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM people")
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    async fn stop(self) {
        if let Some(s) = self.sink {
            s.stop().await;
        }
        self.upload.stop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_files_are_imported_and_followed_until_written() {
    let s = stack(&[], true).await;
    let a = s.file("a.csv", 1..=3000);
    let b = s.file("b.csv", 3001..=5000);
    let out = s
        .run(&["import", &a, &b, "--table", "people", "--wait", "--json"])
        .await;
    assert_eq!(out.status.code(), Some(0));
    let reports = json_lines(&out);
    assert_eq!(reports.len(), 2);
    assert_eq!(
        (
            reports[0]["status"].as_str(),
            reports[0]["rows_written"].as_i64()
        ),
        (Some("completed"), Some(3000))
    );
    assert_eq!(reports[1]["rows_written"], 2000);
    assert_eq!(s.count().await, 5000);

    // Text output: one line per file, and `status` of an import.
    let c = s.file("c.csv", 5001..=5010);
    let out = s.run(&["import", &c, "--table", "people", "--wait"]).await;
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.contains("completed import") && text.contains("10 written"),
        "{text}"
    );
    let id = reports[0]["import_id"].as_str().unwrap();
    let out = s.run(&["status", id, "--json"]).await;
    assert_eq!(out.status.code(), Some(0));
    let rec = &json_lines(&out)[0];
    assert_eq!(rec["rows_written"], 3000);
    // The import says which file it was and what it came to.
    assert_eq!(
        (rec["source"].as_str(), rec["outcome"].as_str()),
        (Some("a.csv"), Some("completed"))
    );
    let out = s.run(&["status", id]).await;
    assert!(stdout(&out).contains("source: a.csv"), "{}", stdout(&out));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_and_gzip_bodies_are_imported() {
    let s = stack(&[], true).await;
    let mut child = s
        .csvbus()
        .args([
            "import", "-", "--table", "people", "--wait", "--json", "--gzip",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"id,name\n").await.unwrap();
    for i in 1..=20_000 {
        stdin
            .write_all(format!("{i},n{i}\n").as_bytes())
            .await
            .unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let r = &json_lines(&out)[0];
    assert_eq!(r["file"], "<stdin>");
    assert_eq!(r["rows_written"], 20_000);
    // Sent compressed: the service read fewer bytes than the CSV has.
    assert!(r["bytes_read"].as_i64().unwrap() < 200_000, "{r}");
    assert_eq!(s.count().await, 20_000);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_show_the_message_and_line_and_exit_codes_tell_rejected_from_failed() {
    let s = stack(&[], true).await;
    // A refusal with a line: too many bad rows, before any good one.
    let bad = s.write("bad.csv", "id,name\n2,c,extra\n1,a\n");
    let out = s
        .run(&["import", &bad, "--table", "people", "--max-rejected", "0"])
        .await;
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("refused: 422 too_many_rejected"), "{text}");
    assert!(text.contains("(line 2)"), "{text}");

    // Unknown table: failed, 404 with the service's message.
    let ok = s.file("ok.csv", 1..=5);
    let out = s.run(&["import", &ok, "--table", "nope"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("404 unknown_table"),
        "{}",
        stdout(&out)
    );

    // Accepted with a row rejected by Postgres (duplicate key): 3 unless allowed.
    let dup = s.write("dup.csv", "id,name\n100,a\n100,b\n101,c\n");
    let out = s
        .run(&["import", &dup, "--table", "people", "--wait"])
        .await;
    assert_eq!(out.status.code(), Some(3));
    let text = stdout(&out);
    assert!(text.contains("line 3: duplicate key"), "{text}");
    assert!(
        text.contains("dup.csv: completed with 1 rejected — import"),
        "{text}"
    );
    let dup2 = s.write("dup2.csv", "id,name\n200,a\n200,b\n");
    let out = s
        .run(&[
            "import",
            &dup2,
            "--table",
            "people",
            "--wait",
            "--max-rejected",
            "5",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0));

    // Usage errors are 2 (clap); an unreachable service is 1.
    assert_eq!(s.run(&["import", &ok]).await.status.code(), Some(2));
    let out = s
        .run(&[
            "import",
            &ok,
            "--table",
            "people",
            "--retries",
            "0",
            "--server",
            "http://127.0.0.1:9",
        ])
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("cannot reach"), "{}", stdout(&out));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_service_is_retried_until_it_accepts() {
    let s = stack(&[("CSVBUS_MAX_UPLOADS", "1")], false).await;
    // Hold the only upload slot with a body that stalls.
    let release = Arc::new(tokio::sync::Notify::new());
    let held = tokio::spawn(
        reqwest::Client::new()
            .post(s.upload.url("/v1/imports?table=people"))
            .header("content-type", "text/csv")
            .body(stalled_body("id,name\n1,a\n", release.clone()))
            .send(),
    );
    // The held upload has its slot once its import exists (a fixed sleep lost this race
    // under load, and the CLI took the slot first).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM csvbus.imports")
        .fetch_one(&s.db.pool)
        .await
        .unwrap()
        == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "held upload never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let f = s.file("f.csv", 10..=19);
    let base = s.upload.url("");
    let refused = metric(&base, "csvbus_upload_refused_total").await;
    let cli = tokio::spawn({
        let mut c = s.csvbus();
        c.args(["import", &f, "--table", "people", "--json"]);
        async move { c.output().await.unwrap() }
    });
    // Refused, and back for another try after the answer's Retry-After.
    eventually(
        "the CLI to be refused twice",
        Duration::from_secs(30),
        || {
            let base = base.clone();
            async move { metric(&base, "csvbus_upload_refused_total").await >= refused + 2.0 }
        },
    )
    .await;
    if cli.is_finished() {
        let out = cli.await.unwrap();
        panic!(
            "the CLI should wait and retry while the slot is taken; it ended: {:?}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    release.notify_waiters();
    assert_eq!(held.await.unwrap().unwrap().status(), 202);
    let out = cli.await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("429 too_many_uploads") && err.contains("retry 1/8"),
        "{err}"
    );
    assert_eq!(json_lines(&out)[0]["rows_produced"], 10);
    s.stop().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tansu() -> String {
    csvbus_tests::tansu::binary()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_runs_both_services_with_its_own_broker_and_stops_it() {
    let db = TestDb::new().await;
    db.exec(TABLE).await;
    let (upload, sink, broker) = (free_port(), free_port(), free_port());
    let dev = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_csvbus"));
        c.arg("dev")
            .args(["--upload-addr", &format!("127.0.0.1:{upload}")])
            .args(["--sink-addr", &format!("127.0.0.1:{sink}")])
            .args(["--broker-port", &broker.to_string()])
            .env("DATABASE_URL", &db.url)
            .env("CSVBUS_TOPIC", unique("dev"))
            .env_remove("KAFKA_BROKERS")
            .kill_on_drop(true);
        c
    };

    // Without tansu it says how to get it.
    let out = dev()
        .env("CSVBUS_TANSU", "/nonexistent/tansu")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cargo install tansu"), "{err}");

    let mut child = dev().env("CSVBUS_TANSU", tansu()).spawn().unwrap();
    let server = format!("http://127.0.0.1:{upload}");
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !http
        .get(format!("{server}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(tokio::time::Instant::now() < deadline, "dev mode not ready");
        assert!(child.try_wait().unwrap().is_none(), "dev mode exited");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let file = std::env::temp_dir().join(unique("dev.csv"));
    std::fs::write(&file, "id,name\n1,a\n2,b\n3,c\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_csvbus"))
        .args(["import", &file.display().to_string(), "--table", "people"])
        .args(["--wait", "--server", &server])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM people")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(n, 3);

    // SIGTERM: both services stop, the broker child too.
    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_file(file);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", broker)).is_err(),
        "the tansu child is stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_reach_the_service_and_running_a_command_again_imports_nothing_twice() {
    let s = stack(&[("CSVBUS_SINK_FINALIZE_INTERVAL_MS", "100")], true).await;
    let a = s.file("a.csv", 1..=500);
    let args = [
        "import", &a, "--table", "people", "--mode", "atomic", "--wait", "--json",
    ];
    let out = s.run(&args).await;
    assert_eq!(out.status.code(), Some(0));
    let first = json_lines(&out).remove(0);
    assert_eq!(first["status"], "completed", "{first}");
    assert_eq!(s.count().await, 500);

    // The same command again: its key (from the file's bytes and the options) names the same
    // import, which is reported as imported already (exit 4); nothing is produced again.
    let out = s.run(&args).await;
    assert_eq!(out.status.code(), Some(4));
    let again = json_lines(&out).remove(0);
    assert_eq!(again["import_id"], first["import_id"]);
    assert_eq!(
        (again["replayed"].as_bool(), again["result"].as_str()),
        (Some(true), Some("already_imported"))
    );
    assert_eq!(s.count().await, 500);

    // upsert: the file's rows replace those with the same key.
    let b = s.write("b.csv", "id,name\n1,changed\n501,new\n");
    let out = s
        .run(&[
            "import", &b, "--table", "people", "--mode", "upsert", "--wait",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0));
    let name: String = sqlx::query_scalar("SELECT name FROM people WHERE id = 1")
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!((name.as_str(), s.count().await), ("changed", 501));

    // A mode the service does not know is refused by the CLI itself.
    let out = s
        .run(&["import", &b, "--table", "people", "--mode", "merge"])
        .await;
    assert_eq!(out.status.code(), Some(2));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_loads_an_import_again_into_another_table_once() {
    let s = stack(&[], true).await;
    let a = s.file("a.csv", 1..=300);
    let out = s
        .run(&["import", &a, "--table", "people", "--wait", "--json"])
        .await;
    assert_eq!(out.status.code(), Some(0));
    let original = json_lines(&out).remove(0);
    let id = original["import_id"].as_str().unwrap();

    let args = [
        "replay", id, "--table", "copy", "--create", "--wait", "--json",
    ];
    let out = s.run(&args).await;
    assert_eq!(out.status.code(), Some(0));
    let lines = json_lines(&out);
    assert_eq!(lines[1]["status"], "completed", "{lines:?}");
    assert_eq!(lines[1]["rows_written"], 300);
    assert_eq!(lines[1]["replay_of"], id);
    let copied: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM copy c JOIN people p USING (id) WHERE c.name = p.name",
    )
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(copied, 300);

    // The same command again replays nothing and says so (exit 4); --again replays anew.
    let out = s.run(&["replay", id, "--table", "copy"]).await;
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stdout(&out).contains("replayed into public.copy already"),
        "{}",
        stdout(&out)
    );
    let out = s
        .run(&["replay", id, "--table", "copy", "--again", "--wait"])
        .await;
    assert_eq!(out.status.code(), Some(0));
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM copy")
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(n, 600, "append mode: the rows a second time, as asked");

    // An import that does not exist: refused, exit 1.
    let out = s
        .run(&[
            "replay",
            &uuid::Uuid::now_v7().to_string(),
            "--table",
            "copy",
        ])
        .await;
    assert_eq!(out.status.code(), Some(1));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infer_prints_the_table_and_import_create_makes_it() {
    let s = stack(&[], true).await;
    let file = s.write(
        "Sales 2026.csv",
        "Region;Amount;Paid On;Ok\nEMEA;1,5;2026-01-02;yes\nAPAC;2;2026-01-03;no\n",
    );
    let out = s.run(&["infer", &file]).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out),
        "-- delimiter ; (detected), encoding utf-8 (default), types from 2 rows\n\
         CREATE TABLE \"public\".\"sales_2026\" (\"region\" text, \"amount\" numeric, \
         \"paid_on\" date, \"ok\" boolean);\n"
    );
    // From stdin, and a file that is not UTF-8 says what encoding=auto would read.
    let mut child = s
        .csvbus()
        .args(["infer", "-", "-t", "latin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"id,name\n1,Zo\xeb\n").await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.contains("encoding=auto would read the file as windows-1252"),
        "{text}"
    );
    assert!(text.contains("CREATE TABLE \"public\".\"latin\""), "{text}");

    let out = s
        .run(&[
            "import",
            &file,
            "--table",
            "sales",
            "--create",
            "--wait",
            "--progress",
            "never",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains("delimiter ; detected"), "{text}");
    assert!(
        text.contains("created: CREATE TABLE \"public\".\"sales\" (\"region\" text"),
        "{text}"
    );
    // The decimal comma is read as one: 1,5 lands as 1.5 in a numeric column.
    let rows: Vec<(String, String, String, bool)> =
        sqlx::query_as("SELECT region, amount::text, paid_on::text, ok FROM sales ORDER BY region")
            .fetch_all(&s.db.pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        [
            ("APAC".into(), "2".into(), "2026-01-03".into(), false),
            ("EMEA".into(), "1.5".into(), "2026-01-02".into(), true)
        ]
    );
    // A late value that widens a column of the new table is said, as the table is no longer
    // what `created:` says.
    let mut late = String::from("id,n\n");
    for i in 1..=2100 {
        late += &format!(
            "{i},{}\n",
            if i == 2050 {
                "n/a".to_owned()
            } else {
                i.to_string()
            }
        );
    }
    let file = s.write("late.csv", &late);
    let args = [
        "import",
        &file,
        "-t",
        "late",
        "--create",
        "--wait",
        "--progress",
        "never",
    ];
    let out = s.run(&args).await;
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.contains("widened: ALTER TABLE \"public\".\"late\" ALTER COLUMN \"n\" TYPE text"),
        "{text}"
    );
    // Given its type, the column stays bigint and the late value is a rejected row.
    let mut typed = args.to_vec();
    typed[3] = "late_typed";
    typed.extend(["--types", "n:bigint", "--max-rejected", "1"]);
    let out = s.run(&typed).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("\"n\" bigint"), "{text}");
    assert!(
        text.contains("2099 written, 1 rejected by Postgres"),
        "{text}"
    );
    s.stop().await;
}

#[path = "cli/truth.rs"]
mod truth;
