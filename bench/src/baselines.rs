//! The baselines csvbus is measured against: direct `COPY` of the file, a minimal librdkafka
//! producer of the same rows, and minimal consumers of the same topic (with the sink's fetch
//! settings, and a batch reader with large fetches).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use csvbus_shared::message::RowEncoder;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use tokio::io::AsyncReadExt;

use crate::cpu::{CpuSnap, CpuUse};
use crate::measure::{unique, Bench, Uploaded};

impl Bench {
    /// `COPY … FROM STDIN (FORMAT csv, HEADER)` of the file into the truncated table.
    pub async fn copy(&self) -> anyhow::Result<(f64, CpuUse)> {
        self.reset_table().await?;
        let mut conn = self.pool.acquire().await?;
        let cpu = CpuSnap::now();
        let started = Instant::now();
        let mut copy = conn
            .copy_in_raw(&format!(
                "COPY {} FROM STDIN (FORMAT csv, HEADER true)",
                self.table
            ))
            .await?;
        let mut f = tokio::fs::File::open(&self.file).await?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            copy.send(&buf[..n]).await?;
        }
        let n = copy.finish().await?;
        if n != self.rows {
            bail!("COPY wrote {n} rows, expected {}", self.rows);
        }
        Ok((started.elapsed().as_secs_f64(), cpu.used()))
    }

    /// The same rows, encoded the same way, produced by a minimal librdkafka producer with
    /// good settings (idempotent, acks=all, lz4, linger 5 ms, 1 MB batches).
    pub async fn raw_producer(&self) -> anyhow::Result<f64> {
        let topic = unique("bench-raw");
        csvbus_shared::kafka::ensure_topic(
            &csvbus_shared::kafka::client_config(&self.brokers),
            &topic,
            self.partitions,
        )
        .await?;
        let (brokers, file, rows) = (self.brokers.clone(), self.file.clone(), self.rows);
        tokio::task::spawn_blocking(move || raw_produce(&brokers, &topic, &file, rows)).await?
    }

    /// A diagnostic, not a target: a minimal consumer reading the topic of `up` from a fresh
    /// group (join included) until every row arrived; (seconds to the first message, total).
    /// It polls librdkafka in a loop on a thread of its own with the sink's prefetch settings
    /// (`csvbus_sink::fetch_settings`), as the sink does; `tuned` uses large fetches
    /// instead (100 MB per request, 16 MB per partition, 1 MB minimum, 100 ms wait, 1M messages
    /// queued) — the batch reader the raw consumer is checked against. Also its CPU seconds
    /// (this process, librdkafka's threads included; nothing else runs in it meanwhile): the
    /// floor of what reading one message at a time costs, below which the sink cannot go.
    pub async fn raw_consumer(&self, up: &Uploaded, tuned: bool) -> anyhow::Result<RawRead> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let started = Instant::now();
        let cpu = crate::procs::process_cpu_secs("self")?;
        let mut config = csvbus_shared::kafka::client_config(&self.brokers);
        config
            .set("group.id", unique("raw"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false");
        if !tuned {
            let sink =
                csvbus_sink::SinkConfig::from_env(&csvbus_shared::config::Env::from_process())?;
            for (k, v) in csvbus_sink::fetch_settings(&sink) {
                config.set(k, v);
            }
        } else {
            config
                .set("fetch.max.bytes", "104857600")
                .set("max.partition.fetch.bytes", "16777216")
                .set("fetch.min.bytes", "1048576")
                .set("fetch.wait.max.ms", "100")
                .set("queued.min.messages", "1000000");
        }
        let consumer: BaseConsumer = config.create()?;
        consumer.subscribe(&[&up.topic])?;
        let rows = self.rows;
        tokio::task::spawn_blocking(move || {
            let mut first = None;
            let mut seen = 0;
            let deadline = Instant::now() + Duration::from_secs(600);
            while seen < rows {
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        seen += rows_in(&m);
                        first.get_or_insert_with(|| started.elapsed().as_secs_f64());
                    }
                    Some(Err(e)) => bail!("consumer: {e}"),
                    None if Instant::now() > deadline => bail!("{seen} of {rows} rows read"),
                    None => {}
                }
            }
            Ok(RawRead {
                first: first.unwrap_or(0.0),
                secs: started.elapsed().as_secs_f64(),
                cpu_secs: crate::procs::process_cpu_secs("self")? - cpu,
            })
        })
        .await?
    }
}

/// Rows in a message: one, or a pack's (its `csvbus-lines` header counted, nothing parsed).
fn rows_in(m: &rdkafka::message::BorrowedMessage<'_>) -> u64 {
    use rdkafka::message::{Headers, Message};
    let lines = m.headers().and_then(|h| {
        h.iter()
            .find(|h| h.key == csvbus_shared::message::HEADER_LINES)
            .and_then(|h| h.value)
    });
    lines.map_or(1, |l| 1 + commas(l))
}

fn commas(lines: &[u8]) -> u64 {
    lines.iter().filter(|b| **b == b',').count() as u64
}

/// What a minimal consumer took to read a topic: seconds to the first message and to the
/// last, and CPU seconds.
pub struct RawRead {
    pub first: f64,
    pub secs: f64,
    pub cpu_secs: f64,
}

struct Deliveries {
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        if r.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The baseline producer: CSV records (the `csv` crate) → the csvbus JSON value and headers →
/// librdkafka, as fast as its queue takes them; done when every message is acknowledged.
fn raw_produce(brokers: &str, topic: &str, file: &Path, rows: u64) -> anyhow::Result<f64> {
    let ctx = Deliveries {
        failed: AtomicU64::new(0),
    };
    let producer: ThreadedProducer<Deliveries> = csvbus_shared::kafka::client_config(brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "65536")
        .create_with_context(ctx)?;
    let started = Instant::now();
    let mut reader =
        csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(std::io::BufReader::with_capacity(
                1 << 20,
                std::fs::File::open(file)?,
            ));
    let header: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
    let encoder = RowEncoder::new(&header);
    let import = uuid::Uuid::now_v7().to_string();
    let mut record = csv::StringRecord::new();
    let mut value = Vec::with_capacity(1024);
    let mut line = 1u64;
    let mut n = 0u64;
    while reader.read_record(&mut record)? {
        line += 1;
        value.clear();
        encoder.encode(
            &mut value,
            record.iter().map(|f| (!f.is_empty()).then_some(f)),
        );
        let line_text = line.to_string();
        let headers = OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: "csvbus-import",
                value: Some(&import),
            })
            .insert(Header {
                key: "csvbus-line",
                value: Some(&line_text),
            });
        let mut rec = BaseRecord::<(), _>::to(topic)
            .payload(&value)
            .headers(headers);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((e, back))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    std::thread::sleep(Duration::from_millis(1));
                    rec = back;
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        n += 1;
    }
    producer.flush(Duration::from_secs(300))?;
    let secs = started.elapsed().as_secs_f64();
    let failed = producer.context().failed.load(Ordering::Relaxed);
    if n != rows || failed > 0 {
        bail!("raw producer sent {n} of {rows} rows, {failed} failed");
    }
    Ok(secs)
}
