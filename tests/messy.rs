//! Files as people receive them (`tests/data/messy/`): other delimiters with quoted delimiters
//! inside fields, Windows-1252 and UTF-16 text, a preamble, a header with spaces and mixed
//! case, extra columns, spaces after closing quotes, no header. Each goes through the upload
//! service, the broker and the sink, and ends with the exact rows in its table.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use csvbus_tests::{
    env, post_import, spawn_sink, spawn_upload, unique, wait_final, Service, TestDb,
};
use serde_json::Value;

/// One file, its options, and what must come of it.
struct Case {
    file: &'static str,
    query: &'static str,
    table: &'static str,
    rows: &'static [&'static str],
    rejected_lines: &'static [i64],
    /// Fields of the import's `read_as` that must have these values.
    read_as: Value,
}

type Upload = Service<csvbus_upload::UploadError>;
type Sink = Service<csvbus_sink::SinkError>;

/// A fresh database with `ddl` run, a topic and group of the test's own, and both services.
async fn stack(prefix: &str, ddl: &str) -> (TestDb, Upload, Sink) {
    csvbus_tests::init_logs();
    let db = TestDb::new().await;
    if !ddl.is_empty() {
        db.exec(ddl).await;
    }
    let mut e = env(&db, &unique(prefix));
    e.set("CSVBUS_SINK_GROUP", unique("g"));
    let upload = spawn_upload(&e).await;
    let sink = spawn_sink(&e).await;
    (db, upload, sink)
}

const T3: &str = "(id int PRIMARY KEY, name text, note text)";

fn cases() -> Vec<Case> {
    use serde_json::json;
    vec![
        Case {
            file: "semicolon.csv",
            query: "",
            table: T3,
            rows: &["1|Smith; John|a", "2|Ann|x;y", "3|Zoë|NULL"],
            rejected_lines: &[],
            read_as: json!({"delimiter": ";", "delimiter_detected": true, "notes": [], "line_break": "crlf"}),
        },
        Case {
            file: "tab.tsv",
            query: "",
            table: T3,
            rows: &["1|a\tb|x", "2|Ann|1,5"],
            rejected_lines: &[],
            read_as: json!({"delimiter": "tab", "line_break": "lf"}),
        },
        Case {
            file: "pipe.csv",
            query: "",
            table: T3,
            rows: &["1|a|b|x", "2|Ann|it's, ok"],
            rejected_lines: &[],
            read_as: json!({"delimiter": "|", "quote": "\""}),
        },
        Case {
            // As MySQL and PHP write quotes: escaped with a backslash (and the backslash
            // itself); the last row's open quote is a rejected row, not text.
            file: "backslash-escapes.csv",
            query: "",
            table: T3,
            rows: &["10|He said \"hi\", ok|C:\\temp", "11|plain|y"],
            rejected_lines: &[4],
            read_as: json!({"delimiter": ",", "quote": "\"", "escape": "\\",
                "notes": ["quotes escaped with \\ inside quoted fields: read with escape=\\ (escape=none reads \\ as text)"]}),
        },
        Case {
            // Two-digit dates that read day first as well as year first: `-` is read year
            // first (ISO shortened), `.` day first, each with a note naming the other order.
            file: "dates-short-year-first.csv",
            query: "",
            table: "(id int PRIMARY KEY, day date, note text)",
            rows: &["1|2024-12-31|Silvester", "2|2025-01-02|x"],
            rejected_lines: &[],
            read_as: json!({"dateformat": "ymd", "dateformat_guessed": true, "notes": [
                "dates read year first as their separator is usually written, but \"24-12-31\" reads day first too and no date in the first rows settles it; give dateformat=dmy if the file writes the day first"]}),
        },
        Case {
            file: "dates-short-day-first.csv",
            query: "",
            table: "(id int PRIMARY KEY, day date, note text)",
            rows: &["1|2024-12-31|Silvester", "2|2025-01-02|x"],
            rejected_lines: &[],
            read_as: json!({"dateformat": "dmy", "dateformat_guessed": true}),
        },
        Case {
            file: "dates-short-year-first.csv",
            query: "dateformat=dmy",
            table: "(id int PRIMARY KEY, day date, note text)",
            rows: &["1|2031-12-24|Silvester", "2|2002-01-25|x"],
            rejected_lines: &[],
            read_as: json!({"dateformat": "dmy", "dateformat_guessed": null}),
        },
        Case {
            // Comment lines before the header, one of them split by commas like the header:
            // the rows confirm the real header, so both comment lines are a preamble.
            file: "comment-lines.csv",
            query: "",
            table: "(time timestamp, temp numeric, rh int)",
            rows: &["2024-03-01T10:00:00|21.5|40", "2024-03-01T10:30:00|21.7|41"],
            rejected_lines: &[],
            read_as: json!({"skip_lines": 2, "skip_lines_detected": true}),
        },
        Case {
            file: "single-quote.csv",
            query: "",
            table: T3,
            rows: &["1|Smith, John|x", "2|it's|y"],
            rejected_lines: &[],
            read_as: json!({"delimiter": ",", "quote": "'"}),
        },
        Case {
            file: "windows-1252.csv",
            query: "encoding=windows-1252",
            // Non-ASCII names: the header's "Straße" finds the column straße (normalized).
            table: "(id int PRIMARY KEY, straße text, größe text)",
            rows: &["1|Zoë|naïve", "2|Müller|5 €"],
            rejected_lines: &[],
            read_as: json!({"delimiter": ";", "encoding": "windows-1252", "encoding_detected": false,
                "line_break": "crlf",
                "mapping": [{"field": "Straße", "column": "straße"}, {"field": "Größe", "column": "größe"}]}),
        },
        Case {
            file: "windows-1252.csv",
            query: "encoding=auto",
            table: "(id int PRIMARY KEY, straße text, größe text)",
            rows: &["1|Zoë|naïve", "2|Müller|5 €"],
            rejected_lines: &[],
            read_as: json!({"encoding": "windows-1252", "encoding_detected": true}),
        },
        Case {
            file: "utf-16le.csv",
            query: "encoding=utf-16",
            table: "(id int PRIMARY KEY, 名前 text, note text)",
            rows: &["1|東京|Zoë", "2|Müller, Jr.|ß"],
            rejected_lines: &[],
            read_as: json!({"delimiter": ",", "encoding": "utf-16le"}),
        },
        Case {
            file: "utf-16le.csv",
            query: "encoding=auto",
            table: "(id int PRIMARY KEY, 名前 text, note text)",
            rows: &["1|東京|Zoë", "2|Müller, Jr.|ß"],
            rejected_lines: &[],
            read_as: json!({"encoding": "utf-16le", "encoding_detected": true}),
        },
        Case {
            // No encoding= at all: the byte-order mark leaves no doubt.
            file: "utf-16le.csv",
            query: "",
            table: "(id int PRIMARY KEY, 名前 text, note text)",
            rows: &["1|東京|Zoë", "2|Müller, Jr.|ß"],
            rejected_lines: &[],
            read_as: json!({"encoding": "utf-16le", "encoding_detected": true,
                "notes": ["a UTF-16 byte-order mark: read as utf-16le"]}),
        },
        Case {
            // No encoding=, not UTF-8: read as UTF-8 as documented (its non-ASCII rows are
            // rejected), and the answer says what encoding=auto would do.
            file: "windows-1252-rows.csv",
            query: "",
            table: T3,
            rows: &["3|plain|ok"],
            rejected_lines: &[2, 3],
            read_as: json!({"encoding": "utf-8", "encoding_detected": false,
                "notes": ["the first bytes are not UTF-8: rows holding such bytes are rejected; encoding=auto would read the file as windows-1252"]}),
        },
        Case {
            file: "utf-16le-broken.csv",
            query: "encoding=utf-16",
            table: "(id int, name text)",
            rows: &["1|ok", "3|fine"],
            rejected_lines: &[3],
            read_as: json!({"encoding": "utf-16le"}),
        },
        Case {
            file: "preamble.csv",
            query: "skip_lines=2",
            table: T3,
            rows: &["1|Ann|x", "3|Cy|z"],
            // The short row is on line 5 of the file (2 preamble lines, the header, 2 rows).
            rejected_lines: &[5],
            read_as: json!({"skip_lines": 2, "skip_lines_detected": false, "delimiter": ","}),
        },
        Case {
            file: "preamble.csv",
            query: "",
            table: T3,
            rows: &["1|Ann|x", "3|Cy|z"],
            rejected_lines: &[5],
            read_as: json!({"skip_lines": 2, "skip_lines_detected": true, "delimiter": ","}),
        },
        Case {
            file: "preamble-semicolon.csv",
            query: "",
            table: "(id int, name text, amount numeric)",
            rows: &["1|Zoë|2.5", "2|Ann|NULL"],
            rejected_lines: &[],
            read_as: json!({"skip_lines": 3, "skip_lines_detected": true, "delimiter": ";"}),
        },
        Case {
            file: "spaced-header.csv",
            query: "",
            table: "(id int PRIMARY KEY, first_name text, last_name text, e_mail text)",
            rows: &["1|Ann|Lee|ann@example.com", "2|Bob|Ray|bob@example.com"],
            rejected_lines: &[],
            read_as: json!({"mapping": [
                {"field": "ID", "column": "id"},
                {"field": " First Name ", "column": "first_name"},
                {"field": "Last-Name", "column": "last_name"},
                {"field": "E-Mail", "column": "e_mail"},
            ]}),
        },
        Case {
            file: "extra-columns.csv",
            query: "extra_columns=ignore",
            table: T3,
            rows: &["1|Ann|x", "2|Bob|y"],
            rejected_lines: &[],
            read_as: json!({"mapping": [
                {"field": "colour", "column": null}, {"field": "size", "column": null},
            ]}),
        },
        Case {
            file: "extra-columns.csv",
            // Renames by position: the file's colour goes to the table's note.
            query: "columns=id,name,note,-,-",
            table: T3,
            rows: &["1|Ann|red", "2|Bob|blue"],
            rejected_lines: &[],
            read_as: json!({"mapping": [
                {"field": "colour", "column": "note"},
                {"field": "note", "column": null},
                {"field": "size", "column": null},
            ]}),
        },
        Case {
            file: "quote-spaces.csv",
            query: "trim=true&quotes=lenient",
            table: T3,
            rows: &["1|B|C", "2|x|y", "3|a\"b|c"],
            rejected_lines: &[],
            read_as: json!({"trim": true}),
        },
        Case {
            // Spaces before an opening quote: the field is still quoted, so its quotes go and
            // its comma stays in it.
            file: "trim-before-quotes.csv",
            query: "trim=true",
            table: T3,
            rows: &["1|Zoë|Köln", "2|a, b|x"],
            rejected_lines: &[],
            read_as: json!({"trim": true}),
        },
        Case {
            // Every record quotes a comma, the header too: `'` splits them all alike, and must
            // not be taken for the quote for it.
            file: "quoted-comma-header.csv",
            query: "",
            table: "(last_first text PRIMARY KEY, age int, city text)",
            rows: &["Doe, Jane|41|Köln, DE", "Roe, Rick|39|Paris"],
            rejected_lines: &[],
            read_as: json!({"delimiter": ",", "quote": "\"",
                "mapping": [{"field": "Last, First", "column": "last_first"}]}),
        },
        Case {
            // Day-first dates: 31/12 and 13/02 settle it; 01/02 is 1 February, not 2 January;
            // the one month-first date (12/31) is rejected, not read as something else.
            file: "dates-day-first.csv",
            query: "",
            table: "(id int PRIMARY KEY, day date, at timestamp)",
            rows: &[
                "1|2024-02-01|2024-12-31T10:00:00",
                "2|2024-02-13|2024-02-01T08:30:15",
                "3|2024-03-04|NULL",
            ],
            rejected_lines: &[5],
            read_as: json!({"delimiter": ";", "dateformat": "dmy"}),
        },
        Case {
            // A decimal comma and dots grouping thousands, settled by the first rows; the one
            // value written with a decimal point is rejected, not read as 25.
            file: "decimal-comma.csv",
            query: "",
            table: "(id int PRIMARY KEY, amount numeric, qty int)",
            rows: &["1|1.5|3", "2|1234.56|1000", "3|-0.25|2"],
            rejected_lines: &[5],
            read_as: json!({"delimiter": ";", "decimal": ","}),
        },
        Case {
            // 1,234 is 1234 with a decimal point and 1.234 with a comma: nothing settles it,
            // so it is a rejected row that says so, never a guess.
            file: "decimal-ambiguous.csv",
            query: "",
            table: "(id int PRIMARY KEY, amount numeric)",
            rows: &["2|7"],
            rejected_lines: &[2],
            read_as: json!({"delimiter": ";"}),
        },
        Case {
            // Given: read as asked.
            file: "decimal-ambiguous.csv",
            query: "decimal=,",
            table: "(id int PRIMARY KEY, amount numeric)",
            rows: &["1|1.234", "2|7"],
            rejected_lines: &[],
            read_as: json!({"decimal": ","}),
        },
        Case {
            // Nothing in the file settles the order: it is given.
            file: "dates-ambiguous.csv",
            query: "dateformat=dmy",
            table: "(id int PRIMARY KEY, day date)",
            rows: &["1|2024-02-01", "2|2024-04-03"],
            rejected_lines: &[],
            read_as: json!({"dateformat": "dmy", "notes": []}),
        },
        Case {
            // Not given and not settled: month first, as Postgres reads it, and said so.
            file: "dates-ambiguous.csv",
            query: "",
            table: "(id int PRIMARY KEY, day date)",
            rows: &["1|2024-01-02", "2|2024-03-04"],
            rejected_lines: &[],
            read_as: json!({"dateformat": "mdy", "dateformat_guessed": true, "notes": [
                "dates read month first (the default): no date in the first rows has a day over 12 to settle it; give dateformat=dmy if the file writes the day first"
            ]}),
        },
        Case {
            file: "no-header.csv",
            query: "header=false&columns=id,name,note",
            table: T3,
            rows: &["1|Ann|x", "2|Bob|y"],
            rejected_lines: &[],
            read_as: json!({"header": false}),
        },
    ]
}

