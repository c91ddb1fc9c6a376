//! `COPY` of one group of rows inside the batch's transaction, with bad rows found by bisection.
//!
//! Each range of rows is written under a savepoint ([`crate::write::bisect`]). What an error means is [`csvbus_shared::failure`]'s one
//! policy: an outage aborts the batch (it is retried whole); rows refused for their values are
//! bisected down to single rows and rejected with Postgres' message; a table or column that is
//! gone rejects the whole group; a table COPY cannot write at all ([`Failure::NotByCopy`],
//! forced row-level security) is written through a temporary table and `INSERT … SELECT`; an
//! unknown error aborts the batch — unless the batch already failed too often, then it is
//! bisected like a data error, so no input can hold a partition.

use std::collections::HashMap;
use std::ops::Range;

use csvbus_shared::catalog::quote_ident;
use csvbus_shared::failure::{classify, Failure};
use csvbus_shared::imports::ImportStatus;
use csvbus_shared::modes::{ImportMode, LINE_COLUMN};
use sqlx::PgConnection;

use crate::config::CopyFormat;
use crate::write::batch::{Group, Reject};
use crate::write::binary::{self, Codec};
use crate::write::bisect::{bisect, Next, OneByOne, RangeWriter, Refusal};
use crate::write::each::{insert_each, Looped, Source};
use crate::write::how::{conflict_clause, without_lines, Format, How, KeyConflicts};

/// How errors of unknown meaning are treated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// They abort the batch, to be retried.
    Normal,
    /// They are bisected like data errors (the batch failed too often).
    LastResort,
    /// Nothing is written: every row is rejected with this reason (even bisection failed).
    RejectAll(String),
}

/// What a group's rows came to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub written: u64,
    /// skip mode: rows whose key was already in the table.
    pub skipped: u64,
    /// Rows neither written nor rejected: the import's refusals passed its `max_rejected`, so
    /// it stops and the rest of its rows are set aside without being tried.
    pub set_aside: u64,
}

/// How many more rows of an import Postgres may refuse in this transaction (`None`: no bound),
/// and whether that was read under the import's row lock.
#[derive(Debug, Default, Clone, Copy)]
pub struct Allowance {
    pub left: Option<i64>,
    /// Read under the lock, or not to be locked: a pipelined batch never refuses rows (it is
    /// written again the ordinary way when it does), and an optimistic one is checked before
    /// it books ([`crate::write::rows::Rows::over_allowance`]).
    pub settled: bool,
}

/// The import's refusals still allowed, read under its row lock (`-1`: it stopped; `None`: no
/// bound). The lock is held to the transaction's end.
pub(crate) async fn lock_allowance(
    conn: &mut PgConnection,
    import: uuid::Uuid,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT CASE WHEN stopped THEN -1
                     WHEN status IN ($2, $3)
                     THEN max_rejected - rows_rejected - rows_write_rejected END
           FROM csvbus.imports WHERE id = $1 FOR NO KEY UPDATE",
    )
    .bind(import)
    .bind(ImportStatus::Receiving)
    .bind(ImportStatus::Produced)
    .fetch_one(conn)
    .await
}

