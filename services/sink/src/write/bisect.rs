//! Bisection under savepoints, the one way the sink finds the rows Postgres refuses: a range of
//! rows is written under a savepoint; when rows of it are refused, the savepoint is rolled back
//! and the range is split in two, in file order, until each refused row stands alone. The COPY
//! of a batch's group ([`super::copy`]) and the move of a staged import
//! ([`crate::finalize::move_rows`]) both go through [`bisect`].

use std::ops::Range;

use csvbus_shared::failure::{classify, describe, Failure};
use sqlx::PgConnection;

/// Rows Postgres refused, and what that means ([`csvbus_shared::failure`]).
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub message: String,
    pub failure: Failure,
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

/// Writes `all` through `w`, bisecting refused ranges; an `Err` is a failure that ends the
/// caller's transaction (an outage, or the savepoint itself).
pub(crate) async fn bisect(
    conn: &mut PgConnection,
    all: Range<i64>,
    w: &mut impl RangeWriter,
) -> Result<(), sqlx::Error> {
    // Ranges still to write, popped in file order.
    let mut todo = vec![all];
    while let Some(r) = todo.pop() {
        if r.is_empty() {
            continue;
        }
        sqlx::query("SAVEPOINT csvbus_rows")
            .execute(&mut *conn)
            .await?;
        let e = match w.write(conn, r.clone()).await {
            Ok(n) => {
                sqlx::query("RELEASE SAVEPOINT csvbus_rows")
                    .execute(&mut *conn)
                    .await?;
                w.written(r, n);
                continue;
            }
            Err(e) => e,
        };
        let Some(failure) = w.refusal(&e) else {
            return Err(e);
        };
        sqlx::query("ROLLBACK TO SAVEPOINT csvbus_rows")
            .execute(&mut *conn)
            .await?;
        sqlx::query("RELEASE SAVEPOINT csvbus_rows")
            .execute(&mut *conn)
            .await?;
        let refusal = Refusal {
            message: describe(&e),
            failure,
        };
        match w.refused(conn, r.clone(), refusal).await? {
            Next::Split => {
                let mid = r.start + (r.end - r.start) / 2;
                todo.push(mid..r.end);
                todo.push(r.start..mid);
            }
            Next::Again => todo.push(r),
            Next::Done => {}
            Next::Stop => return Ok(()),
        }
    }
    Ok(())
}