/// Every field of `want` is in `got` with that value.
fn assert_has(got: &Value, want: &Value, what: &str) {
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(&got[k], v, "{what}: read_as.{k} in {got}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messy_files_land_with_their_exact_rows() {
    csvbus_tests::init_logs();
    let db = TestDb::new().await;
    let mut e = env(&db, &unique("messy"));
    e.set("CSVBUS_SINK_GROUP", unique("g"));
    let mut upload = spawn_upload(&e).await;
    let mut sink = spawn_sink(&e).await;
    upload.ready().await;
    sink.ready().await;
    let http = reqwest::Client::new();
    let base = upload.url("");
    let base = base.trim_end_matches('/');
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/messy");
    for (n, case) in cases().iter().enumerate() {
        let what = format!("{} ?{}", case.file, case.query);
        let table = format!("m{n}");
        db.exec(&format!("CREATE TABLE {table} {}", case.table))
            .await;
        let body = std::fs::read(data.join(case.file)).unwrap();
        let query = format!("table={table}&{}", case.query);
        let (status, acc) = post_import(&http, base, &query, body, &[]).await;
        assert_eq!(status, 202, "{what}: {acc}");
        let id = acc["import_id"].as_str().unwrap();
        let rec = wait_final(&upload, id, Duration::from_secs(30)).await;
        assert_eq!(rec["status"], "completed", "{what}: {rec}");
        assert_has(&rec["read_as"], &case.read_as, &what);
        assert_eq!(
            acc["read_as"], rec["read_as"],
            "{what}: the 202 says the same"
        );

        let cols: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT concat_ws('|', VARIADIC ARRAY(SELECT coalesce(v, 'NULL') FROM
                    jsonb_each_text(to_jsonb(t)) AS j(k, v)
                    JOIN (SELECT attname, attnum FROM pg_attribute
                           WHERE attrelid = '{table}'::regclass AND attnum > 0) a
                      ON a.attname = j.k ORDER BY a.attnum))
               FROM {table} t ORDER BY 1"
        ))
        .fetch_all(&db.pool)
        .await
        .unwrap();
        assert_eq!(cols, case.rows, "{what}");
        let lines = db.rejected_lines(id).await;
        assert_eq!(lines, case.rejected_lines, "{what}");
    }
    upload.stop().await;
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_be_read_as_asked_is_refused_before_any_row() {
    let db = TestDb::new().await;
    db.exec(&format!("CREATE TABLE t {T3}")).await;
    db.exec("CREATE TABLE twins (first_name text, \"First Name\" text)")
        .await;
    let mut upload = spawn_upload(&env(&db, &unique("messy"))).await;
    upload.ready().await;
    let http = reqwest::Client::new();
    let base = upload.url("");
    let base = base.trim_end_matches('/');
    for (query, body, status, code) in [
        (
            "table=t&encoding=ebcdic",
            "id\n1\n",
            400,
            "invalid_encoding",
        ),
        ("table=t&header=false", "1,a\n", 400, "invalid_query"),
        ("table=t&quotes=strict", "id\n1\n", 400, "invalid_query"),
        ("table=t&quote=ab", "id\n1\n", 400, "invalid_quote"),
        ("table=t&escape=ab", "id\n1\n", 400, "invalid_escape"),
        ("table=t&comment=ab", "id\n1\n", 400, "invalid_comment"),
        (
            "table=t&extra_columns=maybe",
            "id\n1\n",
            400,
            "invalid_query",
        ),
        (
            "table=t&columns=id,name",
            "id,name,note\n1,a,b\n",
            422,
            "invalid_columns",
        ),
        (
            "table=t&skip_lines=5",
            "a\nb\nid\n1\n",
            422,
            "invalid_skip_lines",
        ),
        ("table=t", "id,colour\n1,red\n", 422, "unknown_column"),
        ("table=twins", "first name\nx\n", 422, "ambiguous_column"),
        // types= is for a table create=true makes, names columns of the file, and types
        // Postgres knows: nothing but a type name reaches it.
        ("table=t&types=id:text", "id\n1\n", 400, "invalid_types"),
        (
            "table=new&create=true&types=id",
            "id\n1\n",
            400,
            "invalid_types",
        ),
        (
            "table=new&create=true&types=id:nosuchtype",
            "id\n1\n",
            400,
            "invalid_types",
        ),
        (
            "table=new&create=true&types=id:text%20default%201",
            "id\n1\n",
            400,
            "invalid_types",
        ),
        (
            "table=new&create=true&types=id:numeric(1,2,3)",
            "id\n1\n",
            400,
            "invalid_types",
        ),
        (
            "table=new&create=true&types=id:numeric(1001)",
            "id\n1\n",
            400,
            "invalid_types",
        ),
        (
            "table=new&create=true&types=colour:text",
            "id\n1\n",
            422,
            "unknown_column",
        ),
    ] {
        let (got, answer) = post_import(&http, base, query, body, &[]).await;
        assert_eq!(
            (got.as_u16(), answer["error"].as_str()),
            (status, Some(code)),
            "{query}: {answer}"
        );
    }
    // A file without a header into an existing table: no name on line 1 is a column, and
    // the answer says how to read it as a row.
    let (_, answer) = post_import(&http, base, "table=t", "1,Ann,x\n2,Bob,y\n", &[]).await;
    assert_eq!(
        answer["message"],
        "the table has no column \"1\", nor any other name on line 1: if the file has no header, header=false&columns=id,name,note reads line 1 as a row",
        "{answer}"
    );
    let n = db.count("SELECT count(*) FROM csvbus.imports").await;
    assert_eq!(n, 0, "nothing was recorded");
    upload.stop().await;
}

