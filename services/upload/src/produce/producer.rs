//! Producing rows with bounded bytes in flight.
//!
//! Every message an upload sends holds permits of a shared semaphore (one per byte) and counts
//! against the upload's own bound until the broker acknowledges it. At either bound the upload
//! awaits acknowledgements — and meanwhile does not read its body: that is the backpressure.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tokio::sync::Semaphore;

use crate::config::{UploadConfig, MESSAGE_OVERHEAD};
use crate::produce::checkpoint::Ledger;

/// Why a row did not reach the broker.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("broker did not acknowledge a row: {0}")]
    Delivery(KafkaError),
    #[error("the producer was shut down before a row was acknowledged")]
    Cancelled,
}

/// The idempotent, batched producer of the upload service.
pub fn producer(config: &UploadConfig) -> Result<FutureProducer, KafkaError> {
    producer_config(config).create()
}

/// The producer's librdkafka settings: the client-wide ones, csvbus' own, then the operator's
/// producer settings.
pub fn producer_config(config: &UploadConfig) -> ClientConfig {
    let mut c: ClientConfig = csvbus_shared::kafka::service_client(&config.common);
    let queue_kb = (config.inflight_bytes_total / 1024 * 2).max(16 * 1024);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", &config.producer_compression)
        .set("linger.ms", config.producer_linger_ms.to_string())
        .set("batch.size", config.producer_batch_bytes.to_string())
        .set(
            "message.timeout.ms",
            config.delivery_timeout.as_millis().to_string(),
        )
        .set("message.max.bytes", config.max_message_bytes.to_string())
        .set("queue.buffering.max.kbytes", queue_kb.to_string())
        .set("queue.buffering.max.messages", "1000000");
    for (k, v) in &config.common.kafka_producer {
        c.set(k, v);
    }
    c
}

/// One message awaiting its acknowledgement.
struct Pending {
    delivery: DeliveryFuture,
    bytes: u32,
    sent: Instant,
    rows: Rows,
}

/// The rows of one message: how many, and their places in the [`Ledger`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rows {
    pub count: u32,
    pub seqs: Vec<u64>,
}

/// A finished delivery: its result, bytes, latency and rows.
type Delivered = (Result<(), ProduceError>, u32, Duration, Rows);

impl Future for Pending {
    type Output = Delivered;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let elapsed = self.sent.elapsed();
        let this = &mut *self;
        let r = match Pin::new(&mut this.delivery).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(Ok(_))) => Ok(()),
            Poll::Ready(Ok(Err((e, _)))) => Err(ProduceError::Delivery(e)),
            Poll::Ready(Err(_)) => Err(ProduceError::Cancelled),
        };
        Poll::Ready((r, this.bytes, elapsed, std::mem::take(&mut this.rows)))
    }
}

/// The messages one upload has in flight.
pub struct InFlight {
    producer: FutureProducer,
    topic: String,
    shared: Arc<Semaphore>,
    /// Permits of `shared` this upload holds: given back as acks arrive, or on drop.
    held: u64,
    limit: u64,
    pending: FuturesUnordered<Pending>,
    /// Rows acknowledged so far.
    pub acked: u64,
    /// Records since the checkpoint (what a retry may skip).
    pub ledger: Ledger,
    /// A delivery failed in a way that breaks the producer (see [`InFlight::producer_broken`]).
    broken: bool,
    /// The metrics every row moves, looked up once (a lookup per row was ~3 % of the
    /// service's CPU).
    inflight_bytes: metrics::Gauge,
    delivery_seconds: metrics::Histogram,
}

/// One message: where it goes, what it holds.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    pub payload: &'a [u8],
    pub key: Option<&'a [u8]>,
    /// Set for rows without a key: partitions are chosen by line, the same on every attempt.
    pub partition: Option<i32>,
    /// Its rows, already in the ledger.
    pub rows: Rows,
}

