//! Reading a topic back in tests.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::Message;

/// One row as a test sees it: a row message, or one row of a pack (its `csvbus-line` header is
/// the row's line, its value the row's object; `rows_in_message` says how many its message
/// held).
#[derive(Debug, Clone)]
pub struct Received {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: serde_json::Value,
    pub headers: HashMap<String, String>,
    pub rows_in_message: usize,
}

/// The rows a message holds, each with its line and value: one for a row message, every row of
/// a pack (read as the contract in docs/api.md says). Panics on a pack that cannot be read.
pub fn message_rows(m: &rdkafka::message::BorrowedMessage<'_>) -> Vec<(i64, Vec<u8>)> {
    use csvbus_shared::message::{unpack, MetaDecoder};
    let pairs = m.headers().into_iter().flat_map(|h| {
        h.iter()
            .map(|x| (x.key, x.value))
            .collect::<Vec<_>>()
            .into_iter()
    });
    let decoded = MetaDecoder::default().decode(pairs);
    let payload = m.payload().unwrap_or_default();
    let line = decoded.meta.as_ref().map_or(0, |meta| meta.line);
    match decoded.lines {
        None => vec![(line, payload.to_vec())],
        Some(lines) => unpack(line, lines, payload)
            .expect("a pack the contract reads")
            .into_iter()
            .map(|(l, v)| (l, v.to_vec()))
            .collect(),
    }
}

/// Reads `topic` from the beginning with a fresh group until `expected` rows arrived, then
/// waits `quiet` more to catch any extra ones.
pub async fn read_topic(
    brokers: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
    quiet: Duration,
) -> Vec<Received> {
    let mut out = Vec::with_capacity(expected);
    scan_topic(brokers, topic, expected, timeout, quiet, |m| {
        let headers: HashMap<String, String> = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| {
                        (
                            x.key.to_owned(),
                            String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let rows = message_rows(m);
        let n = rows.len();
        for (line, value) in rows {
            let mut headers: HashMap<String, String> = headers.clone();
            headers.insert("csvbus-line".into(), line.to_string());
            out.push(Received {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: serde_json::from_slice(&value).expect("JSON value"),
                headers,
                rows_in_message: n,
            });
        }
    })
    .await;
    out
}

/// Reads `topic` from the beginning with a fresh group and hands every message to `each` until
/// `expected` rows arrived (then `quiet` more, to catch extra ones) or `timeout` passed. For
/// topics too big to hold as [`Received`] ([`message_rows`] reads a message's rows). Returns
/// how many rows were read.
pub async fn scan_topic(
    brokers: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
    quiet: Duration,
    mut each: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) -> usize {
    let consumer: StreamConsumer = csvbus_shared::kafka::client_config(brokers)
        .set("group.id", crate::unique("test-scan"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = tokio::time::Instant::now() + timeout;
    let mut n = 0;
    loop {
        let wait = if n >= expected {
            quiet
        } else {
            deadline.saturating_duration_since(tokio::time::Instant::now())
        };
        match tokio::time::timeout(wait, consumer.recv()).await {
            Err(_) => break,
            Ok(Err(e)) => panic!("consume: {e}"),
            Ok(Ok(m)) => {
                each(&m);
                n += message_rows(&m).len();
            }
        }
    }
    n
}
