//! Inserting an import's staged rows into its target inside the move's transaction: in line
//! order, one INSERT … SELECT per line range; a range the target refuses is split in two
//! ([`crate::write::bisect`]) until the refused rows are found, each rejected with its line and
//! Postgres' message.

use csvbus_shared::catalog::{quote_ident, TableName};
use std::ops::Range;

use csvbus_shared::failure::Failure;
use csvbus_shared::imports::sink::ToMove;
use csvbus_shared::modes::{staging_table, ImportMode, LINE_COLUMN, LINE_COLUMN_SQL};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::write::bisect::{bisect, Next, RangeWriter, Refusal};

/// A staged row the target refused.
pub(crate) struct Refused {
    pub line: i64,
    pub reason: String,
    pub fields: Option<serde_json::Value>,
}

/// What the move came to: the rows written and the ones refused; or, when the move is given
/// up, the rows refused so far and why.
pub(crate) enum Moved {
    Done { written: u64, refused: Vec<Refused> },
    GivenUp { refused: Vec<Refused>, why: String },
}

/// Empties the target (replace) and inserts the staged rows, bisecting refused ones; gives up
/// when more than `allowed` rows are refused, or the target refuses the import as a whole.
pub(crate) async fn insert_all(
    conn: &mut PgConnection,
    id: Uuid,
    table: &TableName,
    imp: &ToMove,
    allowed: i64,
) -> Result<Moved, sqlx::Error> {
    let stage = staging_table(id);
    let Some((insert, lines)) = prepare_move(conn, &stage, table, imp).await? else {
        return Ok(Moved::Done {
            written: 0,
            refused: vec![],
        });
    };
    let mut w = StagedWriter {
        stage,
        insert,
        table,
        imp,
        allowed,
        indexed: false,
        written: 0,
        refused: Vec::new(),
        given_up: None,
    };
    bisect(conn, lines, &mut w).await?;
    Ok(match w.given_up {
        Some(why) => Moved::GivenUp {
            refused: w.refused,
            why,
        },
        None => Moved::Done {
            written: w.written,
            refused: w.refused,
        },
    })
}

/// Staged rows moved by ranges of their lines.
struct StagedWriter<'a> {
    stage: String,
    insert: String,
    table: &'a TableName,
    imp: &'a ToMove,
    allowed: i64,
    /// Bisection looks rows up by line: worth an index from the first refusal on.
    indexed: bool,
    written: u64,
    refused: Vec<Refused>,
    given_up: Option<String>,
}

impl RangeWriter for StagedWriter<'_> {
    async fn write(&mut self, conn: &mut PgConnection, r: Range<i64>) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(&self.insert)
            .bind(r.start)
            .bind(r.end)
            .execute(conn)
            .await?;
        Ok(done.rows_affected())
    }

    fn written(&mut self, _: Range<i64>, rows: u64) {
        self.written += rows;
    }

    async fn refused(
        &mut self,
        conn: &mut PgConnection,
        r: Range<i64>,
        refusal: Refusal,
    ) -> Result<Next, sqlx::Error> {
        if refusal.failure != Failure::Rows {
            self.given_up = Some(refusal.message);
            return Ok(Next::Stop);
        }
        let stage = &self.stage;
        if !self.indexed {
            sqlx::query(&format!("CREATE INDEX ON {stage} ({LINE_COLUMN_SQL})"))
                .execute(&mut *conn)
                .await?;
            self.indexed = true;
        }
        let lines: Vec<i64> = sqlx::query_scalar(&format!(
            "SELECT {LINE_COLUMN_SQL} FROM {stage} WHERE {LINE_COLUMN_SQL} >= $1 AND {LINE_COLUMN_SQL} < $2 LIMIT 2"
        ))
        .bind(r.start)
        .bind(r.end)
        .fetch_all(&mut *conn)
        .await?;
        let [line] = lines.as_slice() else {
            return Ok(if lines.is_empty() {
                Next::Done
            } else {
                Next::Split
            });
        };
        let row = refused_row(conn, stage, *line, refusal.message).await?;
        self.refused.push(row);
        if self.refused.len() as i64 <= self.allowed {
            return Ok(Next::Done);
        }
        let last = &self.refused[self.refused.len() - 1].reason;
        self.given_up = Some(format!(
            "{} rows were refused by {} when the import was moved in, more than max_rejected={} allows; nothing was written. Last: {last}",
            self.refused.len() as i64 + self.imp.rejected_before,
            self.table,
            self.imp.max_rejected,
        ));
        Ok(Next::Stop)
    }
}

/// Empties the target for a replace; the INSERT that moves a range of staged lines, and the
/// staged lines' range, end excluded (`None`: nothing staged).
async fn prepare_move(
    conn: &mut PgConnection,
    stage: &str,
    table: &TableName,
    imp: &ToMove,
) -> Result<Option<(String, Range<i64>)>, sqlx::Error> {
    if imp.mode == ImportMode::Replace {
        sqlx::query(&format!("DELETE FROM {}", table.quoted()))
            .execute(&mut *conn)
            .await?;
    }
    let cols = imp
        .columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let insert = format!(
        "INSERT INTO {} ({cols}) SELECT {cols} FROM {stage}
          WHERE {LINE_COLUMN_SQL} >= $1 AND {LINE_COLUMN_SQL} < $2 ORDER BY {LINE_COLUMN_SQL}",
        table.quoted()
    );
    let (lo, hi): (Option<i64>, Option<i64>) = sqlx::query_as(&format!(
        "SELECT min({LINE_COLUMN_SQL}), max({LINE_COLUMN_SQL}) FROM {stage}"
    ))
    .fetch_one(&mut *conn)
    .await?;
    Ok(lo.zip(hi).map(|(lo, hi)| (insert, lo..hi + 1)))
}

async fn refused_row(
    conn: &mut PgConnection,
    stage: &str,
    line: i64,
    reason: String,
) -> Result<Refused, sqlx::Error> {
    let fields: Option<serde_json::Value> = sqlx::query_scalar(&format!(
        "SELECT to_jsonb(s) - '{LINE_COLUMN}' FROM {stage} s WHERE {LINE_COLUMN_SQL} = $1"
    ))
    .bind(line)
    .fetch_optional(conn)
    .await?;
    Ok(Refused {
        line,
        reason,
        fields,
    })
}
