//! Records as received, sorted for one transaction: rows grouped by import and encoded for
//! `COPY … CSV`, rows that cannot be written whatever the database says, and messages that are
//! not csvbus rows the sink may write (dead letters).

use crate::write::ByImport;
use std::io::Write;
use std::ops::Range;

use csvbus_shared::modes::ImportMode;
use uuid::Uuid;

use csvbus_shared::catalog::TableName;
use csvbus_shared::message::{RowMeta, Signer};

use crate::fetch::record::{Record, Signature};
use crate::write::decode::Fields;

/// What csvbus knows of an import named by a message.
#[derive(Debug, Clone)]
pub struct Target {
    /// The table, as the upload service resolved it.
    pub table: TableName,
    pub columns: Vec<String>,
    /// The target is allowed (`CSVBUS_ALLOWED_SCHEMAS`, not csvbus' own tables).
    pub allowed: bool,
    pub mode: ImportMode,
    /// upsert / skip: the `ON CONFLICT` columns.
    pub conflict: Option<Vec<String>>,
    /// atomic / replace: the staging table is gone (the import ended without landing).
    pub staging_gone: bool,
    /// The import is `completed`: every row it produced is handled, so a message still naming
    /// it was not sent by its upload (forged, or replayed from elsewhere) and is not written.
    pub completed: bool,
    /// The import stopped: its refused rows passed `max_rejected`. Its rows are set aside.
    pub stopped: bool,
    /// How many more rows Postgres may refuse before the import stops (`None`: no bound, its
    /// upload already ended without all its rows).
    pub allowance: Option<i64>,
    /// Its rows rejected so far (while reading and by Postgres).
    pub rejected: i64,
    /// The highest line of the import already handled on this partition (0: none). Rows at or
    /// below it come again from a resumed upload and are not written twice.
    pub max_line: i64,
}

/// Rows of one import, encoded as COPY CSV lines (with the line as a last field, except in
/// append mode).
#[derive(Debug)]
pub struct Group {
    pub import: Uuid,
    pub table: TableName,
    pub columns: Vec<String>,
    pub mode: ImportMode,
    pub conflict: Option<Vec<String>>,
    pub csv: Vec<u8>,
    pub rows: Vec<GroupRow>,
}

/// One row of a [`Group`].
#[derive(Debug, Clone)]
pub struct GroupRow {
    /// Its COPY line in [`Group::csv`].
    pub bytes: Range<usize>,
    /// Its line in the file.
    pub line: i64,
    /// Its record's index in the batch.
    pub index: usize,
}

/// A row of an import that is not written, and why.
#[derive(Debug, Clone)]
pub struct Reject {
    pub import: Uuid,
    pub line: i64,
    /// Index of its record in the batch.
    pub index: usize,
    pub reason: String,
}

/// A message that is not a row csvbus may write.
#[derive(Debug, Clone)]
pub struct Dead {
    pub index: usize,
    pub reason: String,
}

/// A batch's records sorted by what happens to them.
#[derive(Debug, Default)]
pub struct Sorted {
    pub groups: Vec<Group>,
    pub dead: Vec<Dead>,
    /// Rows an earlier attempt of their import already sent to this partition: not written.
    pub duplicates: u64,
    /// Per stopped import, its rows in the batch: set aside, neither written nor stored.
    pub set_aside: ByImport<i64>,
    /// Per import, the highest line handled on this partition after the batch.
    pub max_lines: ByImport<i64>,
    /// Per import, the first and last offset of its rows in the batch (where a replay reads
    /// them back).
    pub offsets: ByImport<(i64, i64)>,
}

/// Widens `import`'s offset span in `offsets` to `offset`.
fn span(offsets: &mut ByImport<(i64, i64)>, import: Uuid, offset: i64) {
    let s = offsets.entry(import).or_insert((offset, offset));
    *s = (s.0.min(offset), s.1.max(offset));
}

