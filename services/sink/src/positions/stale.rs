//! Positions left by an earlier incarnation of a topic.
//!
//! Positions are kept per (group, topic, partition). When a topic is deleted and created again
//! under the same name — or tansu, with memory storage, restarts — its offsets start over below
//! the stored positions, and the writer would skip the new rows as already written.
//!
//! Two tells, either enough:
//! - a record below the stored position belongs to an import created *after* that position
//!   last moved. A record the sink really wrote was produced after its import was created (the
//!   upload service creates the import first) and before the position moved past it, so its
//!   import is always older than the position's `updated_at`;
//! - a record below the stored position has a line above the highest line of its import the
//!   sink handled on this partition (`csvbus.import_partitions`, moved in the same transaction
//!   as the position): it was never handled. This catches a topic recreated in the middle of an
//!   import (a broker without durable storage restarted), where the first tell cannot.

use crate::write::ByImport;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::fetch::record::Record;

/// Whether `skipped` (records below the stored position) include one that cannot have been
/// written under the position stored at `position_updated`.
pub async fn positions_are_stale(
    conn: &mut PgConnection,
    partition: i32,
    skipped: &[Record],
    position_updated: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    // Per import, the highest line among the skipped records.
    let mut lines: ByImport<i64> = ByImport::default();
    for m in skipped.iter().filter_map(|r| r.meta.as_ref()) {
        let l = lines.entry(m.import).or_insert(m.line);
        *l = (*l).max(m.line);
    }
    if lines.is_empty() {
        return Ok(false);
    }
    let (imports, lines): (Vec<Uuid>, Vec<i64>) = lines.into_iter().unzip();
    sqlx::query_scalar(
        "SELECT EXISTS (
            SELECT 1 FROM unnest($1::uuid[], $2::bigint[]) AS s(id, line)
              JOIN csvbus.imports i ON i.id = s.id
              LEFT JOIN csvbus.import_partitions p ON p.import_id = s.id AND p.partition = $4
             WHERE i.created_at > $3 OR s.line > coalesce(p.max_line, 0))",
    )
    .bind(&imports)
    .bind(&lines)
    .bind(position_updated)
    .bind(partition)
    .fetch_one(conn)
    .await
}
