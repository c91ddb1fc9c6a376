//! What the sink knows of the imports a batch names: target, columns, mode, whether csvbus may
//! write there, how many more refusals its `max_rejected` allows — and, per partition, the highest line of each import already handled, so that
//! rows a resumed upload sends again are not written twice (`csvbus.import_partitions`).

use crate::write::ByImport;

use csvbus_shared::catalog::{may_target, TableName};
use csvbus_shared::imports::ImportStatus;
use csvbus_shared::modes::{staging_table, ImportMode};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::fetch::record::Record;
use crate::write::batch::Target;

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
    stopped: bool,
    allowance: Option<i64>,
    rejected: i64,
    max_line: i64,
}

/// The imports `records` name, as seen from `partition`.
pub async fn load(
    conn: &mut PgConnection,
    records: &[Record],
    partition: i32,
    allowed_schemas: &[String],
) -> Result<ByImport<Target>, sqlx::Error> {
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
                i.status = $4 AS completed, i.stopped,
                CASE WHEN i.status IN ($5, $6)
                     THEN i.max_rejected - i.rows_rejected - i.rows_write_rejected END AS allowance,
                i.rows_rejected + i.rows_write_rejected AS rejected,
                coalesce(p.max_line, 0) AS max_line
           FROM unnest($1::uuid[], $2::text[]) AS s(id, name)
           JOIN csvbus.imports i ON i.id = s.id
           LEFT JOIN csvbus.import_partitions p ON p.import_id = i.id AND p.partition = $3",
    )
    .bind(&ids)
    .bind(&stagings)
    .bind(partition)
    .bind(ImportStatus::Completed)
    .bind(ImportStatus::Receiving)
    .bind(ImportStatus::Produced)
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
                table: name,
                columns: k.columns,
                mode: k.mode,
                conflict: k.conflict_columns,
                staging_gone: k.staging_gone,
                completed: k.completed,
                stopped: k.stopped,
                allowance: k.allowance,
                rejected: k.rejected,
                max_line: k.max_line,
            };
            (k.id, target)
        })
        .collect())
}
