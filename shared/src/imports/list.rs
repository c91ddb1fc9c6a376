//! Recent imports, newest first, a page at a time (`GET /v1/imports`).

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use super::{record_columns, ImportRecord, ImportStatus, Outcome};
use crate::catalog::TableName;
use crate::scope::Scope;

/// Which imports to list; every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct ImportFilter {
    pub table: Option<TableName>,
    pub status: Option<ImportStatus>,
    /// The upload's `Idempotency-Key`: at most one import has it, until it expires.
    pub idempotency_key: Option<String>,
    /// Only imports with this outcome.
    pub outcome: Option<Outcome>,
    /// Only imports with rows rejected (`Some(true)`) or with none (`Some(false)`).
    pub rejected: Option<bool>,
    /// Only imports whose source contains this text (case-insensitive).
    pub source: Option<String>,
    /// Only imports older than this one (the `next_before` of the previous page).
    pub before: Option<Uuid>,
    pub limit: i64,
    /// Only imports into tables the API key reaches.
    pub scope: Scope,
}

/// A page of imports; pass `next_before` as `before` for the next (older) page.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportPage {
    pub imports: Vec<ImportRecord>,
    /// Absent on the last page.
    pub next_before: Option<Uuid>,
    /// The sums over this page's imports.
    pub totals: PageTotals,
}

/// What a page of imports adds up to.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PageTotals {
    pub rows_written: i64,
    /// Rejected while reading and by Postgres.
    pub rows_rejected: i64,
}

/// Up to `f.limit` imports matching `f`, newest first (ties broken by id).
pub async fn list(pool: &PgPool, f: &ImportFilter) -> Result<ImportPage, sqlx::Error> {
    let scope = f.scope.sql_lists();
    let imports: Vec<ImportRecord> = sqlx::query_as(&format!(
        "SELECT {} FROM csvbus.imports
          WHERE ($1::text IS NULL OR (target_schema = $1 AND target_table = $2))
            AND ($3::text IS NULL OR status = $3)
            AND ($4::text IS NULL OR (idempotency_key = $4 AND key_expires_at > now()))
            AND ($5::uuid IS NULL OR (created_at, id) <
                 (SELECT created_at, id FROM csvbus.imports WHERE id = $5))
            AND ($7::text IS NULL OR {} = $7)
            AND ($8::bool IS NULL OR (rows_rejected + rows_write_rejected > 0) = $8)
            AND ($9::text IS NULL OR strpos(lower(source), lower($9)) > 0)
            AND ($10::text[] IS NULL OR target_schema = ANY($10)
                 OR (target_schema, target_table) IN (SELECT * FROM unnest($11::text[], $12::text[])))
          ORDER BY created_at DESC, id DESC
          LIMIT $6",
        record_columns(),
        Outcome::SQL
    ))
    .bind(f.table.as_ref().map(|t| t.schema.as_str()))
    .bind(f.table.as_ref().map(|t| t.table.as_str()))
    .bind(f.status)
    .bind(f.idempotency_key.as_deref())
    .bind(f.before)
    .bind(f.limit)
    .bind(f.outcome)
    .bind(f.rejected)
    .bind(f.source.as_deref())
    .bind(scope.as_ref().map(|s| &s.0))
    .bind(scope.as_ref().map(|s| &s.1))
    .bind(scope.as_ref().map(|s| &s.2))
    .fetch_all(pool)
    .await?;
    let next_before = if imports.len() as i64 == f.limit {
        imports.last().map(|r| r.id)
    } else {
        None
    };
    let totals = PageTotals {
        rows_written: imports.iter().map(|r| r.rows_written).sum(),
        rows_rejected: imports
            .iter()
            .map(|r| r.rows_rejected + r.rows_write_rejected)
            .sum(),
    };
    Ok(ImportPage {
        imports,
        next_before,
        totals,
    })
}
