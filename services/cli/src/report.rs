//! What `csvbus import` says of each file: a typed report, printed as JSON (`--json`) or as
//! one line for people.

use csvbus_shared::imports::{ImportStatus, RejectedRow};
use csvbus_shared::read_as::ReadAs;
use serde::Serialize;
use uuid::Uuid;

use crate::client::ClientError;

/// What `csvbus import` prints for one file (with `--json`, one object per line).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Report {
    Imported(Imported),
    Refused(Refused),
}

/// An accepted file: the upload's answer, and with `--wait` the sink's counters.
#[derive(Debug, Serialize)]
pub struct Imported {
    pub file: String,
    pub import_id: Uuid,
    pub status: ImportStatus,
    pub rows_produced: u64,
    pub rows_rejected: u64,
    pub bytes_read: u64,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_written: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_write_rejected: Option<i64>,
    /// Why the import failed, as its record says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub first_rejected: Vec<RejectedRow>,
    /// How the service read the file: delimiter, encoding, column mapping, created table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_as: Option<Box<ReadAs>>,
}

/// A file the service did not accept, or that could not be sent.
#[derive(Debug, Serialize)]
pub struct Refused {
    pub file: String,
    /// Always `refused`.
    pub status: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// The service's error code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
}

/// The report of a file the service refused (or that could not be sent).
pub fn refused(file: &str, e: &ClientError) -> Report {
    let mut r = Refused {
        file: file.to_owned(),
        status: "refused",
        message: e.to_string(),
        http_status: None,
        error: None,
        line: None,
    };
    if let ClientError::Api {
        status, code, line, ..
    } = e
    {
        r.http_status = Some(*status);
        r.error = Some(code.clone());
        r.line = *line;
    }
    Report::Refused(r)
}

/// One line per file for people (and for logs when not on a terminal).
pub fn human(report: &Report) -> String {
    let r = match report {
        Report::Refused(r) => return format!("{}: refused: {}", r.file, r.message),
        Report::Imported(r) => r,
    };
    let mut s = format!(
        "{}: {} import {} — {} rows produced, {} rejected while reading",
        r.file, r.status, r.import_id, r.rows_produced, r.rows_rejected,
    );
    if let (Some(w), Some(wr)) = (r.rows_written, r.rows_write_rejected) {
        s += &format!(", {w} written, {wr} rejected by Postgres");
    }
    if let Some(e) = &r.error {
        s += &format!(" — {e}");
    }
    s += &format!(" ({:.1}s)", r.seconds);
    if let Some(how) = &r.read_as {
        s += &read_as_line(how);
    }
    s
}

/// What detection chose, renamed or created, when there is anything to say.
fn read_as_line(r: &ReadAs) -> String {
    let mut parts = Vec::new();
    if r.delimiter_detected && r.delimiter != "," {
        parts.push(format!("delimiter {} detected", r.delimiter));
    }
    if r.encoding_detected || r.encoding != "utf-8" {
        parts.push(format!("read as {}", r.encoding));
    }
    for m in &r.mapping {
        match &m.column {
            Some(c) => parts.push(format!("{:?} → {c}", m.field)),
            None => parts.push(format!("{:?} dropped", m.field)),
        }
    }
    parts.extend(r.notes.iter().cloned());
    if let Some(ddl) = &r.created {
        parts.push(format!("created: {ddl}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("\n  {}", parts.join("; "))
    }
}
