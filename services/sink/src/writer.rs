//! One batch of one partition into Postgres, in one transaction, exactly once.
//!
//! The transaction locks the partition's row in `csvbus.sink_offsets`, drops the records below
//! the stored position (already written, by us or by another replica before a rebalance), COPYs
//! the rest, records rejected rows and import counters, and moves the position — then commits.
//! Whatever moment the process dies, either all of that is in the database or none of it.
//!
//! Data errors (SQLSTATE 22, 23; 42 for a table or column that is gone) reject rows: the failing
//! COPY is rolled back to a savepoint and bisected down to the bad rows. Any other error rolls the
//! whole transaction back and is retried with a capped backoff: infrastructure trouble never turns
//! into rejected rows and never moves a position.

use std::collections::HashMap;
use std::ops::Range;
use std::time::{Duration, Instant};

use csvbus_shared::catalog::{quote_ident, TableName};
use csvbus_shared::{db, imports};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::batch::{group, Group, Record};
use crate::stale::positions_are_stale;

/// What one committed batch did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    pub written: u64,
    pub rejected: u64,
    /// Records below the stored position, not written again.
    pub skipped: u64,
    /// The partition's position after the batch.
    pub next_offset: i64,
    /// Set when the batch starts past the stored position (records between were never seen
    /// here): nothing was committed and the consumer must seek back to this offset.
    pub gap: Option<i64>,
}

/// A batch for one partition, offsets ascending.
#[derive(Debug)]
pub struct Batch {
    pub topic: String,
    pub partition: i32,
    pub records: Vec<Record>,
}

struct Reject {
    import: Uuid,
    line: i64,
    index: usize,
    reason: String,
}

