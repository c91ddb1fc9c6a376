//! The property the fuzz target (`fuzz/fuzz_targets/csv_rows.rs`) checks, shared with the
//! regression test over the inputs it found (`tests/parse_corpus.rs`): the CSV → message path
//! (record reader, line counter, quoted-field tracker, JSON encoding) against the csv crate's
//! reading of the same bytes.
//!
//! Checked for every body: the same records in the same order; line numbers strictly
//! increasing; each accepted row's message decodes to exactly the csv crate's fields, NULL only
//! for an empty field; a refused row is refused for a reason the csv crate's record shows (field
//! count, invalid UTF-8).

use csvbus_shared::catalog::Column;
use csvbus_shared::message::Row;
use csvbus_upload::codec::Records;
use csvbus_upload::codec::{check_header, Delimiter, ValueOptions};

/// Runs the checks on one fuzz input: the first byte picks the delimiter, the line break and
/// the mode, the rest is a body (raw mode) or rows of values to write as CSV first (structured
/// mode, which knows which values are NULL and which are empty strings).
pub fn check_input(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let delimiter = [b',', b';', b'\t', b'|'][usize::from(pick % 4)];
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    if pick & 0x80 == 0 {
        rt.block_on(check(rest, delimiter));
    } else {
        let newline: &[u8] = [&b"\n"[..], b"\r\n", b"\r"][usize::from(pick >> 2 & 3) % 3];
        rt.block_on(check_structured(rest, delimiter, newline));
    }
}

/// Rows of values from fuzz bytes: 0xFF ends a row, 0xFE a field, a lone 0xFD is NULL.
fn rows_of(data: &[u8]) -> Vec<Vec<Option<String>>> {
    data.split(|b| *b == 0xFF)
        .map(|row| {
            row.split(|b| *b == 0xFE)
                .map(|f| (f != [0xFD]).then(|| String::from_utf8_lossy(f).into_owned()))
                .collect()
        })
        .collect()
}

/// Writes the rows as CSV (NULL as an empty unquoted field, every value quoted, blank lines
/// where a row is empty), reads them back through the upload's path and expects exactly the
/// values written: the quoted-field tracker must tell `""` from NULL everywhere.
pub async fn check_structured(data: &[u8], delimiter: u8, newline: &[u8]) {
    let rows = rows_of(data);
    let width = rows.iter().map(Vec::len).max().unwrap_or(0).clamp(1, 64);
    let mut body: Vec<u8> = (0..width)
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join(&char::from(delimiter).to_string())
        .into_bytes();
    body.extend_from_slice(newline);
    let mut want = Vec::new();
    for row in &rows {
        if row.len() == 1 && row[0].as_deref() == Some("") {
            body.extend_from_slice(newline); // a blank line: no record
            continue;
        }
        let mut values: Vec<Option<String>> = row.iter().take(width).cloned().collect();
        values.resize(width, None);
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                body.push(delimiter);
            }
            if let Some(v) = v {
                body.push(b'"');
                body.extend(v.replace('"', "\"\"").bytes());
                body.push(b'"');
            }
        }
        body.extend_from_slice(newline);
        if width == 1 && values[0].is_none() {
            continue; // an empty unquoted line is a blank line too
        }
        want.push(values);
    }
    let d = Delimiter::from_byte(delimiter).expect("a delimiter");
    let mut records = Records::new(&body[..], d, 1 << 20, u64::MAX);
    records.next().await.expect("header").expect("header");
    let columns: Vec<Column> = (0..width)
        .map(|i| Column {
            name: format!("c{i}"),
            type_name: "text".into(),
            not_null: false,
            has_default: false,
            generated: false,
        })
        .collect();
    let header =
        check_header(&records.record, &columns, None, &Default::default()).expect("header");
    records.done();
    let opts = ValueOptions {
        delimiter: d,
        null: None,
        ..Default::default()
    };
    let mut payload = Vec::new();
    for (n, values) in want.iter().enumerate() {
        let span = records
            .next()
            .await
            .expect("read")
            .expect("a record per row");
        header
            .encode(
                &records.record,
                &opts,
                || records.quoted(span),
                &mut payload,
            )
            .expect("a written row is accepted");
        let row = Row::decode(&payload).expect("decodes");
        let got: Vec<Option<String>> = row
            .fields
            .iter()
            .map(|(_, v)| v.as_deref().map(str::to_owned))
            .collect();
        assert_eq!(&got, values, "row {n}");
        records.done();
    }
    assert!(
        records.next().await.expect("read").is_none(),
        "no extra record"
    );
}

pub async fn check(body: &[u8], delimiter: u8) {
    let expected: Vec<csv::ByteRecord> = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(body)
        .byte_records()
        .collect::<Result<_, _>>()
        .expect("the csv crate reads any bytes");
    let d = Delimiter::from_byte(delimiter).expect("a delimiter");
    let mut records = Records::new(body, d, 1 << 20, u64::MAX);
    let Ok(Some(first)) = records.next().await else {
        assert!(expected.is_empty() || body.len() > 1 << 20);
        return;
    };
    assert_eq!(fields(records.record.iter()), fields(expected[0].iter()));
    let columns: Vec<Column> = records
        .record
        .iter()
        .map(|name| Column {
            name: String::from_utf8_lossy(name)
                .trim_start_matches('\u{feff}')
                .to_owned(),
            type_name: "text".into(),
            not_null: false,
            has_default: false,
            generated: false,
        })
        .collect();
    let Ok(header) = check_header(&records.record, &columns, None, &Default::default()) else {
        return;
    };
    records.done();
    let opts = ValueOptions {
        delimiter: d,
        null: None,
        ..Default::default()
    };
    let (mut n, mut last_line) = (1, first.line);
    let mut payload = Vec::new();
    while let Ok(Some(span)) = records.next().await {
        assert!(
            span.line > last_line,
            "line {} after {last_line}",
            span.line
        );
        last_line = span.line;
        let want = &expected[n];
        assert_eq!(
            fields(records.record.iter()),
            fields(want.iter()),
            "record {n}"
        );
        match header.encode(
            &records.record,
            &opts,
            || records.quoted(span),
            &mut payload,
        ) {
            Ok(()) => {
                let row = Row::decode(&payload).expect("our own message decodes");
                assert_eq!(row.fields.len(), want.len());
                for (i, (_, value)) in row.fields.iter().enumerate() {
                    match value {
                        Some(v) => assert_eq!(v.as_bytes(), &want[i], "field {i}"),
                        None => assert!(want[i].is_empty(), "NULL for a non-empty field {i}"),
                    }
                }
            }
            Err(_) => assert!(
                want.len() != header.columns.len()
                    || want.iter().any(|f| std::str::from_utf8(f).is_err()),
                "record {n} refused without cause"
            ),
        }
        records.done();
        n += 1;
    }
}

fn fields<'a>(r: impl Iterator<Item = &'a [u8]>) -> Vec<Vec<u8>> {
    r.map(<[u8]>::to_vec).collect()
}
