//! The consumer's fetch loop, on a thread of its own.
//!
//! librdkafka's messages are polled in a tight loop (`BaseConsumer::poll`), copied into owned
//! [`Record`]s and handed to the async loop in chunks: one channel send per chunk instead of one
//! wake-up of the runtime per message. The channel is bounded; when the async loop stops taking
//! chunks (it holds as much as it may), the thread waits, librdkafka's prefetch queue fills up to
//! `queued.max.messages.kbytes`, and fetching stops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use csvbus_shared::message::{MetaDecoder, Signer};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use tokio::sync::mpsc;

use crate::fetch::lag::LagContext;
use crate::fetch::record::Record;

/// The sink's consumer: reports lag through its context.
pub type SinkConsumer = BaseConsumer<LagContext>;

/// Records per chunk handed over (a chunk may pass it by a pack's rows).
const CHUNK: usize = 1024;
/// Chunks waiting in the channel.
const CHANNEL: usize = 4;

/// A consumer and the thread polling it.
pub struct Feed {
    pub consumer: Arc<SinkConsumer>,
    /// Chunks of records (each knows its partition).
    pub rx: mpsc::Receiver<Vec<Record>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Feed {
    /// `signer` checks the signatures of packs of rows as they are read.
    pub fn start(consumer: Arc<SinkConsumer>, signer: Option<Signer>) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (consumer, stop) = (consumer.clone(), stop.clone());
            std::thread::Builder::new()
                .name("csvbus-fetch".into())
                .spawn(move || poll_loop(&consumer, &tx, &stop, signer.as_ref()))
                .expect("spawn the fetch thread")
        };
        Self {
            consumer,
            rx,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the thread (chunks not yet taken are dropped: the stored positions decide what is
    /// fetched again) and leaves the group.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.rx.close();
        while self.rx.try_recv().is_ok() {}
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.consumer.unsubscribe();
    }
}

fn poll_loop(
    consumer: &SinkConsumer,
    tx: &mpsc::Sender<Vec<Record>>,
    stop: &AtomicBool,
    signer: Option<&Signer>,
) {
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut metas = MetaDecoder::default();
    while !stop.load(Ordering::Relaxed) {
        // Wait for a message only when there is nothing to hand over.
        let wait = if chunk.is_empty() {
            Duration::from_millis(100)
        } else {
            Duration::ZERO
        };
        match consumer.poll(wait) {
            Some(Ok(m)) => {
                // A message's rows go into one chunk: batches end at message ends.
                Record::read_or_set_aside(&m, &mut metas, signer, &mut chunk);
                if chunk.len() < CHUNK {
                    continue;
                }
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "consumer error");
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
                    stop_fetching(consumer);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            None => {}
        }
        if !chunk.is_empty() {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            if tx.blocking_send(full).is_err() {
                return;
            }
        }
    }
}

/// Every broker connection was lost: with partitions assigned by hand (the `postgres`
/// assignment: no subscription), stop fetching them until [`crate::assign::claims`] assigns them again
/// from the brokers' committed offsets once the topic is there, so no fetch goes on from a
/// position a broker that lost its log no longer has. Under the group protocol the rebalance
/// after the outage does the same. (Fetches of a topic missing after a broker restart also
/// crashed librdkafka 2.12 until the patch in `vendor/rdkafka-sys`.)
fn stop_fetching(consumer: &SinkConsumer) {
    if consumer.subscription().is_ok_and(|s| s.count() > 0) {
        return;
    }
    let Ok(assigned) = consumer.assignment() else {
        return;
    };
    if assigned.count() > 0 {
        if let Err(e) = consumer.incremental_unassign(&assigned) {
            tracing::warn!(error = %e, "unassigning after losing every broker failed");
        }
    }
}
