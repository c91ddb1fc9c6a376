//! A diagnostic: the sink's write path without the broker. The rows are encoded as the upload
//! service would (JSON values, line numbers) and handed to the sink's own writer in batches,
//! partition by partition, with the sink's concurrency — what the sink could do if the broker
//! delivered instantly. Tells the sink's own cost apart from the broker's fetch rate.

use std::sync::Arc;
use std::time::Instant;

use csvbus_shared::catalog::TableName;
use csvbus_shared::message::RowEncoder;
use csvbus_sink::diagnostics::{write_with_retry, Batch, Record, RowMeta, Settings, Signal};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::measure::{unique, Bench};

const PARTITIONS: i32 = 4;

/// Rows the table refuses in a run of the writer: none, or those whose id is a multiple of
/// `every` (a CHECK constraint added for the run), with the import's `max_rejected`.
#[derive(Debug, Clone, Copy)]
pub struct Refuse {
    pub every: Option<u64>,
    pub max_rejected: i64,
}

impl Refuse {
    pub const NONE: Self = Self {
        every: None,
        max_rejected: 100,
    };
}

/// Seconds to write every row through `csvbus_sink::writer` (records built beforehand); the
/// rows the table refuses (`refuse`) go through the write stage's refusal path and bound.
pub async fn sink_writer(
    b: &Bench,
    batch_rows: usize,
    concurrency: usize,
    refuse: Refuse,
) -> anyhow::Result<f64> {
    b.reset_table().await?;
    if let Some(every) = refuse.every {
        sqlx::raw_sql(&format!(
            "ALTER TABLE {} ADD CONSTRAINT refuse_some CHECK (id % {every} <> 0)",
            b.table
        ))
        .execute(&b.pool)
        .await?;
    }
    let table =
        TableName::parse(&b.table, "public").ok_or_else(|| anyhow::anyhow!("table name"))?;
    let mut reader = csv::Reader::from_path(&b.file)?;
    let header: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
    let import = uuid::Uuid::now_v7();
    let mut conn = b.pool.acquire().await?;
    let mut new = csvbus_shared::imports::NewImport::append(import, &table, &header);
    new.max_rejected = refuse.max_rejected;
    csvbus_shared::imports::create(&mut conn, &new).await?;
    // The import is `receiving` while the writer runs, as during an upload (the bound applies).
    let encoder = RowEncoder::new(&header);
    // As the sink's decoder has it: one table shared by the rows of a run.
    let shared_table = std::sync::Arc::new(table.clone());
    let mut parts: Vec<Vec<Record>> = (0..PARTITIONS).map(|_| Vec::new()).collect();
    let mut record = csv::StringRecord::new();
    let mut line = 1i64;
    while reader.read_record(&mut record)? {
        line += 1;
        let mut payload = Vec::with_capacity(200);
        encoder.encode(
            &mut payload,
            record.iter().map(|f| (!f.is_empty()).then_some(f)),
        );
        let partition = (line as usize) % PARTITIONS as usize;
        let p = &mut parts[partition];
        p.push(Record {
            offset: p.len() as i64,
            partition: partition as i32,
            meta: Some(RowMeta {
                import,
                line,
                table: shared_table.clone(),
            }),
            payload: payload.into(),
            ..Record::default()
        });
    }

    let defaults = csvbus_sink::SinkConfig::from_env(&csvbus_shared::config::Env::default())?;
    let settings = Settings {
        group_id: unique("writer"),
        allowed_schemas: vec![table.schema.clone()],
        max_attempts: defaults.max_attempts,
        statement_timeout: defaults.statement_timeout,
        signer: None,
        copy_format: crate::sink_config().copy_format,
        key_conflicts: Default::default(),
        staged: Default::default(),
    };
    let sem = Arc::new(Semaphore::new(concurrency));
    let stop = CancellationToken::new();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (partition, records) in parts.into_iter().enumerate() {
        let (pool, settings, sem, stop) =
            (b.pool.clone(), settings.clone(), sem.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut records = records.into_iter().peekable();
            while records.peek().is_some() {
                let batch = Batch::new(
                    "bench-writer".into(),
                    partition as i32,
                    records.by_ref().take(batch_rows).collect(),
                );
                let _permit = sem.acquire().await?;
                write_with_retry(&pool, &settings, &batch, &stop, &Signal::default())
                    .await
                    .ok_or_else(|| anyhow::anyhow!("writer stopped"))?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed().as_secs_f64())
}
