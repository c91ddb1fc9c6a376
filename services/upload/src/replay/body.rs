//! An import's rows read back from the topic, as a CSV body: the import's columns as the
//! header, then its rows in the order of their lines in the original file, merged across
//! partitions ([`PartitionRows`] each). Blank lines keep each row on its original line, so a
//! replay's rejected rows name the lines of the file first uploaded. Memory: one consumer per
//! partition, each with a small prefetch, and about 64 KiB of CSV text.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use bytes::Bytes;
use csvbus_shared::config::CommonConfig;
use csvbus_shared::imports::spans::Span;
use futures::Stream;
use uuid::Uuid;

use super::reader::{PartitionRows, ReadError};

/// The CSV body of the import's rows: `columns` as the header, then each row's values (SQL
/// NULL as an empty unquoted field, an empty string as `""`).
pub fn csv_body(
    config: CommonConfig,
    import: Uuid,
    columns: Vec<String>,
    spans: Vec<Span>,
    rows: i64,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let merge = Merge {
        expected: rows,
        read: 0,
        config,
        import,
        spans,
        readers: Vec::new(),
        heads: BinaryHeap::new(),
        values: Vec::new(),
        out: Writer::new(&columns),
        columns,
        started: false,
    };
    futures::stream::try_unfold(merge, |mut m| async move {
        let chunk = m.next_chunk().await.map_err(std::io::Error::other)?;
        Ok(chunk.map(|c| (c, m)))
    })
}

/// The partitions' rows merged by line.
struct Merge {
    config: CommonConfig,
    import: Uuid,
    spans: Vec<Span>,
    readers: Vec<PartitionRows>,
    /// The next row of each partition that has one: (line, partition index).
    heads: BinaryHeap<Reverse<(i64, usize)>>,
    values: Vec<Vec<u8>>,
    columns: Vec<String>,
    out: Writer,
    started: bool,
    /// The rows the original produced, and how many were read back.
    expected: i64,
    read: i64,
}

impl Merge {
    /// The next piece of CSV text (about 64 KiB), `None` after the last row.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, String> {
        if !self.started {
            self.started = true;
            for s in std::mem::take(&mut self.spans) {
                self.readers
                    .push(PartitionRows::open(&self.config, s, self.import)?);
            }
            self.values = vec![Vec::new(); self.readers.len()];
            for i in 0..self.readers.len() {
                self.refill(i).await.map_err(String::from)?;
            }
        }
        while let Some(Reverse((line, i))) = self.heads.pop() {
            self.out.row(line, &self.columns, &self.values[i])?;
            self.read += 1;
            self.refill(i).await.map_err(String::from)?;
            if self.out.buf.len() >= 64 * 1024 {
                return Ok(Some(self.out.take()));
            }
        }
        if self.read < self.expected {
            // Never a replay that silently leaves rows out.
            return Err(format!(
                "the topic held {} of the import's {} rows (a compacted topic?)",
                self.read, self.expected
            ));
        }
        Ok((!self.out.buf.is_empty()).then(|| self.out.take()))
    }

    async fn refill(&mut self, i: usize) -> Result<(), ReadError> {
        if let Some((line, v)) = self.readers[i].next().await? {
            self.heads.push(Reverse((line, i)));
            self.values[i] = v;
        }
        Ok(())
    }
}

/// CSV text of the rows, each on the line it had in the original file.
struct Writer {
    buf: Vec<u8>,
    line: i64,
}

impl Writer {
    fn new(columns: &[String]) -> Self {
        let mut w = Self {
            buf: Vec::with_capacity(80 * 1024),
            line: 2,
        };
        for (i, c) in columns.iter().enumerate() {
            if i > 0 {
                w.buf.push(b',');
            }
            w.field(c);
        }
        w.buf.push(b'\n');
        w
    }

    fn take(&mut self) -> Bytes {
        Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(80 * 1024),
        ))
    }

    /// A field, quoted when it must be (and always when it is empty: `""` is an empty string,
    /// an empty unquoted field is NULL).
    fn field(&mut self, s: &str) {
        if s.is_empty() || s.contains([',', '"', '\n', '\r']) {
            self.buf.push(b'"');
            for b in s.bytes() {
                if b == b'"' {
                    self.buf.push(b'"');
                }
                self.buf.push(b);
            }
            self.buf.push(b'"');
        } else {
            self.buf.extend_from_slice(s.as_bytes());
        }
    }

    /// Writes the row at `line` of the original file from its message value.
    fn row(&mut self, line: i64, columns: &[String], value: &[u8]) -> Result<(), String> {
        let row: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(value).map_err(|e| format!("a row on the topic: {e}"))?;
        while self.line < line {
            self.buf.push(b'\n');
            self.line += 1;
        }
        for (i, c) in columns.iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            if let Some(serde_json::Value::String(s)) = row.get(c) {
                self.field(s);
            }
        }
        self.buf.push(b'\n');
        // A value with line breaks spans more lines, as the record did in the file.
        self.line += 1 + row
            .values()
            .filter_map(serde_json::Value::as_str)
            .map(|s| s.matches('\n').count() as i64)
            .sum::<i64>();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_keep_their_lines_and_nulls_differ_from_empty_strings() {
        let cols = vec!["id".to_owned(), "note".to_owned(), "n".to_owned()];
        let mut w = Writer::new(&cols);
        w.row(2, &cols, br#"{"id":"1","note":"a, \"b\"","n":null}"#)
            .unwrap();
        w.row(5, &cols, br#"{"id":"2","note":"","n":"x\ny"}"#)
            .unwrap();
        w.row(7, &cols, br#"{"id":"3","note":"c","n":"4"}"#)
            .unwrap();
        let text = String::from_utf8(w.take().to_vec()).unwrap();
        assert_eq!(
            text,
            "id,note,n\n1,\"a, \"\"b\"\"\",\n\n\n2,\"\",\"x\ny\"\n3,c,4\n"
        );
    }
}
