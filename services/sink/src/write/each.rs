//! Rows written one at a time inside Postgres, when a group's refusals are dense.
//!
//! Bisection by COPY ([`super::bisect`]) costs a few round trips per refused row: the COPY that
//! names it, the savepoint rolled back, the rows before it written again. Where every tenth row
//! is refused that is most of the write's time. Here the range is COPYed once into a temporary
//! table of text columns (which refuses nothing), and one `DO` block inserts its rows into the
//! relation one by one, each in a subtransaction of its own: a refused row is caught there and
//! noted with its SQLSTATE and message, and the loop goes on. One round trip for the lot.
//!
//! Rows already in a typed staging table go through the same loop from there: an upsert or
//! skip group's (each row `ON CONFLICT`, in line order), and an atomic or replace import's
//! when it is moved in (its INSERTs name no row they refuse, so they were halved). Each CSV value goes in as
//! `value::base_type`, converted by the type's input function as COPY converts it; the
//! column's modifier (`varchar(10)`, `numeric(6,2)`) is applied by the INSERT's assignment,
//! which refuses a value too long as COPY does (an explicit `::varchar(10)` would cut it). Only errors of the classes that [`csvbus_shared::failure`]
//! calls the rows' own are caught; anything else fails the block, and the caller goes on by
//! COPY. Statement-level triggers fire once per row here, not once per COPY.

use csvbus_shared::catalog::quote_ident;
use csvbus_shared::failure::{classify_code, Failure};
use std::ops::Range;

use csvbus_shared::modes::LINE_COLUMN_SQL;
use sqlx::{Executor, PgConnection};

/// The conditions a row's INSERT may fail with and the loop goes on: the SQLSTATE classes
/// [`csvbus_shared::failure::classify_code`] counts as the rows' own (22, 23, 54, P0, 42, 2F,
/// 38, 39, 27).
const CAUGHT: &str = "data_exception OR integrity_constraint_violation OR \
    program_limit_exceeded OR plpgsql_error OR syntax_error_or_access_rule_violation OR \
    sql_routine_exception OR external_routine_exception OR \
    external_routine_invocation_exception OR triggered_data_change_violation";

/// A row the loop refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    /// Where it is: its place among the CSV rows (0-based), or its staged line.
    pub at: i64,
    pub failure: Failure,
    /// Postgres' message with its SQLSTATE, as [`csvbus_shared::failure::describe`] writes it.
    pub message: String,
}

/// What the loop did.
#[derive(Debug, Default)]
pub(crate) struct Looped {
    /// The rows refused, in order.
    pub refused: Vec<Refused>,
    /// Rows inserted.
    pub written: u64,
}

/// Where the rows come from.
pub(crate) enum Source<'a> {
    /// COPY CSV lines of `columns` (unquoted names), in order: COPYed into a temporary table
    /// of text columns, each value then cast to its column's base type.
    Csv {
        columns: &'a [String],
        csv: &'a [u8],
    },
    /// The rows of a staging table (quoted) whose line is in `lines`, in line order, with
    /// `columns` (unquoted) typed already; each INSERT ends with `then` (an `ON CONFLICT`).
    Staged {
        stage: &'a str,
        columns: &'a [String],
        lines: Range<i64>,
        then: &'a str,
    },
}

/// Inserts `source`'s rows into `relation` (quoted) a row at a time, each in a subtransaction;
/// stops after `limit` refusals. `None` when the relation's columns cannot be read so (a
/// column it lacks: the caller's COPY says what is wrong).
pub(crate) async fn insert_each(
    conn: &mut PgConnection,
    relation: &str,
    source: Source<'_>,
    limit: Option<i64>,
) -> Result<Option<Looped>, sqlx::Error> {
    conn.execute(
        "DROP TABLE IF EXISTS pg_temp.csvbus_each, pg_temp.csvbus_each_refused;
         CREATE TEMP TABLE csvbus_each_refused (ord bigint, state text, message text)
           ON COMMIT DROP",
    )
    .await?;
    let (rows, columns, values, ord, then) = match source {
        Source::Csv { columns, csv } => {
            let Some(types) = base_types(conn, relation, columns).await? else {
                return Ok(None);
            };
            copy_texts(conn, columns.len(), csv).await?;
            let values = types
                .iter()
                .enumerate()
                .map(|(i, t)| format!("r.c{i}::{t}"));
            let rows = "SELECT * FROM pg_temp.csvbus_each ORDER BY csvbus_ord".to_owned();
            (rows, columns, values.collect::<Vec<_>>(), "csvbus_ord", "")
        }
        Source::Staged {
            stage,
            columns,
            lines,
            then,
        } => {
            let rows = format!(
                "SELECT * FROM {stage}
                  WHERE {LINE_COLUMN_SQL} >= {} AND {LINE_COLUMN_SQL} < {}
                  ORDER BY {LINE_COLUMN_SQL}",
                lines.start, lines.end
            );
            let values = columns.iter().map(|c| format!("r.{}", quote_ident(c)));
            (rows, columns, values.collect(), LINE_COLUMN_SQL, then)
        }
    };
    let insert = Insert {
        relation,
        columns,
        values: &values,
        then,
    };
    let Some(block) = loop_block(&insert, &rows, ord, limit) else {
        return Ok(None);
    };
    conn.execute(block.as_str()).await?;
    let refused: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT ord, state, message FROM pg_temp.csvbus_each_refused ORDER BY ord")
            .fetch_all(&mut *conn)
            .await?;
    let written: Option<String> =
        sqlx::query_scalar("SELECT current_setting('csvbus.each_written', true)")
            .fetch_one(&mut *conn)
            .await?;
    metrics::counter!("csvbus_sink_copies_total", "format" => "one_by_one").increment(1);
    let refused = refused
        .into_iter()
        .map(|(ord, state, message)| Refused {
            at: ord,
            failure: classify_code(&state),
            message: format!("{message} (SQLSTATE {state})"),
        })
        .collect();
    Ok(Some(Looped {
        refused,
        written: written.and_then(|n| n.parse().ok()).unwrap_or(0),
    }))
}