/// A file with a column of every type `create=true` infers; `Breaks` is a whole number in the
/// first 2,000 rows and not in the 2,001st.
fn every_type_csv(rows: usize) -> String {
    let mut s = String::from("ID,Price,Ratio,OK,Day,At,At TZ,UID,Note,Empty,Breaks\n");
    for i in 1..=rows {
        let day =
            chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + chrono::Days::new(i as u64);
        let breaks = if i == 2001 {
            "oops".to_owned()
        } else {
            (i * 7).to_string()
        };
        s.push_str(&format!(
            "{i},{i}.{:02},{i}e-3,{},{day},{day} 10:{:02}:00,{day}T10:00:00+01:00,00000000-0000-4000-8000-{i:012},n{i},,{breaks}\n",
            i % 100,
            i % 2 == 0,
            i % 60,
        ));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_true_makes_the_table_from_the_file_and_widens_what_breaks_its_types() {
    csvbus_tests::init_logs();
    let db = TestDb::new().await;
    let mut e = env(&db, &unique("create"));
    e.set("CSVBUS_SINK_GROUP", unique("g"));
    let mut upload = spawn_upload(&e).await;
    let mut sink = spawn_sink(&e).await;
    upload.ready().await;
    sink.ready().await;
    let http = reqwest::Client::new();
    let base = upload.url("");
    let base = base.trim_end_matches('/');
    // Without create=true the table must exist.
    let (status, _) = post_import(&http, base, "table=created", every_type_csv(3), &[]).await;
    assert_eq!(status, 404);

    let (status, acc) = post_import(
        &http,
        base,
        "table=created&create=true",
        every_type_csv(2100),
        &[],
    )
    .await;
    assert_eq!(status, 202, "{acc}");
    let ddl = "CREATE TABLE \"public\".\"created\" (\"id\" bigint, \"price\" numeric, \
        \"ratio\" double precision, \"ok\" boolean, \"day\" date, \"at\" timestamp, \
        \"at_tz\" timestamptz, \"uid\" uuid, \"note\" text, \"empty\" text, \"breaks\" bigint)";
    assert_eq!(acc["read_as"]["created"], ddl);
    assert_eq!(
        acc["read_as"]["mapping"][0],
        serde_json::json!({"field": "ID", "column": "id"})
    );
    let id = acc["import_id"].as_str().unwrap();
    let rec = wait_final(&upload, id, Duration::from_secs(60)).await;
    assert_eq!(rec["status"], "completed", "{rec}");
    // The 2,001st row's "oops" does not fit the bigint its first rows gave `breaks`: the
    // column is widened to text before that row is sent, and every row lands.
    assert_eq!(
        (
            rec["rows_written"].as_i64(),
            rec["rows_write_rejected"].as_i64()
        ),
        (Some(2100), Some(0))
    );
    let widened = "ALTER TABLE \"public\".\"created\" ALTER COLUMN \"breaks\" TYPE text USING \"breaks\"::text::text";
    assert_eq!(
        rec["read_as"]["widened"],
        serde_json::json!([widened]),
        "{rec}"
    );
    let breaks = db.text("SELECT breaks FROM created WHERE id = 2001").await;
    assert_eq!(breaks, "oops");
    // Every written row holds exactly the file's values.
    let exact = db.count("SELECT count(*) FROM created WHERE
            price = (id || '.' || lpad((id % 100)::text, 2, '0'))::numeric
            AND ratio = (id || 'e-3')::float8 AND ok = (id % 2 = 0)
            AND day = date '2026-01-01' + id::int
            AND at = (date '2026-01-01' + id::int) + make_interval(hours => 10, mins => (id % 60)::int)
            AND at_tz = ((date '2026-01-01' + id::int) || 'T10:00:00+01:00')::timestamptz
            AND uid = ('00000000-0000-4000-8000-' || lpad(id::text, 12, '0'))::uuid
            AND note = 'n' || id AND empty IS NULL AND breaks = (id * 7)::text").await;
    assert_eq!(exact, 2099);
    upload.stop().await;
    sink.stop().await;
}

/// An atomic import into a table it creates widens the staging table with the target, so that
/// its move finds the same types: a late `n/a` in a column its first 2,000 rows made bigint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_import_widens_its_staging_table_with_its_new_table() {
    let (db, upload, sink) = stack("widen", "").await;
    let mut body = String::from("id,v\n");
    for i in 1..=2100 {
        body += &format!(
            "{i},{}\n",
            if i == 2050 {
                "n/a".to_owned()
            } else {
                i.to_string()
            }
        );
    }
    let http = reqwest::Client::new();
    let query = "table=grown&create=true&mode=atomic";
    let (status, acc) = post_import(&http, &upload.url(""), query, body, &[]).await;
    assert_eq!(status, 202, "{acc}");
    let rec = wait_final(
        &upload,
        acc["import_id"].as_str().unwrap(),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        (rec["status"].as_str(), rec["rows_written"].as_i64()),
        (Some("completed"), Some(2100)),
        "{rec}"
    );
    assert_eq!(
        rec["read_as"]["widened"].as_array().map(Vec::len),
        Some(1),
        "{rec}"
    );
    let v = db.text("SELECT v FROM grown WHERE id = 2050").await;
    assert_eq!(v, "n/a");
    upload.stop().await;
    sink.stop().await;
}

/// Sends `body` (text/csv) with `query`, a `create=true` import; checks the 202 and that it
/// created the table with `created`; waits for the import. The 202's answer and the final
/// record.
async fn create(
    upload: &Upload,
    query: &str,
    body: impl Into<reqwest::Body>,
    created: &str,
) -> (Value, Value) {
    let http = reqwest::Client::new();
    let csv = [("content-type", "text/csv")];
    let (status, acc) = post_import(&http, &upload.url(""), query, body, &csv).await;
    assert_eq!(status, 202, "{acc}");
    assert_eq!(acc["read_as"]["created"], created, "{acc}");
    let id = acc["import_id"].as_str().unwrap();
    let rec = wait_final(upload, id, Duration::from_secs(60)).await;
    (acc, rec)
}

/// A bank export's day-first dates and decimal commas make `date`, `timestamp` and `numeric`
/// columns with `create=true` (they were `text`), and land as the file means them: 01/02/2024
/// is 1 February, 1.234,00 is 1234.00.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_true_makes_date_and_number_columns_of_a_bank_export() {
    let (db, upload, sink) = stack("create-dates", "").await;
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/messy/dates-create.csv");
    let body = std::fs::read(file).unwrap();
    let (acc, rec) = create(
        &upload,
        "table=statement&create=true&delimiter=auto",
        body,
        "CREATE TABLE \"public\".\"statement\" (\"date\" date, \"amount\" numeric, \"booked_at\" timestamp)",
    )
    .await;
    assert_eq!(acc["read_as"]["dateformat"], "dmy", "{acc}");
    assert_eq!(acc["read_as"]["decimal"], ",", "{acc}");
    assert_eq!(
        (rec["status"].as_str(), rec["rows_written"].as_i64()),
        (Some("completed"), Some(3)),
        "{rec}"
    );
    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT date::text, amount::text, booked_at::text FROM statement ORDER BY date DESC",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let row =
        |d: &str, a: &str, t: Option<&str>| (d.to_owned(), a.to_owned(), t.map(str::to_owned));
    assert_eq!(
        rows,
        [
            row("2024-12-31", "10.5", Some("2024-12-31 10:00:00")),
            row("2024-02-13", "-3.25", None),
            row("2024-02-01", "1234.00", Some("2024-02-01 08:30:15")),
        ]
    );
    upload.stop().await;
    sink.stop().await;
}

/// Postal codes keep their leading zeros (a number would drop them: `text`), times of day are
/// `time`, and a `timestamp` column the first rows made widens for a late value that is no
/// timestamp, as a bigint one does (the catalog names it `timestamp without time zone`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_true_keeps_leading_zeros_reads_times_and_widens_a_late_timestamp() {
    let (db, upload, sink) = stack("create-zeros", "").await;
    let mut body = String::from("zip,start,at\n");
    for i in 1..=2100 {
        let at = if i == 2050 {
            "n/a".to_owned()
        } else {
            format!("2024-03-01 10:{:02}:00", i % 60)
        };
        body.push_str(&format!("{:05},{:02}:30,{at}\n", 1000 + i, 6 + i % 12));
    }
    let (_, rec) = create(
        &upload,
        "table=offices&create=true",
        body,
        "CREATE TABLE \"public\".\"offices\" (\"zip\" text, \"start\" time, \"at\" timestamp)",
    )
    .await;
    assert_eq!(
        (
            rec["status"].as_str(),
            rec["rows_written"].as_i64(),
            rec["rows_write_rejected"].as_i64()
        ),
        (Some("completed"), Some(2100), Some(0)),
        "{rec}"
    );
    let widened =
        "ALTER TABLE \"public\".\"offices\" ALTER COLUMN \"at\" TYPE text USING \"at\"::text::text";
    assert_eq!(
        rec["read_as"]["widened"],
        serde_json::json!([widened]),
        "{rec}"
    );
    let first: (String, String, String) =
        sqlx::query_as("SELECT zip, start::text, at FROM offices ORDER BY zip LIMIT 1")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        first,
        (
            "01001".to_owned(),
            "07:30:00".to_owned(),
            "2024-03-01 10:01:00".to_owned()
        )
    );
    let late = db.text("SELECT at FROM offices WHERE zip = '03050'").await;
    assert_eq!(late, "n/a");
    upload.stop().await;
    sink.stop().await;
}

