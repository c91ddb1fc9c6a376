//! What `create=true` would make of a file, read locally with the service's own code (the
//! CLI's `csvbus infer`): the dialect and encoding the service would detect and the
//! `CREATE TABLE` it would run. Nothing is sent or stored.

use csvbus_shared::catalog::{Column, TableName};
use csvbus_shared::read_as::ReadAs;
use tokio::io::AsyncRead;

use crate::import::checks::read_options;
use crate::import::create::{infer_table, Fields, SAMPLE_BYTES};
use crate::import::request::UploadQuery;
use crate::read::prepare::prepare;

/// What a file would be read as, and the table made for it.
#[derive(Debug, Clone)]
pub struct Inferred {
    pub read_as: ReadAs,
    pub ddl: String,
    pub columns: Vec<Column>,
    /// Rows the types were inferred from.
    pub rows_sampled: usize,
}

/// Reads the start of `input` as an upload to `table` with `query`'s reading options would
/// (its `table` is not used). The error is the message the service would answer.
pub async fn infer(
    input: impl AsyncRead + Send + Unpin + 'static,
    table: &TableName,
    query: &UploadQuery,
) -> Result<Inferred, String> {
    let mut opts = read_options(query, None).map_err(|e| e.message)?;
    opts.keep_sample = SAMPLE_BYTES;
    let p = prepare(Box::pin(input), &opts)
        .await
        .map_err(|e| e.message)?;
    let (sample, complete) = p.sample.unwrap_or_default();
    let names = opts.mapping.names.as_deref();
    let fields = Fields {
        first: opts.first_record(),
        names,
        null: query.null.as_deref(),
    };
    let new =
        infer_table(table, &sample, complete, &p.dialect, fields).map_err(|e| e.to_string())?;
    let mut read_as = p.read_as;
    if new.first_is_data {
        read_as.header = false;
        let note = crate::import::create::first_is_data_note(p.dialect.first_line);
        read_as.notes.push(note);
    }
    read_as.notes.extend(new.notes);
    Ok(Inferred {
        read_as,
        ddl: new.ddl,
        columns: new.columns,
        rows_sampled: new.rows,
    })
}
