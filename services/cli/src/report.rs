//! What `csvbus import` says of each file: a typed report, printed as JSON (`--json`) or as
//! one line for people, and the [`Verdict`] the exit status comes from.

use chrono::{DateTime, Utc};
use csvbus_shared::imports::{ImportStatus, RejectedRow};
use csvbus_shared::modes::ImportMode;
use csvbus_shared::read_as::{Delimiter, ReadAs};
use serde::Serialize;
use uuid::Uuid;

use crate::client::ClientError;

/// How one file ended, from the least to the most severe (the exit status is the worst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Imported (and with `--wait`, completed) with no more rejected rows than allowed.
    Imported,
    /// Imported so, but nothing in the first rows settled the order of its dates: dates such
    /// as `01/02/2024` were read in a default order, a guess (`read_as.dateformat_guessed`).
    DatesGuessed,
    /// Imported, but more rows were rejected than `--max-rejected` allows (0 when not given).
    RowsRejected,
    /// Imported already, with these options into this table: nothing was imported again.
    AlreadyImported,
    /// Refused, failed or aborted with nothing written, or not sent.
    Failed,
    /// Failed after some of its rows were written: they stay in the table.
    PartlyWritten,
}

/// What `csvbus import` prints for one file (with `--json`, one object per line).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Report {
    Imported(Box<Imported>),
    Refused(Refused),
}

/// A file with an import: the upload's answer, and with `--wait` the sink's counters.
#[derive(Debug, Serialize)]
pub struct Imported {
    pub file: String,
    /// How the file ended (the exit status follows the worst).
    pub result: Verdict,
    pub import_id: Uuid,
    pub idempotency_key: String,
    pub status: ImportStatus,
    pub mode: ImportMode,
    /// Answered from an earlier import under the same key: nothing was imported this time.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
    /// When the earlier import was made (with `replayed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imported_at: Option<DateTime<Utc>>,
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

/// A file the service did not accept, or that could not be sent: nothing of it was written.
#[derive(Debug, Serialize)]
pub struct Refused {
    pub file: String,
    /// Always `failed`.
    pub result: Verdict,
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
        result: Verdict::Failed,
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

/// One line per file for people (and for logs when not on a terminal), and what to do next
/// when there is something to do.
pub fn human(report: &Report) -> String {
    let r = match report {
        Report::Refused(r) => return format!("{}: refused: {}", r.file, r.message),
        Report::Imported(r) => r,
    };
    let mut s = match r.result {
        Verdict::AlreadyImported | Verdict::Imported | Verdict::RowsRejected if r.replayed => {
            already(r)
        }
        Verdict::PartlyWritten => match r.rows_written {
            Some(n) => format!(
                "{}: failed after {n} rows were written (import {})",
                r.file, r.import_id
            ),
            None => format!(
                "{}: failed after {} rows were sent to the table, where the sink writes them (import {})",
                r.file, r.rows_produced, r.import_id
            ),
        },
        _ => format!(
            "{}: {} import {} — {} rows produced, {} rejected while reading",
            r.file,
            status_text(r),
            r.import_id,
            r.rows_produced,
            r.rows_rejected,
        ),
    };
    if let (Some(w), Some(wr)) = (r.rows_written, r.rows_write_rejected) {
        s += &format!(", {w} written, {wr} rejected by Postgres");
    }
    if let Some(e) = &r.error {
        s += &format!(" — {e}");
    }
    s += &format!(" ({:.1}s)", r.seconds);
    if r.result == Verdict::DatesGuessed {
        s += &format!("\n  {DATES_GUESSED}");
    }
    if r.result == Verdict::PartlyWritten {
        s += "\n  the rows written stay in the table: import only the rest, or use --mode atomic \
              for all or nothing";
    }
    if let Some(how) = r.read_as.as_ref().filter(|_| !r.replayed) {
        s += &read_as_line(how);
    }
    s
}

/// What a file whose date order was a guess is told.
pub const DATES_GUESSED: &str = "the order of the dates was a guess (nothing in the first rows \
     settled it, see the note above): --dateformat dmy, mdy or ymd says how the file writes \
     them (exit status 6)";

/// The status, and for a completed import with rejected rows, how many: such an import is not
/// a plain success.
fn status_text(r: &Imported) -> String {
    let rejected = r.rows_rejected as i64 + r.rows_write_rejected.unwrap_or(0);
    if r.status == ImportStatus::Completed && rejected > 0 {
        format!("completed with {rejected} rejected —")
    } else {
        r.status.to_string()
    }
}

fn already(r: &Imported) -> String {
    let at = r
        .imported_at
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "an earlier time".into());
    let sent = if r.bytes_read == 0 {
        "nothing sent"
    } else {
        "the same bytes were sent"
    };
    let mut s = format!(
        "{}: already imported as {} at {at}: {sent}, nothing imported again ({}",
        r.file, r.import_id, r.status
    );
    if r.result == Verdict::AlreadyImported {
        s += "; --again imports it anew";
    }
    s + ")"
}

/// What detection chose, renamed, created, widened or added, when there is anything to say.
fn read_as_line(r: &ReadAs) -> String {
    let mut parts = Vec::new();
    if r.delimiter_detected && r.delimiter != Delimiter::COMMA {
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
    // The table is not what `created` says any more, or has columns it had not.
    parts.extend(r.widened.iter().map(|w| format!("widened: {w}")));
    parts.extend(r.added.iter().map(|a| format!("added: {a}")));
    if parts.is_empty() {
        String::new()
    } else {
        format!("\n  {}", parts.join("; "))
    }
}