/// A US spreadsheet's 12-hour timestamps (`3/1/2024 10:00 AM`) make a `timestamp` column
/// with `create=true` (they were text) and land as meant: 12:30 AM is half past midnight.
/// ISO 8601's short offset (`-08`) makes `timestamptz` (it was text); times with and without
/// an offset in one column stay text, with a note saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_true_reads_twelve_hour_timestamps_and_offsets() {
    let (db, upload, sink) = stack("create-ampm", "").await;
    let body = "id,at\n1,3/1/2024 10:00 AM\n2,12/31/2024 1:05:09 PM\n3,1/15/2024 12:30 AM\n";
    let (_, rec) = create(
        &upload,
        "table=visits&create=true",
        body,
        "CREATE TABLE \"public\".\"visits\" (\"id\" bigint, \"at\" timestamp)",
    )
    .await;
    assert_eq!(rec["rows_written"], 3, "{rec}");
    let at: Vec<String> = sqlx::query_scalar("SELECT at::text FROM visits ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        at,
        [
            "2024-03-01 10:00:00",
            "2024-12-31 13:05:09",
            "2024-01-15 00:30:00"
        ]
    );
    // Offsets, the short ISO 8601 one too, make timestamptz; times with and without one in a
    // column stay text, said (DuckDB's timestamp_timezone.csv).
    let (_, rec) = create(
        &upload,
        "table=zoned&create=true",
        "id,at\n1,2020-01-01T00:00:00-08\n2,2020-01-01T00:00:00Z\n",
        "CREATE TABLE \"public\".\"zoned\" (\"id\" bigint, \"at\" timestamptz)",
    )
    .await;
    assert_eq!(rec["rows_written"], 2, "{rec}");
    let utc = db
        .text("SELECT (at AT TIME ZONE 'UTC')::text FROM zoned WHERE id = 1")
        .await;
    assert_eq!(utc, "2020-01-01 08:00:00");
    let (acc, _) = create(
        &upload,
        "table=mixed_zones&create=true",
        "time,what\n2020-01-01T00:00:00,local\n2020-01-01T00:00:00-08,SF\n",
        "CREATE TABLE \"public\".\"mixed_zones\" (\"time\" text, \"what\" text)",
    )
    .await;
    assert!(
        acc["read_as"]["notes"]
            .to_string()
            .contains("time mix times with and without a UTC offset: text"),
        "{acc}"
    );
    upload.stop().await;
    sink.stop().await;
}

/// Headers as spreadsheets and macOS exports write them never refuse a file `create=true`
/// makes a table for: a repeated name is numbered, an empty one (and the trailing delimiter's)
/// is `column_N`, a name written decomposed (`o` and a combining mark) is the composed one
/// (so it repeats `Größe`), each said in `read_as.mapping` — and the rows land under them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_true_names_repeated_empty_and_decomposed_header_names() {
    let (db, upload, sink) = stack("create-names", "").await;
    let body = "a,a,,Gro\u{308}ße,Größe,\n1,2,x,3,4,\n5,6,y,7,8,z\n";
    let (acc, rec) = create(
        &upload,
        "table=names&create=true",
        body,
        "CREATE TABLE \"public\".\"names\" (\"a\" bigint, \"a_2\" bigint, \"column_3\" text, \
         \"größe\" bigint, \"größe_2\" bigint, \"column_6\" text)",
    )
    .await;
    let mapping = acc["read_as"]["mapping"].as_array().unwrap();
    for (field, column) in [
        ("a", "a_2"),
        ("#3", "column_3"),
        ("Gro\u{308}ße", "größe"),
        ("#6", "column_6"),
    ] {
        let m = serde_json::json!({"field": field, "column": column});
        assert!(mapping.contains(&m), "{m} in {mapping:?}");
    }
    assert_eq!(
        (rec["status"].as_str(), rec["rows_written"].as_i64()),
        (Some("completed"), Some(2)),
        "{rec}"
    );
    let rows: Vec<(i64, i64, String, i64, i64, Option<String>)> =
        sqlx::query_as("SELECT a, a_2, column_3, größe, größe_2, column_6 FROM names ORDER BY a")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        [
            (1, 2, "x".to_owned(), 3, 4, None),
            (5, 6, "y".to_owned(), 7, 8, Some("z".to_owned())),
        ]
    );
    // A NUL in a header name (DuckDB's `nullbyte_header.csv`) was a 400 `invalid_value`: the
    // import's record could not store the mapping.
    let (acc, rec) = create(
        &upload,
        "table=nul_named&create=true",
        "col1|col\u{0}2\nval1|val2\n",
        "CREATE TABLE \"public\".\"nul_named\" (\"col1\" text, \"col_2\" text)",
    )
    .await;
    let m = serde_json::json!({"field": "col\u{0}2", "column": "col_2"});
    assert!(
        acc["read_as"]["mapping"].as_array().unwrap().contains(&m),
        "{acc}"
    );
    assert_eq!(rec["rows_written"], 1, "{rec}");
    upload.stop().await;
    sink.stop().await;
}

