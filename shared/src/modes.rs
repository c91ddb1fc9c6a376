//! What an import does to its target table ([`ImportMode`]), and the staging tables of the
//! all-or-nothing modes.
//!
//! `atomic` and `replace` imports are written by the sink into a staging table of their own,
//! `csvbus."stage_<import id>"`: the file's columns with the target's types, plus the line of each
//! row. When the import is complete, one transaction moves the rows into the target (see the
//! sink's `finalize`). The staging table lives in csvbus' own schema, so it is never a target.
//! It is an ordinary (logged) table: Postgres empties unlogged tables after a crash, and the
//! sink's positions — committed with the staged rows — would then point past rows that are gone.

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::catalog::{quote_ident, TableName, OWN_SCHEMA};
use crate::imports::ImportStatus;

/// What an import does to its target.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    Serialize,
    Deserialize,
    sqlx::Type,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum ImportMode {
    /// Rows are visible as they are written.
    #[default]
    Append,
    /// Staged; moved into the target in one transaction once complete, or not at all.
    Atomic,
    /// Like atomic, and the same transaction empties the target first.
    Replace,
    /// `INSERT … ON CONFLICT (conflict columns) DO UPDATE`: the file's last row per key wins.
    Upsert,
    /// `INSERT … ON CONFLICT (conflict columns) DO NOTHING`, counted in `rows_skipped`.
    Skip,
}

impl ImportMode {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "append" => Self::Append,
            "atomic" => Self::Atomic,
            "replace" => Self::Replace,
            "upsert" => Self::Upsert,
            "skip" => Self::Skip,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Append => "append",
            Self::Atomic => "atomic",
            Self::Replace => "replace",
            Self::Upsert => "upsert",
            Self::Skip => "skip",
        }
    }

    /// Rows go to a staging table first and reach the target in one transaction.
    pub fn staged(self) -> bool {
        matches!(self, Self::Atomic | Self::Replace)
    }

    /// Rows are written with `ON CONFLICT` on the import's conflict columns.
    pub fn on_conflict(self) -> bool {
        matches!(self, Self::Upsert | Self::Skip)
    }
}

/// The column of a staging table that holds each row's line. A header never maps to it
/// (normalized names have no spaces), and a table that has a column of this name is refused in
/// the modes that stage rows (`422 reserved_column`), so it cannot collide with the table's own
/// columns — `csvbus_line` is an ordinary column.
pub const LINE_COLUMN: &str = "csvbus line";
/// [`LINE_COLUMN`] quoted for SQL.
pub const LINE_COLUMN_SQL: &str = "\"csvbus line\"";

/// The staging table of an import, quoted for SQL.
pub fn staging_table(import: Uuid) -> String {
    format!(
        "{}.{}",
        quote_ident(OWN_SCHEMA),
        quote_ident(&format!("stage_{}", import.simple()))
    )
}

/// Creates the staging table of `import`: `columns` with the target's types, and the line.
pub async fn create_staging(
    conn: &mut PgConnection,
    import: Uuid,
    target: &TableName,
    columns: &[String],
) -> Result<(), sqlx::Error> {
    let cols = columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let stage = staging_table(import);
    sqlx::query(&format!(
        "CREATE TABLE {stage} AS SELECT {cols} FROM {} WITH NO DATA",
        target.quoted()
    ))
    .execute(&mut *conn)
    .await?;
    sqlx::query(&format!(
        "ALTER TABLE {stage} ADD COLUMN {LINE_COLUMN_SQL} bigint NOT NULL"
    ))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Drops the staging table of `import`, if it exists.
pub async fn drop_staging(conn: &mut PgConnection, import: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("DROP TABLE IF EXISTS {}", staging_table(import)))
        .execute(conn)
        .await?;
    Ok(())
}

/// Drops the staging tables no import needs any more: their import completed, or failed or was
/// aborted and cannot be resumed (no Idempotency-Key, or it expired), or is gone. Returns how
/// many were dropped.
pub async fn drop_unneeded_staging(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT substr(c.relname, 7)::uuid FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname ~ '^stage_[0-9a-f]{32}$'
            AND NOT EXISTS (
                SELECT 1 FROM csvbus.imports i
                 WHERE i.id = substr(c.relname, 7)::uuid
                   AND (i.status IN ($2, $3)
                        OR (i.status IN ($4, $5) AND i.produced_at IS NULL AND NOT i.stopped
                            AND i.key_expires_at > now())))",
    )
    .bind(OWN_SCHEMA)
    .bind(ImportStatus::Receiving)
    .bind(ImportStatus::Produced)
    .bind(ImportStatus::Failed)
    .bind(ImportStatus::Aborted)
    .fetch_all(pool)
    .await?;
    let mut conn = pool.acquire().await?;
    for id in &ids {
        drop_staging(&mut conn, *id).await?;
    }
    Ok(ids.len() as u64)
}

/// Checks that a unique index (or the primary key) of `table` covers exactly `columns`, as
/// `ON CONFLICT (columns)` requires; with no columns given, returns the primary key's.
pub async fn conflict_columns(
    pool: &PgPool,
    table: &TableName,
    columns: Option<&[String]>,
) -> Result<Result<Vec<String>, String>, sqlx::Error> {
    // Unique, valid, non-partial indexes on plain columns, as sorted column-name lists.
    let indexes: Vec<(bool, Vec<String>)> = sqlx::query_as(
        "SELECT i.indisprimary,
                array(SELECT a.attname::text FROM unnest(i.indkey) k
                        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k)
           FROM pg_index i
           JOIN pg_class c ON c.oid = i.indrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1 AND c.relname = $2 AND i.indisunique AND i.indisvalid
            AND i.indpred IS NULL AND NOT (0 = ANY (i.indkey::int2[]))",
    )
    .bind(&table.schema)
    .bind(&table.table)
    .fetch_all(pool)
    .await?;
    Ok(match columns {
        None => indexes
            .into_iter()
            .find(|(primary, _)| *primary)
            .map(|(_, cols)| cols)
            .ok_or_else(|| format!("{table} has no primary key: name the conflict columns")),
        Some(wanted) => {
            let mut want = wanted.to_vec();
            want.sort();
            let covered = indexes.iter().any(|(_, cols)| {
                let mut cols = cols.clone();
                cols.sort();
                cols == want
            });
            if covered {
                Ok(wanted.to_vec())
            } else {
                Err(format!(
                    "no unique index of {table} is on exactly ({})",
                    wanted.join(", ")
                ))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print() {
        for m in ["append", "atomic", "replace", "upsert", "skip"] {
            assert_eq!(ImportMode::parse(m).unwrap().as_str(), m);
        }
        assert_eq!(ImportMode::parse("merge"), None);
        assert!(ImportMode::Replace.staged() && !ImportMode::Upsert.staged());
        assert!(ImportMode::Skip.on_conflict() && !ImportMode::Atomic.on_conflict());
    }

    #[test]
    fn staging_tables_live_in_csvbus_schema() {
        let id = Uuid::nil();
        assert_eq!(
            staging_table(id),
            "\"csvbus\".\"stage_00000000000000000000000000000000\""
        );
    }
}
