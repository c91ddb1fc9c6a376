//! An import's rows read back from the topic, as a CSV body: the import's columns as the
//! header, then its rows in the order of their lines in the original file — merged across
//! partitions, each partition read from the first to the last offset the sink recorded for the
//! import, other imports' messages passed over, a row sent twice (a resumed upload) taken once.
//! Blank lines keep each row on its original line, so a replay's rejected rows name the lines
//! of the file first uploaded. Memory: one consumer per partition, each with a small prefetch.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use bytes::Bytes;
use csvbus_shared::config::CommonConfig;
use csvbus_shared::imports::spans::Span;
use csvbus_shared::message::{RowMeta, Signer, HEADER_SIGNATURE};
use futures::Stream;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use uuid::Uuid;

/// How long a partition may keep the replay waiting for its next message.
const RECV_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the first message of a partition is waited for before reading from earlier.
const FIRST_WAIT: Duration = Duration::from_secs(2);

/// Why a span of the import can no longer be read back whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gone {
    pub partition: i32,
    pub reason: String,
}

/// Whether the partition still holds the start of `span`, given where it now starts (its low
/// watermark). Its end is checked by reading it: a high watermark is not trusted (tansu's
/// counts record batches, not records).
fn judge(span: &Span, low: i64) -> Option<Gone> {
    (low > span.first_offset).then(|| Gone {
        partition: span.partition,
        reason: format!(
            "offsets {}..{} are gone (retention; the partition now starts at {low})",
            span.first_offset,
            low.min(span.last_offset + 1)
        ),
    })
}

/// The spans of `import` the topic no longer holds: by where each partition starts now (its
/// low watermark), then by the messages at each span's ends, which must be the import's rows
/// (a recreated topic has other messages at those offsets, or none). Mid-span holes only a
/// compacted topic would make.
pub async fn missing(
    config: &CommonConfig,
    import: Uuid,
    spans: &[Span],
) -> Result<Vec<Gone>, String> {
    let mut gone = Vec::new();
    for s in spans {
        let (c, topic, p) = (config.clone(), config.topic.clone(), s.partition);
        let (low, _) = tokio::task::spawn_blocking(move || {
            let consumer: StreamConsumer = reader_config(&c).create()?;
            consumer.fetch_watermarks(&topic, p, Duration::from_secs(10))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        if let Some(g) = judge(s, low) {
            gone.push(g);
            continue;
        }
        // Only the first offset: tansu hands out nothing when a fetch starts inside a batch,
        // and a span's last row is often in the middle of one.
        {
            let at = s.first_offset;
            let one = Span {
                partition: s.partition,
                first_offset: at,
                last_offset: at,
            };
            let mut r = PartitionRows::open(config, one, import)?;
            r.max_line = i64::MIN;
            let row = match r.next().await {
                Ok(row) => row,
                Err(ReadError::Gone) => None,
                Err(ReadError::Broker(e)) => return Err(e),
            };
            if row.is_none() {
                gone.push(Gone {
                    partition: s.partition,
                    reason: format!(
                        "offset {at} holds no row of the import (the topic was recreated, or \
                         compacted)"
                    ),
                });
            }
        }
    }
    Ok(gone)
}

fn reader_config(config: &CommonConfig) -> rdkafka::ClientConfig {
    let mut c = csvbus_shared::kafka::service_client(config);
    c.set("group.id", "csvbus-replay")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        // An offset the partition does not have is an error, not a jump elsewhere.
        .set("auto.offset.reset", "earliest")
        .set("queued.max.messages.kbytes", "1024")
        .set("fetch.max.bytes", "1048576")
        .set("max.partition.fetch.bytes", "1048576");
    for (k, v) in &config.kafka_consumer {
        c.set(k, v);
    }
    c
}

/// Why a partition's rows could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The partition does not have the offset asked for.
    Gone,
    Broker(String),
}

impl From<ReadError> for String {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Gone => "the topic no longer holds the import's rows".into(),
            ReadError::Broker(e) => e,
        }
    }
}

