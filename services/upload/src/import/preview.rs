//! `dry_run=true`: how a file would be read, without storing anything. The upload runs as far
//! as it would — encoding, dialect, header against the table (or the table `create=true` would
//! make), date order — then reads the first [`PREVIEW_ROWS`] records and answers with them as
//! they would be written, and the rejections among them. No import is recorded, no table is
//! created, no message is produced, an `Idempotency-Key` is not looked at.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use csvbus_shared::modes::ImportMode;
use csvbus_shared::read_as::ReadAs;

use crate::error::ApiError;
use crate::import::failures::read_error;
use crate::import::row_loop::{encode, Input};
use crate::read::parse::Records;
use crate::rows::{Header, ValueOptions};

/// Records a preview reads, at most.
pub const PREVIEW_ROWS: usize = 20;

/// The answer to `dry_run=true` (`200`): nothing was stored.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Preview {
    /// Always `true`: nothing was stored, no import recorded.
    pub dry_run: bool,
    /// `schema.table` the rows would go to.
    pub table: String,
    pub mode: ImportMode,
    /// How the file would be read; with `create=true` and no such table, `created` is the
    /// `CREATE TABLE` that would run.
    pub read_as: ReadAs,
    /// The table columns the file's fields would go to, in the file's order.
    pub columns: Vec<String>,
    /// The first rows as they would be written (dates already in ISO order).
    pub rows: Vec<PreviewRow>,
    /// The records among the first ones that would be rejected.
    pub rejected: Vec<PreviewRejection>,
    /// Records read (at most 20); the file may have more.
    pub records_read: usize,
}

/// A row as it would be written.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PreviewRow {
    pub line: u64,
    /// Column → value (`null`: SQL NULL).
    #[schema(value_type = Object)]
    pub values: Value,
}

/// A record that would be rejected.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PreviewRejection {
    pub line: u64,
    pub reason: String,
}

/// What [`preview`] needs of the upload's plan.
pub struct Planned<'a> {
    pub table: String,
    pub mode: ImportMode,
    pub opts: &'a ValueOptions,
    pub max_body: u64,
    /// `CSVBUS_MAX_MESSAGE_BYTES`: a row too large as a message is a rejection here too.
    pub max_message: usize,
}

/// Reads the first records of `records` (after the header) into a [`Preview`].
pub async fn preview(
    planned: Planned<'_>,
    header: &Header,
    records: &mut Records<Input>,
    read_as: ReadAs,
) -> Result<Preview, ApiError> {
    let mut rows = Vec::new();
    let mut rejected = Vec::new();
    let mut payload = Vec::new();
    let mut read = 0;
    while read < PREVIEW_ROWS {
        let span = match records.next().await {
            Ok(Some(span)) => span,
            Ok(None) => break,
            Err(e) => return Err(read_error(e, planned.max_body).into_answer()),
        };
        read += 1;
        // The upload's own judgement (its message key, a few bytes, left out of the size).
        let max = planned.max_message;
        match encode(header, planned.opts, max, records, span, None, &mut payload) {
            Ok(()) => rows.push(PreviewRow {
                line: span.line,
                values: serde_json::from_slice(&payload).unwrap_or(Value::Null),
            }),
            Err(reason) => rejected.push(PreviewRejection {
                line: span.line,
                reason,
            }),
        }
        records.done();
    }
    Ok(Preview {
        dry_run: true,
        table: planned.table,
        mode: planned.mode,
        read_as,
        columns: header.columns.clone(),
        rows,
        rejected,
        records_read: read,
    })
}
