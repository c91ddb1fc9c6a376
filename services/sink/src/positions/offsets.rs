//! The partition's position in Postgres: the truth for exactly-once.
//!
//! A batch's transaction locks its partition's row in `csvbus.sink_offsets`, drops the records
//! below the stored position (already written, by us or by another replica before a rebalance),
//! refuses a batch that starts past it (records between were never seen here: the consumer seeks
//! back), and moves it in the same transaction as the rows.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::fetch::record::Record;
use crate::positions::stale::positions_are_stale;

/// Which partition of which group.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    pub group_id: &'a str,
    pub topic: &'a str,
    pub partition: i32,
}

/// What the stored position says about a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Records from this index on are new (all of them may be below: nothing to write).
    Fresh { first_new: usize, stored: i64 },
    /// The batch starts past the stored position: seek back to it, commit nothing.
    Gap { stored: i64 },
    /// The stored position belongs to an earlier incarnation of the topic: it was reset to 0.
    Stale,
}

/// Locks the partition's position (creating it at 0) and says where `records` start from.
pub async fn check(
    conn: &mut PgConnection,
    key: Key<'_>,
    records: &[Record],
) -> Result<Start, sqlx::Error> {
    let inserted = ensure(conn, key).await?;
    let (stored, updated): (i64, DateTime<Utc>) = sqlx::query_as(
        "SELECT next_offset, updated_at FROM csvbus.sink_offsets
          WHERE group_id = $1 AND topic = $2 AND partition = $3 FOR UPDATE",
    )
    .bind(key.group_id)
    .bind(key.topic)
    .bind(key.partition)
    .fetch_one(&mut *conn)
    .await?;
    let first_new = records.partition_point(|r| r.offset < stored);
    if first_new > 0
        && positions_are_stale(conn, key.partition, &records[..first_new], updated).await?
    {
        tracing::warn!(
            partition = key.partition,
            stored,
            "stored position is ahead of a recreated topic: starting the partition over"
        );
        set(conn, key, 0).await?;
        return Ok(Start::Stale);
    }
    match records.get(first_new) {
        Some(r) if r.offset > stored && !inserted => {
            tracing::warn!(
                partition = key.partition,
                stored,
                first = r.offset,
                "batch starts past the stored position: seeking back"
            );
            Ok(Start::Gap { stored })
        }
        _ => Ok(Start::Fresh { first_new, stored }),
    }
}

/// Creates the partition's position at 0 unless it is there; whether it was created. (Waits
/// for a transaction that is creating it to end.)
async fn ensure(conn: &mut PgConnection, key: Key<'_>) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "INSERT INTO csvbus.sink_offsets (group_id, topic, partition, next_offset)
         VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING",
    )
    .bind(key.group_id)
    .bind(key.topic)
    .bind(key.partition)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1)
}

/// Locks the partition's position and reads it (created at 0 if missing). Used by a pipelined
/// batch, after its rows are written ([`crate::write::pipeline`]).
pub async fn lock(conn: &mut PgConnection, key: Key<'_>) -> Result<i64, sqlx::Error> {
    ensure(conn, key).await?;
    sqlx::query_scalar(
        "SELECT next_offset FROM csvbus.sink_offsets
          WHERE group_id = $1 AND topic = $2 AND partition = $3 FOR UPDATE",
    )
    .bind(key.group_id)
    .bind(key.topic)
    .bind(key.partition)
    .fetch_one(conn)
    .await
}

/// Moves the partition's stored position (inside the batch's transaction).
pub async fn set(
    conn: &mut PgConnection,
    key: Key<'_>,
    next_offset: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE csvbus.sink_offsets SET next_offset = $4, updated_at = now()
          WHERE group_id = $1 AND topic = $2 AND partition = $3",
    )
    .bind(key.group_id)
    .bind(key.topic)
    .bind(key.partition)
    .bind(next_offset)
    .execute(conn)
    .await?;
    Ok(())
}

/// The stored position of one partition, read without a lock (where a claim starts fetching).
pub async fn stored(conn: &mut PgConnection, key: Key<'_>) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT next_offset FROM csvbus.sink_offsets
          WHERE group_id = $1 AND topic = $2 AND partition = $3",
    )
    .bind(key.group_id)
    .bind(key.topic)
    .bind(key.partition)
    .fetch_optional(conn)
    .await
}

/// The group's stored positions on `topic`, and whether one moved within `recent`.
pub async fn of_group(
    pool: &sqlx::PgPool,
    group_id: &str,
    topic: &str,
    recent: std::time::Duration,
) -> Result<(Vec<(i32, i64)>, bool), sqlx::Error> {
    let positions: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT partition, next_offset FROM csvbus.sink_offsets WHERE group_id = $1 AND topic = $2",
    )
    .bind(group_id)
    .bind(topic)
    .fetch_all(pool)
    .await?;
    let moving: bool = sqlx::query_scalar(
        "SELECT coalesce(max(updated_at) > now() - make_interval(secs => $3), false)
           FROM csvbus.sink_offsets WHERE group_id = $1 AND topic = $2",
    )
    .bind(group_id)
    .bind(topic)
    .bind(recent.as_secs_f64())
    .fetch_one(pool)
    .await?;
    Ok((positions, moving))
}