/// One partition's rows of the import, in offset order.
struct PartitionRows {
    consumer: StreamConsumer,
    topic: String,
    span: Span,
    /// Where the reading started, and how much earlier it starts next when the broker skipped
    /// the span's first offset: tansu 0.6 answers a fetch that starts inside a record batch
    /// with the next batch, so the batch holding the first row is asked for from before it.
    from: i64,
    back: i64,
    seen: bool,
    import: Uuid,
    signer: Option<Signer>,
    max_line: i64,
    done: bool,
}

impl PartitionRows {
    fn open(config: &CommonConfig, span: Span, import: Uuid) -> Result<Self, String> {
        let consumer: StreamConsumer = reader_config(config).create().map_err(|e| e.to_string())?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &config.topic,
            span.partition,
            Offset::Offset(span.first_offset),
        )
        .map_err(|e| e.to_string())?;
        consumer.assign(&tpl).map_err(|e| e.to_string())?;
        Ok(Self {
            consumer,
            topic: config.topic.clone(),
            span,
            from: span.first_offset,
            back: 1024,
            seen: false,
            import,
            signer: config.signer(),
            max_line: 0,
            done: false,
        })
    }

    /// Starts reading again from further before the span (see [`PartitionRows::from`]).
    fn ask_earlier(&mut self) -> Result<(), ReadError> {
        self.from = (self.from - self.back).max(0);
        self.back = self.back.saturating_mul(4);
        self.seen = false;
        let mut tpl = TopicPartitionList::new();
        let (p, at) = (self.span.partition, Offset::Offset(self.from));
        let broker = |e: rdkafka::error::KafkaError| ReadError::Broker(e.to_string());
        tpl.add_partition_offset(&self.topic, p, at)
            .map_err(broker)?;
        self.consumer.assign(&tpl).map_err(broker)
    }

    /// The next row of the import: its line and message value.
    async fn next(&mut self) -> Result<Option<(i64, Vec<u8>)>, ReadError> {
        while !self.done {
            // The first message gets a short wait: a broker that skips into the next batch has
            // none to give when the first row's batch is the partition's last.
            let wait = if self.seen { RECV_TIMEOUT } else { FIRST_WAIT };
            let m = match tokio::time::timeout(wait, self.consumer.recv()).await {
                Err(_) if !self.seen && self.from > 0 => {
                    self.ask_earlier()?;
                    continue;
                }
                Err(_) => {
                    let p = self.span.partition;
                    return Err(ReadError::Broker(format!("partition {p} did not answer")));
                }
                Ok(m) => m.map_err(|e| match e.rdkafka_error_code() {
                    Some(
                        RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange,
                    ) => ReadError::Gone,
                    _ => ReadError::Broker(e.to_string()),
                })?,
            };
            if !self.seen {
                self.seen = true;
                if m.offset() > self.span.first_offset && self.from > 0 {
                    self.ask_earlier()?;
                    continue;
                }
            }
            if m.offset() < self.span.first_offset {
                continue;
            }
            if m.offset() >= self.span.last_offset {
                self.done = true;
            }
            if m.offset() > self.span.last_offset {
                break;
            }
            let headers = m.headers();
            let pairs = headers
                .iter()
                .flat_map(|h| h.iter())
                .map(|h| (h.key, h.value));
            let Some(meta) = RowMeta::decode(pairs) else {
                continue;
            };
            let payload = m.payload().unwrap_or_default();
            if meta.import != self.import || meta.line <= self.max_line {
                continue;
            }
            if let Some(s) = &self.signer {
                let tag = headers
                    .iter()
                    .flat_map(|h| h.iter())
                    .find(|h| h.key == HEADER_SIGNATURE)
                    .and_then(|h| h.value);
                if !s.verify(&meta, payload, tag) {
                    continue; // the sink did not write it either
                }
            }
            self.max_line = meta.line;
            return Ok(Some((meta.line, payload.to_vec())));
        }
        Ok(None)
    }
}

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
    fn a_span_is_gone_when_the_partition_no_longer_reaches_it() {
        let s = Span {
            partition: 2,
            first_offset: 100,
            last_offset: 200,
        };
        assert_eq!(judge(&s, 0), None);
        assert_eq!(judge(&s, 100), None);
        let g = judge(&s, 150).unwrap();
        assert_eq!(g.partition, 2);
        assert!(g.reason.contains("100..150"), "{g:?}");
        assert!(judge(&s, 300).unwrap().reason.contains("100..201"));
    }

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
