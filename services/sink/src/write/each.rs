//! Rows written one at a time inside Postgres, when a group's refusals are dense.
//!
//! Bisection by COPY ([`super::bisect`]) costs a few round trips per refused row: the COPY that
//! names it, the savepoint rolled back, the rows before it written again. Where every tenth row
//! is refused that is most of the write's time. Here the range is COPYed once into a temporary
//! table of text columns (which refuses nothing), and one `DO` block inserts its rows into the
//! relation one by one, each in a subtransaction of its own: a refused row is caught there and
//! noted with its SQLSTATE and message, and the loop goes on. One round trip for the lot.
//!
//! Each value goes in as `value::base_type`, converted by the type's input function as COPY
//! converts it; the column's modifier (`varchar(10)`, `numeric(6,2)`) is applied by the
//! INSERT's assignment, which refuses a value too long as COPY does (an explicit
//! `::varchar(10)` would cut it). Only errors of the classes that [`csvbus_shared::failure`]
//! calls the rows' own are caught; anything else fails the block, and the caller goes on by
//! COPY. Statement-level triggers fire once per row here, not once per COPY.

use csvbus_shared::catalog::quote_ident;
use csvbus_shared::failure::{classify_code, Failure};
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
    /// Its place among the rows written (0-based).
    pub index: i64,
    pub failure: Failure,
    /// Postgres' message with its SQLSTATE, as [`csvbus_shared::failure::describe`] writes it.
    pub message: String,
}

/// Inserts `csv` — COPY CSV lines of `columns` (unquoted names), in order — into `relation`
/// (quoted) a row at a time; stops after `limit` refusals. The refused rows, in order, and how
/// many rows it went through; `None` when the relation's columns cannot be read so (a column
/// it lacks: the caller's COPY says what is wrong).
pub(crate) async fn insert_each(
    conn: &mut PgConnection,
    relation: &str,
    columns: &[String],
    csv: &[u8],
    limit: Option<i64>,
) -> Result<Option<(Vec<Refused>, i64)>, sqlx::Error> {
    let Some(types) = base_types(conn, relation, columns).await? else {
        return Ok(None);
    };
    let Some(block) = loop_block(relation, columns, &types, limit) else {
        return Ok(None);
    };
    let texts: Vec<String> = (0..columns.len()).map(|i| format!("c{i} text")).collect();
    let create = format!(
        "DROP TABLE IF EXISTS pg_temp.csvbus_each, pg_temp.csvbus_each_refused;
         CREATE TEMP TABLE csvbus_each
           (csvbus_ord bigint GENERATED ALWAYS AS IDENTITY, {}) ON COMMIT DROP;
         CREATE TEMP TABLE csvbus_each_refused (ord bigint, state text, message text)
           ON COMMIT DROP",
        texts.join(", ")
    );
    conn.execute(create.as_str()).await?;
    let names: Vec<String> = (0..columns.len()).map(|i| format!("c{i}")).collect();
    let copy = format!(
        "COPY pg_temp.csvbus_each ({}) FROM STDIN WITH (FORMAT csv)",
        names.join(", ")
    );
    let mut into = conn.copy_in_raw(&copy).await?;
    for piece in csv.chunks(128 * 1024) {
        into.send(piece).await?;
    }
    let rows = i64::try_from(into.finish().await?).unwrap_or(i64::MAX);
    conn.execute(block.as_str()).await?;
    let refused: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT ord, state, message FROM pg_temp.csvbus_each_refused ORDER BY ord")
            .fetch_all(&mut *conn)
            .await?;
    metrics::counter!("csvbus_sink_copies_total", "format" => "one_by_one").increment(1);
    // Stopped at the limit: through its last refused row.
    let through = match (limit, refused.last()) {
        (Some(n), Some((ord, ..))) if refused.len() as i64 >= n => *ord,
        _ => rows,
    };
    let refused = refused
        .into_iter()
        .map(|(ord, state, message)| Refused {
            index: ord - 1,
            failure: classify_code(&state),
            message: format!("{message} (SQLSTATE {state})"),
        })
        .collect();
    Ok(Some((refused, through)))
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

/// The `DO` block that inserts `pg_temp.csvbus_each`'s rows into `relation` one at a time;
/// `None` if a name would end its quoting.
fn loop_block(
    relation: &str,
    columns: &[String],
    types: &[String],
    limit: Option<i64>,
) -> Option<String> {
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    let values: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("r.c{i}::{t}"))
        .collect();
    let stop = match limit {
        Some(n) => format!("EXIT WHEN refused >= {n};"),
        None => String::new(),
    };
    let body = format!(
        "DECLARE r record; refused bigint := 0;
         BEGIN
           FOR r IN SELECT * FROM pg_temp.csvbus_each ORDER BY csvbus_ord LOOP
             BEGIN
               INSERT INTO {relation} ({}) VALUES ({});
             EXCEPTION WHEN {CAUGHT} THEN
               INSERT INTO pg_temp.csvbus_each_refused VALUES (r.csvbus_ord, SQLSTATE, SQLERRM);
               refused := refused + 1;
               {stop}
             END;
           END LOOP;
         END",
        cols.join(", "),
        values.join(", ")
    );
    const TAG: &str = "$csvbus_each$";
    (!body.contains(TAG)).then(|| format!("DO {TAG}{body}{TAG}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_casts_to_base_types_and_stops_after_the_limit() {
        let cols = ["id".to_owned(), "a b".to_owned()];
        let types = ["bigint".to_owned(), "character varying".to_owned()];
        let block = loop_block("\"public\".\"t\"", &cols, &types, Some(3)).unwrap();
        let insert = "INSERT INTO \"public\".\"t\" (\"id\", \"a b\") \
                      VALUES (r.c0::bigint, r.c1::character varying)";
        assert!(block.contains(insert), "{block}");
        assert!(block.contains("EXIT WHEN refused >= 3;"), "{block}");
        assert!(!loop_block("t", &cols, &types, None)
            .unwrap()
            .contains("EXIT"));
        // A type named so that it would end the block's quoting is not written into it.
        let odd = ["bigint".to_owned(), "\"x$csvbus_each$y\"".to_owned()];
        assert_eq!(loop_block("t", &cols, &odd, None), None);
    }
}