/// Sorts `records`: rows of known, allowed imports with their import's columns go into groups
/// of consecutive imports (order kept); rows an earlier attempt sent are dropped; everything
/// else is dead-lettered. `fields(i)` is the decoded value of `records[i]` ([`crate::write::decode::Decoded`]).
/// With a `signer`, a record without a valid signature is dead-lettered before anything else
/// is looked at: it changes nothing, not even its import's handled line.
pub fn sort<'d>(
    records: &[Record],
    fields: impl Fn(usize) -> Result<Fields<'d>, &'d str>,
    targets: &ByImport<Target>,
    signer: Option<&Signer>,
) -> Sorted {
    let mut out = Sorted::default();
    // The first group (one per batch, as a rule) is reserved at once: the values as JSON are
    // longer than as CSV.
    let mut reserve = records.iter().map(|r| r.payload.len() + 8).sum::<usize>();
    for (index, r) in records.iter().enumerate() {
        if !signed(r, signer) {
            let reason = "the message is not signed with csvbus' signing key (CSVBUS_SIGNING_KEY)";
            out.dead.push(Dead {
                index,
                reason: reason.into(),
            });
            continue;
        }
        if let Some(reason) = &r.unreadable {
            mark_handled(&mut out.max_lines, r, targets);
            out.dead.push(Dead {
                index,
                reason: reason.clone(),
            });
            continue;
        }
        if let Some(import) = stopped(r, targets) {
            mark_handled(&mut out.max_lines, r, targets);
            span(&mut out.offsets, import, r.offset);
            *out.set_aside.entry(import).or_default() += 1;
            continue;
        }
        match admit(r, fields(index), targets) {
            Ok((meta, target, row)) => {
                let max = out.max_lines.entry(meta.import).or_insert(target.max_line);
                if meta.line <= *max {
                    out.duplicates += 1;
                    continue;
                }
                *max = meta.line;
                span(&mut out.offsets, meta.import, r.offset);
                push_row(&mut out.groups, meta, target, row, index, &mut reserve)
            }
            Err(reason) => {
                mark_handled(&mut out.max_lines, r, targets);
                out.dead.push(Dead { index, reason })
            }
        }
    }
    out
}

/// Whether `r` carries a valid signature, when one is required.
fn signed(r: &Record, signer: Option<&Signer>) -> bool {
    let sig = match &r.signature {
        Signature::Pack { valid } => return *valid,
        Signature::Row(sig) => sig,
    };
    let Some(s) = signer else {
        return true;
    };
    r.meta
        .as_ref()
        .is_some_and(|m| s.verify(m, &r.payload, sig.as_deref()))
}

/// The import of `r`, when it is one that stopped taking rows (the record is one of its rows:
/// its table is the import's).
fn stopped(r: &Record, targets: &ByImport<Target>) -> Option<Uuid> {
    let meta = r.meta.as_ref()?;
    let t = targets.get(&meta.import)?;
    (t.stopped && t.table == *meta.table).then_some(meta.import)
}

/// A dead-lettered or set-aside record of an import that has ended (completed, or its staging table gone)
/// is handled all the same: its line raises the import's handled line on the partition, so
/// that the record delivered again below the stored position is not taken for a sign of a
/// recreated topic (which would send the partition back to its start). Records of imports that
/// still take rows leave it as it is: a forged line must not hide the import's real rows.
fn mark_handled(max_lines: &mut ByImport<i64>, r: &Record, targets: &ByImport<Target>) {
    let Some(meta) = r.meta.as_ref() else {
        return;
    };
    if let Some(t) = targets
        .get(&meta.import)
        .filter(|t| t.completed || t.staging_gone || t.stopped)
    {
        let max = max_lines.entry(meta.import).or_insert(t.max_line);
        *max = (*max).max(meta.line);
    }
}

