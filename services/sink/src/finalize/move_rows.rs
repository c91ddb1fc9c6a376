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

use crate::write::bisect::{bisect, Next, OneByOne, RangeWriter, Refusal};
use crate::write::each::{insert_each, Source};

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

    fn dense(&self) -> bool {
        self.refused.len() >= 2
    }

    async fn write_each(
        &mut self,
        conn: &mut PgConnection,
        r: Range<i64>,
    ) -> Result<Option<OneByOne>, sqlx::Error> {
        let limit = self.allowed - self.refused.len() as i64 + 1;
        let source = Source::Staged {
            stage: &self.stage,
            columns: &self.imp.columns,
            lines: r,
            then: "",
        };
        let target = self.table.quoted();
        let Some(looped) = insert_each(conn, &target, source, Some(limit)).await? else {
            return Ok(None);
        };
        self.written += looped.written;
        if let Some(other) = looped.refused.iter().find(|x| x.failure != Failure::Rows) {
            self.given_up = Some(other.message.clone());
            return Ok(Some(OneByOne::Stopped));
        }
        let refused = looped.refused.into_iter().map(|x| (x.at, x.message));
        let rows = refused_rows(conn, &self.stage, refused.collect()).await?;
        self.refused.extend(rows);
        Ok(Some(match self.over_allowed() {
            Next::Stop => OneByOne::Stopped,
            _ => OneByOne::Done,
        }))
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
        let rows = refused_rows(conn, stage, vec![(*line, refusal.message)]).await?;
        self.refused.extend(rows);
        Ok(self.over_allowed())
    }
}

impl StagedWriter<'_> {
    /// [`Next::Stop`], the move given up, once more rows were refused than allowed.
    fn over_allowed(&mut self) -> Next {
        if self.refused.len() as i64 <= self.allowed {
            return Next::Done;
        }
        let last = &self.refused[self.refused.len() - 1].reason;
        self.given_up = Some(format!(
            "{} rows were refused by {} when the import was moved in, more than max_rejected={} allows; nothing was written. Last: {last}",
            self.refused.len() as i64 + self.imp.rejected_before,
            self.table,
            self.imp.max_rejected,
        ));
        Next::Stop
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

/// The staged rows at `lines` (ascending), refused with their reasons, with their values.
async fn refused_rows(
    conn: &mut PgConnection,
    stage: &str,
    refused: Vec<(i64, String)>,
) -> Result<Vec<Refused>, sqlx::Error> {
    let lines: Vec<i64> = refused.iter().map(|(l, _)| *l).collect();
    let fields: std::collections::HashMap<i64, Option<serde_json::Value>> =
        sqlx::query_as(&format!(
            "SELECT {LINE_COLUMN_SQL}, to_jsonb(s) - '{LINE_COLUMN}' FROM {stage} s
          WHERE {LINE_COLUMN_SQL} = ANY($1)"
        ))
        .bind(&lines)
        .fetch_all(conn)
        .await?
        .into_iter()
        .collect();
    Ok(refused
        .into_iter()
        .map(|(line, reason)| Refused {
            line,
            reason,
            fields: fields.get(&line).cloned().flatten(),
        })
        .collect())
}
