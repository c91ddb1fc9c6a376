//! How a group's rows reach its table: `COPY` straight into it, `COPY` into a temporary table
//! and `INSERT … SELECT` from there, or — for upsert and skip — a plain `COPY` into the table
//! first, which is what `INSERT … ON CONFLICT` comes to when no key of the group is in the table
//! yet nor twice in the group (a first load, a file of new keys): Postgres then checks each
//! key once, in the COPY's unique index insert, instead of probing the index before each row,
//! and the rows are not staged. The first key that is there fails that COPY (a unique
//! violation); its savepoint is rolled back and the group goes the staged way, and so does
//! every later group of that import ([`KeyConflicts`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use csvbus_shared::catalog::{quote_ident, TableName};
use csvbus_shared::modes::{staging_table, ImportMode, LINE_COLUMN_SQL};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::write::batch::{Group, GroupRow};

/// The COPY's format.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Format {
    Csv,
    Binary,
}

impl Format {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Binary => "binary",
        }
    }
}

/// How rows reach the table.
pub(crate) enum How {
    /// `COPY` straight into it (append), or into the import's staging table (atomic, replace).
    Copy(String),
    /// upsert / skip, no key known to be in the table yet: `COPY` straight into it, the line
    /// the group's rows carry left out; any refusal sends the group the staged way.
    Direct(String),
    /// `COPY` into a temporary table of the same columns, then `INSERT … SELECT` (upsert, skip,
    /// and tables COPY cannot write).
    Staged { copy: String, insert: String },
}

impl How {
    pub(crate) async fn for_group(
        conn: &mut PgConnection,
        g: &Group,
        cols: &str,
        conflicts: &KeyConflicts,
    ) -> Result<Self, sqlx::Error> {
        let into = g.table.quoted();
        Ok(match (g.mode, &g.conflict) {
            (ImportMode::Atomic | ImportMode::Replace, _) => How::Copy(format!(
                "COPY {} ({cols}, {LINE_COLUMN_SQL})",
                staging_table(g.import)
            )),
            (ImportMode::Upsert | ImportMode::Skip, Some(_)) if !conflicts.met(g.import) => {
                How::Direct(format!("COPY {into} ({cols})"))
            }
            (ImportMode::Upsert | ImportMode::Skip, Some(_)) => {
                How::on_conflict(conn, g, cols).await?
            }
            _ => How::Copy(format!("COPY {into} ({cols})")),
        })
    }

    /// Staged, moved with `INSERT … ON CONFLICT` (upsert, skip).
    pub(crate) async fn on_conflict(
        conn: &mut PgConnection,
        g: &Group,
        cols: &str,
    ) -> Result<Self, sqlx::Error> {
        let keys = g.conflict.as_deref().unwrap_or_default();
        let into = g.table.quoted();
        let insert = |from: &str| on_conflict(&into, cols, from, &g.columns, keys, g.mode);
        How::staged(conn, &g.table, cols, true, insert).await
    }

    /// A temporary table of the target's columns (and the line, `with_line`); rows are then
    /// moved with the statement `insert` makes of the `FROM` clause.
    pub(crate) async fn staged(
        conn: &mut PgConnection,
        table: &TableName,
        cols: &str,
        with_line: bool,
        insert: impl FnOnce(&str) -> String,
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
        let mut copy_cols = cols.to_owned();
        if with_line {
            sqlx::query(&format!(
                "ALTER TABLE pg_temp.csvbus_stage ADD COLUMN {LINE_COLUMN_SQL} bigint"
            ))
            .execute(&mut *conn)
            .await?;
            copy_cols.push_str(", ");
            copy_cols.push_str(LINE_COLUMN_SQL);
        }
        Ok(Self::Staged {
            copy: format!("COPY pg_temp.csvbus_stage ({copy_cols})"),
            insert: insert("FROM pg_temp.csvbus_stage"),
        })
    }

    /// The relation the COPY writes into, quoted.
    pub(crate) fn relation(&self, g: &Group) -> String {
        match (self, g.mode) {
            (How::Staged { .. }, _) => "pg_temp.csvbus_stage".to_owned(),
            (How::Copy(_), ImportMode::Atomic | ImportMode::Replace) => staging_table(g.import),
            (How::Copy(_) | How::Direct(_), _) => g.table.quoted(),
        }
    }

    /// The relation the COPY writes into as Postgres names it in an error's context.
    pub(crate) fn context_name(&self, g: &Group) -> String {
        match (self, g.mode) {
            (How::Staged { .. }, _) => "csvbus_stage".to_owned(),
            (How::Copy(_), ImportMode::Atomic | ImportMode::Replace) => {
                format!("stage_{}", g.import.simple())
            }
            (How::Copy(_) | How::Direct(_), _) => g.table.table.clone(),
        }
    }

    /// COPYs `bytes` (in `format`) and, staged, moves the rows on: the rows written.
    pub(crate) async fn write(
        &self,
        conn: &mut PgConnection,
        bytes: &[u8],
        format: Format,
    ) -> Result<u64, sqlx::Error> {
        let copy_stmt = match self {
            How::Copy(stmt) | How::Direct(stmt) => stmt,
            How::Staged { copy, .. } => {
                sqlx::query("TRUNCATE pg_temp.csvbus_stage")
                    .execute(&mut *conn)
                    .await?;
                copy
            }
        };
        let copy_stmt = format!("{copy_stmt} FROM STDIN WITH (FORMAT {})", format.name());
        let mut copy = conn.copy_in_raw(&copy_stmt).await?;
        // In pieces: the connection's write buffer keeps the capacity of the largest message
        // it ever sent, per pooled connection.
        for piece in bytes.chunks(COPY_PIECE) {
            copy.send(piece).await?;
        }
        let n = copy.finish().await?;
        match self {
            How::Copy(_) | How::Direct(_) => Ok(n),
            How::Staged { insert, .. } => Ok(sqlx::query(insert)
                .execute(&mut *conn)
                .await?
                .rows_affected()),
        }
    }
}