/// The record's import and decoded row, or why it is a dead letter.
fn admit<'r, 't, 'd>(
    r: &'r Record,
    row: Result<Fields<'d>, &'d str>,
    targets: &'t ByImport<Target>,
) -> Result<(&'r RowMeta, &'t Target, Fields<'d>), String> {
    let meta = r
        .meta
        .as_ref()
        .ok_or("no valid csvbus-import, csvbus-line and csvbus-table headers")?;
    let target = targets
        .get(&meta.import)
        .ok_or_else(|| format!("unknown import {}", meta.import))?;
    if *meta.table != target.table {
        return Err(format!(
            "table header {:?} is not the import's target {:?}",
            meta.table.to_string(),
            target.table.to_string()
        ));
    }
    if !target.allowed {
        return Err(format!(
            "{:?} may not be written by csvbus",
            target.table.to_string()
        ));
    }
    if target.staging_gone {
        return Err(format!(
            "import {} ended without landing and its staging table is gone",
            meta.import
        ));
    }
    if target.completed {
        return Err(format!(
            "import {} has completed: it takes no more rows",
            meta.import
        ));
    }
    let row = row.map_err(str::to_owned)?;
    if row.columns != target.columns.as_slice() {
        return Err("the value's columns are not the import's header".into());
    }
    Ok((meta, target, row))
}