/// `evolve=add_columns`: header names the table lacks become nullable columns typed from the
/// first rows, added with the import and said in `read_as.added`; a preview shows them without
/// adding them; without the option the same file is a 422 `unknown_column`, as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evolve_add_columns_adds_what_the_file_has_and_the_table_lacks() {
    let ddl = "CREATE TABLE crm (id int PRIMARY KEY, name text)";
    let (db, upload, sink) = stack("evolve", ddl).await;
    let http = reqwest::Client::new();
    let base = upload.url("");
    let body =
        "id,name,E-Mail,Score,Joined\n1,Ann,ann@example.com,7,31/12/2024\n2,Bob,,12,01/02/2025\n";
    let (status, refused) = post_import(&http, &base, "table=crm", body, &[]).await;
    assert_eq!(
        (status.as_u16(), refused["error"].as_str()),
        (422, Some("unknown_column"))
    );
    let (status, p) = post_import(
        &http,
        &base,
        "table=crm&evolve=add_columns&dry_run=true",
        body,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(
        p["read_as"]["added"].as_array().map(Vec::len),
        Some(3),
        "{p}"
    );
    let columns = db
        .count("SELECT count(*) FROM information_schema.columns WHERE table_name = 'crm'")
        .await;
    assert_eq!(columns, 2, "a preview adds nothing");

    let (status, acc) = post_import(&http, &base, "table=crm&evolve=add_columns", body, &[]).await;
    assert_eq!(status, 202, "{acc}");
    assert_eq!(
        acc["read_as"]["added"],
        serde_json::json!([
            "ALTER TABLE \"public\".\"crm\" ADD COLUMN IF NOT EXISTS \"e_mail\" text",
            "ALTER TABLE \"public\".\"crm\" ADD COLUMN IF NOT EXISTS \"score\" bigint",
            "ALTER TABLE \"public\".\"crm\" ADD COLUMN IF NOT EXISTS \"joined\" date",
        ])
    );
    let rec = wait_final(
        &upload,
        acc["import_id"].as_str().unwrap(),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(rec["status"], "completed", "{rec}");
    type Row = (i32, Option<String>, Option<i64>, Option<String>);
    let rows: Vec<Row> =
        sqlx::query_as("SELECT id, e_mail, score, joined::text FROM crm ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        [
            (
                1,
                Some("ann@example.com".into()),
                Some(7),
                Some("2024-12-31".into())
            ),
            (2, None, Some(12), Some("2025-02-01".into())),
        ]
    );
    upload.stop().await;
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wide_repeated_and_long_headers_create_a_table_or_get_a_clear_422() {
    csvbus_tests::init_logs();
    let db = TestDb::new().await;
    let e = env(&db, &unique("wide"));
    let mut upload = spawn_upload(&e).await;
    upload.ready().await;
    let http = reqwest::Client::new();
    let base = upload.url("");
    let base = base.trim_end_matches('/');
    let file = |names: &[String]| {
        format!(
            "{}\n{}\n",
            names.join(","),
            vec!["1"; names.len()].join(",")
        )
    };

    // Past Postgres' 1,600 columns: a 422 that says so, not a 503 to retry.
    let wide = vec!["a".to_owned(); 2000];
    let (status, v) = post_import(&http, base, "table=wide&create=true", file(&wide), &[]).await;
    assert_eq!(
        (status.as_u16(), v["error"].as_str()),
        (422, Some("too_many_columns")),
        "{v}"
    );
    let (status, v) = post_import(
        &http,
        base,
        "table=wide&create=true&header=true",
        file(&wide[..1600]),
        &[],
    )
    .await;
    assert_eq!(status, 202, "1,600 repeated names make 1,600 columns: {v}");
    let columns = db
        .count("SELECT count(*) FROM information_schema.columns WHERE table_name = 'wide'")
        .await;
    assert_eq!(columns, 1600);

    // Names longer than Postgres keeps: cut by csvbus, so the table is found again.
    let long: Vec<String> = ["a", "b"].iter().map(|c| c.repeat(80)).collect();
    for _ in 0..2 {
        let (status, v) =
            post_import(&http, base, "table=long&create=true", file(&long), &[]).await;
        assert_eq!(status, 202, "{v}");
    }
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns WHERE table_name = 'long' ORDER BY ordinal_position",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(names.len(), 2);
    assert!(names.iter().all(|n| n.len() <= 63), "{names:?}");
    assert_eq!(names, ["a".repeat(63), "b".repeat(63)]);
    // A table name Postgres would cut is refused, not created under another name.
    let t = format!("table={}&create=true", "t".repeat(64));
    let (status, v) = post_import(&http, base, &t, "a\n1\n", &[]).await;
    assert_eq!(
        (status.as_u16(), v["error"].as_str()),
        (400, Some("invalid_table")),
        "{v}"
    );
    upload.stop().await;
}

/// A bank statement whose rows end with a comma its header lacks (as Chase writes them): the
/// delimiter is still found, every row lands, the empty field past the last column is dropped
/// and `read_as` says so; a row whose field past the header holds something is still rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_ending_with_a_delimiter_the_header_lacks_land() {
    let ddl = "CREATE TABLE statement (details text, posted date, amount numeric, slip text)";
    let (db, upload, sink) = stack("trailing", ddl).await;
    let body = "Details,Posting Date,Amount,Check or Slip #\n\
                DEBIT,03/01/2024,-23.45,,\n\
                CREDIT,03/15/2024,1200.00,,\n\
                DEBIT,03/16/2024,-5.00,1043,\n\
                DEBIT,03/17/2024,-7.00,,oops\n";
    let http = reqwest::Client::new();
    let csv = [("content-type", "text/csv")];
    let query = "table=statement&columns=details,posted,amount,slip&dateformat=mdy";
    let (status, acc) = post_import(&http, &upload.url(""), query, body, &csv).await;
    assert_eq!(status, 202, "{acc}");
    assert_eq!(acc["read_as"]["delimiter"], ",", "{acc}");
    let notes = acc["read_as"]["notes"].to_string();
    assert!(notes.contains("empty field after the last column"), "{acc}");
    let id = acc["import_id"].as_str().unwrap();
    let rec = wait_final(&upload, id, Duration::from_secs(60)).await;
    assert_eq!(
        (rec["rows_written"].as_i64(), rec["rows_rejected"].as_i64()),
        (Some(3), Some(1)),
        "{rec}"
    );
    let rows: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT details, posted::text, amount::text, slip FROM statement ORDER BY posted",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let row = |d: &str, p: &str, a: &str, s: Option<&str>| {
        (
            d.to_owned(),
            p.to_owned(),
            a.to_owned(),
            s.map(str::to_owned),
        )
    };
    assert_eq!(
        rows,
        [
            row("DEBIT", "2024-03-01", "-23.45", None),
            row("CREDIT", "2024-03-15", "1200.00", None),
            row("DEBIT", "2024-03-16", "-5.00", Some("1043")),
        ]
    );
    let rejected = db.rejected(id).await;
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].0, 5);
    assert!(
        rejected[0].1.contains("expected 4 fields, found 5"),
        "{rejected:?}"
    );
    upload.stop().await;
    sink.stop().await;
}

/// A US spreadsheet's grouped thousands (`"1,234"` units beside `"12,345.50"` revenue): once
/// the file's numbers settle the decimal point, `create=true` makes both columns numbers (the
/// units were `text`) and the rows land as meant, 1,234 as 1234.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_true_reads_grouped_thousands_once_the_point_is_settled() {
    let (db, upload, sink) = stack("create-thousands", "").await;
    let body = "Region,Units,Revenue\nNorth,\"1,234\",\"12,345.50\"\nSouth,56,3.00\n";
    let (acc, rec) = create(
        &upload,
        "table=sales&create=true",
        body,
        "CREATE TABLE \"public\".\"sales\" (\"region\" text, \"units\" bigint, \"revenue\" numeric)",
    )
    .await;
    assert_eq!(acc["read_as"]["decimal"], ".", "{acc}");
    assert_eq!(rec["rows_written"], 2, "{rec}");
    let rows: Vec<(String, i64, String)> =
        sqlx::query_as("SELECT region, units, revenue::text FROM sales ORDER BY region")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let row = |r: &str, u: i64, v: &str| (r.to_owned(), u, v.to_owned());
    assert_eq!(
        rows,
        [row("North", 1234, "12345.50"), row("South", 56, "3.00")]
    );
    upload.stop().await;
    sink.stop().await;
}

/// The World Bank's indicator CSV: a BOM, two lines of metadata with blank lines between,
/// years as column names, every line ending with a comma, a missing number written `""`. The
/// preamble is found, the years name `bigint` columns, and `""` is NULL in them (it was a
/// rejected row: `""` is no bigint) while it stays an empty string in a text column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_world_bank_indicator_file_lands_with_its_missing_numbers_null() {
    let (db, upload, sink) = stack("create-wb", "").await;
    let body = "\u{feff}\"Data Source\",\"World Development Indicators\",\n\n\
                \"Last Updated Date\",\"2024-03-28\",\n\n\
                \"Country Name\",\"Country Code\",\"2015\",\"2016\",\n\
                \"Aruba\",\"ABW\",\"104257\",\"104874\",\n\
                \"Not classified\",\"\",\"\",\"\",\n";
    let (acc, rec) = create(
        &upload,
        "table=population&create=true",
        body,
        "CREATE TABLE \"public\".\"population\" (\"country_name\" text, \"country_code\" text, \"2015\" bigint, \"2016\" bigint, \"column_5\" text)",
    )
    .await;
    assert_eq!(acc["read_as"]["skip_lines"], 4, "{acc}");
    assert_eq!(
        (
            rec["rows_written"].as_i64(),
            rec["rows_write_rejected"].as_i64()
        ),
        (Some(2), Some(0)),
        "{rec}"
    );
    let rows: Vec<(String, String, Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT country_name, country_code, \"2015\", \"2016\" FROM population ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let row = |n: &str, c: &str, a: Option<i64>, b: Option<i64>| (n.to_owned(), c.to_owned(), a, b);
    assert_eq!(
        rows,
        [
            row("Aruba", "ABW", Some(104257), Some(104874)),
            row("Not classified", "", None, None)
        ]
    );
    upload.stop().await;
    sink.stop().await;
}

