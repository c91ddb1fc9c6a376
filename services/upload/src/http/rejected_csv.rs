//! An import's rejected rows as CSV, read a page at a time while the answer is sent: memory
//! stays bounded however many rows were rejected.

use bytes::Bytes;
use csvbus_shared::imports::rejected::{self, RejectedRow};
use futures::Stream;
use sqlx::PgPool;
use uuid::Uuid;

use crate::http::import_status::CsvFormat;

/// Rows read per query.
const PAGE: i64 = 1000;

/// The CSV text: a header, then one page of rows per item. A database error mid-way ends the
/// body early (the client sees a cut-off download, never a wrong one).
pub fn stream(
    pool: PgPool,
    import: Uuid,
    columns: Vec<String>,
    format: CsvFormat,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    let header = header(&columns, format);
    let state = Some((pool, 0i64));
    let pages = futures::stream::unfold(state, move |state| {
        let columns = columns.clone();
        async move {
            let (pool, after) = state?;
            match rejected::page(&pool, import, after, PAGE).await {
                Err(e) => {
                    tracing::error!(error = %e, import_id = %import, "rejected.csv: database error");
                    Some((Err(std::io::Error::other("database error")), None))
                }
                Ok(rows) if rows.is_empty() => None,
                Ok(rows) => {
                    let next = (rows.len() as i64 >= PAGE)
                        .then(|| rows.last().map(|r| (pool, r.line)))
                        .flatten();
                    Some((Ok(encode(&rows, &columns, format)), next))
                }
            }
        }
    });
    futures::StreamExt::chain(futures::stream::iter([Ok(header)]), pages)
}

fn header(columns: &[String], format: CsvFormat) -> Bytes {
    let mut w = csv::Writer::from_writer(Vec::new());
    let lead: &[&str] = match format {
        CsvFormat::Annotated => &["line", "stage", "reason", "raw"],
        CsvFormat::Reupload => &[],
    };
    let fields = lead
        .iter()
        .copied()
        .chain(columns.iter().map(String::as_str));
    // Writing into a Vec cannot fail.
    let _ = w.write_record(fields);
    Bytes::from(w.into_inner().unwrap_or_default())
}

/// One page of rows as CSV text.
pub fn encode(rows: &[RejectedRow], columns: &[String], format: CsvFormat) -> Bytes {
    let mut out = Vec::new();
    for r in rows {
        let values = values(r, columns);
        match (format, &r.raw) {
            // The record's own text, exactly as it was in the file.
            (CsvFormat::Reupload, Some(raw)) if r.fields.is_none() => {
                out.extend_from_slice(raw.trim_end_matches(['\r', '\n']).as_bytes());
                out.push(b'\n');
            }
            (CsvFormat::Reupload, _) => write_row(&mut out, values.iter().map(String::as_str)),
            (CsvFormat::Annotated, _) => {
                let line = r.line.to_string();
                let lead = [
                    line.as_str(),
                    &r.stage,
                    &r.reason,
                    r.raw.as_deref().unwrap_or(""),
                ];
                write_row(
                    &mut out,
                    lead.into_iter().chain(values.iter().map(String::as_str)),
                );
            }
        }
    }
    Bytes::from(out)
}

fn write_row<'a>(out: &mut Vec<u8>, fields: impl IntoIterator<Item = &'a str>) {
    let mut w = csv::WriterBuilder::new().from_writer(std::mem::take(out));
    let _ = w.write_record(fields);
    *out = w.into_inner().unwrap_or_default();
}

/// The row's values in column order (empty for SQL NULL or when only its raw text is known).
fn values(r: &RejectedRow, columns: &[String]) -> Vec<String> {
    let obj = r.fields.as_ref().and_then(|f| f.as_object());
    columns
        .iter()
        .map(|c| match obj.and_then(|o| o.get(c)) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(line: i64, raw: Option<&str>, fields: Option<serde_json::Value>) -> RejectedRow {
        RejectedRow {
            id: line,
            line,
            stage: if raw.is_some() { "parse" } else { "write" }.to_owned(),
            reason: "bad, \"very\"".to_owned(),
            raw: raw.map(str::to_owned),
            fields,
        }
    }

    #[test]
    fn rows_come_out_annotated_or_ready_to_upload_again() {
        let cols = vec!["id".to_owned(), "name".to_owned()];
        let rows = [
            row(3, Some("1,\"x,y\",extra\r\n"), None),
            row(7, None, Some(serde_json::json!({"id": "2", "name": null}))),
        ];
        let annotated = encode(&rows, &cols, CsvFormat::Annotated);
        assert_eq!(
            std::str::from_utf8(&annotated).unwrap(),
            "3,parse,\"bad, \"\"very\"\"\",\"1,\"\"x,y\"\",extra\r\n\",,\n\
             7,write,\"bad, \"\"very\"\"\",,2,\n"
        );
        let again = encode(&rows, &cols, CsvFormat::Reupload);
        assert_eq!(
            std::str::from_utf8(&again).unwrap(),
            "1,\"x,y\",extra\n2,\n"
        );
        assert_eq!(
            &header(&cols, CsvFormat::Annotated)[..],
            b"line,stage,reason,raw,id,name\n"
        );
        assert_eq!(&header(&cols, CsvFormat::Reupload)[..], b"id,name\n");
    }
}
