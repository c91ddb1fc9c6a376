//! One measurement each: the csvbus path and its baseline, against the same broker and table.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;
use sqlx::PgPool;

use crate::cpu::{CpuSnap, CpuUse};
use crate::procs::Proc;

/// What every measurement shares.
pub struct Bench {
    pub pool: PgPool,
    pub database_url: String,
    pub brokers: String,
    pub partitions: i32,
    pub table: String,
    /// DDL to recreate the table (generated input), or `None` to truncate it (given input).
    pub ddl: Option<String>,
    pub file: PathBuf,
    pub rows: u64,
}

/// One measured sink run.
pub struct SinkRun {
    /// From the sink's start to the import's last row committed.
    pub secs: f64,
    /// From the start to the first commit.
    pub first: f64,
    /// The largest peak RSS of the replicas.
    pub peak_rss: u64,
    /// CPU seconds of the replicas, together (start-up included).
    pub cpu_secs: f64,
    /// The machine's CPU over the run.
    pub machine: CpuUse,
}

/// One end-to-end run.
pub struct EndToEnd {
    pub secs: f64,
    pub upload_rss: u64,
    pub sink_rss: u64,
    /// The machine's CPU from the first byte to the last commit.
    pub machine: CpuUse,
}

/// A run of the upload service: its time, peak RSS, and what it left on the topic.
pub struct Uploaded {
    pub secs: f64,
    pub peak_rss: u64,
    /// CPU seconds of the upload service (its start-up included).
    pub cpu_secs: f64,
    pub topic: String,
    pub import_id: String,
}

