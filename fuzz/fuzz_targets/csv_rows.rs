//! The CSV → message path of the upload service (record reader, line counter, quoted-field
//! tracker, JSON encoding) against the csv crate's reading of the same bytes.
//!
//! Input: the first byte picks the delimiter, the rest is the body. Checked for every body:
//! the same records in the same order; line numbers strictly increasing; each accepted row's
//! message decodes to exactly the csv crate's fields, NULL only for an empty field; a refused
//! row is refused for a reason the csv crate's record shows (field count, invalid UTF-8) or for
//! an open quote at the end of the input.

#![no_main]

use csvbus_shared::catalog::Column;
use csvbus_shared::message::Row;
use csvbus_upload::parse::Records;
use csvbus_upload::rows::{check_header, ValueOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let delimiter = [b',', b';', b'\t', b'|'][usize::from(pick % 4)];
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(check(body, delimiter));
});

async fn check(body: &[u8], delimiter: u8) {
    let expected: Vec<csv::ByteRecord> = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(body)
        .byte_records()
        .collect::<Result<_, _>>()
        .expect("the csv crate reads any bytes");
    let mut records = Records::new(body, delimiter, 1 << 20, u64::MAX);
    let Ok(Some(first)) = records.next().await else {
        assert!(expected.is_empty() || body.len() > 1 << 20);
        return;
    };
    assert_eq!(fields(records.record.iter()), fields(expected[0].iter()));
    let columns: Vec<Column> = records
        .record
        .iter()
        .map(|name| Column {
            name: String::from_utf8_lossy(name).trim_start_matches('\u{feff}').to_owned(),
            type_name: "text".into(),
            not_null: false,
            has_default: false,
            generated: false,
        })
        .collect();
    let Ok(header) = check_header(&records.record, &columns, None) else {
        return;
    };
    records.done();
    let opts = ValueOptions { delimiter, null: None };
    let (mut n, mut last_line) = (1, first.line);
    let mut payload = Vec::new();
    while let Ok(Some(span)) = records.next().await {
        assert!(span.line > last_line, "line {} after {last_line}", span.line);
        last_line = span.line;
        let want = &expected[n];
        assert_eq!(fields(records.record.iter()), fields(want.iter()), "record {n}");
        match header.encode(&records.record, &opts, || records.quoted(span), &mut payload) {
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