/// COPYs `csv` into `pg_temp.csvbus_each`: `width` text columns `c0…`, and `csvbus_ord`
/// numbering the rows from 0 in order.
async fn copy_texts(conn: &mut PgConnection, width: usize, csv: &[u8]) -> Result<(), sqlx::Error> {
    let texts: Vec<String> = (0..width).map(|i| format!("c{i} text")).collect();
    conn.execute(
        format!(
            "CREATE TEMP TABLE csvbus_each (csvbus_ord bigint GENERATED ALWAYS AS IDENTITY
               (MINVALUE 0 START WITH 0), {}) ON COMMIT DROP",
            texts.join(", ")
        )
        .as_str(),
    )
    .await?;
    let names: Vec<String> = (0..width).map(|i| format!("c{i}")).collect();
    let copy = format!(
        "COPY pg_temp.csvbus_each ({}) FROM STDIN WITH (FORMAT csv)",
        names.join(", ")
    );
    let mut into = conn.copy_in_raw(&copy).await?;
    for piece in csv.chunks(128 * 1024) {
        into.send(piece).await?;
    }
    into.finish().await?;
    Ok(())
}

/// Each of `columns`' type without its modifier, as SQL; `None` if the relation lacks one.
async fn base_types(
    conn: &mut PgConnection,
    relation: &str,
    columns: &[String],
) -> Result<Option<Vec<String>>, sqlx::Error> {
    let found: Vec<(String, String)> = sqlx::query_as(
        "SELECT attname::text, format_type(atttypid, NULL) FROM pg_attribute
          WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped",
    )
    .bind(relation)
    .fetch_all(&mut *conn)
    .await?;
    Ok(columns
        .iter()
        .map(|c| found.iter().find(|(n, _)| n == c).map(|(_, t)| t.clone()))
        .collect())
}

/// One row's INSERT: into `relation` (quoted), `columns` (unquoted) as `values` of `r`, then
/// `then`.
struct Insert<'a> {
    relation: &'a str,
    columns: &'a [String],
    values: &'a [String],
    then: &'a str,
}

/// The `DO` block that inserts the rows of the query `rows` one at a time, noting a refused
/// one by its column `ord`; `None` if a name would end its quoting. It leaves the rows inserted
/// or updated in the setting `csvbus.each_written`, for the transaction.
fn loop_block(insert: &Insert<'_>, rows: &str, ord: &str, limit: Option<i64>) -> Option<String> {
    let cols: Vec<String> = insert.columns.iter().map(|c| quote_ident(c)).collect();
    let stop = match limit {
        Some(n) => format!("EXIT WHEN refused >= {n};"),
        None => String::new(),
    };
    let body = format!(
        "DECLARE r record; refused bigint := 0; written bigint := 0; n bigint;
         BEGIN
           FOR r IN {rows} LOOP
             BEGIN
               INSERT INTO {} ({}) VALUES ({}) {};
               GET DIAGNOSTICS n = ROW_COUNT;
               written := written + n;
             EXCEPTION WHEN {CAUGHT} THEN
               INSERT INTO pg_temp.csvbus_each_refused VALUES (r.{ord}, SQLSTATE, SQLERRM);
               refused := refused + 1;
               {stop}
             END;
           END LOOP;
           PERFORM set_config('csvbus.each_written', written::text, true);
         END",
        insert.relation,
        cols.join(", "),
        insert.values.join(", "),
        insert.then,
    );
    const TAG: &str = "$csvbus_each$";
    (!body.contains(TAG)).then(|| format!("DO {TAG}{body}{TAG}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_inserts_the_values_given_and_stops_after_the_limit() {
        let columns = ["id".to_owned(), "a b".to_owned()];
        let values = [
            "r.c0::bigint".to_owned(),
            "r.c1::character varying".to_owned(),
        ];
        let rows = "SELECT * FROM pg_temp.csvbus_each ORDER BY csvbus_ord";
        let mut insert = Insert {
            relation: "\"public\".\"t\"",
            columns: &columns,
            values: &values,
            then: "",
        };
        let block = loop_block(&insert, rows, "o", Some(3)).unwrap();
        let expected = "INSERT INTO \"public\".\"t\" (\"id\", \"a b\") \
                        VALUES (r.c0::bigint, r.c1::character varying) ;";
        assert!(block.contains(expected), "{block}");
        assert!(block.contains("EXIT WHEN refused >= 3;"), "{block}");
        insert.then = "ON CONFLICT (\"id\") DO NOTHING";
        let block = loop_block(&insert, rows, "o", None).unwrap();
        assert!(!block.contains("EXIT"), "{block}");
        let expected = "character varying) ON CONFLICT (\"id\") DO NOTHING;";
        assert!(block.contains(expected), "{block}");
        // A name that would end the block's quoting is not written into it.
        let odd = ["r.c0".to_owned(), "r.\"x$csvbus_each$y\"".to_owned()];
        insert.values = &odd;
        assert_eq!(loop_block(&insert, rows, "o", None), None);
    }
}
