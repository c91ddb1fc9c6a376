//! The throughput measurements, each against its baseline, repeated `runs` times; and the
//! ratios the report checks.

use crate::cpu::CpuSeries;
use crate::measure::Bench;
use crate::report::{Ratio, Series};
use crate::writer::Refuse;
use crate::{say, sink_config, writer};

/// Every throughput series (seconds per run) and the peak RSS seen while measuring them.
pub struct Throughput {
    pub upload: Series,
    pub raw: Series,
    pub sink: Series,
    pub copy: Series,
    pub e2e: Series,
    pub e2e_atomic: Series,
    pub e2e_upsert: Series,
    /// The same upsert again over the rows the first one wrote: every key there, every row an
    /// `INSERT … ON CONFLICT DO UPDATE` from the staged rows.
    pub e2e_upsert_over: Series,
    /// End to end with `CSVBUS_SIGNING_KEY` on both services: the upload signs, the sink checks.
    pub e2e_signed: Series,
    pub sink_first: Series,
    /// The sink's / the upload service's CPU seconds (user + system) per million rows.
    pub sink_cpu: Series,
    pub upload_cpu: Series,
    pub writer: Series,
    /// The writer on rows the table refuses: all of them (default `max_rejected`), and every
    /// tenth (`max_rejected` at its ceiling, 100,000).
    pub refused_all: Series,
    pub refused_tenth: Series,
    pub consumer: Series,
    pub consumer_first: Series,
    /// The raw consumer's CPU seconds per million rows: the floor of one-message-at-a-time.
    pub consumer_cpu: Series,
    pub batch_consumer: Series,
    /// The machine's CPU during direct COPY, the sink run and end to end.
    pub copy_machine: CpuSeries,
    pub sink_machine: CpuSeries,
    pub e2e_machine: CpuSeries,
    pub rss_upload: Series,
    pub rss_e2e: Series,
    pub rss_sink: Series,
}

impl Throughput {
    fn new(file_mb: f64) -> Self {
        let s = |name: &str| Series::new(name, "s");
        Self {
            upload: s("upload (first byte → 202)"),
            raw: s("raw librdkafka producer"),
            sink: s("sink (start → last commit)"),
            copy: s("direct COPY"),
            e2e: s("end to end (first byte → last commit)"),
            e2e_atomic: s("end to end, mode=atomic (first byte → moved in)"),
            e2e_upsert: s("end to end, mode=upsert (first byte → last commit)"),
            e2e_upsert_over: s("end to end, mode=upsert again over its rows (every key there)"),
            e2e_signed: s("end to end, CSVBUS_SIGNING_KEY on both services"),
            sink_first: s("sink: start → first commit (diagnostic)"),
            sink_cpu: Series::new("sink CPU s (user + system) per million rows", "cpu-s/1M"),
            upload_cpu: Series::new(
                "upload service CPU s (user + system) per million rows",
                "cpu-s/1M",
            ),
            writer: s("sink writer, no broker (diagnostic)"),
            refused_all: s("sink writer, every row refused, max_rejected=100 (write-stage bound)"),
            refused_tenth: s(
                "sink writer, every 10th row refused, max_rejected=100000 (write-stage bound)",
            ),
            consumer: s("raw consumer, fresh group (diagnostic)"),
            consumer_first: s("raw consumer: start → first message (diagnostic)"),
            consumer_cpu: Series::new(
                "raw consumer CPU s (user + system, librdkafka's threads too) per million rows",
                "cpu-s/1M",
            ),
            batch_consumer: s("batch consumer, large fetches (diagnostic)"),
            copy_machine: CpuSeries::new("direct COPY"),
            sink_machine: CpuSeries::new("sink run"),
            e2e_machine: CpuSeries::new("end to end"),
            rss_upload: Series::new(&format!("upload service, {file_mb:.0} MB file"), "B"),
            rss_e2e: Series::new("upload service during end to end", "B"),
            rss_sink: Series::new("sink", "B"),
        }
    }

    /// The ratios of the report: targets first, then the diagnostics.
    pub fn ratios(&self) -> Vec<Ratio> {
        vec![
            Ratio::of_times("upload / raw producer", &self.upload, &self.raw, 0.9),
            Ratio::of_times("sink / direct COPY", &self.sink, &self.copy, 0.7),
            Ratio::of_times("end to end / direct COPY", &self.e2e, &self.copy, 0.55),
            Ratio::of_times(
                "atomic end to end / append end to end",
                &self.e2e_atomic,
                &self.e2e,
                0.6,
            ),
            Ratio::of_times(
                "upsert end to end / append end to end",
                &self.e2e_upsert,
                &self.e2e,
                0.6,
            ),
            Ratio::of_times(
                "(signing) signed end to end / end to end",
                &self.e2e_signed,
                &self.e2e,
                0.9,
            ),
            // A file Postgres refuses costs at most a few times a good one.
            Ratio::of_times(
                "(write-stage bound) good rows / every row refused, max_rejected=100",
                &self.refused_all,
                &self.writer,
                0.33,
            ),
            Ratio::of_times(
                "(write-stage bound) good rows / every 10th refused, max_rejected=100000",
                &self.refused_tenth,
                &self.writer,
                0.1,
            ),
            // Diagnostics: where the sink's time goes (no targets of their own).
            Ratio::of_times(
                "(diagnostic) sink writer without broker / direct COPY",
                &self.writer,
                &self.copy,
                0.8,
            ),
            Ratio::of_times(
                "(diagnostic) sink / raw consumer of the same topic",
                &self.sink,
                &self.consumer,
                0.8,
            ),
            Ratio::of_times(
                "(diagnostic) raw consumer / batch consumer with large fetches",
                &self.consumer,
                &self.batch_consumer,
                0.8,
            ),
        ]
    }