impl Bench {
    fn env(&self, topic: &str, group: &str) -> Vec<(String, String)> {
        // Tuning knobs given to the harness (CSVBUS_*) reach the services.
        let mut env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("CSVBUS_"))
            .collect();
        env.extend([
            ("DATABASE_URL".into(), self.database_url.clone()),
            ("KAFKA_BROKERS".into(), self.brokers.clone()),
            ("CSVBUS_TOPIC".into(), topic.into()),
            (
                "CSVBUS_TOPIC_PARTITIONS".into(),
                self.partitions.to_string(),
            ),
            ("CSVBUS_SINK_GROUP".into(), group.into()),
        ]);
        env
    }

    pub async fn reset_table(&self) -> anyhow::Result<()> {
        match &self.ddl {
            Some(ddl) => {
                sqlx::raw_sql(&format!("DROP TABLE IF EXISTS {}", self.table))
                    .execute(&self.pool)
                    .await?;
                sqlx::raw_sql(&ddl.replace("{table}", &self.table))
                    .execute(&self.pool)
                    .await?;
            }
            None => {
                sqlx::raw_sql(&format!("TRUNCATE {}", self.table))
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Uploads the file through a fresh upload service on a fresh topic: first byte to `202`.
    pub async fn upload(&self) -> anyhow::Result<Uploaded> {
        let topic = unique("bench");
        let svc = Proc::start(
            "csvbus-upload",
            "CSVBUS_UPLOAD_ADDR",
            &self.env(&topic, "-"),
            true,
        )
        .await?;
        let started = Instant::now();
        let accepted = post_file(&svc, &format!("table={}", self.table), &self.file).await?;
        let secs = started.elapsed().as_secs_f64();
        let peak_rss = svc.peak_rss()?;
        let cpu_secs = svc.cpu_secs()?;
        svc.stop().await?;
        check_accepted(&accepted, self.rows)?;
        Ok(Uploaded {
            secs,
            peak_rss,
            cpu_secs,
            topic,
            import_id: accepted["import_id"].as_str().unwrap_or_default().into(),
        })
    }

    /// `concurrent` uploads of `file` at once to one service (with `extra` settings); its peak
    /// RSS.
    pub async fn upload_memory(
        &self,
        file: &Path,
        rows: u64,
        concurrent: usize,
        extra: &[(&str, String)],
    ) -> anyhow::Result<u64> {
        let topic = unique("bench-mem");
        let mut env = self.env(&topic, "-");
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        // One client sends them all: its share of the upload slots must hold them.
        env.push((
            "CSVBUS_MAX_UPLOADS_PER_CLIENT".to_owned(),
            concurrent.to_string(),
        ));
        let svc = Proc::start("csvbus-upload", "CSVBUS_UPLOAD_ADDR", &env, true).await?;
        let query = format!("table={}", self.table);
        let posts = (0..concurrent).map(|_| post_file(&svc, &query, file));
        for r in futures::future::join_all(posts).await {
            check_accepted(&r?, rows)?;
        }
        let peak = svc.peak_rss()?;
        svc.stop().await?;
        Ok(peak)
    }

    /// The sink, started fresh on the topic of `up`, from its start to the import's last row
    /// committed.
    pub async fn sink(&self, up: &Uploaded) -> anyhow::Result<SinkRun> {
        self.sinks(up, 1).await
    }

    /// `replicas` sink processes of one group started together on the topic of `up`, from
    /// their start to the import's last row committed.
    pub async fn sinks(&self, up: &Uploaded, replicas: usize) -> anyhow::Result<SinkRun> {
        self.reset_table().await?;
        sqlx::query("UPDATE csvbus.imports SET rows_written = 0, rows_write_rejected = 0, rows_set_aside = 0, stopped = false, status = 'produced', finished_at = NULL WHERE id = $1::uuid")
            .bind(&up.import_id)
            .execute(&self.pool)
            .await?;
        // The import's line marks too: an earlier sink run on the same topic left them, and a
        // record at or below its partition's mark is taken for a duplicate.
        sqlx::query("DELETE FROM csvbus.import_partitions WHERE import_id = $1::uuid")
            .bind(&up.import_id)
            .execute(&self.pool)
            .await?;
        let env = self.env(&up.topic, &unique("g"));
        let cpu = CpuSnap::now();
        let started = Instant::now();
        let mut sinks = Vec::new();
        for _ in 0..replicas {
            sinks.push(Proc::start("csvbus-sink", "CSVBUS_SINK_ADDR", &env, false).await?);
        }
        let first = self
            .wait_written(&up.import_id, started, Duration::from_secs(1800))
            .await?;
        let secs = started.elapsed().as_secs_f64();
        let machine = cpu.used();
        let (mut peak, mut cpu_secs) = (0, 0.0);
        for sink in sinks {
            peak = peak.max(sink.peak_rss()?);
            cpu_secs += sink.cpu_secs()?;
            sink.stop().await?;
        }
        Ok(SinkRun {
            secs,
            first,
            peak_rss: peak,
            cpu_secs,
            machine,
        })
    }

    /// The same bench on topics of `partitions` partitions.
    pub fn with_partitions(&self, partitions: i32) -> Self {
        Self {
            pool: self.pool.clone(),
            database_url: self.database_url.clone(),
            brokers: self.brokers.clone(),
            partitions,
            table: self.table.clone(),
            ddl: self.ddl.clone(),
            file: self.file.clone(),
            rows: self.rows,
        }
    }

    /// Upload and sink running together: first byte uploaded to last row committed.
    pub async fn end_to_end(&self) -> anyhow::Result<EndToEnd> {
        self.end_to_end_in("append").await
    }

    /// [`end_to_end`](Self::end_to_end) in an import `mode` (append, atomic, upsert, …), until
    /// the import is `completed` (for atomic: moved into the table).
    pub async fn end_to_end_in(&self, mode: &str) -> anyhow::Result<EndToEnd> {
        self.end_to_end_with(mode, &[]).await
    }

    /// [`end_to_end_in`](Self::end_to_end_in) with `extra` settings on both services.
    pub async fn end_to_end_with(
        &self,
        mode: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<EndToEnd> {
        self.reset_table().await?;
        self.end_to_end_into_table(mode, extra).await
    }

    /// [`end_to_end_in`](Self::end_to_end_in) into the table as the run before left it.
    pub async fn end_to_end_over(&self, mode: &str) -> anyhow::Result<EndToEnd> {
        self.end_to_end_into_table(mode, &[]).await
    }

    async fn end_to_end_into_table(
        &self,
        mode: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<EndToEnd> {
        let topic = unique("bench-e2e");
        let mut env = self.env(&topic, &unique("g"));
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let upload = Proc::start("csvbus-upload", "CSVBUS_UPLOAD_ADDR", &env, true).await?;
        let sink = Proc::start("csvbus-sink", "CSVBUS_SINK_ADDR", &env, true).await?;
        // The sink holds its partitions before the clock starts.
        sink.holds_partitions(self.partitions).await?;
        let cpu = CpuSnap::now();
        let started = Instant::now();
        let query = format!("table={}&mode={mode}", self.table);
        let accepted = post_file(&upload, &query, &self.file).await?;
        check_accepted(&accepted, self.rows)?;
        let id = accepted["import_id"].as_str().unwrap_or_default();
        self.wait_written(id, started, Duration::from_secs(1800))
            .await?;
        self.wait_completed(id, Duration::from_secs(1800)).await?;
        let secs = started.elapsed().as_secs_f64();
        let machine = cpu.used();
        let (upload_rss, sink_rss) = (upload.peak_rss()?, sink.peak_rss()?);
        upload.stop().await?;
        sink.stop().await?;
        Ok(EndToEnd {
            secs,
            upload_rss,
            sink_rss,
            machine,
        })
    }

    /// Waits until the import is `completed`.
    async fn wait_completed(&self, import_id: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let status: String =
                sqlx::query_scalar("SELECT status FROM csvbus.imports WHERE id = $1::uuid")
                    .bind(import_id)
                    .fetch_one(&self.pool)
                    .await?;
            match status.as_str() {
                "completed" => return Ok(()),
                "failed" | "aborted" => bail!("import {import_id} {status}"),
                _ if Instant::now() > deadline => bail!("import {import_id} still {status}"),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Waits until every row of the import is committed; returns the seconds from `started`
    /// to the first committed batch.
    async fn wait_written(
        &self,
        import_id: &str,
        started: Instant,
        timeout: Duration,
    ) -> anyhow::Result<f64> {
        let deadline = Instant::now() + timeout;
        let mut first = None;
        loop {
            let (written, rejected): (i64, i64) = sqlx::query_as(
                "SELECT rows_written, rows_write_rejected FROM csvbus.imports WHERE id = $1::uuid",
            )
            .bind(import_id)
            .fetch_one(&self.pool)
            .await?;
            if written > 0 {
                first.get_or_insert_with(|| started.elapsed().as_secs_f64());
            }
            if (written + rejected) as u64 >= self.rows {
                if rejected > 0 {
                    bail!("{rejected} rows rejected by Postgres");
                }
                return Ok(first.unwrap_or(0.0));
            }
            if Instant::now() > deadline {
                bail!("sink wrote {written} of {} rows in time", self.rows);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Posts `file` to `/v1/imports?{query}`.
async fn post_file(svc: &Proc, query: &str, file: &Path) -> anyhow::Result<Value> {
    let f = tokio::fs::File::open(file).await?;
    let body =
        reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(f, 256 << 10));
    let resp = reqwest::Client::new()
        .post(svc.url(&format!("/v1/imports?{query}")))
        .header("content-type", "text/csv")
        .body(body)
        .send()
        .await?;
    let status = resp.status();
    let v: Value = resp.json().await.context("upload answer")?;
    if status != reqwest::StatusCode::ACCEPTED {
        bail!("upload answered {status}: {v}");
    }
    Ok(v)
}

fn check_accepted(v: &Value, rows: u64) -> anyhow::Result<()> {
    if v["rows_produced"].as_u64() != Some(rows) {
        bail!(
            "upload produced {} rows, expected {rows}",
            v["rows_produced"]
        );
    }
    Ok(())
}
