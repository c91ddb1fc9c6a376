//! Positions left by an earlier incarnation of a topic.
//!
//! Positions are kept per (group, topic, partition). When a topic is deleted and created again
//! under the same name — or tansu, with memory storage, restarts — its offsets start over below
//! the stored positions, and the writer would skip the new rows as already written.
//!
//! The tell: a record below the stored position belongs to an import created *after* that
//! position last moved. A record the sink really wrote was produced after its import was created
//! (the upload service creates the import first) and before the position moved past it, so its
//! import is always older than the position's `updated_at`.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::batch::Record;

/// Whether `skipped` (records below the stored position) include one that cannot have been
/// written under the position stored at `position_updated`.
pub async fn positions_are_stale(
    conn: &mut PgConnection,
    skipped: &[Record],
    position_updated: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let mut imports: Vec<Uuid> = skipped
        .iter()
        .filter_map(|r| r.meta.as_ref().map(|m| m.import))
        .collect();
    imports.sort_unstable();
    imports.dedup();
    if imports.is_empty() {
        return Ok(false);
    }
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM csvbus.imports WHERE id = ANY($1) AND created_at > $2)",
    )
    .bind(&imports)
    .bind(position_updated)
    .fetch_one(conn)
    .await
}