/// Writes `batch`, retrying what is worth retrying until it commits; `None` when `stop` was
/// cancelled first (nothing of the batch is committed then).
pub async fn write_with_retry(
    pool: &PgPool,
    group_id: &str,
    batch: &Batch,
    stop: &CancellationToken,
) -> Option<Outcome> {
    let mut delay = Duration::from_millis(100);
    loop {
        let started = Instant::now();
        let attempt = tokio::select! {
            r = write_once(pool, group_id, batch) => r,
            _ = stop.cancelled() => return None,
        };
        match attempt {
            Ok(o) => {
                metrics::histogram!("csvbus_sink_batch_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!("csvbus_sink_batch_rows").record(batch.records.len() as f64);
                metrics::counter!("csvbus_sink_rows_written_total").increment(o.written);
                metrics::counter!("csvbus_sink_rows_rejected_total").increment(o.rejected);
                return Some(o);
            }
            Err(e) => {
                metrics::counter!("csvbus_sink_retries_total").increment(1);
                if db::is_retryable(&e) {
                    tracing::warn!(partition = batch.partition, error = %e, retry_in_ms = delay.as_millis() as u64, "database unavailable; batch will be retried");
                } else {
                    tracing::error!(partition = batch.partition, error = %e, retry_in_ms = delay.as_millis() as u64, "batch failed; retrying");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => return None,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

async fn write_once(pool: &PgPool, group_id: &str, batch: &Batch) -> Result<Outcome, sqlx::Error> {
    let Some(last) = batch.records.last() else {
        return Ok(Outcome::default());
    };
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO csvbus.sink_offsets (group_id, topic, partition, next_offset) VALUES ($1, $2, $3, 0)
         ON CONFLICT DO NOTHING",
    )
    .bind(group_id)
    .bind(&batch.topic)
    .bind(batch.partition)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    let (stored, position_updated): (i64, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "SELECT next_offset, updated_at FROM csvbus.sink_offsets WHERE group_id = $1 AND topic = $2 AND partition = $3 FOR UPDATE",
    )
    .bind(group_id)
    .bind(&batch.topic)
    .bind(batch.partition)
    .fetch_one(&mut *tx)
    .await?;
    let first_new = batch.records.partition_point(|r| r.offset < stored);
    if first_new > 0
        && positions_are_stale(&mut tx, &batch.records[..first_new], position_updated).await?
    {
        tracing::warn!(
            partition = batch.partition,
            stored,
            "stored position is ahead of a recreated topic: starting the partition over"
        );
        set_position(&mut tx, group_id, batch, 0).await?;
        tx.commit().await?;
        return Ok(Outcome {
            gap: Some(0),
            ..Outcome::default()
        });
    }
    let fresh = &batch.records[first_new..];
    let mut outcome = Outcome {
        skipped: first_new as u64,
        next_offset: stored.max(last.offset + 1),
        ..Outcome::default()
    };
    if fresh.is_empty() {
        return Ok(outcome);
    }
    if fresh[0].offset > stored && !inserted {
        tracing::warn!(
            partition = batch.partition,
            stored,
            first = fresh[0].offset,
            "batch starts past the stored position: seeking back"
        );
        outcome.gap = Some(stored);
        outcome.next_offset = stored;
        return Ok(outcome);
    }

    let (groups, invalid) = group(fresh);
    let mut rejects: Vec<Reject> = invalid
        .into_iter()
        .map(|i| Reject {
            import: i.import,
            line: i.line,
            index: i.index,
            reason: i.reason,
        })
        .collect();
    let mut counts: HashMap<Uuid, (i64, i64)> = HashMap::new();
    for g in &groups {
        let written = copy_group(&mut tx, g, &mut rejects).await?;
        counts.entry(g.import).or_default().0 += written as i64;
        outcome.written += written;
    }
    for r in &rejects {
        counts.entry(r.import).or_default().1 += 1;
        let fields: Option<serde_json::Value> =
            serde_json::from_slice(&fresh[r.index].payload).ok();
        sqlx::query(
            "INSERT INTO csvbus.rejected_rows (import_id, line, stage, reason, fields)
             SELECT $1, $2, 'write', $3, $4 WHERE EXISTS (SELECT 1 FROM csvbus.imports WHERE id = $1)",
        )
        .bind(r.import)
        .bind(r.line)
        .bind(&r.reason)
        .bind(fields)
        .execute(&mut *tx)
        .await?;
    }
    outcome.rejected = rejects.len() as u64;
    for (import, (written, rejected)) in counts {
        imports::add_written(&mut tx, import, written, rejected).await?;
    }
    set_position(&mut tx, group_id, batch, outcome.next_offset).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// Moves the partition's stored position (inside the batch's transaction).
async fn set_position(
    conn: &mut PgConnection,
    group_id: &str,
    batch: &Batch,
    next_offset: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE csvbus.sink_offsets SET next_offset = $4, updated_at = now()
          WHERE group_id = $1 AND topic = $2 AND partition = $3",
    )
    .bind(group_id)
    .bind(&batch.topic)
    .bind(batch.partition)
    .bind(next_offset)
    .execute(conn)
    .await?;
    Ok(())
}

/// COPYs a group; on a data error finds the bad rows by bisection. Returns rows written.
async fn copy_group(
    conn: &mut PgConnection,
    g: &Group,
    rejects: &mut Vec<Reject>,
) -> Result<u64, sqlx::Error> {
    let Some(table) = TableName::parse(&g.table, "public") else {
        for (_, line, index) in &g.rows {
            rejects.push(Reject {
                import: g.import,
                line: *line,
                index: *index,
                reason: format!("invalid table name {:?}", g.table),
            });
        }
        return Ok(0);
    };
    let cols: Vec<String> = g.columns.iter().map(|c| quote_ident(c)).collect();
    let stmt = format!(
        "COPY {} ({}) FROM STDIN WITH (FORMAT csv)",
        table.quoted(),
        cols.join(", ")
    );
    let mut written = 0;
    // Ranges of rows still to write, in file order.
    #[allow(clippy::single_range_in_vec_init)]
    let mut todo: Vec<Range<usize>> = vec![0..g.rows.len()];
    while let Some(r) = todo.pop() {
        let bytes = &g.csv[g.rows[r.start].0.start..g.rows[r.end - 1].0.end];
        match copy_in_savepoint(conn, &stmt, bytes).await? {
            Ok(n) => written += n,
            Err((message, whole_group)) => {
                if r.len() == 1 || whole_group {
                    for (_, line, index) in &g.rows[r.clone()] {
                        rejects.push(Reject {
                            import: g.import,
                            line: *line,
                            index: *index,
                            reason: message.clone(),
                        });
                    }
                } else {
                    let mid = r.start + r.len() / 2;
                    todo.push(mid..r.end);
                    todo.push(r.start..mid);
                }
            }
        }
    }
    Ok(written)
}

/// `Ok(Ok(rows))`, or `Ok(Err((message, whole_group)))` for an error caused by the data (rolled
/// back to the savepoint), or `Err` for anything else.
async fn copy_in_savepoint(
    conn: &mut PgConnection,
    stmt: &str,
    bytes: &[u8],
) -> Result<Result<u64, (String, bool)>, sqlx::Error> {
    sqlx::query("SAVEPOINT csvbus_copy")
        .execute(&mut *conn)
        .await?;
    let result = async {
        let mut copy = conn.copy_in_raw(stmt).await?;
        copy.send(bytes).await?;
        copy.finish().await
    }
    .await;
    match result {
        Ok(n) => {
            sqlx::query("RELEASE SAVEPOINT csvbus_copy")
                .execute(&mut *conn)
                .await?;
            Ok(Ok(n))
        }
        Err(e) => {
            let class = match &e {
                sqlx::Error::Database(d) => d.code().map(|c| c[..2].to_owned()),
                _ => None,
            };
            let (data, whole) = match class.as_deref() {
                Some("22") | Some("23") => (true, false),
                // Undefined table/column, permission: no row of the group can be written.
                Some("42") => (true, true),
                _ => (false, false),
            };
            if !data {
                return Err(e);
            }
            sqlx::query("ROLLBACK TO SAVEPOINT csvbus_copy")
                .execute(&mut *conn)
                .await?;
            sqlx::query("RELEASE SAVEPOINT csvbus_copy")
                .execute(&mut *conn)
                .await?;
            let message = match &e {
                sqlx::Error::Database(d) => format!(
                    "{} (SQLSTATE {})",
                    d.message(),
                    d.code().unwrap_or_default()
                ),
                other => other.to_string(),
            };
            Ok(Err((message, whole)))
        }
    }
}
