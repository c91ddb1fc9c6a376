//! Bisection under savepoints, the one way the sink finds the rows Postgres refuses: a range of
//! rows is written under a savepoint; when rows of it are refused, the savepoint is rolled back
//! and the range is split in two, in file order, until each refused row stands alone. The COPY
//! of a batch's group ([`super::copy`]) and the move of a staged import
//! ([`crate::finalize::move_rows`]) both go through [`bisect`].
//!
//! When the writer COPYs the range's rows in order, Postgres names the record it refused (the
//! error's context, `COPY t, line N`): that row is refused at once and the range is split
//! around it — the rows before written again, the rest tried next — instead of halving. A
//! refused row then costs about two round trips instead of two per halving.

use std::ops::Range;

use csvbus_shared::failure::{classify, describe, Failure};
use sqlx::{Executor, PgConnection};

/// Rows Postgres refused, and what that means ([`csvbus_shared::failure`]).
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub message: String,
    pub failure: Failure,
}

/// What [`RangeWriter::write_each`] did with a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OneByOne {
    /// Every row is written or refused (and booked as such).
    Done,
    /// It stopped at the refusal that spent the import's allowance: stop bisecting.
    Stopped,
}

/// What becomes of a refused range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Split it in two and write each half.
    Split,
    /// Write it again (the writer changed how it writes).
    Again,
    /// It is dealt with (its rows rejected).
    Done,
    /// Stop bisecting: the writer gives the whole up.
    Stop,
}

/// A writer of rows addressed by a range of positions (row indexes, or lines).
pub(crate) trait RangeWriter {
    /// When [`RangeWriter::write`] is one COPY of `range`'s rows, in order, each on one line:
    /// the name of the relation it copies into, as Postgres names it in an error's context
    /// (`COPY <name>, line N`), so that the record an error names is the row at that place in
    /// the range. Postgres counts the line breaks inside quoted values as lines too (and not
    /// always: not before it has seen a line's end), so a range with such values names none.
    fn copy_relation(&self, _range: Range<i64>) -> Option<String> {
        None
    }

    /// Writes `range` (under the savepoint [`bisect`] holds): the rows written.
    async fn write(
        &mut self,
        conn: &mut PgConnection,
        range: Range<i64>,
    ) -> Result<u64, sqlx::Error>;

    /// What an error of [`RangeWriter::write`] means here: `None` aborts the bisection with
    /// the error (an outage, or what must be retried whole).
    fn refusal(&self, e: &sqlx::Error) -> Option<Failure> {
        match classify(e) {
            Failure::Outage | Failure::Unknown => None,
            f => Some(f),
        }
    }

    /// Writes `range` one row at a time inside Postgres ([`crate::write::each`]), when the
    /// writer can, under the savepoint [`bisect`] holds, and books its rows written and
    /// refused itself. `None`: it cannot (nothing written), and the range is written by
    /// ranges. It stops at the refusal that spends the import's allowance.
    async fn write_each(
        &mut self,
        _conn: &mut PgConnection,
        _range: Range<i64>,
    ) -> Result<Option<OneByOne>, sqlx::Error> {
        Ok(None)
    }

    /// Whether the refusals so far make writing the rest a row at a time worth it, where no
    /// COPY names the rows it refuses (they are found by halving).
    fn dense(&self) -> bool {
        false
    }

    /// `range` was written: `rows` rows.
    fn written(&mut self, range: Range<i64>, rows: u64);

    /// `range` was refused (the savepoint is rolled back).
    async fn refused(
        &mut self,
        conn: &mut PgConnection,
        range: Range<i64>,
        refusal: Refusal,
    ) -> Result<Next, sqlx::Error>;
}

