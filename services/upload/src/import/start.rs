//! What an upload decides before its rows: the [`Plan`] from the request, the answer to a
//! repeat under a known Idempotency-Key, the checked header, and the new import's record (with
//! its staging table in atomic and replace modes).

use axum::http::StatusCode;
use axum::Json;
use csvbus_shared::catalog::{self, TableName};
use csvbus_shared::imports;
use csvbus_shared::modes::{self, ImportMode};
use csvbus_shared::read_as::ReadAs;
use uuid::Uuid;

use crate::error::ApiError;
use crate::import::idempotency::{mismatch, Resume};
use crate::import::ingest::{Accepted, UploadQuery, DEFAULT_MAX_REJECTED};
use crate::import::row_loop::{read_header, Input};
use crate::read::parse::Records;
use crate::read::prepare::ReadOptions;
use crate::rows::{check_header, check_names, Header, ValueOptions};
use crate::App;

/// Everything decided about an upload before its body is read.
pub struct Plan {
    pub q: UploadQuery,
    pub opts: ValueOptions,
    pub read: ReadOptions,
    pub table: (TableName, Vec<catalog::Column>),
    /// `create=true` and the table does not exist: it is created with the import.
    pub create: bool,
    /// `types=`: the types given columns of the table `create` makes.
    pub given_types: Vec<crate::import::given_types::GivenType>,
    pub mode: ImportMode,
    /// upsert / skip: the conflict columns.
    pub conflict: Option<Vec<String>>,
    pub key: Option<String>,
    pub resume: Option<Resume>,
    pub partitions: i32,
    /// Where the rows come from (a file name), when the client said.
    pub source: Option<String>,
    /// A form upload: what followed its file part (said in the answer).
    pub form_rest: Option<crate::read::media::Rest>,
    /// The webhook endpoint told of the import's end (`notify=` or the operator's).
    pub notify: Option<String>,
    /// A replay: the import whose rows it reads back from the topic.
    pub replay_of: Option<Uuid>,
}

/// The answer the first upload under a key got, for a repeat of it: `200` (not the first
/// answer's `202`) and `replayed`, so that no client takes it for a new import.
pub async fn replay(app: &App, id: Uuid) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let rec = imports::get(&app.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_import", format!("no import {id}")))?;
    tracing::info!(import_id = %id, "repeated upload under its Idempotency-Key: answered as before");
    Ok((
        StatusCode::OK,
        Json(Accepted {
            import_id: id,
            table: rec.table,
            status: rec.status,
            mode: rec.mode,
            rows_produced: rec.rows_produced as u64,
            rows_rejected: rec.rows_rejected as u64,
            bytes_read: 0,
            resumed_from_line: rec.resumed_from_line.map(|l| l as u64),
            status_url: format!("/v1/imports/{id}"),
            read_as: rec.read_as.map(|r| r.0),
            replayed: true,
        }),
    ))
}

/// Reads and checks the header: against the table, the conflict columns, and for a resumed
/// import, the header it was first uploaded with.
pub async fn read_checked_header(
    app: &App,
    plan: &Plan,
    records: &mut Records<Input>,
) -> Result<Header, ApiError> {
    let key = plan.q.key.as_deref();
    let mapping = &plan.read.mapping;
    let header = match &mapping.names {
        // No header record: columns= names the fields.
        Some(names) if !plan.read.header => {
            let plain = crate::rows::mapping::Mapping {
                names: None,
                ..mapping.clone()
            };
            check_names(names, &plan.table.1, key, &plain)?
        }
        _ => {
            read_header(records, app.config.max_body_bytes).await?;
            check_header(&records.record, &plan.table.1, key, mapping)?
        }
    };
    if let Some(conflict) = &plan.conflict {
        if let Some(c) = conflict.iter().find(|c| !header.columns.contains(c)) {
            return Err(ApiError::unprocessable(
                "missing_conflict_column",
                format!("conflict column {c:?} is not in the header"),
            )
            .at_line(1));
        }
        if let Some(k) = plan
            .q
            .key
            .as_deref()
            .filter(|k| !conflict.iter().any(|c| c == k))
        {
            return Err(ApiError::unprocessable(
                "invalid_key",
                format!("in {} mode rows are routed by the conflict columns; key {k:?} is not one of them", plan.mode.as_str()),
            ));
        }
    }
    if let Some(r) = plan.resume.as_ref().filter(|r| r.columns != header.columns) {
        return Err(mismatch(format!(
            "the header differs from the one first uploaded under this Idempotency-Key: {}",
            r.columns.join(",")
        ))
        .at_line(1));
    }
    Ok(header)
}

/// Records the new import, with its staging table in atomic and replace modes.
pub async fn create(
    app: &App,
    plan: &Plan,
    header: &Header,
    read_as: &ReadAs,
) -> Result<Uuid, ApiError> {
    let id = Uuid::now_v7();
    let new = imports::NewImport {
        id,
        table: &plan.table.0,
        columns: &header.columns,
        mode: plan.mode,
        conflict_columns: plan.conflict.as_deref(),
        max_rejected: plan.q.max_rejected.unwrap_or(DEFAULT_MAX_REJECTED) as i64,
        key: plan.key.as_deref().map(|k| (k, app.config.idempotency_ttl)),
        read_as: Some(read_as),
        source: plan.source.as_deref(),
        notify_url: plan.notify.as_deref(),
        replay_of: plan.replay_of,
    };
    let r: Result<(), sqlx::Error> = async {
        let mut tx = app.pool.begin().await?;
        if let Some(ddl) = &read_as.created {
            sqlx::query(ddl).execute(&mut *tx).await?;
        }
        for ddl in &read_as.added {
            sqlx::query(ddl).execute(&mut *tx).await?;
        }
        imports::create(&mut tx, &new).await?;
        if plan.mode.staged() {
            modes::create_staging(&mut tx, id, &plan.table.0, &header.columns).await?;
        }
        tx.commit().await
    }
    .await;
    match r {
        Ok(()) => Ok(id),
        // Another upload under the same key got there first.
        Err(sqlx::Error::Database(d)) if d.is_unique_violation() => Err(ApiError::new(
            StatusCode::CONFLICT,
            "import_running",
            "an import under this Idempotency-Key has just started; retry when it has ended",
        )
        .retry_after(2)),
        // create=true: another upload created the table first.
        Err(sqlx::Error::Database(d)) if d.code().as_deref() == Some("42P07") => {
            Err(ApiError::new(
                StatusCode::CONFLICT,
                "table_created",
                "the table was created by another upload meanwhile; upload again to use it",
            )
            .retry_after(1))
        }
        Err(e) => Err(e.into()),
    }
}

/// The columns whose values are a row's message key.
pub fn route_columns(plan: &Plan, header: &Header) -> Vec<usize> {
    match &plan.conflict {
        Some(cols) => cols.iter().filter_map(|c| header.field_of(c)).collect(),
        None => header.key_index.into_iter().collect(),
    }
}
