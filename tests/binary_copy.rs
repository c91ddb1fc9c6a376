//! The sink's binary COPY against Postgres' own reading of the same values as CSV: every value
//! the encoder takes lands exactly as the CSV COPY lands it, and the values it leaves to
//! Postgres (forms whose meaning is not beyond doubt) are exactly those listed.

use csvbus_sink::diagnostics::{binary_copy, Codec};
use csvbus_tests::TestDb;
use sqlx::PgConnection;

/// Per type: the values the binary path encodes, and those it leaves to the CSV path.
fn cases() -> Vec<(&'static str, Codec, Vec<&'static str>, Vec<&'static str>)> {
    vec![
        (
            "bigint",
            Codec::Int8,
            vec![
                "0",
                "-0",
                "7",
                "007",
                "-9223372036854775808",
                "9223372036854775807",
            ],
            vec![
                "+1",
                " 1",
                "1 ",
                "9223372036854775808",
                "1.0",
                "1e3",
                "-",
                "０",
            ],
        ),
        (
            "integer",
            Codec::Int4,
            vec!["-2147483648", "2147483647"],
            vec!["2147483648"],
        ),
        (
            "smallint",
            Codec::Int2,
            vec!["-32768", "32767"],
            vec!["32768", "-32769"],
        ),
        (
            "numeric",
            Codec::Numeric,
            vec![
                "0",
                "0.00",
                "-0.00",
                "1",
                "-1",
                "1.5",
                "0.0001",
                "0.00001",
                "12345.6789",
                "100000000",
                "10000",
                "9999",
                "99999999.99",
                "-123.4500",
                "000123.000",
                "1234567890123456789012345678901234567890.123456789012345678901",
            ],
            vec![
                "1.", ".5", "1e5", "NaN", "Infinity", "+1", "1,5", "1.2.3", "- 1",
            ],
        ),
        (
            "numeric(12,2)",
            Codec::Numeric,
            vec!["1.005", "-1.005", "123.456", "0.004"],
            vec![],
        ),
        (
            "boolean",
            Codec::Bool,
            vec![
                "t", "true", "TRUE", "f", "False", "yes", "no", "On", "off", "1", "0",
            ],
            vec!["tr", "y", "2", " t"],
        ),
        (
            "text",
            Codec::Text,
            vec![
                "",
                "a",
                "say \"hi\"",
                "line\nbreak\r\n",
                "é漢字🙂",
                ",",
                "\\N",
                "\\.",
            ],
            vec!["a\0b"],
        ),
        ("varchar(8)", Codec::Text, vec!["abc", "abcdefgh"], vec![]),
        (
            "date",
            Codec::Date,
            vec![
                "2024-02-29",
                "0001-01-01",
                "9999-12-31",
                "2000-01-01",
                "1999-12-31",
            ],
            vec![
                "2024-2-29",
                "24-01-01",
                "2023-02-29",
                "2024-13-01",
                "0000-01-01",
                "20240101",
            ],
        ),
        (
            "timestamp",
            Codec::Timestamp,
            vec![
                "2024-02-02 01:01:07",
                "2024-02-02T01:01",
                "1999-12-31 23:59:59.999999",
                "2000-01-01 00:00:00.5",
                "0001-01-01 00:00:00",
                "1970-01-01 00:00:00.000001",
            ],
            vec![
                "2024-01-01 24:00:00",
                "2024-01-01 10:00:60",
                "2024-01-01 10:00+02",
                "2024-01-01 10:00:00.1234567",
                "2024-01-01",
                "2024-01-01 1:00",
                "2024-01-01 10:00:00.",
            ],
        ),
        (
            "timestamptz",
            Codec::Timestamptz,
            vec![
                "2024-02-02 01:01:07+00",
                "2024-02-02 01:01:07+05:30",
                "2024-02-02T01:01:07Z",
                "1999-12-31 23:59:59.123-0800",
                "2024-06-01 12:00-03",
                "0001-01-01 00:00:00+00",
            ],
            vec![
                "2024-06-01 12:00:00",
                "2024-06-01 12:00:00+16",
                "2024-06-01 12:00:00 +02",
                "2024-06-01 12:00:00+2",
            ],
        ),
        (
            "uuid",
            Codec::Uuid,
            vec![
                "00000000-0000-4000-8000-000000000001",
                "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            ],
            vec![
                "a0eebc999c0b4ef8bb6d6bb9bd380a11",
                "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            ],
        ),
    ]
}

/// A value as a group line: quoted, quotes doubled.
fn line(v: &str) -> Vec<u8> {
    format!("\"{}\"\n", v.replace('"', "\"\"")).into_bytes()
}

async fn copy(conn: &mut PgConnection, table: &str, format: &str, data: &[u8]) {
    let mut c = conn
        .copy_in_raw(&format!(
            "COPY {table} (v) FROM STDIN WITH (FORMAT {format})"
        ))
        .await
        .expect("COPY starts");
    c.send(data).await.expect("COPY data");
    c.finish().await.expect("COPY ends");
}

#[tokio::test]
async fn every_value_binary_copy_takes_lands_as_the_csv_copy_lands_it() {
    let db = TestDb::new().await;
    let mut conn = db.pool.acquire().await.unwrap();
    sqlx::query("SET TimeZone = 'America/New_York'")
        .execute(&mut *conn)
        .await
        .unwrap();
    let mut out = Vec::new();
    for (ty, codec, encoded, left) in cases() {
        for (n, v) in encoded.iter().enumerate() {
            let (csv, bin) = (format!("csv_{n}"), format!("bin_{n}"));
            for t in [&csv, &bin] {
                sqlx::raw_sql(&format!(
                    "DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (v {ty})"
                ))
                .execute(&mut *conn)
                .await
                .unwrap();
            }
            assert!(
                binary_copy(&line(v), 1, &[codec], &mut out),
                "{ty} {v:?} encodes"
            );
            copy(&mut conn, &bin, "binary", &out).await;
            copy(&mut conn, &csv, "csv", &line(v)).await;
            let read = |t: &str| format!("SELECT v::text FROM {t}");
            let want: Option<String> = sqlx::query_scalar(&read(&csv))
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            let got: Option<String> = sqlx::query_scalar(&read(&bin))
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(got, want, "{ty} {v:?}");
        }
        for v in left {
            assert!(
                !binary_copy(&line(v), 1, &[codec], &mut out),
                "{ty} {v:?} is left to Postgres"
            );
        }
    }
}

#[tokio::test]
async fn rows_of_several_fields_nulls_and_the_staged_line_encode_and_malformed_lines_do_not() {
    let db = TestDb::new().await;
    let mut conn = db.pool.acquire().await.unwrap();
    sqlx::raw_sql("CREATE TABLE t (id bigint, note text, at timestamptz, line bigint)")
        .execute(&mut *conn)
        .await
        .unwrap();
    let rows = b"\"1\",\"a, \"\"b\"\"\",\"2024-01-01 10:00+01\",2\n\"2\",,,3\n\"3\",\"x\ny\",\"2024-01-01T09:00:00Z\",5\n";
    let codecs = [Codec::Int8, Codec::Text, Codec::Timestamptz, Codec::Int8];
    let mut out = Vec::new();
    assert!(binary_copy(rows, 3, &codecs, &mut out));
    let mut c = conn
        .copy_in_raw("COPY t (id, note, at, line) FROM STDIN WITH (FORMAT binary)")
        .await
        .unwrap();
    c.send(&out[..]).await.unwrap();
    assert_eq!(c.finish().await.unwrap(), 3);
    let got: Vec<(i64, Option<String>, Option<String>, i64)> = sqlx::query_as(
        "SELECT id, note, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), line FROM t ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert_eq!(
        got,
        vec![
            (
                1,
                Some("a, \"b\"".into()),
                Some("2024-01-01 09:00".into()),
                2
            ),
            (2, None, None, 3),
            (3, Some("x\ny".into()), Some("2024-01-01 09:00".into()), 5),
        ]
    );
    // Fewer or more fields than columns, an unquoted value, a row count that is not the lines'.
    for (bad, n) in [
        (&b"\"1\",\"a\",\"2024-01-01 10:00+01\"\n"[..], 1),
        (b"\"1\",\"a\",\"2024-01-01 10:00+01\",2,\"x\"\n", 1),
        (b"\"1\",a,\"2024-01-01 10:00+01\",2\n", 1),
        (b"\"1\",,,2\n\"2\",,,3\n", 1),
        (b"\"1\",,,2\n", 2),
    ] {
        assert!(
            !binary_copy(bad, n, &codecs, &mut out),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

/// The sink copies an ordinary import in binary; a value whose binary COPY Postgres refuses
/// (too long for its `varchar`) sends the group to CSV, so the rejection carries the line and
/// Postgres' own reading of the value, as before; a table with a type the sink does not encode
/// is copied as CSV.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_copies_in_binary_and_leaves_refusals_and_other_types_to_csv() {
    use csvbus_tests::{env, metric, post_csv, spawn_sink, spawn_upload, unique, wait_final};
    csvbus_tests::init_logs();
    let db = TestDb::new().await;
    db.exec("CREATE TABLE short (id bigint, code varchar(3), at timestamptz)")
        .await;
    db.exec("CREATE TABLE doc (id bigint, body jsonb)").await;
    let e = env(&db, &unique("binary"));
    let (upload, sink) = (spawn_upload(&e).await, spawn_sink(&e).await);
    let copies = |format: &'static str| {
        let base = sink.url("");
        async move {
            let name = format!("csvbus_sink_copies_total{{format=\"{format}\"}}");
            metric(&base, &name).await
        }
    };
    let import = |table: &'static str, csv: &'static str| {
        let url = upload.url(&format!("/v1/imports?table={table}"));
        async move {
            let v: serde_json::Value = post_csv(&url, csv).await.json().await.unwrap();
            v["import_id"].as_str().unwrap().to_owned()
        }
    };
    let (bin0, csv0) = (copies("binary").await, copies("csv").await);
    let id = import(
        "short",
        "id,code,at\n1,abc,2024-01-01 10:00+02\n2,abcd,2024-01-02 10:00+02\n3,xyz,\n",
    )
    .await;
    let rec = wait_final(&upload, &id, std::time::Duration::from_secs(60)).await;
    assert_eq!(
        (
            rec["rows_written"].as_u64(),
            rec["rows_write_rejected"].as_u64()
        ),
        (Some(2), Some(1)),
        "{rec}"
    );
    let [(line, reason)] = &db.rejected(&id).await[..] else {
        panic!("one rejected row")
    };
    let line = *line;
    assert_eq!(line, 3);
    assert!(
        reason.contains("value too long for type character varying(3)"),
        "{reason}"
    );
    let at: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') FROM short ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(at, [Some("2024-01-01 08:00".to_owned()), None]);
    assert!(
        copies("binary").await > bin0,
        "the group was tried in binary first"
    );
    assert!(
        copies("csv").await > csv0,
        "and written as CSV once Postgres refused a value"
    );
    // A value the encoder leaves to Postgres, among rows it encodes: the CSV COPY names the
    // refused row, the rows around it are written (in binary) and it is rejected — not lost.
    let id = import(
        "short",
        "id,code,at\n4,abc,2024-01-01 10:00+02\n5,abc,2024-13-45 10:00+02\n6,xyz,2024-01-03 10:00Z\n",
    )
    .await;
    let rec = wait_final(&upload, &id, std::time::Duration::from_secs(60)).await;
    assert_eq!(
        (
            &rec["status"],
            rec["rows_written"].as_u64(),
            rec["rows_write_rejected"].as_u64()
        ),
        (&"completed".into(), Some(2), Some(1)),
        "{rec}"
    );
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM short WHERE id > 3 ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(ids, [4, 6]);
    assert_eq!(db.rejected_lines(&id).await, [3]);
    let csv1 = copies("csv").await;
    let id = import("doc", "id,body\n1,\"{\"\"a\"\": 1}\"\n").await;
    let rec = wait_final(&upload, &id, std::time::Duration::from_secs(60)).await;
    assert_eq!(rec["rows_written"], 1, "{rec}");
    assert!(copies("csv").await > csv1, "jsonb is not encoded: CSV");
    sink.stop().await;
    upload.stop().await;
}

/// Random plain values (a fixed seed): numerics of every length and scale, timestamps with
/// offsets across the calendar, integers at any magnitude. One COPY each way per type, then
/// row by row the same text.
#[tokio::test]
async fn thousands_of_random_values_land_alike_in_binary_and_in_csv() {
    let db = TestDb::new().await;
    let mut conn = db.pool.acquire().await.unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let digits = |n: u64, next: &mut dyn FnMut(u64) -> u64| -> String {
        (0..n).map(|_| char::from(b'0' + next(10) as u8)).collect()
    };
    let mut values: Vec<(&str, Codec, Vec<String>)> = vec![
        ("numeric", Codec::Numeric, Vec::new()),
        ("timestamptz", Codec::Timestamptz, Vec::new()),
        ("bigint", Codec::Int8, Vec::new()),
    ];
    for _ in 0..3000 {
        let sign = if next(2) == 0 { "-" } else { "" };
        let int = digits(1 + next(25), &mut next);
        let num = match next(3) {
            0 => format!("{sign}{int}"),
            _ => format!("{sign}{int}.{}", digits(1 + next(20), &mut next)),
        };
        values[0].2.push(num);
        let zone = match next(4) {
            0 => "Z".to_owned(),
            1 => format!("{}{:02}", ["+", "-"][next(2) as usize], next(15)),
            _ => format!(
                "{}{:02}:{:02}",
                ["+", "-"][next(2) as usize],
                next(15),
                next(60)
            ),
        };
        let frac = match next(3) {
            0 => String::new(),
            _ => format!(".{}", digits(1 + next(6), &mut next)),
        };
        values[1].2.push(format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}{frac}{zone}",
            1 + next(9999),
            1 + next(12),
            1 + next(28),
            next(24),
            next(60),
            next(60)
        ));
        let magnitude = 1 + next(18);
        values[2]
            .2
            .push(format!("{sign}{}", digits(magnitude, &mut next)));
    }
    let mut out = Vec::new();
    for (ty, codec, vs) in &values {
        let csv: Vec<u8> = vs.iter().flat_map(|v| line(v)).collect();
        assert!(binary_copy(&csv, vs.len(), &[*codec], &mut out), "{ty}");
        sqlx::raw_sql(&format!(
            "DROP TABLE IF EXISTS a, b; CREATE TABLE a (n serial, v {ty}); CREATE TABLE b (n serial, v {ty})"
        ))
        .execute(&mut *conn)
        .await
        .unwrap();
        copy(&mut conn, "a", "csv", &csv).await;
        copy(&mut conn, "b", "binary", &out).await;
        let differ: Vec<(Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT a.v::text, b.v::text FROM a JOIN b USING (n) WHERE a.v IS DISTINCT FROM b.v \
              OR a.v::text IS DISTINCT FROM b.v::text LIMIT 5",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        assert!(differ.is_empty(), "{ty}: {differ:?}");
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM b")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(n, vs.len() as i64);
    }
}

/// `CSVBUS_SINK_COPY_FORMAT=csv`: a group the sink would copy in binary goes as CSV, and lands
/// the same. (The sink is a process of its own: its metrics count only its own COPYs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_copy_format_keeps_every_copy_in_csv() {
    use csvbus_tests::procs::Proc;
    use csvbus_tests::{env, metric, post_csv, spawn_upload, unique, wait_final};
    csvbus_tests::init_logs();
    let db = TestDb::new().await;
    db.exec("CREATE TABLE plain (id bigint, at timestamptz, n numeric)")
        .await;
    let e = env(&db, &unique("csvcopy"));
    let upload = spawn_upload(&e).await;
    let mut sink = Proc::sink(&e, &[("CSVBUS_SINK_COPY_FORMAT", "csv")]);
    sink.ready(std::time::Duration::from_secs(60)).await;
    let url = upload.url("/v1/imports?table=plain");
    let body = "id,at,n\n1,2024-01-01 10:00+02,1.50\n2,,-3\n";
    let v: serde_json::Value = post_csv(&url, body).await.json().await.unwrap();
    let id = v["import_id"].as_str().unwrap().to_owned();
    let rec = wait_final(&upload, &id, std::time::Duration::from_secs(60)).await;
    assert_eq!(rec["rows_written"].as_u64(), Some(2), "{rec}");
    let base = sink.url("");
    let binary = metric(&base, "csvbus_sink_copies_total{format=\"binary\"}").await;
    let csv = metric(&base, "csvbus_sink_copies_total{format=\"csv\"}").await;
    assert_eq!(binary, 0.0);
    assert!(csv >= 1.0, "{csv}");
    let rows: Vec<(i64, Option<String>, String)> = sqlx::query_as(
        "SELECT id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), n::text FROM plain ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            (1, Some("2024-01-01 08:00".into()), "1.50".into()),
            (2, None, "-3".into())
        ]
    );
    sink.stop().await;
    upload.stop().await;
}