/// A range still to write, or a row a COPY named as refused.
enum Todo {
    Write(Range<i64>),
    /// The rows after a row a COPY named as refused: written a window at a time, the window
    /// doubling as they are written. Where refusals are dense, a COPY then carries a few rows
    /// past the next refusal instead of all the rest of the range (which Postgres reads and
    /// drops after the error): a refused row's cost does not grow with the batch.
    Rest(Range<i64>, i64),
    /// The rows after the second row a COPY named as refused (or a range still to write once
    /// the writer finds its refusals [`RangeWriter::dense`]): refusals are dense, each would
    /// cost a few round trips more; written a row at a time inside Postgres when the writer
    /// can ([`RangeWriter::write_each`]), else as [`Todo::Rest`].
    Each(Range<i64>, i64),
    Refused(Range<i64>, Refusal),
}

/// The rows COPYs named as refused in one [`bisect`] after which the rest of the range is
/// written a row at a time ([`Todo::Each`]).
const DENSE: u32 = 2;

/// The least window of [`Todo::Rest`].
const MIN_WINDOW: i64 = 32;

/// The record (1-based) a COPY into `relation` names in the error's context (`COPY t, line 3,
/// column v: …`). The relation's name is known, so a value quoted after the line number
/// cannot pass for it; anything else is `None` (the range is halved instead).
fn copy_record(e: &sqlx::Error, relation: &str) -> Option<i64> {
    let pg = e
        .as_database_error()?
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()?;
    parse_copy_context(pg.r#where()?, relation)
}

fn parse_copy_context(context: &str, relation: &str) -> Option<i64> {
    let prefix = format!("COPY {relation}, line ");
    // The COPY's own line; a trigger's context lines come before it.
    let after = context.lines().find_map(|l| l.strip_prefix(&prefix))?;
    let digits = after.split([',', ':']).next()?;
    digits.parse().ok().filter(|n| *n >= 1)
}

/// Writes `all` through `w`, bisecting refused ranges; an `Err` is a failure that ends the
/// caller's transaction (an outage, or the savepoint itself).
pub(crate) async fn bisect(
    conn: &mut PgConnection,
    all: Range<i64>,
    w: &mut impl RangeWriter,
) -> Result<(), sqlx::Error> {
    // Ranges still to write (or single rows already known refused), popped in file order.
    let mut todo = vec![Todo::Write(all)];
    // Whether the savepoint is set: after a written range, the next write's savepoint is taken
    // in the same round trip as the release (one statement fewer per refused row).
    let mut held = false;
    // Rows COPYs named as refused so far.
    let mut named_refusals = 0;
    while let Some(t) = todo.pop() {
        let r = match t {
            Todo::Write(r) | Todo::Rest(r, _) | Todo::Each(r, _) if r.is_empty() => continue,
            Todo::Each(r, window) => {
                if !held {
                    sqlx::query("SAVEPOINT csvbus_rows")
                        .execute(&mut *conn)
                        .await?;
                }
                held = false;
                match each(conn, r.clone(), w).await? {
                    Each::Stopped => return Ok(()),
                    Each::Done => {}
                    Each::Cannot => todo.push(Todo::Rest(r, window)),
                }
                continue;
            }
            // Refusals found by halving: the writer may find them dense enough.
            Todo::Write(r) if r.end - r.start > 1 && w.dense() => {
                todo.push(Todo::Each(r, MIN_WINDOW));
                continue;
            }
            Todo::Write(r) => r,
            Todo::Rest(r, window) if r.end - r.start > window => {
                todo.push(Todo::Rest(r.start + window..r.end, window * 2));
                r.start..r.start + window
            }
            Todo::Rest(r, _) => r,
            Todo::Refused(r, refusal) => match w.refused(conn, r, refusal).await? {
                Next::Stop => return Ok(()),
                _ => continue,
            },
        };
        if !held {
            sqlx::query("SAVEPOINT csvbus_rows")
                .execute(&mut *conn)
                .await?;
        }
        let e = match w.write(conn, r.clone()).await {
            Ok(n) => {
                held = matches!(todo.last(), Some(Todo::Write(_) | Todo::Rest(..)));
                let next = if held {
                    "RELEASE SAVEPOINT csvbus_rows; SAVEPOINT csvbus_rows"
                } else {
                    "RELEASE SAVEPOINT csvbus_rows"
                };
                conn.execute(next).await?;
                w.written(r, n);
                continue;
            }
            Err(e) => e,
        };
        let Some(failure) = w.refusal(&e) else {
            return Err(e);
        };
        // The writer's own statements in `refused` stay outside any savepoint.
        conn.execute("ROLLBACK TO SAVEPOINT csvbus_rows; RELEASE SAVEPOINT csvbus_rows")
            .await?;
        held = false;
        let refusal = Refusal {
            message: describe(&e),
            failure,
        };
        let named = w
            .copy_relation(r.clone())
            .and_then(|rel| copy_record(&e, &rel));
        match w.refused(conn, r.clone(), refusal.clone()).await? {
            Next::Split => match named.map(|n| r.start + n - 1).filter(|b| r.contains(b)) {
                // The COPY named the refused row: refuse it, write what came before, go on after.
                Some(bad) => {
                    // The next window: twice the rows this COPY got through.
                    let window = (2 * (bad + 1 - r.start)).max(MIN_WINDOW);
                    named_refusals += 1;
                    todo.push(match named_refusals >= DENSE {
                        true => Todo::Each(bad + 1..r.end, window),
                        false => Todo::Rest(bad + 1..r.end, window),
                    });
                    todo.push(Todo::Refused(bad..bad + 1, refusal));
                    todo.push(Todo::Write(r.start..bad));
                }
                None => {
                    let mid = r.start + (r.end - r.start) / 2;
                    todo.push(Todo::Write(mid..r.end));
                    todo.push(Todo::Write(r.start..mid));
                }
            },
            Next::Again => todo.push(Todo::Write(r)),
            Next::Done => {}
            Next::Stop => return Ok(()),
        }
    }
    Ok(())
}

/// What became of a range given to [`RangeWriter::write_each`].
enum Each {
    /// Its rows are written or refused.
    Done,
    /// The import's allowance is spent: bisecting stops.
    Stopped,
    /// Nothing was written of it: write it by ranges.
    Cannot,
}

/// Writes `r` through [`RangeWriter::write_each`] under the savepoint set for it, which is
/// released (or, when the writer cannot or fails, rolled back).
async fn each(
    conn: &mut PgConnection,
    r: Range<i64>,
    w: &mut impl RangeWriter,
) -> Result<Each, sqlx::Error> {
    let done = match w.write_each(conn, r).await {
        Ok(Some(done)) => done,
        Ok(None) => {
            conn.execute("RELEASE SAVEPOINT csvbus_rows").await?;
            return Ok(Each::Cannot);
        }
        Err(e) if classify(&e) == Failure::Outage => return Err(e),
        Err(e) => {
            tracing::debug!(error = %e, "writing a row at a time failed: by ranges instead");
            conn.execute("ROLLBACK TO SAVEPOINT csvbus_rows; RELEASE SAVEPOINT csvbus_rows")
                .await?;
            return Ok(Each::Cannot);
        }
    };
    conn.execute("RELEASE SAVEPOINT csvbus_rows").await?;
    Ok(match done {
        OneByOne::Done => Each::Done,
        OneByOne::Stopped => Each::Stopped,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_copy_context;

    #[test]
    fn the_record_a_copy_error_names_is_read_from_its_context() {
        let c = |s: &str| parse_copy_context(s, "t");
        assert_eq!(c("COPY t, line 3, column v: \"x\""), Some(3));
        assert_eq!(c("COPY t, line 12: \"1,0\""), Some(12));
        assert_eq!(c("COPY t, line 12"), Some(12));
        // A value that looks like a context does not count: only the relation's own line.
        assert_eq!(c("COPY t, line 2, column v: \"COPY t, line 9\""), Some(2));
        assert_eq!(
            c("PL/pgSQL function f() line 3 at RAISE\nCOPY t, line 7"),
            Some(7)
        );
        assert_eq!(c("COPY other, line 4"), None);
        assert_eq!(c("SQL statement \"INSERT …\""), None);
        assert_eq!(c("COPY t, line 0"), None);
        assert_eq!(c("COPY t, line x"), None);
    }
}