/// Writes a group as its import's mode says; pushes refused rows onto `rejects`. Each refused
/// row takes one from `allowance` (the import's `max_rejected` left); once it is below zero
/// the import stops and the group's remaining rows are set aside: the cost of a file whose
/// every row is refused is bounded by `max_rejected`, not by its size.
pub async fn copy_group(
    conn: &mut PgConnection,
    g: &Group,
    mode: &Mode,
    rejects: &mut Vec<Reject>,
    allowance: &mut Allowance,
    format: CopyFormat,
    conflicts: &KeyConflicts,
) -> Result<Counts, sqlx::Error> {
    let all = 0..g.rows.len() as i64;
    if allowance.left.is_some_and(|a| a < 0) {
        let set_aside = g.rows.len() as u64;
        return Ok(Counts {
            set_aside,
            ..Counts::default()
        });
    }
    if let Mode::RejectAll(reason) = mode {
        reject(g, all, reason, rejects);
        return Ok(Counts::default());
    }
    let cols = g
        .columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let how = How::for_group(conn, g, &cols, conflicts).await?;
    let mut codecs = match format {
        CopyFormat::Binary => binary::codecs(conn, &how.relation(g), g).await?,
        CopyFormat::Csv => None,
    };
    if let (How::Direct(_), Some(line)) = (&how, codecs.as_mut().and_then(|c| c.last_mut())) {
        *line = Codec::Skip;
    }
    let mut w = GroupWriter {
        g,
        mode,
        how,
        codecs,
        binary: Vec::new(),
        binary_failed: false,
        without_lines: Vec::new(),
        key_met: false,
        conflicts,
        cols,
        counts: Counts::default(),
        rejects,
        allowance,
        handled: 0,
        refusals: 0,
    };
    bisect(conn, all, &mut w).await?;
    let mut counts = w.counts;
    counts.set_aside = g.rows.len() as u64 - w.handled;
    Ok(counts)
}

/// Rejects the rows `r` of `g` with `reason`.
fn reject(g: &Group, r: Range<i64>, reason: &str, rejects: &mut Vec<Reject>) {
    for row in &g.rows[r.start as usize..r.end as usize] {
        rejects.push(Reject {
            import: g.import,
            line: row.line,
            index: row.index,
            reason: reason.to_owned(),
        });
    }
}

/// A group written by ranges of its rows.
struct GroupWriter<'a> {
    g: &'a Group,
    mode: &'a Mode,
    how: How,
    /// Per COPY column, how it is encoded in a binary COPY; `None`: CSV only.
    codecs: Option<Vec<Codec>>,
    /// The binary COPY stream of the range being written.
    binary: Vec<u8>,
    /// The last write was a binary COPY and failed: the group goes on as CSV (see `refused`).
    binary_failed: bool,
    /// A direct COPY's CSV: the group's lines without their line numbers.
    without_lines: Vec<u8>,
    /// The direct COPY failed on a unique violation: a key is in the table already.
    key_met: bool,
    conflicts: &'a KeyConflicts,
    cols: String,
    counts: Counts,
    rejects: &'a mut Vec<Reject>,
    allowance: &'a mut Allowance,
    /// Rows written or rejected so far.
    handled: u64,
    /// Rows refused so far.
    refusals: u32,
}

impl GroupWriter<'_> {
    /// Rejects the rows `r`; [`Next::Stop`] once the import's allowance is spent.
    fn reject(&mut self, r: Range<i64>, reason: &str) -> Next {
        let n = r.end - r.start;
        self.refusals = self.refusals.saturating_add(1);
        reject(self.g, r, reason, self.rejects);
        self.handled += n as u64;
        match self.allowance.left.as_mut() {
            Some(a) => {
                *a -= n;
                if *a < 0 {
                    Next::Stop
                } else {
                    Next::Done
                }
            }
            None => Next::Done,
        }
    }
}