impl How {
    /// Staged: empties the temporary table and COPYs `csv` (with the lines) into it, moving
    /// nothing yet.
    pub(crate) async fn stage_only(
        &self,
        conn: &mut PgConnection,
        csv: &[u8],
    ) -> Result<(), sqlx::Error> {
        let How::Staged { copy, .. } = self else {
            return Ok(());
        };
        sqlx::query("TRUNCATE pg_temp.csvbus_stage")
            .execute(&mut *conn)
            .await?;
        let mut into = conn
            .copy_in_raw(&format!("{copy} FROM STDIN WITH (FORMAT csv)"))
            .await?;
        for piece in csv.chunks(COPY_PIECE) {
            into.send(piece).await?;
        }
        into.finish().await?;
        Ok(())
    }
}

/// Bytes of COPY data sent at a time.
const COPY_PIECE: usize = 128 * 1024;

/// `rows`' COPY CSV lines from `csv` without the line each ends in (`…,<line>\n`), into `out`.
pub(crate) fn without_lines(csv: &[u8], rows: &[GroupRow], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(csv.len());
    for row in rows {
        let line = &csv[row.bytes.clone()];
        let digits = row.line.max(1).ilog10() as usize + 1;
        let keep = line.len() - digits - 2;
        debug_assert_eq!(line[keep], b',', "a staged line ends in its line number");
        out.extend_from_slice(&line[..keep]);
        out.push(b'\n');
    }
}

/// Imports whose upsert or skip rows met a key already in their table (or one twice in a
/// group): their groups go the staged way from then on, not through a COPY bound to fail. A
/// sink forgets them all once it knows of [`KeyConflicts::MAX`] — a forgotten import costs one
/// failed COPY again, never a wrong row.
#[derive(Debug, Clone, Default)]
pub struct KeyConflicts(Arc<Mutex<HashSet<Uuid>>>);

impl KeyConflicts {
    const MAX: usize = 4096;

    pub(crate) fn met(&self, import: Uuid) -> bool {
        let known = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        known.contains(&import)
    }

    pub(crate) fn note(&self, import: Uuid) {
        let mut known = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if known.len() >= Self::MAX {
            known.clear();
        }
        known.insert(import);
    }
}
/// `INSERT … ON CONFLICT` from the staged rows. Upsert keeps the file's last row of each key
/// (a key twice in one statement would fail "cannot affect row a second time"); rows whose key
/// has a NULL never conflict and are all kept.
fn on_conflict(
    into: &str,
    cols: &str,
    from: &str,
    columns: &[String],
    keys: &[String],
    mode: ImportMode,
) -> String {
    let action = conflict_clause(columns, keys, mode);
    if mode == ImportMode::Skip {
        return format!(
            "INSERT INTO {into} ({cols}) SELECT {cols} {from} ORDER BY {LINE_COLUMN_SQL} {action}"
        );
    }
    let any_null = keys
        .iter()
        .map(|k| format!("{} IS NULL", quote_ident(k)))
        .collect::<Vec<_>>()
        .join(" OR ");
    let key_list = quoted_list(keys);
    let distinct = format!("{key_list}, (CASE WHEN {any_null} THEN {LINE_COLUMN_SQL} END)");
    format!(
        "INSERT INTO {into} ({cols}) SELECT DISTINCT ON ({distinct}) {cols} {from} \
         ORDER BY {distinct}, {LINE_COLUMN_SQL} DESC {action}"
    )
}

/// `ON CONFLICT (keys) …` of an upsert (the other columns updated) or a skip (nothing done).
pub(crate) fn conflict_clause(columns: &[String], keys: &[String], mode: ImportMode) -> String {
    let key_list = quoted_list(keys);
    let updates: Vec<String> = columns
        .iter()
        .filter(|c| !keys.contains(c))
        .map(|c| format!("{0} = EXCLUDED.{0}", quote_ident(c)))
        .collect();
    match (mode, updates.is_empty()) {
        (ImportMode::Upsert, false) => {
            format!(
                "ON CONFLICT ({key_list}) DO UPDATE SET {}",
                updates.join(", ")
            )
        }
        _ => format!("ON CONFLICT ({key_list}) DO NOTHING"),
    }
}

fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|k| quote_ident(k))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staged_group_s_lines_lose_their_line_numbers() {
        let csv = b"\"1\",\"a,9\"\n\"2\",\"b\",10\n,,123456\n".to_vec();
        // The first line is not one of the rows: only the rows' ranges are read.
        let rows = [(10, 21, 10), (21, 30, 123_456)].map(|(s, e, line)| GroupRow {
            bytes: s..e,
            line,
            index: 0,
        });
        let mut out = b"old".to_vec();
        without_lines(&csv, &rows, &mut out);
        assert_eq!(out, b"\"2\",\"b\"\n,\n");
        let conflicts = KeyConflicts::default();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        conflicts.note(a);
        assert!(conflicts.met(a) && !conflicts.met(b));
    }
}