/// Dates with month names as Jira (`01/Mar/24 9:05 AM`), Oracle (`02-MAR-24`) and US reports
/// (`Mar 31, 2024`) write them make `timestamp` and `date` columns with `create=true` (they were
/// `text`) and land as written, rewritten to ISO on the stream like the numeric ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_true_reads_dates_with_month_names() {
    let (db, upload, sink) = stack("month-names", "").await;
    let body = "Issue key,Created,Due\n\
                PROJ-1,01/Mar/24 9:05 AM,02-MAR-24\n\
                PROJ-2,15/Mar/24 2:12 PM,\"Mar 31, 2024\"\n";
    let (_, rec) = create(
        &upload,
        "table=issues&create=true",
        body,
        "CREATE TABLE \"public\".\"issues\" (\"issue_key\" text, \"created\" timestamp, \"due\" date)",
    )
    .await;
    assert_eq!(rec["rows_written"], 2, "{rec}");
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT issue_key, created::text, due::text FROM issues ORDER BY 1")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let row = |k: &str, c: &str, d: &str| (k.to_owned(), c.to_owned(), d.to_owned());
    assert_eq!(
        rows,
        [
            row("PROJ-1", "2024-03-01 09:05:00", "2024-03-02"),
            row("PROJ-2", "2024-03-15 14:12:00", "2024-03-31")
        ]
    );
    upload.stop().await;
    sink.stop().await;
}

/// A US Census table's second header row (labels under the variable codes) makes every
/// column `text` with `create=true`: the answer says so and names `skip_lines=1`, which reads
/// the labels as the header and types the numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_header_row_is_pointed_out_with_the_option_that_reads_it() {
    let (db, upload, sink) = stack("second-header", "").await;
    let body = "\"GEO_ID\",\"NAME\",\"B01001_001E\",\"B19013_001E\"\n\
                \"Geography\",\"Geographic Area Name\",\"Estimate!!Total:\",\"Estimate!!Median income\"\n\
                \"0400000US01\",\"Alabama\",\"5028092\",\"59609\"\n\
                \"0400000US02\",\"Alaska\",\"734821\",\"86370\"\n";
    let (acc, _) = create(
        &upload,
        "table=acs&create=true",
        body,
        "CREATE TABLE \"public\".\"acs\" (\"geo_id\" text, \"name\" text, \"b01001_001e\" text, \"b19013_001e\" text)",
    )
    .await;
    let notes = acc["read_as"]["notes"].to_string();
    assert!(
        notes.contains("line 2 looks like a second header row")
            && notes.contains("b01001_001e (else bigint)")
            && notes.contains("skip_lines=1"),
        "{acc}"
    );
    let (_, rec) = create(
        &upload,
        "table=acs_labels&create=true&skip_lines=1",
        body,
        "CREATE TABLE \"public\".\"acs_labels\" (\"geography\" text, \"geographic_area_name\" text, \"estimate_total\" bigint, \"estimate_median_income\" bigint)",
    )
    .await;
    assert_eq!(rec["rows_written"], 2, "{rec}");
    let total: i64 = db
        .count("SELECT sum(estimate_total)::int8 FROM acs_labels")
        .await;
    assert_eq!(total, 5028092 + 734821);
    upload.stop().await;
    sink.stop().await;
}

/// A file without a header (a database dump, as TPC-DS' `web_page` is written): its first
/// line has the types of the rows below it, so with `create=true` and no `header=` it is the
/// first row, not the column names — said in `read_as`. `header=true` reads it as the header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_without_a_header_lands_every_row_with_create_true() {
    let (db, upload, sink) = stack("headerless", "").await;
    let body = "1|AAAAAAAABAAAAAAA|1997-09-03||2450810|welcome\n\
                2|AAAAAAAACAAAAAAA|1997-09-03|2000-09-02|2450814|protected\n\
                3|AAAAAAAACAAAAAAA|2000-09-03||2450814|feedback\n";
    let (acc, rec) = create(
        &upload,
        "table=web_page&create=true",
        body,
        "CREATE TABLE \"public\".\"web_page\" (\"column_1\" bigint, \"column_2\" text, \"column_3\" date, \"column_4\" date, \"column_5\" bigint, \"column_6\" text)",
    )
    .await;
    assert_eq!(acc["read_as"]["header"], false, "{acc}");
    assert!(
        acc["read_as"]["notes"]
            .to_string()
            .contains("line 1 reads as data, not as a header"),
        "{acc}"
    );
    assert_eq!(rec["rows_written"], 3, "{rec}");
    let first = db
        .text("SELECT column_6 FROM web_page WHERE column_1 = 1")
        .await;
    assert_eq!(first, "welcome");
    // One line of values is a row too; a header alone stays a header.
    let (_, rec) = create(
        &upload,
        "table=one_row&create=true",
        "1,StreetA\n",
        "CREATE TABLE \"public\".\"one_row\" (\"column_1\" bigint, \"column_2\" text)",
    )
    .await;
    assert_eq!(rec["rows_written"], 1, "{rec}");
    create(
        &upload,
        "table=names_only&create=true",
        "id,name\n",
        "CREATE TABLE \"public\".\"names_only\" (\"id\" text, \"name\" text)",
    )
    .await;
    // Asked for, the first line is the header.
    let (acc, rec) = create(
        &upload,
        "table=as_asked&create=true&header=true",
        body,
        "CREATE TABLE \"public\".\"as_asked\" (\"1\" bigint, \"aaaaaaaabaaaaaaa\" text, \"1997_09_03\" date, \"column_4\" date, \"2450810\" bigint, \"welcome\" text)",
    )
    .await;
    assert_eq!(acc["read_as"]["header"], true, "{acc}");
    assert_eq!(rec["rows_written"], 2, "{rec}");
    upload.stop().await;
    sink.stop().await;
}

/// Lines before the table that are no rows, each detected as a preamble with `create=true`
/// and the table's types kept:
/// - a spreadsheet saved as CSV, as UK councils publish their spending: a title and an empty
///   line padded with delimiters to the table's width, then a header padded with empty names
///   (the title was the header: one column named after it, every column `text`);
/// - lines of text over a dump without a header (a description, blank lines, more text, as
///   DuckDB's `17738.csv`): the first line was the header and every row rejected; now the
///   first row after them is read as data and every row lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_before_the_table_are_a_preamble() {
    let (db, upload, sink) = stack("preambles", "").await;
    let cases = [
        (
            "invoices",
            "Invoices over £250 paid in June 2015,,,,,\n,,,,,\n\
             Directorate,Paid Date,Supplier Name,Total,,\n\
             Adults,02/06/2015,ORCHARD CARE HOME,2170.88,,\n\
             Children,13/06/2015,ZURICH MUNICIPAL,911.6,,\n",
            "(\"directorate\" text, \"paid_date\" date, \"supplier_name\" text, \"total\" numeric, \"column_5\" text, \"column_6\" text)",
            (2, true, 2),
            ("SELECT paid_date::text FROM invoices WHERE total = 911.6", "2015-06-13"),
        ),
        (
            "readings",
            "Station readings, exported by hand\ndescription\n\nunits: mm\n\n\
             1001,Riverside,12.5,2024-03-01\n\
             1002,Phila,0,2024-03-01\n\
             1003,SomeTown,3.25,2024-03-02\n",
            "(\"column_1\" bigint, \"column_2\" text, \"column_3\" numeric, \"column_4\" date)",
            (5, false, 3),
            ("SELECT column_2 FROM readings WHERE column_1 = 1001", "Riverside"),
        ),
    ];
    for (table, body, columns, (skipped, header, rows), (sql, value)) in cases {
        let created = format!("CREATE TABLE \"public\".\"{table}\" {columns}");
        let query = format!("table={table}&create=true");
        let (acc, rec) = create(&upload, &query, body, &created).await;
        assert_eq!(acc["read_as"]["skip_lines"], skipped, "{acc}");
        assert_eq!(acc["read_as"]["skip_lines_detected"], true, "{acc}");
        assert_eq!(acc["read_as"]["header"], header, "{acc}");
        assert_eq!(rec["rows_written"], rows, "{rec}");
        assert_eq!(rec["rows_rejected"], 0, "{rec}");
        assert_eq!(db.text(sql).await, value);
    }
    upload.stop().await;
    sink.stop().await;
}

