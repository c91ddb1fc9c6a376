//! One partition's rows of an import, read from its first offset to its last: other imports'
//! messages passed over, a row sent twice (a resumed upload) taken once, signatures checked.

use std::time::Duration;

use csvbus_shared::config::CommonConfig;
use csvbus_shared::imports::spans::Span;
use std::collections::VecDeque;

use csvbus_shared::message::{unpack, MetaDecoder, Signer};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use uuid::Uuid;

/// How long a partition may keep the replay waiting for its next message.
const RECV_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the first message of a partition is waited for before reading from earlier.
const FIRST_WAIT: Duration = Duration::from_secs(2);
pub(super) fn reader_config(config: &CommonConfig) -> rdkafka::ClientConfig {
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
pub(super) struct PartitionRows {
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
    pub(super) max_line: i64,
    done: bool,
    /// Rows of a pack read and not yet taken.
    queue: VecDeque<(i64, Vec<u8>)>,
}

impl PartitionRows {
    pub(super) fn open(config: &CommonConfig, span: Span, import: Uuid) -> Result<Self, String> {
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
            queue: VecDeque::new(),
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
    pub(super) async fn next(&mut self) -> Result<Option<(i64, Vec<u8>)>, ReadError> {
        loop {
            if let Some(row) = self.queue.pop_front() {
                return Ok(Some(row));
            }
            if self.done {
                return Ok(None);
            }
            self.read_message().await?;
        }
    }

    /// Reads the next message of the span into the queue (its rows of the import, if any).
    async fn read_message(&mut self) -> Result<(), ReadError> {
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
                if m.offset() > self.span.first_offset {
                    if self.from == 0 {
                        // Read from the partition's start and still past the first row.
                        return Err(ReadError::Gone);
                    }
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
            let rows = rows_of(&m, self.import, self.max_line, self.signer.as_ref());
            if let Some((line, _)) = rows.last() {
                self.max_line = *line;
                self.queue.extend(rows);
                return Ok(());
            }
        }
        Ok(())
    }
}

/// The rows of `import` that `m` holds (one, or a pack's), with their lines: none for another
/// import's message, a row sent again (its line at or below `after_line`), a message not
/// signed with the signing key or a pack that cannot be read (the sink did not write those
/// either).
fn rows_of(
    m: &BorrowedMessage<'_>,
    import: Uuid,
    after_line: i64,
    signer: Option<&Signer>,
) -> Vec<(i64, Vec<u8>)> {
    let headers = m.headers();
    let pairs = headers
        .iter()
        .flat_map(|h| h.iter())
        .map(|h| (h.key, h.value));
    let decoded = MetaDecoder::default().decode(pairs);
    let Some(meta) = decoded.meta.filter(|m| m.import == import) else {
        return Vec::new();
    };
    let payload = m.payload().unwrap_or_default();
    let signed = |ok: bool| signer.is_none() || ok;
    let rows = match decoded.lines {
        None => {
            let ok = signer.is_some_and(|s| s.verify(&meta, payload, decoded.signature));
            if !signed(ok) {
                return Vec::new();
            }
            vec![(meta.line, payload)]
        }
        Some(lines) => {
            let ok =
                signer.is_some_and(|s| s.verify_pack(&meta, lines, payload, decoded.signature));
            if !signed(ok) {
                return Vec::new();
            }
            unpack(meta.line, lines, payload).unwrap_or_default()
        }
    };
    rows.into_iter()
        .filter(|(line, _)| *line > after_line)
        .map(|(line, row)| (line, row.to_vec()))
        .collect()
}
