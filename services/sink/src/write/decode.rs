//! Message values decoded ahead of their transaction.
//!
//! Decoding a batch's JSON values into COPY CSV is the sink's main CPU work, and it needs nothing
//! from the database. So it runs before the batch waits for its turn on the partition: while one
//! batch of a partition is in its transaction, the next one decodes ([`crate::consume`] keeps two
//! in flight per partition), and the transaction only checks, groups and copies bytes.

use std::ops::Range;

use csvbus_shared::message::Row;

use crate::write::scan::Keys;

use crate::fetch::record::Record;

/// A batch's values as COPY CSV fields (no line ending), with each value's column names.
#[derive(Debug, Default)]
pub struct Decoded {
    csv: Vec<u8>,
    /// Per record: its fields in `csv` and its column names (an index into `headers`), or why
    /// its value is not a row.
    rows: Vec<Result<(Range<usize>, usize), String>>,
    /// The distinct column lists, in order of first use (one per import, as a rule).
    headers: Vec<Vec<String>>,
}

/// One decoded value: its CSV fields and its column names.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    pub csv: &'a [u8],
    pub columns: &'a [String],
}

impl Decoded {
    /// Decodes every record's value.
    pub fn new(records: &[Record]) -> Self {
        let mut out = Self {
            csv: Vec::with_capacity(records.iter().map(|r| r.payload.len()).sum()),
            rows: Vec::with_capacity(records.len()),
            headers: Vec::new(),
        };
        // The keys of the last column list seen: most values have them (one import's rows).
        let mut last: Option<(Keys, usize)> = None;
        for r in records {
            let start = out.csv.len();
            if let Some((keys, header)) = &last {
                if keys.scan(&r.payload, &mut out.csv) {
                    out.rows.push(Ok((start..out.csv.len(), *header)));
                    continue;
                }
            }
            let row = match Row::decode(&r.payload) {
                Ok(row) => {
                    let (range, header) = out.push(&row);
                    if last.as_ref().is_none_or(|l| l.1 != header) {
                        last = Some((Keys::new(&out.headers[header]), header));
                    }
                    Ok((range, header))
                }
                Err(e) => Err(e.to_string()),
            };
            out.rows.push(row);
        }
        out
    }

    /// The `index`th record's fields, or why its value is not a row.
    pub fn get(&self, index: usize) -> Result<Fields<'_>, &str> {
        match &self.rows[index] {
            Ok((range, header)) => Ok(Fields {
                csv: &self.csv[range.clone()],
                columns: &self.headers[*header],
            }),
            Err(reason) => Err(reason),
        }
    }

    fn push(&mut self, row: &Row<'_>) -> (Range<usize>, usize) {
        let start = self.csv.len();
        for (i, (_, v)) in row.fields.iter().enumerate() {
            if i > 0 {
                self.csv.push(b',');
            }
            if let Some(v) = v {
                write_csv_field(&mut self.csv, v);
            }
        }
        (start..self.csv.len(), self.header_index(row))
    }

    fn header_index(&mut self, row: &Row<'_>) -> usize {
        let same = |h: &Vec<String>| {
            h.len() == row.fields.len() && h.iter().zip(&row.fields).all(|(a, (b, _))| a == b)
        };
        if let Some(i) = self.headers.iter().rposition(same) {
            return i;
        }
        self.headers
            .push(row.fields.iter().map(|(k, _)| k.to_string()).collect());
        self.headers.len() - 1
    }
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

    fn rec(payload: &str) -> Record {
        Record {
            offset: 0,
            partition: 0,
            meta: None,
            payload: payload.as_bytes().to_vec().into(),
            ..Record::default()
        }
    }

    #[test]
    fn values_become_quoted_csv_fields_and_share_their_column_lists() {
        let d = Decoded::new(&[
            rec(r#"{"x":"1","y":null}"#),
            rec(r#"{"x":"say \"hi\"","y":""}"#),
            rec("not json"),
            rec(r#"{"z":"3"}"#),
        ]);
        let a = d.get(0).unwrap();
        assert_eq!(a.csv, b"\"1\",");
        assert_eq!(a.columns, ["x", "y"]);
        let b = d.get(1).unwrap();
        assert_eq!(b.csv, b"\"say \"\"hi\"\"\",\"\"");
        assert!(std::ptr::eq(a.columns, b.columns), "one list per header");
        assert!(d.get(2).unwrap_err().contains("JSON"));
        assert_eq!(d.get(3).unwrap().columns, ["z"]);
    }

    #[test]
    fn scanned_and_parsed_values_come_out_alike() {
        let d = Decoded::new(&[
            rec(r#"{"x":"1","y":null}"#),
            rec(r#"{"x":"2","y":"b"}"#),
            rec(r#"{"x":"3\n","y":""}"#),
            rec(r#"{"x":"4","y":"d"}"#),
            rec(r#"{"z":"5"}"#),
            rec(r#"{"x":"6","y":null}"#),
        ]);
        let csv: Vec<&[u8]> = (0..6).map(|i| d.get(i).unwrap().csv).collect();
        let want: [&[u8]; 6] = [
            b"\"1\",",
            b"\"2\",\"b\"",
            b"\"3\n\",\"\"",
            b"\"4\",\"d\"",
            b"\"5\"",
            b"\"6\",",
        ];
        assert_eq!(csv, want);
        assert!(std::ptr::eq(
            d.get(0).unwrap().columns,
            d.get(5).unwrap().columns
        ));
        assert_eq!(d.get(4).unwrap().columns, ["z"]);
    }
}