/// Two exports concatenated with their headers (`cat jan.csv feb.csv`, Pollock's
/// multi-table files): the second header, quoted or not, was a row — its `DATE` widened the
/// date column to text. Now, under a header of names over typed values, a line with the
/// header's fields is skipped, not a row, and the import's notes say which lines; the columns
/// keep their types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_that_repeats_the_header_is_skipped_and_said() {
    let (db, upload, sink) = stack("repeated", "").await;
    let body = "DATE,Qty,\"Price\"\n2018-01-28,2,74.69\n2018-01-29,0,29.81\n\
                \n\
                DATE, Qty ,Price\n2018-02-01,1,80.08\n";
    let (acc, rec) = create(
        &upload,
        "table=sales&create=true",
        body,
        "CREATE TABLE \"public\".\"sales\" (\"date\" date, \"qty\" bigint, \"price\" numeric)",
    )
    .await;
    assert_eq!(rec["rows_written"], 3, "{rec}");
    assert_eq!(rec["rows_rejected"], 0, "{rec}");
    assert!(
        rec["read_as"]["notes"]
            .to_string()
            .contains("1 line(s) repeating the header skipped, not rows: line 5"),
        "{rec}"
    );
    assert!(
        rec["read_as"]["widened"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{acc}"
    );
    let n = db
        .count("SELECT count(*) FROM sales WHERE date >= '2018-01-28'")
        .await;
    assert_eq!(n, 3);
    // Only under a header that is clearly one (names over typed values): in a column of
    // words, a value may equal the header (DuckDB's enum_type.csv) and is a row.
    let (_, rec) = create(
        &upload,
        "table=moods&create=true",
        "happy\nsad\nhappy\nangry\n",
        "CREATE TABLE \"public\".\"moods\" (\"happy\" text)",
    )
    .await;
    assert_eq!(rec["rows_written"], 3, "{rec}");
    upload.stop().await;
    sink.stop().await;
}

/// A dump of titles where `"` is a title's first character (Wikipedia's `"Weird_Al"_…`, a
/// title that is `"` alone): read with `"` as the quote, that field ran over the line break
/// and the lines after it became part of one value, silently. Detection reads the quotes as
/// text, says so, and every line is its row; `quote=none` asks for it, `quote="` reads them
/// as quotes (and the line is one value, as asked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_that_would_swallow_lines_are_read_as_text() {
    let (db, upload, sink) = stack("noquote", "").await;
    let body = "page_namespace\tpage_title\n0\t!\n0\t\"\n0\t\"!\"\n0\t\"\"\n\
                0\t\"(It)_Feels_So_Good\"\n0\t\"...And_Into_the_Fire!\"_(lit._\"Gyumao\")\n0\tZ\n";
    let created =
        "CREATE TABLE \"public\".\"titles\" (\"page_namespace\" bigint, \"page_title\" text)";
    let (acc, rec) = create(&upload, "table=titles&create=true", body, created).await;
    assert_eq!(rec["rows_written"], 7, "{rec}");
    assert_eq!(acc["read_as"]["quote"], "none", "{acc}");
    assert!(
        acc["read_as"]["notes"]
            .to_string()
            .contains("read as text, not as a quote"),
        "{acc}"
    );
    let titles = db
        .text("SELECT string_agg(page_title, ' ' ORDER BY page_title) FROM titles")
        .await;
    assert_eq!(
        titles,
        "! \" \"!\" \"\" \"(It)_Feels_So_Good\" \"...And_Into_the_Fire!\"_(lit._\"Gyumao\") Z"
    );
    // Given: `quote=none` on a comma file whose sizes hold `"`.
    let (acc, rec) = create(
        &upload,
        "table=sizes&create=true&quote=none",
        "id,size\n1,12\"\n2,\"3\" bolt\n",
        "CREATE TABLE \"public\".\"sizes\" (\"id\" bigint, \"size\" text)",
    )
    .await;
    assert_eq!(rec["rows_written"], 2, "{rec}");
    assert_eq!(acc["read_as"]["quote"], "none", "{acc}");
    let sizes = db
        .text("SELECT string_agg(size, '|' ORDER BY id) FROM sizes")
        .await;
    assert_eq!(sizes, "12\"|\"3\" bolt");
    upload.stop().await;
    sink.stop().await;
}

/// A quote inside a quoted field that neither doubles it nor ends the field (DuckDB's
/// `unescaped_quote.csv`): the CSV reader ended the field there and glued the rest on without
/// the quote — `pedro pdet" holanda"` stored, silently — and a delimiter after it split the
/// row. Read as its writer meant it, with a note naming the line; doubled quotes read as
/// before. Where no later quote ends the field on its line (`"abc"def`), the quote ends it, as
/// before: read as text, the field would run on into the next row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quote_inside_a_quoted_field_that_is_not_doubled_is_text() {
    let (db, upload, sink) = stack("strayquote", "").await;
    let body = "id;name\n1;\"pedro \"pdet\" holanda\"\n2;\"pedro \"pdet\" ho;landa\"\n\
                3;\"say \"\"hi\"\"\"\n4;\"Lahr \"Vis Bus\"\"\n5;\"abc\"def\n6;plain\n";
    let created = "CREATE TABLE \"public\".\"names\" (\"id\" bigint, \"name\" text)";
    let (acc, rec) = create(&upload, "table=names&create=true", body, created).await;
    assert_eq!(rec["rows_written"], 6, "{rec}");
    assert_eq!(rec["rows_rejected"], 0, "{rec}");
    assert!(
        acc["read_as"]["notes"]
            .to_string()
            .contains("is read as text, not dropped (line 2:"),
        "{acc}"
    );
    let names = db
        .text("SELECT string_agg(name, '|' ORDER BY id) FROM names")
        .await;
    assert_eq!(
        names,
        "pedro \"pdet\" holanda|pedro \"pdet\" ho;landa|say \"hi\"|Lahr \"Vis Bus\"|abcdef|plain"
    );
    upload.stop().await;
    sink.stop().await;
}

/// `types=` gives some columns of the table `create=true` makes their type, by header name or
/// column name: `id` text though its values are numbers, `amount` numeric(12,2), `when` with a
/// zone. A value a given type does not take is a rejected row with its line — the column is not
/// widened, as an inferred one would be. Into a table that exists, `types=` is said to be unused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_true_takes_the_types_given_for_some_columns() {
    let (db, upload, sink) = stack("given-types", "").await;
    let body = "id,Amount,when,note\n1,12.5,2024-01-02 10:00,a\n2,3,2024-01-03 11:00,b\n3,n/a,2024-01-04 12:00,c\n";
    let query = "table=typed&create=true&types=id:text,Amount:NUMERIC(12, 2),when:timestamptz";
    let created = "CREATE TABLE \"public\".\"typed\" (\"id\" text, \"amount\" numeric(12,2), \
                   \"when\" timestamp with time zone, \"note\" text)";
    let (acc, rec) = create(&upload, query, body, created).await;
    assert!(
        acc["read_as"]["notes"]
            .to_string()
            .contains("types given (types=), not inferred, for id, amount, when"),
        "{acc}"
    );
    assert_eq!(rec["rows_written"], 2, "{rec}");
    assert!(rec["read_as"].get("widened").is_none(), "{rec}");
    let id = rec["id"].as_str().unwrap();
    let rejected = db.rejected(id).await;
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].0, 4, "{rejected:?}");
    let rows = db
        .text("SELECT string_agg(id || '=' || amount, '|' ORDER BY id) FROM typed")
        .await;
    assert_eq!(rows, "1=12.50|2=3.00");
    // The table exists now: the types stand, and the answer says types= was not used.
    let http = reqwest::Client::new();
    let csv = [("content-type", "text/csv")];
    let (status, acc) = post_import(
        &http,
        &upload.url(""),
        query,
        "id,Amount,when,note\n4,1,,d\n",
        &csv,
    )
    .await;
    assert_eq!(status, 202, "{acc}");
    assert!(
        acc["read_as"]["notes"]
            .to_string()
            .contains("types= not used: the table exists"),
        "{acc}"
    );
    upload.stop().await;
    sink.stop().await;
}

/// A streaming client's small file (the CLI, `curl -T`, a pipe) arrives before its end is
/// known: the rows that decide how dates and numbers are read were then the first rows minus
/// the last, which might be cut. Here the last row alone settles the day first and the decimal
/// comma: it was left out, so 01/02/2024 was stored as 2 January and 1.234 as 1.234, silently,
/// and the last row rejected — while the same file sent whole read right. A sample that ends
/// with a line break outside quotes ends with a whole row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_row_of_a_streamed_file_decides_dates_and_numbers_too() {
    let ddl = "CREATE TABLE dated (d date, amount numeric)";
    let (db, upload, sink) = stack("streamed-dates", ddl).await;
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
    tx.unbounded_send(Ok(
        b"d;amount\n01/02/2024;1.234\n31/12/2024;1.234,56\n".to_vec()
    ))
    .unwrap();
    let url = upload.url("/v1/imports?table=dated");
    let post = tokio::spawn(async move {
        let http = reqwest::Client::new();
        let body = reqwest::Body::wrap_stream(rx);
        let resp = http.post(url).header("content-type", "text/csv").body(body);
        resp.send().await.unwrap().json::<Value>().await.unwrap()
    });
    // The body's end comes only once the import is recorded: the rows were read as decided.
    csvbus_tests::eventually("the import recorded", Duration::from_secs(30), || {
        let db = &db;
        async move {
            db.count("SELECT count(*) FROM csvbus.imports WHERE target_table = 'dated'")
                .await
                == 1
        }
    })
    .await;
    drop(tx);
    let acc = post.await.unwrap();
    assert_eq!(acc["read_as"]["dateformat"], "dmy", "{acc}");
    assert_eq!(acc["read_as"]["decimal"], ",", "{acc}");
    let rec = wait_final(
        &upload,
        acc["import_id"].as_str().unwrap(),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(rec["rows_written"], 2, "{rec}");
    let rows = db
        .text("SELECT string_agg(d || '=' || amount, '|' ORDER BY d) FROM dated")
        .await;
    assert_eq!(rows, "2024-02-01=1234|2024-12-31=1234.56");
    upload.stop().await;
    sink.stop().await;
}

