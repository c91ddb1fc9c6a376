//! The highest line of each import the sink handled on each partition
//! (`csvbus.import_partitions`), moved in the batch's transaction with the position: rows a
//! resumed upload sends again are recognised as handled, and a record below the position whose
//! line is above it tells a recreated topic ([`super::stale`]).

use std::collections::HashMap;

use sqlx::PgConnection;
use uuid::Uuid;

/// Stores the highest line handled per import on `partition` (in the batch's transaction).
pub async fn store_max_lines(
    conn: &mut PgConnection,
    partition: i32,
    max_lines: &HashMap<Uuid, i64>,
) -> Result<(), sqlx::Error> {
    if max_lines.is_empty() {
        return Ok(());
    }
    let (ids, lines): (Vec<Uuid>, Vec<i64>) = max_lines.iter().map(|(k, v)| (*k, *v)).unzip();
    sqlx::query(
        "INSERT INTO csvbus.import_partitions (import_id, partition, max_line)
         SELECT id, $3, line FROM unnest($1::uuid[], $2::bigint[]) AS t(id, line)
         ON CONFLICT (import_id, partition)
         DO UPDATE SET max_line = greatest(csvbus.import_partitions.max_line, EXCLUDED.max_line)",
    )
    .bind(&ids)
    .bind(&lines)
    .bind(partition)
    .execute(conn)
    .await?;
    Ok(())
}
