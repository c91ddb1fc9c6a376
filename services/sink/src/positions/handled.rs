//! The highest line of each import the sink handled on each partition
//! (`csvbus.import_partitions`), moved in the batch's transaction with the position: rows a
//! resumed upload sends again are recognised as handled, and a record below the position whose
//! line is above it tells a recreated topic ([`super::stale`]).

use crate::write::ByImport;

use sqlx::PgConnection;
use uuid::Uuid;

/// Stores the highest line handled per import on `partition`, and the span of offsets its rows
/// took (`offsets`, a replay's range), in the batch's transaction.
pub async fn store_max_lines(
    conn: &mut PgConnection,
    partition: i32,
    max_lines: &ByImport<i64>,
    offsets: &ByImport<(i64, i64)>,
) -> Result<(), sqlx::Error> {
    if max_lines.is_empty() {
        return Ok(());
    }
    let (ids, lines): (Vec<Uuid>, Vec<i64>) = max_lines.iter().map(|(k, v)| (*k, *v)).unzip();
    let span = |id: &Uuid| offsets.get(id).copied().unzip();
    let (firsts, lasts): (Vec<Option<i64>>, Vec<Option<i64>>) = ids.iter().map(span).unzip();
    sqlx::query(
        "INSERT INTO csvbus.import_partitions (import_id, partition, max_line, first_offset,
                last_offset)
         SELECT id, $3, line, f, l
           FROM unnest($1::uuid[], $2::bigint[], $4::bigint[], $5::bigint[]) AS t(id, line, f, l)
         ON CONFLICT (import_id, partition)
         DO UPDATE SET max_line = greatest(csvbus.import_partitions.max_line, EXCLUDED.max_line),
                first_offset = least(csvbus.import_partitions.first_offset, EXCLUDED.first_offset),
                last_offset = greatest(csvbus.import_partitions.last_offset, EXCLUDED.last_offset)",
    )
    .bind(&ids)
    .bind(&lines)
    .bind(partition)
    .bind(&firsts)
    .bind(&lasts)
    .execute(conn)
    .await?;
    Ok(())
}
