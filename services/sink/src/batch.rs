//! Rows of one partition gathered for one transaction, and their encoding for `COPY … CSV`.

use std::ops::Range;

use csvbus_shared::message::{Row, HEADER_IMPORT, HEADER_LINE, HEADER_TABLE};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message;
use uuid::Uuid;

/// One message, owned, as the consumer received it.
#[derive(Debug, Clone)]
pub struct Record {
    pub offset: i64,
    /// `None` when the message is not a csvbus row (it is skipped, its offset still covered).
    pub meta: Option<Meta>,
    pub payload: Vec<u8>,
    pub debug_headers: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub import: Uuid,
    pub line: i64,
    pub table: String,
}

impl Record {
    pub fn from_message(m: &BorrowedMessage<'_>) -> Self {
        let header = |name: &str| -> Option<String> {
            m.headers()?
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_owned)
        };
        let meta = (|| {
            Some(Meta {
                import: header(HEADER_IMPORT)?.parse().ok()?,
                line: header(HEADER_LINE)?.parse().ok()?,
                table: header(HEADER_TABLE)?,
            })
        })();
        let debug_headers = if meta.is_none() {
            Some(
                m.headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| {
                                format!("{}={:?}", x.key, x.value.map(String::from_utf8_lossy))
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            )
        } else {
            None
        };
        Self {
            offset: m.offset(),
            debug_headers,
            meta,
            payload: m.payload().unwrap_or_default().to_vec(),
        }
    }
}

/// Rows of one import (one table, one column list), encoded as COPY CSV lines.
#[derive(Debug)]
pub struct Group {
    pub import: Uuid,
    pub table: String,
    pub columns: Vec<String>,
    pub csv: Vec<u8>,
    /// Per row: its bytes in `csv`, its line and its index in the batch.
    pub rows: Vec<(Range<usize>, i64, usize)>,
}

/// A row that cannot be written whatever the database says.
#[derive(Debug)]
pub struct Invalid {
    pub import: Uuid,
    pub line: i64,
    pub index: usize,
    pub reason: String,
}

/// Splits records into groups of consecutive imports (order kept), decoding each value.
pub fn group(records: &[Record]) -> (Vec<Group>, Vec<Invalid>) {
    let mut groups: Vec<Group> = Vec::new();
    let mut invalid = Vec::new();
    for (index, r) in records.iter().enumerate() {
        let Some(meta) = &r.meta else {
            tracing::warn!(offset = r.offset, headers = ?r.debug_headers, "message without csvbus headers skipped");
            metrics::counter!("csvbus_sink_foreign_messages_total").increment(1);
            continue;
        };
        let row = match Row::decode(&r.payload) {
            Ok(row) => row,
            Err(e) => {
                invalid.push(Invalid {
                    import: meta.import,
                    line: meta.line,
                    index,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let same = groups.last().is_some_and(|g| {
            g.import == meta.import
                && g.table == meta.table
                && g.columns.len() == row.fields.len()
                && g.columns.iter().zip(&row.fields).all(|(c, (k, _))| c == k)
        });
        if !same {
            groups.push(Group {
                import: meta.import,
                table: meta.table.clone(),
                columns: row.fields.iter().map(|(k, _)| k.to_string()).collect(),
                csv: Vec::with_capacity(r.payload.len() * 64),
                rows: Vec::new(),
            });
        }
        let g = groups.last_mut().expect("pushed above");
        let start = g.csv.len();
        for (i, (_, v)) in row.fields.iter().enumerate() {
            if i > 0 {
                g.csv.push(b',');
            }
            if let Some(v) = v {
                write_csv_field(&mut g.csv, v);
            }
        }
        g.csv.push(b'\n');
        g.rows.push((start..g.csv.len(), meta.line, index));
    }
    (groups, invalid)
}

/// A non-NULL value, always quoted (so an empty string is not NULL), quotes doubled.
fn write_csv_field(out: &mut Vec<u8>, v: &str) {
    out.push(b'"');
    for b in v.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset: i64, import: Uuid, line: i64, payload: &str) -> Record {
        Record {
            offset,
            meta: Some(Meta {
                import,
                line,
                table: "public.t".into(),
            }),
            payload: payload.as_bytes().to_vec(),
            debug_headers: None,
        }
    }

    #[test]
    fn groups_follow_imports_and_encode_nulls_and_quotes() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let records = vec![
            rec(0, a, 2, r#"{"x":"1","y":null}"#),
            rec(1, a, 3, r#"{"x":"say \"hi\"","y":""}"#),
            rec(2, b, 2, r#"{"x":"3"}"#),
            rec(3, b, 3, "not json"),
            Record {
                offset: 4,
                meta: None,
                payload: vec![],
                debug_headers: None,
            },
        ];
        let (groups, invalid) = group(&records);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].columns, ["x", "y"]);
        assert_eq!(
            std::str::from_utf8(&groups[0].csv).unwrap(),
            "\"1\",\n\"say \"\"hi\"\"\",\"\"\n"
        );
        assert_eq!(groups[0].rows[1].1, 3);
        assert_eq!(groups[1].columns, ["x"]);
        assert_eq!(invalid.len(), 1);
        assert_eq!((invalid[0].line, invalid[0].index), (3, 3));
    }
}
