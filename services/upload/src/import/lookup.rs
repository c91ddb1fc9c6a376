//! An import as a request may see it: unknown (404 `unknown_import`) when its id is not one, or
//! when the API key's scope does not reach its table — a scoped key learns nothing of other
//! tables' imports. Shared by the routes that read an import and by replays.

use csvbus_shared::catalog::{TableName, DEFAULT_SCHEMA};
use csvbus_shared::imports::{self, ImportRecord};
use csvbus_shared::scope::Scope;
use uuid::Uuid;

use crate::error::ApiError;
use crate::App;
/// An import id from a path, or 404 `unknown_import`.
pub(crate) fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    id.parse()
        .map_err(|_| ApiError::not_found("unknown_import", format!("no import {id:?}")))
}

/// The import named by the text `id`, or 404 `unknown_import` (see the module).
pub(crate) async fn find(app: &App, id: &str, scope: &Scope) -> Result<ImportRecord, ApiError> {
    get_in_scope(app, parse_id(id)?, scope).await
}

/// The import `id`, or 404 `unknown_import` (see the module).
pub(crate) async fn get_in_scope(
    app: &App,
    id: Uuid,
    scope: &Scope,
) -> Result<ImportRecord, ApiError> {
    imports::get(&app.pool, id)
        .await?
        .filter(|rec| {
            TableName::parse(&rec.table, DEFAULT_SCHEMA).is_some_and(|t| scope.allows(&t))
        })
        .ok_or_else(|| ApiError::not_found("unknown_import", format!("no import {id}")))
}