fn push_row(
    groups: &mut Vec<Group>,
    meta: &RowMeta,
    target: &Target,
    row: Fields<'_>,
    index: usize,
    reserve: &mut usize,
) {
    if groups.last().is_none_or(|g| g.import != meta.import) {
        groups.push(Group {
            import: meta.import,
            table: TableName::clone(&meta.table),
            columns: row.columns.to_vec(),
            mode: target.mode,
            conflict: target.conflict.clone(),
            csv: Vec::with_capacity(std::mem::take(reserve).max(64 * 1024)),
            rows: Vec::new(),
        });
    }
    let g = groups.last_mut().expect("pushed above");
    let start = g.csv.len();
    g.csv.extend_from_slice(row.csv);
    if g.mode != ImportMode::Append {
        // Writing into a Vec cannot fail.
        let _ = write!(g.csv, ",{}", meta.line);
    }
    g.csv.push(b'\n');
    g.rows.push(GroupRow {
        bytes: start..g.csv.len(),
        line: meta.line,
        index,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write::decode::Decoded;

    fn table(name: &str) -> TableName {
        TableName::parse(name, "public").unwrap()
    }

    fn rec(offset: i64, import: Uuid, line: i64, payload: &str) -> Record {
        Record {
            offset,
            partition: 0,
            meta: Some(RowMeta {
                import,
                line,
                table: table("public.t").into(),
            }),
            payload: payload.as_bytes().to_vec().into(),
            ..Record::default()
        }
    }

    fn target(columns: &[&str], allowed: bool) -> Target {
        Target {
            table: table("public.t"),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            allowed,
            mode: ImportMode::Append,
            conflict: None,
            staging_gone: false,
            completed: false,
            stopped: false,
            allowance: None,
            rejected: 0,
            max_line: 0,
        }
    }

    fn sort(records: &[Record], targets: &ByImport<Target>) -> Sorted {
        let decoded = Decoded::new(records);
        super::sort(records, |i| decoded.get(i), targets, None)
    }

    #[test]
    fn groups_follow_imports_and_encode_nulls_and_quotes() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let targets =
            ByImport::from_iter([(a, target(&["x", "y"], true)), (b, target(&["x"], true))]);
        let records = vec![
            rec(0, a, 2, r#"{"x":"1","y":null}"#),
            rec(1, a, 3, r#"{"x":"say \"hi\"","y":""}"#),
            rec(2, b, 2, r#"{"x":"3"}"#),
        ];
        let sorted = sort(&records, &targets);
        assert_eq!(sorted.groups.len(), 2);
        assert_eq!(sorted.groups[0].columns, ["x", "y"]);
        assert_eq!(
            std::str::from_utf8(&sorted.groups[0].csv).unwrap(),
            "\"1\",\n\"say \"\"hi\"\"\",\"\"\n"
        );
        assert_eq!(sorted.groups[0].rows[1].line, 3);
        assert_eq!(sorted.groups[1].columns, ["x"]);
        assert!(sorted.dead.is_empty());
    }

    #[test]
    fn messages_that_are_not_rows_of_an_allowed_import_are_dead_letters() {
        let (a, b, c, unknown) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let mut other_table = target(&["x"], true);
        other_table.table = table("public.other");
        let targets = ByImport::from_iter([
            (a, target(&["x"], true)),
            (b, target(&["x"], false)),
            (c, other_table),
        ]);
        let mut headerless = rec(0, a, 2, r#"{"x":"1"}"#);
        headerless.meta = None;
        let records = vec![
            headerless,
            rec(1, unknown, 2, r#"{"x":"1"}"#),
            rec(2, a, 2, "not json"),
            rec(3, a, 3, r#"{"y":"1"}"#),
            rec(4, b, 2, r#"{"x":"1"}"#),
            rec(5, c, 2, r#"{"x":"1"}"#),
            rec(6, a, 4, r#"{"x":"ok"}"#),
        ];
        let sorted = sort(&records, &targets);
        let reasons: Vec<(usize, &str)> = sorted
            .dead
            .iter()
            .map(|d| (d.index, d.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 6, "{reasons:?}");
        assert!(reasons[0].1.contains("headers"), "{reasons:?}");
        assert!(reasons[1].1.contains("unknown import"), "{reasons:?}");
        assert!(reasons[2].1.contains("JSON"), "{reasons:?}");
        assert!(reasons[3].1.contains("columns"), "{reasons:?}");
        assert!(reasons[4].1.contains("may not be written"), "{reasons:?}");
        assert!(
            reasons[5].1.contains("not the import's target"),
            "{reasons:?}"
        );
        assert_eq!(sorted.groups.len(), 1);
        assert_eq!(sorted.groups[0].rows[0].index, 6);
    }

    #[test]
    fn dead_letters_of_an_ended_import_raise_its_handled_line_others_do_not() {
        let (done, running) = (Uuid::new_v4(), Uuid::new_v4());
        let mut completed = target(&["x"], true);
        completed.completed = true;
        completed.max_line = 10;
        let mut wrong_table = target(&["x"], true);
        wrong_table.table = table("public.other");
        let targets = ByImport::from_iter([(done, completed), (running, wrong_table)]);
        let records = vec![
            rec(0, done, 500, r#"{"x":"1"}"#),
            rec(1, running, 900, r#"{"x":"1"}"#),
        ];
        let sorted = sort(&records, &targets);
        assert_eq!(sorted.dead.len(), 2);
        assert_eq!(sorted.max_lines.get(&done), Some(&500));
        assert_eq!(
            sorted.max_lines.get(&running),
            None,
            "a live import's line stays its own"
        );
    }

    #[test]
    fn rows_an_earlier_attempt_sent_are_dropped_and_staged_rows_carry_their_line() {
        let a = Uuid::new_v4();
        let mut t = target(&["x"], true);
        t.max_line = 3;
        t.mode = ImportMode::Atomic;
        let targets = ByImport::from_iter([(a, t)]);
        let records = vec![
            rec(0, a, 2, r#"{"x":"old"}"#),
            rec(1, a, 4, r#"{"x":"new"}"#),
            // A resumed attempt sends lines 3 and 4 again, then 5.
            rec(2, a, 3, r#"{"x":"again"}"#),
            rec(3, a, 4, r#"{"x":"again"}"#),
            rec(4, a, 5, r#"{"x":"next"}"#),
        ];
        let sorted = sort(&records, &targets);
        assert_eq!(sorted.duplicates, 3);
        assert_eq!(sorted.max_lines[&a], 5);
        assert_eq!(
            std::str::from_utf8(&sorted.groups[0].csv).unwrap(),
            "\"new\",4\n\"next\",5\n"
        );
    }
}
