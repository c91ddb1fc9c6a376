//! `COPY` of one group of rows inside the batch's transaction, with bad rows found by bisection.
//!
//! Each attempt runs under a savepoint. What an error means is [`csvbus_shared::failure`]'s one
//! policy: an outage aborts the batch (it is retried whole); rows refused for their values are
//! bisected down to single rows and rejected with Postgres' message; a table or column that is
//! gone rejects the whole group; a table COPY cannot write at all (0A000, forced row-level
//! security) is written through a temporary table and `INSERT … SELECT`; an unknown error aborts the batch — unless the batch already
//! failed too often, then it is bisected like a data error, so no input can hold a partition.

use std::ops::Range;

use csvbus_shared::catalog::{quote_ident, TableName};
use csvbus_shared::failure::{classify, Failure};
use sqlx::PgConnection;

use crate::batch::{Group, Reject};

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

/// COPYs a group; returns rows written, pushing refused rows onto `rejects`.
pub async fn copy_group(
    conn: &mut PgConnection,
    g: &Group,
    mode: &Mode,
    rejects: &mut Vec<Reject>,
) -> Result<u64, sqlx::Error> {
    let reject = |r: Range<usize>, reason: &str, rejects: &mut Vec<Reject>| {
        for (_, line, index) in &g.rows[r] {
            rejects.push(Reject {
                import: g.import,
                line: *line,
                index: *index,
                reason: reason.to_owned(),
            });
        }
    };
    if let Mode::RejectAll(reason) = mode {
        reject(0..g.rows.len(), reason, rejects);
        return Ok(0);
    }
    let Some(table) = TableName::parse(&g.table, "public") else {
        let reason = format!("invalid table name {:?}", g.table);
        reject(0..g.rows.len(), &reason, rejects);
        return Ok(0);
    };
    let cols = g
        .columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let mut how = How::Copy(format!(
        "COPY {} ({cols}) FROM STDIN WITH (FORMAT csv)",
        table.quoted()
    ));
    let mut written = 0;
    // Ranges of rows still to write; popped in file order.
    let mut todo: Vec<Range<usize>> = vec![];
    todo.push(0..g.rows.len());
    while let Some(r) = todo.pop() {
        let bytes = &g.csv[g.rows[r.start].0.start..g.rows[r.end - 1].0.end];
        match copy_in_savepoint(conn, &how, bytes, mode).await? {
            Ok(n) => written += n,
            Err(refused) if refused.code == "0A000" && matches!(how, How::Copy(_)) => {
                // COPY cannot write this table at all (forced row-level security): stage the
                // rows in a temporary table and INSERT them, which the policies check row by row.
                how = How::staged(conn, &table, &cols).await?;
                todo.push(r);
            }
            Err(refused) if refused.failure == Failure::Group || r.len() == 1 => {
                reject(r, &refused.message, rejects)
            }
            Err(_) => {
                let mid = r.start + r.len() / 2;
                todo.push(mid..r.end);
                todo.push(r.start..mid);
            }
        }
    }
    Ok(written)
}

/// How rows reach the table.
enum How {
    /// `COPY` straight into it.
    Copy(String),
    /// `COPY` into a temporary table of the same columns, then `INSERT … SELECT`.
    Staged { copy: String, insert: String },
}

impl How {
    async fn staged(
        conn: &mut PgConnection,
        table: &TableName,
        cols: &str,
    ) -> Result<Self, sqlx::Error> {
        sqlx::query("DROP TABLE IF EXISTS pg_temp.csvbus_stage")
            .execute(&mut *conn)
            .await?;
        sqlx::query(&format!(
            "CREATE TEMP TABLE csvbus_stage ON COMMIT DROP AS SELECT {cols} FROM {} WITH NO DATA",
            table.quoted()
        ))
        .execute(&mut *conn)
        .await?;
        Ok(Self::Staged {
            copy: format!("COPY pg_temp.csvbus_stage ({cols}) FROM STDIN WITH (FORMAT csv)"),
            insert: format!(
                "INSERT INTO {} ({cols}) SELECT {cols} FROM pg_temp.csvbus_stage",
                table.quoted()
            ),
        })
    }

    async fn write(&self, conn: &mut PgConnection, bytes: &[u8]) -> Result<u64, sqlx::Error> {
        let copy_stmt = match self {
            How::Copy(stmt) => stmt,
            How::Staged { copy, .. } => {
                sqlx::query("TRUNCATE pg_temp.csvbus_stage")
                    .execute(&mut *conn)
                    .await?;
                copy
            }
        };
        let mut copy = conn.copy_in_raw(copy_stmt).await?;
        copy.send(bytes).await?;
        let n = copy.finish().await?;
        match self {
            How::Copy(_) => Ok(n),
            How::Staged { insert, .. } => Ok(sqlx::query(insert)
                .execute(&mut *conn)
                .await?
                .rows_affected()),
        }
    }
}

/// Rows refused by the database.
struct Refused {
    message: String,
    failure: Failure,
    code: String,
}

/// `Ok(Ok(rows))`; `Ok(Err(refused))` for rows refused (rolled back to the savepoint); `Err`
/// for what aborts the batch.
async fn copy_in_savepoint(
    conn: &mut PgConnection,
    how: &How,
    bytes: &[u8],
    mode: &Mode,
) -> Result<Result<u64, Refused>, sqlx::Error> {
    sqlx::query("SAVEPOINT csvbus_copy")
        .execute(&mut *conn)
        .await?;
    let result = how.write(conn, bytes).await;
    let e = match result {
        Ok(n) => {
            sqlx::query("RELEASE SAVEPOINT csvbus_copy")
                .execute(&mut *conn)
                .await?;
            return Ok(Ok(n));
        }
        Err(e) => e,
    };
    let failure = match (classify(&e), mode) {
        (Failure::Outage, _) | (Failure::Unknown, Mode::Normal) => return Err(e),
        (Failure::Unknown, _) => Failure::Rows,
        (f, _) => f,
    };
    sqlx::query("ROLLBACK TO SAVEPOINT csvbus_copy")
        .execute(&mut *conn)
        .await?;
    sqlx::query("RELEASE SAVEPOINT csvbus_copy")
        .execute(&mut *conn)
        .await?;
    let code = match &e {
        sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()).unwrap_or_default(),
        _ => String::new(),
    };
    Ok(Err(Refused {
        message: describe(&e),
        failure,
        code,
    }))
}

/// Postgres' message with its SQLSTATE, for a rejected row.
pub fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => {
            format!(
                "{} (SQLSTATE {})",
                d.message(),
                d.code().unwrap_or_default()
            )
        }
        other => other.to_string(),
    }
}
