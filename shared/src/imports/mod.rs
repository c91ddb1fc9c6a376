//! `csvbus.imports`, the live record of every upload, and its rejected rows — with one owner:
//! every change to an import goes through this module, as a typed transition whose rule is
//! written here once. Status values are bound as [`ImportStatus`]; no SQL outside this module
//! names one.
//!
//! | transition | from → to | made by |
//! |---|---|---|
//! | [`upload::create`] | → `receiving` | upload: a new import |
//! | [`upload::resume`] | `failed`/`aborted` (never accepted) → `receiving` | upload: a retry under its key |
//! | [`upload::finish`] | `receiving` → `produced`, `completed`, `failed`, `aborted` | upload: the body ended |
//! | [`upload::abort_orphans`] | `receiving` (silent) → `aborted` | upload's janitor |
//! | [`sink::add_written`] | `produced` → `completed` (append, upsert, skip) | sink: the last rows written |
//! | [`sink::moved`], [`sink::move_refused`] | `produced` → `completed`, `failed` (atomic, replace) | sink: the move from staging |
//! | [`sink::stop_over_limit`] | `receiving`/`produced` → `failed` (`stopped`) | sink: refusals passed `max_rejected` |
//!
//! The transition that makes an import final (the rule of [`ImportRecord::is_final`]) also owes
//! its webhook delivery, in the same transaction ([`deliveries`]).
//!
//! Counters only ever grow within an attempt, and a transition applies only from the status it
//! names: a late progress tick or a second sink replica changes nothing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::modes::ImportMode;
use crate::read_as::ReadAs;

pub mod deliveries;
pub mod list;
pub mod rejected;
pub mod retention;
pub mod sink;
pub mod spans;
mod status;
pub mod upload;

pub use rejected::{
    insert_rejected, insert_rejected_many, storable_json, storable_text, Rejected, RejectedPage,
    RejectedRow, Stage,
};
pub use sink::{add_written, Written};
pub use status::{ImportStatus, Outcome};
pub use upload::{abort_orphans, create, save_body_digest, update_progress, NewImport};

/// One import as the API shows it (the CLI reads it back with the same type).
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ImportRecord {
    pub id: Uuid,
    /// `schema.table`.
    pub table: String,
    /// The file's header, in file order.
    pub columns: Vec<String>,
    pub status: ImportStatus,
    /// What the import came to, at a glance (from `status` and the counters).
    pub outcome: Outcome,
    /// Where the rows came from: the file name sent with the upload (`name=` or
    /// `Content-Disposition`), when one was.
    pub source: Option<String>,
    pub mode: ImportMode,
    /// upsert / skip: the `ON CONFLICT` columns.
    pub conflict_columns: Option<Vec<String>>,
    pub rows_received: i64,
    pub rows_produced: i64,
    pub rows_rejected: i64,
    pub rows_written: i64,
    pub rows_write_rejected: i64,
    /// skip: rows not written because their key was already in the table.
    pub rows_skipped: i64,
    /// Rows set aside unwritten because the import had stopped: Postgres refused more of its
    /// rows than `max_rejected` allows (see `stopped`).
    pub rows_set_aside: i64,
    /// The sink stopped the import: more rows refused (while reading and by Postgres) than
    /// `max_rejected` allows. It is `failed`; its later rows are set aside, not written.
    pub stopped: bool,
    pub bytes_received: i64,
    /// Uploads of this import (more than 1 when a retry resumed it).
    pub attempts: i32,
    /// The line after which the last retry resumed (records up to it were skipped).
    pub resumed_from_line: Option<i64>,
    pub error: Option<String>,
    /// How the file was read: delimiter, encoding, column mapping, created table.
    #[schema(value_type = Option<ReadAs>)]
    pub read_as: Option<sqlx::types::Json<ReadAs>>,
    /// The import a replay read its rows from (`POST /v1/imports/{id}/replay`).
    #[serde(default)]
    pub replay_of: Option<Uuid>,
    /// Webhook deliveries of the import's end (empty when no endpoint was set).
    #[serde(default)]
    #[schema(value_type = Vec<deliveries::Delivery>)]
    pub deliveries: sqlx::types::Json<Vec<deliveries::Delivery>>,
    pub created_at: DateTime<Utc>,
    pub produced_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl ImportRecord {
    /// Whether the import will change no more.
    pub fn is_final(&self) -> bool {
        match self.status {
            ImportStatus::Completed => true,
            // A failed/aborted upload is final once the sink has caught up with what was produced.
            // Staged rows of an import that failed never reach the target.
            s if s.upload_failed() && self.mode.staged() => true,
            s if s.upload_failed() => {
                self.rows_written
                    + self.rows_write_rejected
                    + self.rows_skipped
                    + self.rows_set_aside
                    >= self.rows_produced
            }
            _ => false,
        }
    }
}

/// Counters the upload service keeps while reading a body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UploadCounters {
    pub rows_received: i64,
    pub rows_produced: i64,
    pub rows_rejected: i64,
    pub bytes_received: i64,
    /// The checkpoint a retry resumes from (see [`Checkpoint`]).
    pub acked: Checkpoint,
}

/// How far an upload is safely on the broker: every record up to `line` was acknowledged or
/// rejected, `rows` of them were produced, and `digest` is the chained hash of their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Checkpoint {
    #[sqlx(rename = "acked_line")]
    pub line: i64,
    #[sqlx(rename = "acked_rows")]
    pub rows: i64,
    #[sqlx(rename = "acked_digest")]
    pub digest: i64,
}

/// The columns of `csvbus.imports` an [`ImportRecord`] is read from (`{outcome}`: the outcome's
/// expression).
const RECORD_COLUMNS_TEMPLATE: &str =
    "id, target_schema || '.' || target_table AS table, columns, status, {outcome} AS outcome,
     source, mode, conflict_columns, rows_received, rows_produced, rows_rejected, rows_written,
     rows_write_rejected, rows_skipped, rows_set_aside, stopped, bytes_received, attempts, resumed_from_line,
     error, read_as, replay_of, {deliveries} AS deliveries, created_at, produced_at, finished_at,
     updated_at";

/// The select list of an [`ImportRecord`].
pub(crate) fn record_columns() -> String {
    RECORD_COLUMNS_TEMPLATE
        .replace("{outcome}", Outcome::SQL)
        .replace("{deliveries}", deliveries::DELIVERIES_SQL)
}

/// The import `id`, read through `db`: the pool, or a connection or transaction already held.
pub async fn get<'e>(
    db: impl sqlx::PgExecutor<'e>,
    id: Uuid,
) -> Result<Option<ImportRecord>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {} FROM csvbus.imports WHERE id = $1",
        record_columns()
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}
