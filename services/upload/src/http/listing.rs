//! What the page and other clients browse: the tables csvbus may write (`GET /v1/tables`) and
//! recent imports, newest first (`GET /v1/imports`).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use csvbus_shared::catalog::{self, TableInfo, TableName};
use csvbus_shared::imports::list::{self as import_list, ImportFilter, ImportPage};
use csvbus_shared::imports::{ImportStatus, Outcome};
use csvbus_shared::scope::Scope;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::error::{ApiError, ErrorBody};
use crate::App;

/// The tables in the allowed schemas (`CSVBUS_ALLOWED_SCHEMAS`) csvbus may write, with their
/// columns; csvbus' own tables are never listed, nor tables the API key's scope does not reach.
#[utoipa::path(
    get,
    path = "/v1/tables",
    tag = "tables",
    responses(
        (status = 200, description = "Tables by schema and name", body = Vec<TableInfo>),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry", body = ErrorBody),
    ),
    security(("api_key" = []), ())
)]
pub async fn list_tables(
    State(app): State<Arc<App>>,
    Extension(scope): Extension<Scope>,
) -> Result<Json<Vec<TableInfo>>, ApiError> {
    let tables = catalog::list_tables(&app.pool, &app.config.common.allowed_schemas).await?;
    Ok(Json(
        tables
            .into_iter()
            .filter(|t| {
                TableName::parse(&t.name, catalog::DEFAULT_SCHEMA).is_some_and(|n| scope.allows(&n))
            })
            .collect(),
    ))
}

/// Filters and paging of `GET /v1/imports`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
// An unknown parameter is refused (400 unknown_parameter), never ignored: a typo such as
// `mdoe=upsert` would otherwise run with the default.
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only imports into this table (`table` or `schema.table`).
    #[param(pattern = r"^([^.]+(\.[^.]+)?)?$")]
    table: Option<String>,
    /// Only imports in this status.
    status: Option<ImportStatus>,
    /// Only the import this `Idempotency-Key` names now (a key past its expiry names none).
    idempotency_key: Option<String>,
    /// Only imports with this outcome (`completed_with_rejections`: completed, but rows are
    /// missing from the table).
    outcome: Option<Outcome>,
    /// `true`: only imports with rejected rows (while reading or by Postgres), whatever their
    /// status; `false`: only those with none.
    rejected: Option<bool>,
    /// Only imports whose source (file name) contains this text, ignoring case.
    #[param(max_length = 255)]
    source: Option<String>,
    /// Only imports older than this one: the `next_before` of the previous page.
    before: Option<Uuid>,
    /// Imports per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// The most imports one page holds.
const MAX_PAGE: i64 = 500;

/// Recent imports, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/imports",
    tag = "imports",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of imports, newest first", body = ImportPage),
        (status = 400, description = "A query parameter is invalid", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry", body = ErrorBody),
    ),
    security(("api_key" = []), ())
)]
pub async fn list_imports(
    State(app): State<Arc<App>>,
    Extension(scope): Extension<Scope>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ImportPage>, ApiError> {
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit={limit}: use 1 to {MAX_PAGE}"),
        ));
    }
    let table = match q.table.as_deref() {
        None | Some("") => None,
        Some(t) => Some(TableName::parse(t, catalog::DEFAULT_SCHEMA).ok_or_else(|| {
            ApiError::bad_request("invalid_table", format!("table={t:?}: use schema.table"))
        })?),
    };
    if q.source.as_ref().is_some_and(|s| s.chars().count() > 255) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "source= is at most 255 characters (as a source name is)",
        ));
    }
    let filter = ImportFilter {
        table,
        status: q.status,
        idempotency_key: q.idempotency_key.filter(|k| !k.is_empty()),
        outcome: q.outcome,
        rejected: q.rejected,
        source: q.source.filter(|s| !s.is_empty()),
        before: q.before,
        limit,
        scope,
    };
    Ok(Json(import_list::list(&app.pool, &filter).await?))
}