impl InFlight {
    pub fn new(
        producer: FutureProducer,
        topic: String,
        shared: Arc<Semaphore>,
        limit: u64,
        ledger: Ledger,
    ) -> Self {
        Self {
            ledger,
            broken: false,
            producer,
            topic,
            shared,
            held: 0,
            limit,
            pending: FuturesUnordered::new(),
            acked: 0,
            inflight_bytes: metrics::gauge!("csvbus_upload_inflight_bytes"),
            delivery_seconds: metrics::histogram!("csvbus_upload_delivery_seconds"),
        }
    }

    /// Whether the producer cannot be trusted to go on: a fatal error, an error of the
    /// idempotent producer's state that every later message would get too, or a message that
    /// timed out (after a broker restart that lost the producer's state, librdkafka's
    /// idempotent producer was seen timing out every message from then on).
    pub fn producer_broken(&self) -> bool {
        use rdkafka::producer::Producer;
        self.broken || self.producer.client().fatal_error().is_some()
    }

    /// Sends one message; first waits, if needed, until both bounds have room for it.
    pub async fn send(
        &mut self,
        row: Message<'_>,
        headers: OwnedHeaders,
    ) -> Result<(), ProduceError> {
        let Message {
            payload,
            key,
            partition,
            rows,
        } = row;
        let size = (payload.len() + key.map_or(0, <[u8]>::len) + MESSAGE_OVERHEAD) as u32;
        while self.held + u64::from(size) > self.limit && !self.pending.is_empty() {
            self.complete_one().await?;
        }
        // The shared bound: wait for permits, taking our own acks meanwhile so that permits we
        // hold for already-acknowledged rows are given back.
        loop {
            if let Ok(p) = self.shared.clone().try_acquire_many_owned(size) {
                p.forget();
                break;
            }
            if self.pending.is_empty() {
                let p = self
                    .shared
                    .clone()
                    .acquire_many_owned(size)
                    .await
                    .map_err(|_| ProduceError::Cancelled)?;
                p.forget();
                break;
            }
            tokio::select! {
                p = self.shared.clone().acquire_many_owned(size) => {
                    p.map_err(|_| ProduceError::Cancelled)?.forget();
                    break;
                }
                _ = self.complete_one() => {}
            }
        }
        self.held += u64::from(size);
        self.inflight_bytes.increment(f64::from(size));
        let mut headers = Some(headers);
        loop {
            let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic).payload(payload);
            if let Some(k) = key {
                record = record.key(k);
            }
            if let Some(h) = headers.take() {
                record = record.headers(h);
            }
            if let Some(p) = partition {
                record = record.partition(p);
            }
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    self.pending.push(Pending {
                        delivery,
                        bytes: size,
                        sent: Instant::now(),
                        rows,
                    });
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), rec)) => {
                    headers = rec.headers;
                    if self.pending.is_empty() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    } else {
                        self.complete_one().await?;
                    }
                }
                Err((e, _)) => {
                    self.release(size);
                    return Err(ProduceError::Delivery(e));
                }
            }
        }
    }

    /// Takes the acknowledgements that have arrived, without waiting.
    pub fn poll_acks(&mut self) -> Result<(), ProduceError> {
        while let Some(Some(r)) = futures::FutureExt::now_or_never(self.pending.next()) {
            self.account(r)?;
        }
        Ok(())
    }

    /// Waits for every row in flight.
    pub async fn drain(&mut self) -> Result<(), ProduceError> {
        while !self.pending.is_empty() {
            self.complete_one().await?;
        }
        Ok(())
    }

    /// Whether messages await their acknowledgement.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Waits for the next acknowledgement (at once when nothing is in flight).
    pub async fn complete_one(&mut self) -> Result<(), ProduceError> {
        match self.pending.next().await {
            Some(r) => self.account(r),
            None => Ok(()),
        }
    }

    fn account(&mut self, (r, bytes, latency, rows): Delivered) -> Result<(), ProduceError> {
        self.release(bytes);
        self.delivery_seconds.record(latency.as_secs_f64());
        if let Err(ProduceError::Delivery(KafkaError::MessageProduction(code))) = &r {
            self.broken |= matches!(
                code,
                RDKafkaErrorCode::MessageTimedOut
                    | RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::OutOfOrderSequenceNumber
                    | RDKafkaErrorCode::UnknownProducerId
                    | RDKafkaErrorCode::InvalidProducerIdMapping
            );
        }
        r?;
        self.acked += u64::from(rows.count);
        self.ledger.done(&rows.seqs);
        Ok(())
    }

    fn release(&mut self, bytes: u32) {
        self.held -= u64::from(bytes);
        self.shared.add_permits(bytes as usize);
        self.inflight_bytes.decrement(f64::from(bytes));
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // An upload that ends early (client gone, error) gives its share back at once; rows
        // still queued in librdkafka are bounded by its own queue limits.
        if self.held > 0 {
            self.shared.add_permits(self.held as usize);
            self.inflight_bytes.decrement(self.held as f64);
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_producer_has_the_client_wide_settings_and_its_own_win() {
        let env = csvbus_shared::config::Env::from_pairs([
            ("CSVBUS_KAFKA_CLIENT_SECURITY_PROTOCOL", "ssl"),
            ("CSVBUS_KAFKA_CLIENT_LINGER_MS", "1"),
            ("CSVBUS_KAFKA_PRODUCER_LINGER_MS", "7"),
        ]);
        let c = producer_config(&UploadConfig::from_env(&env).unwrap());
        assert_eq!(c.get("security.protocol"), Some("ssl"));
        assert_eq!(c.get("linger.ms"), Some("7"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
    }
    use super::*;
    use csvbus_shared::imports::Checkpoint;
    use rdkafka::ClientConfig;

    /// A producer whose broker never answers (nothing listens on the port): sent rows stay in
    /// flight, unacknowledged.
    fn unanswered() -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9")
            .set("message.timeout.ms", "60000")
            .create()
            .unwrap()
    }

    fn row(payload: &[u8]) -> Message<'_> {
        Message {
            payload,
            key: None,
            partition: Some(0),
            rows: Rows {
                count: 1,
                seqs: vec![0],
            },
        }
    }

    #[tokio::test]
    async fn sends_wait_at_the_upload_bound_and_the_shared_bound_and_give_permits_back() {
        let size = (100 + MESSAGE_OVERHEAD) as u64;
        let shared = Arc::new(Semaphore::new(10 * size as usize));
        let payload = [b'x'; 100];
        // This upload may hold two messages' bytes.
        let mut a = InFlight::new(
            unanswered(),
            "t".into(),
            shared.clone(),
            2 * size,
            Ledger::new(Checkpoint::default()),
        );
        for _ in 0..2 {
            a.send(row(&payload), OwnedHeaders::new()).await.unwrap();
        }
        assert_eq!(a.held, 2 * size);
        assert_eq!(shared.available_permits(), 8 * size as usize);
        // A third waits for an acknowledgement that does not come.
        let third = tokio::time::timeout(
            Duration::from_millis(300),
            a.send(row(&payload), OwnedHeaders::new()),
        )
        .await;
        assert!(
            third.is_err(),
            "the upload's bound let a third message through"
        );
        // Another upload may take what is left of the shared bound, and waits past it.
        let mut b = InFlight::new(
            unanswered(),
            "t".into(),
            shared.clone(),
            100 * size,
            Ledger::new(Checkpoint::default()),
        );
        for _ in 0..8 {
            b.send(row(&payload), OwnedHeaders::new()).await.unwrap();
        }
        assert_eq!(shared.available_permits(), 0);
        let ninth = tokio::time::timeout(
            Duration::from_millis(300),
            b.send(row(&payload), OwnedHeaders::new()),
        )
        .await;
        assert!(ninth.is_err(), "the shared bound let a message through");
        // Ending an upload gives its share back at once.
        drop(a);
        assert_eq!(shared.available_permits(), 2 * size as usize);
        drop(b);
        assert_eq!(shared.available_permits(), 10 * size as usize);
    }
}
