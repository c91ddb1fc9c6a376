//! What the sink knows of the imports a batch names: target, columns, mode, whether csvbus may
//! write there — and, per partition, the highest line of each import already handled, so that
//! rows a resumed upload sends again are not written twice (`csvbus.import_partitions`).

use std::collections::HashMap;

use csvbus_shared::catalog::{may_target, TableName};
use csvbus_shared::imports::ImportStatus;
use csvbus_shared::modes::{staging_table, ImportMode};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::batch::Target;
use crate::record::Record;

#[derive(sqlx::FromRow)]
struct Known {
    id: Uuid,
    target_schema: String,
    target_table: String,
    columns: Vec<String>,
    mode: ImportMode,
    conflict_columns: Option<Vec<String>>,
    staging_gone: bool,
    completed: bool,
    max_line: i64,
}

/// The imports `records` name, as seen from `partition`.
pub async fn load(
    conn: &mut PgConnection,
    records: &[Record],
    partition: i32,
    allowed_schemas: &[String],
) -> Result<HashMap<Uuid, Target>, sqlx::Error> {
    let mut ids: Vec<Uuid> = records
        .iter()
        .filter_map(|r| r.meta.as_ref())
        .map(|m| m.import)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let stagings: Vec<String> = ids.iter().map(|id| staging_table(*id)).collect();
    let rows: Vec<Known> = sqlx::query_as(
        "SELECT i.id, i.target_schema, i.target_table, i.columns, i.mode, i.conflict_columns,
                (i.mode IN ('atomic', 'replace') AND to_regclass(s.name) IS NULL) AS staging_gone,
                i.status = $4 AS completed,
                coalesce(p.max_line, 0) AS max_line
           FROM unnest($1::uuid[], $2::text[]) AS s(id, name)
           JOIN csvbus.imports i ON i.id = s.id
           LEFT JOIN csvbus.import_partitions p ON p.import_id = i.id AND p.partition = $3",
    )
    .bind(&ids)
    .bind(&stagings)
    .bind(partition)
    .bind(ImportStatus::Completed)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|k| {
            let name = TableName {
                schema: k.target_schema,
                table: k.target_table,
            };
            let target = Target {
                allowed: may_target(&name, allowed_schemas),
                table: name.to_string(),
                columns: k.columns,
                mode: k.mode,
                conflict: k.conflict_columns,
                staging_gone: k.staging_gone,
                completed: k.completed,
                max_line: k.max_line,
            };
            (k.id, target)
        })
        .collect())
}

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