impl RangeWriter for GroupWriter<'_> {
    fn copy_relation(&self, r: Range<i64>) -> Option<String> {
        let rows = &self.g.rows[r.start as usize..r.end as usize];
        let bytes = &self.g.csv[rows[0].bytes.start..rows[rows.len() - 1].bytes.end];
        if bytes.iter().filter(|b| **b == b'\n').count() != rows.len() {
            return None; // a value with a line break: Postgres' line is not the record
        }
        // Staged: the INSERT after the COPY names no record (its errors are halved as before).
        Some(self.how.context_name(self.g))
    }

    async fn write(&mut self, conn: &mut PgConnection, r: Range<i64>) -> Result<u64, sqlx::Error> {
        let rows = &self.g.rows[r.start as usize..r.end as usize];
        let bytes = &self.g.csv[rows[0].bytes.start..rows[rows.len() - 1].bytes.end];
        let binary = self
            .codecs
            .as_ref()
            .is_some_and(|c| binary::encode(bytes, rows.len(), c, &mut self.binary));
        let direct = matches!(self.how, How::Direct(_));
        let (format, data) = match (binary, direct) {
            (true, _) => (Format::Binary, &self.binary[..]),
            (false, true) => {
                without_lines(&self.g.csv, rows, &mut self.without_lines);
                (Format::Csv, &self.without_lines[..])
            }
            (false, false) => (Format::Csv, bytes),
        };
        metrics::counter!("csvbus_sink_copies_total", "format" => format.name()).increment(1);
        let written = self.how.write(conn, data, format).await;
        self.binary_failed = binary && written.is_err();
        self.key_met = direct && written.as_ref().is_err_and(unique_violation);
        written
    }

    fn refusal(&self, e: &sqlx::Error) -> Option<Failure> {
        match (classify(e), self.mode) {
            (Failure::Outage, _) => None,
            // Whatever it was, the group goes the staged way: see `refused`.
            _ if matches!(self.how, How::Direct(_)) => Some(Failure::Rows),
            // Postgres decides on the CSV: see `refused`.
            _ if self.binary_failed => Some(Failure::Rows),
            (Failure::Unknown, Mode::Normal) => None,
            (Failure::Unknown, _) => Some(Failure::Rows),
            (f, _) => Some(f),
        }
    }

    async fn write_each(
        &mut self,
        conn: &mut PgConnection,
        r: Range<i64>,
    ) -> Result<Option<OneByOne>, sqlx::Error> {
        // The allowance known: the loop stops at the refusal that spends it.
        if !self.allowance.settled {
            return Ok(None);
        }
        let rows = &self.g.rows[r.start as usize..r.end as usize];
        let bytes = &self.g.csv[rows[0].bytes.start..rows[rows.len() - 1].bytes.end];
        let limit = self.allowance.left.map(|a| a + 1);
        let looped = match (&self.how, self.g.mode) {
            (How::Copy(_), _) => {
                let mut columns = self.g.columns.clone();
                if matches!(self.g.mode, ImportMode::Atomic | ImportMode::Replace) {
                    columns.push(LINE_COLUMN.to_owned());
                }
                let relation = self.how.relation(self.g);
                let source = Source::Csv {
                    columns: &columns,
                    csv: bytes,
                };
                insert_each(conn, &relation, source, limit).await?
            }
            // Upsert and skip: staged, then each row `ON CONFLICT` in line order (the last row
            // of a key wins an upsert, the first a skip, as the staged statement has it).
            (How::Staged { .. }, ImportMode::Upsert | ImportMode::Skip) => {
                self.how.stage_only(conn, bytes).await?;
                let keys = self.g.conflict.as_deref().unwrap_or_default();
                let source = Source::Staged {
                    stage: "pg_temp.csvbus_stage",
                    columns: &self.g.columns,
                    lines: i64::MIN..i64::MAX,
                    then: &conflict_clause(&self.g.columns, keys, self.g.mode),
                };
                insert_each(conn, &self.g.table.quoted(), source, limit).await?
            }
            _ => None,
        };
        let Some(looped) = looped else {
            return Ok(None);
        };
        self.book_each(conn, r, looped).await
    }

    fn dense(&self) -> bool {
        self.refusals >= 2
    }

    fn written(&mut self, r: Range<i64>, n: u64) {
        let rows = (r.end - r.start) as u64;
        self.handled += rows;
        match self.g.mode {
            // Rows superseded by a later row of the same key count as written.
            ImportMode::Upsert => self.counts.written += rows,
            ImportMode::Skip => {
                self.counts.written += n;
                self.counts.skipped += rows - n.min(rows);
            }
            _ => self.counts.written += n,
        }
    }

    async fn refused(
        &mut self,
        conn: &mut PgConnection,
        r: Range<i64>,
        refusal: Refusal,
    ) -> Result<Next, sqlx::Error> {
        if matches!(self.how, How::Direct(_)) {
            // The staged INSERT … ON CONFLICT says what the rows come to, refusals included.
            if std::mem::take(&mut self.key_met) {
                self.conflicts.note(self.g.import);
            }
            self.binary_failed = false;
            self.how = How::on_conflict(conn, self.g, &self.cols).await?;
            if let Some(line) = self.codecs.as_mut().and_then(|c| c.last_mut()) {
                *line = Codec::Int8;
            }
            return Ok(Next::Again);
        }
        // Only the range just written: a row a CSV COPY named earlier is refused as it was.
        if std::mem::take(&mut self.binary_failed) {
            // Whatever went wrong, the group goes on as CSV: every refusal and its reason are
            // Postgres' reading of the values as sent, never of csvbus' encoding.
            self.codecs = None;
            return Ok(Next::Again);
        }
        match refusal.failure {
            Failure::NotByCopy if matches!(self.how, How::Copy(_)) => {
                // COPY cannot write this table at all (forced row-level security): stage the
                // rows in a temporary table and INSERT them, which the policies check row by row.
                let (into, cols) = (self.g.table.quoted(), &self.cols);
                let insert =
                    |from: &str| format!("INSERT INTO {into} ({cols}) SELECT {cols} {from}");
                self.how = How::staged(conn, &self.g.table, cols, false, insert).await?;
                self.codecs = binary::codecs(conn, &self.how.relation(self.g), self.g).await?;
                Ok(Next::Again)
            }
            Failure::Group | Failure::NotByCopy => self.refuse(conn, r, &refusal.message).await,
            _ if r.end - r.start == 1 => self.refuse(conn, r, &refusal.message).await,
            _ => Ok(Next::Split),
        }
    }
}

