//! Inserting an import's staged rows into its target inside the move's transaction: in line
//! order, one INSERT … SELECT per line range; a range the target refuses is split in two until
//! the refused rows are found, each rejected with its line and Postgres' message.

use csvbus_shared::catalog::{quote_ident, TableName};
use csvbus_shared::failure::{classify, describe, Failure};
use csvbus_shared::modes::{staging_table, ImportMode, LINE_COLUMN, LINE_COLUMN_SQL};
use sqlx::PgConnection;
use uuid::Uuid;

/// The import as the move reads it.
#[derive(sqlx::FromRow)]
pub(crate) struct Import {
    pub target_schema: String,
    pub target_table: String,
    pub columns: Vec<String>,
    pub mode: ImportMode,
    pub max_rejected: i64,
    pub rejected_before: i64,
}

/// A staged row the target refused.
pub(crate) struct Refused {
    pub line: i64,
    pub reason: String,
    pub fields: Option<serde_json::Value>,
}

pub(crate) type Moved = Result<(u64, Vec<Refused>), (Vec<Refused>, String)>;

/// Empties the target (replace) and inserts the staged rows, bisecting refused ones. `Err` when
/// more than `allowed` rows are refused, or the target refuses the import as a whole.
pub(crate) async fn insert_all(
    conn: &mut PgConnection,
    id: Uuid,
    table: &TableName,
    imp: &Import,
    allowed: i64,
) -> Result<Moved, sqlx::Error> {
    let stage = staging_table(id);
    let Some((insert, lo, hi)) = prepare_move(conn, &stage, table, imp).await? else {
        return Ok(Ok((0, vec![])));
    };
    let mut written = 0;
    let mut refused = Vec::new();
    let mut indexed = false;
    // Line ranges still to insert, popped in file order.
    let mut todo = vec![(lo, hi)];
    while let Some((a, b)) = todo.pop() {
        let e = match insert_range(conn, &insert, a, b).await? {
            Ok(n) => {
                written += n;
                continue;
            }
            Err(e) => e,
        };
        match classify(&e) {
            Failure::Rows => {}
            Failure::Group => return Ok(Err((refused, describe(&e)))),
            Failure::Outage | Failure::Unknown => return Err(e),
        }
        if !indexed {
            // Bisection looks rows up by line: worth an index from the first refusal on.
            sqlx::query(&format!("CREATE INDEX ON {stage} ({LINE_COLUMN_SQL})"))
                .execute(&mut *conn)
                .await?;
            indexed = true;
        }
        let lines: Vec<i64> = sqlx::query_scalar(&format!(
            "SELECT {LINE_COLUMN_SQL} FROM {stage} WHERE {LINE_COLUMN_SQL} BETWEEN $1 AND $2 LIMIT 2"
        ))
        .bind(a)
        .bind(b)
        .fetch_all(&mut *conn)
        .await?;
        match lines.as_slice() {
            [] => {}
            [line] => {
                refused.push(refused_row(conn, &stage, *line, describe(&e)).await?);
                if refused.len() as i64 > allowed {
                    let why = format!(
                        "{} rows were refused by {table} when the import was moved in, more than max_rejected={} allows; nothing was written. Last: {}",
                        refused.len() as i64 + imp.rejected_before,
                        imp.max_rejected,
                        describe(&e)
                    );
                    return Ok(Err((refused, why)));
                }
            }
            _ => {
                let mid = a + (b - a) / 2;
                todo.push((mid + 1, b));
                todo.push((a, mid));
            }
        }
    }
    Ok(Ok((written, refused)))
}

/// Empties the target for a replace; the INSERT that moves a range of staged lines, and the
/// staged lines' range (`None`: nothing staged).
async fn prepare_move(
    conn: &mut PgConnection,
    stage: &str,
    table: &TableName,
    imp: &Import,
) -> Result<Option<(String, i64, i64)>, sqlx::Error> {
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
          WHERE {LINE_COLUMN_SQL} BETWEEN $1 AND $2 ORDER BY {LINE_COLUMN_SQL}",
        table.quoted()
    );
    let (lo, hi): (Option<i64>, Option<i64>) = sqlx::query_as(&format!(
        "SELECT min({LINE_COLUMN_SQL}), max({LINE_COLUMN_SQL}) FROM {stage}"
    ))
    .fetch_one(&mut *conn)
    .await?;
    Ok(lo.zip(hi).map(|(lo, hi)| (insert, lo, hi)))
}

/// Moves staged lines `a..=b` under a savepoint: the rows written, or the error that refused
/// them (rolled back to the savepoint when it refused rows, to bisect). The outer `Err` is a
/// failure of the savepoint itself.
async fn insert_range(
    conn: &mut PgConnection,
    insert: &str,
    a: i64,
    b: i64,
) -> Result<Result<u64, sqlx::Error>, sqlx::Error> {
    sqlx::query("SAVEPOINT csvbus_move")
        .execute(&mut *conn)
        .await?;
    match sqlx::query(insert)
        .bind(a)
        .bind(b)
        .execute(&mut *conn)
        .await
    {
        Ok(r) => {
            sqlx::query("RELEASE SAVEPOINT csvbus_move")
                .execute(&mut *conn)
                .await?;
            Ok(Ok(r.rows_affected()))
        }
        Err(e) => {
            // Refused rows are bisected inside this transaction; anything else ends it.
            if matches!(classify(&e), Failure::Rows) {
                sqlx::query("ROLLBACK TO SAVEPOINT csvbus_move")
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(Err(e))
        }
    }
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
