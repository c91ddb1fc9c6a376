//! Reading a topic back in tests.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::Message;

/// One message as a test sees it.
#[derive(Debug, Clone)]
pub struct Received {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: serde_json::Value,
    pub headers: HashMap<String, String>,
}

/// Reads `topic` from the beginning with a fresh group until `expected` messages arrived, then
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
        let headers = m
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
        out.push(Received {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: serde_json::from_slice(m.payload().unwrap_or_default()).expect("JSON value"),
            headers,
        });
    })
    .await;
    out
}

/// Reads `topic` from the beginning with a fresh group and hands every message to `each` until
/// `expected` arrived (then `quiet` more, to catch extra ones) or `timeout` passed. For topics
/// too big to hold as [`Received`]. Returns how many messages were read.
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
                n += 1;
            }
        }
    }
    n
}