impl GroupWriter<'_> {
    /// Books what the loop did with the rows `r`: its refusals rejected against the import's
    /// allowance, the others written (or, skip, skipped when their key was there).
    async fn book_each(
        &mut self,
        conn: &mut PgConnection,
        r: Range<i64>,
        looped: Looped,
    ) -> Result<Option<OneByOne>, sqlx::Error> {
        let staged = matches!(self.how, How::Staged { .. });
        let index_of_line: HashMap<i64, i64> = match staged {
            true => (r.clone())
                .map(|i| (self.g.rows[i as usize].line, i))
                .collect(),
            false => HashMap::new(),
        };
        let (mut through, mut stopped, mut refused) = (r.end, false, 0);
        for x in looped.refused {
            let at = match staged {
                true => index_of_line.get(&x.at).copied().unwrap_or(r.end - 1),
                false => r.start + x.at,
            };
            refused += 1;
            if self.refuse(conn, at..at + 1, &x.message).await? == Next::Stop {
                (through, stopped) = (at + 1, true);
                break;
            }
        }
        let ok = ((through - r.start) as u64).saturating_sub(refused);
        self.handled += ok;
        match self.g.mode {
            ImportMode::Skip => {
                self.counts.written += looped.written;
                self.counts.skipped += ok.saturating_sub(looped.written);
            }
            _ => self.counts.written += ok,
        }
        Ok(Some(if stopped {
            OneByOne::Stopped
        } else {
            OneByOne::Done
        }))
    }

    /// Rejects the rows `r` against the import's allowance as the database has it now: other
    /// partitions' transactions refuse its rows too, so from its first refusal on this
    /// transaction holds the import's row and reads what is left — the import stops after
    /// exactly `max_rejected + 1` refusals, however many partitions refuse at once.
    async fn refuse(
        &mut self,
        conn: &mut PgConnection,
        r: Range<i64>,
        reason: &str,
    ) -> Result<Next, sqlx::Error> {
        if !self.allowance.settled {
            let left = lock_allowance(conn, self.g.import).await?;
            *self.allowance = Allowance {
                left,
                settled: true,
            };
            if left.is_some_and(|a| a < 0) {
                return Ok(Next::Stop);
            }
        }
        Ok(self.reject(r, reason))
    }
}

/// A unique violation: for a direct COPY, a key already in the table (or twice in the group).
fn unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "23505")
}