/// Fields quoted with `'` and `\'` escapes inside them, as PHP and MySQL scripts write them, in
/// a file without a `"` (DuckDB's `single_quote_backslash.csv`): read with `"` as the quote,
/// `'567'` and `'text\'2\'text'` kept their quotes and backslashes, the first column was text
/// and its first value taken for a header. Read with `'` and `\`, as DuckDB does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_quoted_fields_with_backslash_escapes_are_unquoted() {
    let (db, upload, sink) = stack("singleq", "").await;
    let body = "123|TEST8|text1\n345|TEST8|'text\\'2\\'text'\n'567'|TEST8|text3\n";
    let created = "CREATE TABLE \"public\".\"singles\" (\"column_1\" bigint, \"column_2\" text, \"column_3\" text)";
    let (acc, rec) = create(&upload, "table=singles&create=true", body, created).await;
    assert_eq!(acc["read_as"]["quote"], "'", "{acc}");
    assert_eq!(acc["read_as"]["escape"], "\\", "{acc}");
    assert!(
        acc["read_as"]["notes"]
            .to_string()
            .contains("fields quoted with ' (detected)"),
        "{acc}"
    );
    assert_eq!(rec["rows_written"], 3, "{rec}");
    let rows = db
        .text("SELECT string_agg(column_1 || '=' || column_3, '|' ORDER BY column_1) FROM singles")
        .await;
    assert_eq!(rows, "123=text1|345=text'2'text|567=text3");
    upload.stop().await;
    sink.stop().await;
}

/// R's `write.table` writes a header one field short: each row starts with its row name.
/// Read as R and pandas read it, that first field is a column without a name (`column_1`),
/// and every row lands — not one text column under `,` (as before: no delimiter split the
/// header like the rows). A quoted line break after the last delimiter of each row (`;"` +
/// newline + `"`) is a blank field past the header: dropped like an empty one. A header that
/// ends with an empty name its rows lack is read without it. R's `NA` that alone makes a
/// column text is said, with `null=NA`, which types it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_named_before_the_header_s_first_column_land_under_an_unnamed_column() {
    let (db, upload, sink) = stack("rownames", "").await;
    let body = "\"x\";\"x\";\"Valid?\";\"CompTime\"\n\
                \"Org\";0;1;TRUE;60.006952047348\n\
                \"Org_kmax_kmin\";1;1;FALSE;12.5\n\
                \"Dim.  1\";0;0;TRUE;7\n";
    let (acc, rec) = create(
        &upload,
        "table=r_results&create=true",
        body,
        "CREATE TABLE \"public\".\"r_results\" (\"column_1\" text, \"x\" bigint, \"x_2\" bigint, \"valid\" boolean, \"comptime\" numeric)",
    )
    .await;
    assert_eq!(acc["read_as"]["delimiter"], ";", "{acc}");
    assert!(
        acc["read_as"]["notes"].to_string().contains("row name"),
        "{acc}"
    );
    assert_eq!(rec["rows_written"], 3, "{rec}");
    let named: (String, i64, bool) =
        sqlx::query_as("SELECT column_1, x_2, valid FROM r_results WHERE x = 1")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(named, ("Org_kmax_kmin".to_owned(), 1, false));
    // R writes a missing value NA: a column it alone makes text is said, with null=NA, which
    // types it and lands NA as NULL.
    let missing = "\"x\";\"CompTime\"\n\"Org\";0;NA\n\"Hyp\";1;12.5\n\"Cg\";NA;7\n";
    let (acc, _) = create(
        &upload,
        "table=r_na&create=true",
        missing,
        "CREATE TABLE \"public\".\"r_na\" (\"column_1\" text, \"x\" text, \"comptime\" text)",
    )
    .await;
    assert!(
        acc["read_as"]["notes"].to_string().contains(
            "NA alone makes text of x (else bigint), comptime (else numeric); null=NA reads it as NULL"
        ),
        "{acc}"
    );
    let (_, rec) = create(
        &upload,
        "table=r_null&create=true&null=NA",
        missing,
        "CREATE TABLE \"public\".\"r_null\" (\"column_1\" text, \"x\" bigint, \"comptime\" numeric)",
    )
    .await;
    assert_eq!(rec["rows_written"], 3, "{rec}");
    assert_eq!(
        db.count("SELECT count(*) FROM r_null WHERE x IS NULL OR comptime IS NULL")
            .await,
        2
    );
    // Into an existing table the unnamed field is named or left out with columns=.
    db.exec("CREATE TABLE scores (x int, x2 int, valid boolean, comptime numeric)")
        .await;
    let http = reqwest::Client::new();
    let (status, refused) = post_import(&http, &upload.url(""), "table=scores", body, &[]).await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("header field 1 has no name")),
        "{refused}"
    );
    let query = "table=scores&columns=-,x,x2,valid,comptime";
    let (status, acc) = post_import(&http, &upload.url(""), query, body, &[]).await;
    assert_eq!(status, 202, "{acc}");
    let rec = wait_final(
        &upload,
        acc["import_id"].as_str().unwrap(),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(rec["rows_written"], 3, "{rec}");
    let infos = "\"Problem Name\";\"Total time limit\";\"Status\"\n\
                 \"OR30x100\";\"1440\";\"OPTIMAL\";\"\n\"\n\
                 \"OR30x250\";\"600\";\"TIME_LIMIT\";\"\n\"\n";
    let (_, rec) = create(
        &upload,
        "table=infos&create=true",
        infos,
        "CREATE TABLE \"public\".\"infos\" (\"problem_name\" text, \"total_time_limit\" bigint, \"status\" text)",
    )
    .await;
    assert_eq!(rec["rows_written"], 2, "{rec}");
    // The other way round: a header that ends with a delimiter its rows lack (instrument
    // exports). Its empty last name made a fourth column and every row was rejected
    // (`expected 4 fields, found 3`), the import "completed" with nothing written.
    let (acc, rec) = create(
        &upload,
        "table=padded&create=true",
        "time,temp,rh,\n10:00,21.5,40\n10:30,21.7,41\n",
        "CREATE TABLE \"public\".\"padded\" (\"time\" time, \"temp\" numeric, \"rh\" bigint)",
    )
    .await;
    assert!(
        acc["read_as"]["notes"]
            .to_string()
            .contains("ends with empty names"),
        "{acc}"
    );
    assert_eq!(rec["rows_written"], 2, "{rec}");
    assert_eq!(rec["rows_rejected"], 0, "{rec}");
    upload.stop().await;
    sink.stop().await;
}

/// Comment lines between the rows (`#`, as sensor logs and hand-kept files write them) are
/// skipped, not rejected rows, and counted in the import's notes with their lines; a line
/// that starts with `#` but splits into the header's fields is a row (`#red` is a value),
/// unless a space follows the `#` (`# 20,7`). `comment=none` reads them as rows (here: two
/// rejected, one field of two, and `# 20` a value).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comment_lines_between_the_rows_are_skipped_and_counted() {
    let (db, upload, sink) = stack("comments", "").await;
    let body = "tag,n\n# exported by sensor v2\n#red,10\n# 20,7\nblue,20\n#end\n";
    let (acc, rec) = create(
        &upload,
        "table=tags&create=true",
        body,
        "CREATE TABLE \"public\".\"tags\" (\"tag\" text, \"n\" bigint)",
    )
    .await;
    assert_eq!(acc["read_as"]["comment"], "#", "{acc}");
    assert_eq!(
        (
            rec["status"].as_str(),
            rec["rows_written"].as_i64(),
            rec["rows_rejected"].as_i64()
        ),
        (Some("completed"), Some(2), Some(0)),
        "{rec}"
    );
    assert!(
        rec["read_as"]["notes"]
            .to_string()
            .contains("3 comment line(s) starting with # skipped, not rows: line 2, 4, 6"),
        "{rec}"
    );
    let tags: Vec<String> = sqlx::query_scalar("SELECT tag FROM tags ORDER BY n")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(tags, ["#red", "blue"]);
    let (acc, rec) = create(
        &upload,
        "table=tags_asis&create=true&comment=none",
        body,
        "CREATE TABLE \"public\".\"tags_asis\" (\"tag\" text, \"n\" bigint)",
    )
    .await;
    assert!(acc["read_as"].get("comment").is_none(), "{acc}");
    assert_eq!(
        (rec["rows_written"].as_i64(), rec["rows_rejected"].as_i64()),
        (Some(3), Some(2)),
        "{rec}"
    );
    upload.stop().await;
    sink.stop().await;
}