    /// The time series in report order.
    pub fn times(&self) -> Vec<Series> {
        [
            &self.upload,
            &self.raw,
            &self.sink,
            &self.copy,
            &self.e2e,
            &self.e2e_atomic,
            &self.e2e_upsert,
            &self.e2e_upsert_over,
            &self.e2e_signed,
            &self.sink_first,
            &self.sink_cpu,
            &self.upload_cpu,
            &self.writer,
            &self.refused_all,
            &self.refused_tenth,
            &self.consumer,
            &self.consumer_first,
            &self.consumer_cpu,
            &self.batch_consumer,
        ]
        .into_iter()
        .chain(self.copy_machine.series())
        .chain(self.sink_machine.series())
        .chain(self.e2e_machine.series())
        .cloned()
        .collect()
    }
}

/// Runs every throughput measurement `runs` times.
pub async fn throughput(b: &Bench, runs: usize, file_mb: f64) -> anyhow::Result<Throughput> {
    let mut t = Throughput::new(file_mb);
    for run in 1..=runs {
        let step = |what: &str| say(&format!("run {run}/{runs}: {what}"));
        step("raw producer");
        t.raw.runs.push(b.raw_producer().await?);
        step("upload");
        let up = b.upload().await?;
        t.upload.runs.push(up.secs);
        t.upload_cpu.runs.push(up.cpu_secs * 1e6 / b.rows as f64);
        t.rss_upload.runs.push(up.peak_rss as f64);
        step("direct COPY");
        let (secs, machine) = b.copy().await?;
        t.copy.runs.push(secs);
        t.copy_machine.push(&machine, b.rows);
        step("sink");
        let run = b.sink(&up).await?;
        t.sink.runs.push(run.secs);
        t.sink_first.runs.push(run.first);
        t.rss_sink.runs.push(run.peak_rss as f64);
        t.sink_cpu.runs.push(run.cpu_secs * 1e6 / b.rows as f64);
        t.sink_machine.push(&run.machine, b.rows);
        step("sink writer without broker");
        let sink = sink_config();
        let (rows, conc) = (sink.batch_rows, sink.concurrency);
        t.writer
            .runs
            .push(writer::sink_writer(b, rows, conc, Refuse::NONE).await?);
        step("sink writer, rows refused");
        let all = Refuse {
            every: Some(1),
            max_rejected: 100,
        };
        t.refused_all
            .runs
            .push(writer::sink_writer(b, rows, conc, all).await?);
        let tenth = Refuse {
            every: Some(10),
            max_rejected: 100_000,
        };
        t.refused_tenth
            .runs
            .push(writer::sink_writer(b, rows, conc, tenth).await?);
        step("raw consumer");
        let read = b.raw_consumer(&up, false).await?;
        t.consumer_first.runs.push(read.first);
        t.consumer.runs.push(read.secs);
        t.consumer_cpu
            .runs
            .push(read.cpu_secs * 1e6 / b.rows as f64);
        step("batch consumer");
        t.batch_consumer
            .runs
            .push(b.raw_consumer(&up, true).await?.secs);
        step("end to end");
        let e2e = b.end_to_end().await?;
        t.e2e.runs.push(e2e.secs);
        t.rss_e2e.runs.push(e2e.upload_rss as f64);
        t.rss_sink.runs.push(e2e.sink_rss as f64);
        t.e2e_machine.push(&e2e.machine, b.rows);
        for (mode, series) in [("atomic", &mut t.e2e_atomic), ("upsert", &mut t.e2e_upsert)] {
            step(&format!("end to end, mode={mode}"));
            series.runs.push(b.end_to_end_in(mode).await?.secs);
        }
        step("end to end, mode=upsert again over its rows");
        let over = b.end_to_end_over("upsert").await?;
        t.e2e_upsert_over.runs.push(over.secs);
        step("end to end, signed");
        let key = [("CSVBUS_SIGNING_KEY", "bench-signing-key-0123456789abcdef")];
        t.e2e_signed
            .runs
            .push(b.end_to_end_with("append", &key).await?.secs);
    }
    Ok(t)
}

/// The rows on a topic of `partitions` partitions, written by 1 and then by 2 sink processes of
/// one group (on 2 cores this shows the overhead of a second replica, not a speed-up): the two
/// series and their ratio, or nothing when `partitions` is 0.
pub async fn scale_out(b: &Bench, partitions: i32) -> anyhow::Result<Option<(Vec<Series>, Ratio)>> {
    if partitions <= 0 {
        return Ok(None);
    }
    let wide = b.with_partitions(partitions);
    say(&format!("scale-out: upload to {partitions} partitions"));
    let up = wide.upload().await?;
    let mut series = Vec::new();
    for replicas in [1, 2] {
        say(&format!("scale-out: {replicas} sink replica(s)"));
        let mut s = Series::new(
            &format!("sink, {partitions} partitions, {replicas} replica(s) (scale-out)"),
            "s",
        );
        s.runs.push(wide.sinks(&up, replicas).await?.secs);
        series.push(s);
    }
    let ratio = Ratio::of_times(
        &format!("(scale-out) 2 sink replicas / 1 replica, {partitions} partitions"),
        &series[1],
        &series[0],
        1.0,
    );
    Ok(Some((series, ratio)))
}
