//! `create=true`: a table that does not exist is created from the file — its columns named
//! after the header (normalized), typed from the first rows ([`csvbus_shared::infer`]) — in
//! the same transaction as the import's record. Values later in the file that do not fit a
//! type are rejected rows with their line, as for any table.

use csvbus_shared::catalog::{quote_ident, Column, TableName};

use csvbus_shared::read_as::ReadAs;

use crate::error::ApiError;
use crate::import::given_types;
use crate::import::start::Plan;
use crate::import::type_notes;
use crate::rows::mapping::Mapping;
use csvbus_shared::infer::{self, Inference};

use crate::read::header::{self, Unnamed};
use crate::read::parse::Dialect;
use crate::read::prepare::FirstRecord;
use crate::rows::HeaderError;

/// Bytes of the body the types are inferred from (at most).
pub const SAMPLE_BYTES: usize = 1 << 20;
/// Rows the types are inferred from (at most).
pub const SAMPLE_ROWS: usize = 2000;

/// The table `create=true` makes.
#[derive(Debug, Clone)]
pub struct NewTable {
    pub columns: Vec<Column>,
    /// Per field of the file, the column it goes to (`-`: left out): the header's own names
    /// may repeat, be empty or be too long, and the created names are the ones that count.
    pub field_names: Vec<String>,
    pub ddl: String,
    /// Rows the types were inferred from.
    pub rows: usize,
    /// The fields' names as the file (or `columns=`) gives them.
    pub header: Vec<String>,
    /// What the sample showed that the reader should know (a second header row).
    pub notes: Vec<String>,
    /// No header was asked for and the first record reads as data ([`FirstRecord::Detect`]):
    /// it is a row, and the columns are `column_1`, `column_2`…
    pub first_is_data: bool,
}

/// What the query says of the fields, for [`infer_table`].
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    /// Whether the first record is the header.
    pub first: FirstRecord,
    /// The fields' names from `columns=` (over the header's, if there is one), `-` for a
    /// field to leave out.
    pub names: Option<&'a [String]>,
    /// `null=`: the text read as NULL, which types nothing.
    pub null: Option<&'a str>,
}

/// Infers `table` from `sample` (the body's start after skipped lines, UTF-8; `complete`: the
/// whole body) and what the query says of its `fields`.
pub fn infer_table(
    table: &TableName,
    sample: &[u8],
    complete: bool,
    dialect: &Dialect,
    fields: Fields<'_>,
) -> Result<NewTable, HeaderError> {
    let Fields { first, names, null } = fields;
    let mut reader = dialect.sample_reader(sample);
    let mut records = reader.byte_records();
    let mut head = match first {
        FirstRecord::Data => None,
        _ => {
            let mut head = records
                .next()
                .and_then(Result::ok)
                .ok_or(HeaderError::Empty)?;
            dialect.read_header(&mut head);
            Some(head)
        }
    };
    let mut rows: Vec<csv::ByteRecord> = records
        .take(SAMPLE_ROWS + 1)
        .filter_map(Result::ok)
        .collect();
    // A record cut by the end of the sample says nothing.
    if (!complete && !dialect.ends_a_record(sample)) || rows.len() > SAMPLE_ROWS {
        rows.pop();
    }
    // A comment line is no row (one of another width is left out with the short rows).
    if let Some(c) = dialect.comment {
        rows.retain(|r| {
            let at = r.position().map_or(0, |p| p.byte() as usize);
            !header::is_comment_line(&sample[at.min(sample.len())..], c, true)
        });
    }
    // A line that repeats the header is skipped by the reader: it types nothing.
    if let Some(h) = head.as_ref().filter(|_| dialect.skip_repeated_header) {
        rows.retain(|r| !header::same_fields(h, r));
    }
    // No header was asked for and the first record reads as data: it is a row, and the
    // columns are named `column_N`.
    let first_is_data = first == FirstRecord::Detect
        && dialect.unnamed != Unnamed::RowNames
        && head
            .as_ref()
            .is_some_and(|h| header::first_record_is_data(h, &rows));
    if first_is_data {
        let data = head.take().unwrap_or_default();
        let unnamed = vec![String::new(); data.len()];
        rows.insert(0, data);
        rows.truncate(SAMPLE_ROWS);
        return with_names(table, dialect, rows, &unnamed, (false, null)).map(|mut t| {
            t.first_is_data = true;
            t
        });
    }
    let header: Vec<String> = match (names, head) {
        (Some(n), _) => n.to_vec(),
        (None, Some(first)) => first
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let name =
                    String::from_utf8(f.to_vec()).map_err(|_| HeaderError::NotUtf8(i + 1))?;
                Ok(name.trim_start_matches('\u{feff}').to_owned())
            })
            .collect::<Result<_, _>>()?,
        (None, None) => return Err(HeaderError::Empty),
    };
    let has_header = first != FirstRecord::Data;
    with_names(table, dialect, rows, &header, (has_header, null))
}

/// The table for fields named `header` (`-`: left out) over the sampled `rows`; `has_header`:
/// a header record came before them (a second one is looked for); `null`: the text read as
/// NULL (without one, a column that a missing-value marker alone makes text is said).
fn with_names(
    table: &TableName,
    dialect: &Dialect,
    mut rows: Vec<csv::ByteRecord>,
    header: &[String],
    (has_header, null): (bool, Option<&str>),
) -> Result<NewTable, HeaderError> {
    // A record of another width is a rejected row (a comment line, a short row): its values
    // type nothing.
    rows.retain(|r| header::has_width(r, header.len()));
    if header.len() > infer::MAX_COLUMNS {
        return Err(HeaderError::TooManyColumns(header.len()));
    }
    let keep: Vec<bool> = header.iter().map(|h| h != "-").collect();
    let kept: Vec<String> = header.iter().filter(|h| *h != "-").cloned().collect();
    let mut inference = Inference::new(kept.len());
    let observe_as = |null: Option<&str>, inference: &mut Inference, rows: &[csv::ByteRecord]| {
        for r in rows {
            let values = r
                .iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(v, _)| std::str::from_utf8(v).ok())
                .map(|v| {
                    if v.is_some() && v == null {
                        Some("")
                    } else {
                        v
                    }
                });
            inference.observe(values);
        }
    };
    let observe =
        |inference: &mut Inference, rows: &[csv::ByteRecord]| observe_as(null, inference, rows);
    observe(&mut inference, &rows);
    let names = infer::column_names(&kept);
    let types = inference.types();
    let mut notes = Vec::new();
    if has_header && rows.len() >= 3 {
        let mut rest = Inference::new(kept.len());
        observe(&mut rest, &rows[1..]);
        notes.extend(type_notes::second_header(
            &names,
            &types,
            &rest.types(),
            dialect.first_line,
        ));
    }
    if null.is_none() {
        let typed = |marker: &str| {
            let mut i = Inference::new(kept.len());
            observe_as(Some(marker), &mut i, &rows);
            i.types()
        };
        notes.extend(type_notes::missing_marker(&names, &types, typed));
    }
    let at: Vec<usize> = (0..keep.len()).filter(|i| keep[*i]).collect();
    let values = |j: usize| {
        let i = at[j];
        rows.iter()
            .filter_map(move |r| r.get(i))
            .filter_map(|v| std::str::from_utf8(v).ok())
    };
    notes.extend(type_notes::mixed_zones(&names, &types, values));
    let mut created = names.iter();
    let field_names = keep
        .iter()
        .map(|k| match k {
            true => created.next().cloned().unwrap_or_default(),
            false => "-".to_owned(),
        })
        .collect();
    Ok(NewTable {
        columns: names
            .iter()
            .zip(&types)
            .map(|(n, t)| Column {
                name: n.clone(),
                type_name: t.sql().to_owned(),
                not_null: false,
                has_default: false,
                generated: false,
            })
            .collect(),
        ddl: infer::create_table(table, &names, &types),
        field_names,
        rows: rows.len(),
        header: header.to_vec(),
        notes,
        first_is_data: false,
    })
}

/// Shapes the table from the body's first bytes: the table `create=true` makes (its columns,
/// its `CREATE TABLE`, the fields' names), or the columns `evolve=add_columns` adds; recorded
/// in `read_as`. Nothing runs yet: the statements run with the import's record.
pub(crate) fn shape(
    plan: &mut Plan,
    sample: &[u8],
    complete: bool,
    dialect: &Dialect,
    read_as: &mut ReadAs,
) -> Result<(), ApiError> {
    if !plan.create && plan.q.types.is_some() {
        read_as
            .notes
            .push("types= not used: the table exists, and its types stand".to_owned());
    }
    if !plan.create && plan.q.evolve.is_none() {
        return Ok(());
    }
    // Only a table made from the file may find its first record is data: an existing
    // table's columns say what a header must be.
    let first = match plan.read.first_record() {
        FirstRecord::Detect if !plan.create => FirstRecord::Header,
        first => first,
    };
    let names = plan.read.mapping.names.as_deref();
    let fields = Fields {
        first,
        names,
        null: plan.q.null.as_deref(),
    };
    let mut file = infer_table(&plan.table.0, sample, complete, dialect, fields)?;
    if plan.create && !plan.given_types.is_empty() {
        let header: Vec<String> = file.header.iter().filter(|h| *h != "-").cloned().collect();
        let given = given_types::apply(&mut plan.given_types, &mut file.columns, &header)?;
        let columns = file.columns.iter();
        file.ddl = infer::create_table_of(
            &plan.table.0,
            columns.map(|c| (c.name.as_str(), c.type_name.as_str())),
        );
        read_as.notes.push(format!(
            "types given (types=), not inferred, for {}: a value such a type does not take is a rejected row, not a widened column",
            given.join(", ")
        ));
    }
    if plan.create {
        plan.table.1 = file.columns;
        // The fields go to the columns made for them, whatever the header calls them.
        plan.read.mapping.names = Some(file.field_names);
        if file.first_is_data {
            plan.read.header = false;
            read_as.header = false;
            read_as.notes.push(first_is_data_note(dialect.first_line));
        }
        read_as.notes.push(format!(
            "column types inferred from the first {} rows",
            file.rows
        ));
        read_as.notes.extend(file.notes);
        read_as.created = Some(file.ddl);
        return Ok(());
    }
    for (column, ddl) in added_columns(&plan.table.0, &plan.table.1, &file, names) {
        plan.table.1.push(column);
        read_as.added.push(ddl);
    }
    Ok(())
}

/// Why a file without `header=` was read without a header.
pub fn first_is_data_note(line: u64) -> String {
    format!(
        "line {line} reads as data, not as a header: its values have the types of the rows \
         below it (numbers, dates…), so it is the first row and the columns are named \
         column_1, column_2…; header=true reads it as the header"
    )
}

/// `evolve=add_columns`: the columns of `new` (the file, inferred as a table) whose fields
/// `existing` has no column for, and the statements that add them.
pub fn added_columns(
    table: &TableName,
    existing: &[Column],
    new: &NewTable,
    names: Option<&[String]>,
) -> Vec<(Column, String)> {
    let lenient = Mapping {
        names: names.map(<[String]>::to_vec),
        ignore_extra: true,
    };
    // A header the table cannot take for other reasons is refused by the header check.
    let Ok((targets, _)) = crate::rows::mapping::resolve(&new.header, existing, &lenient) else {
        return Vec::new();
    };
    let mut kept = new.columns.iter();
    let mut added = Vec::new();
    for (field, target) in new.field_names.iter().zip(&targets) {
        if field == "-" {
            continue;
        }
        let column = kept.next();
        if let (None, Some(c)) = (target, column) {
            let ddl = format!(
                "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}",
                table.quoted(),
                quote_ident(&c.name),
                c.type_name
            );
            added.push((c.clone(), ddl));
        }
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;
    use csvbus_shared::read_as::Delimiter;

    fn fields(first: FirstRecord, names: Option<&[String]>) -> Fields<'_> {
        Fields {
            first,
            names,
            null: None,
        }
    }

    #[test]
    fn a_second_header_row_is_said_and_a_first_row_of_values_is_not() {
        let t = TableName::parse("new", "public").unwrap();
        let d = Dialect::plain(Delimiter::COMMA);
        let census = b"id,a,b\nId,Total,Median\n1,5,7\n2,6,8\n";
        let nt = infer_table(&t, census, true, &d, fields(FirstRecord::Header, None)).unwrap();
        assert_eq!(nt.notes.len(), 1, "{:?}", nt.notes);
        assert!(nt.notes[0].contains("a (else bigint), b (else bigint)"));
        // One text value in row 1 is a value, not a header; a missing-value marker is said,
        // with the null= that types its column.
        let one = b"id,a,b\n1,n/a,7\n2,6,8\n3,6,9\n";
        let nt = infer_table(&t, one, true, &d, fields(FirstRecord::Header, None)).unwrap();
        assert_eq!(
            nt.notes,
            ["n/a alone makes text of a (else bigint); null=n/a reads it as NULL and types them"]
        );
        let told = Fields {
            null: Some("n/a"),
            ..fields(FirstRecord::Header, None)
        };
        let nt = infer_table(&t, one, true, &d, told).unwrap();
        assert!(nt.notes.is_empty(), "{:?}", nt.notes);
        assert!(nt.ddl.contains("\"a\" bigint"), "{}", nt.ddl);
        // Without a header there is nothing to be second to.
        let names = ["x".to_owned(), "y".to_owned(), "z".to_owned()];
        let unnamed = infer_table(
            &t,
            census,
            true,
            &d,
            fields(FirstRecord::Data, Some(&names)),
        )
        .unwrap();
        assert!(unnamed.notes.is_empty());
    }

    #[test]
    fn the_table_comes_from_the_header_and_the_first_rows() {
        let t = TableName::parse("new", "public").unwrap();
        let sample = b"Id;Full Name;Paid\n1;Ann;yes\n2;Bob;no\n3;Cy;ma";
        let d = Dialect::plain(Delimiter::SEMICOLON);
        let nt = infer_table(&t, sample, false, &d, fields(FirstRecord::Header, None)).unwrap();
        assert_eq!(nt.rows, 2, "the cut last record is left out");
        assert_eq!(
            nt.ddl,
            r#"CREATE TABLE "public"."new" ("id" bigint, "full_name" text, "paid" boolean)"#
        );
        let names: Vec<String> = ["n", "-", "when"].map(String::from).to_vec();
        let nt = infer_table(
            &t,
            b"1,x,2026-01-01\n",
            true,
            &Dialect::plain(Delimiter::COMMA),
            fields(FirstRecord::Data, Some(&names)),
        )
        .unwrap();
        assert_eq!(
            nt.ddl,
            r#"CREATE TABLE "public"."new" ("n" bigint, "when" date)"#
        );
        assert!(matches!(
            infer_table(&t, b"", true, &d, fields(FirstRecord::Header, None)),
            Err(HeaderError::Empty)
        ));
        // A comment line between the rows, and a short row, are no rows: they type nothing
        // (x stays bigint).
        let sample = b"x,y,z\n1,2,3\n# comment\n# 4,5,6\n4,5\n6,7,8,\n";
        let d = Dialect {
            comment: Some(b'#'),
            ..Dialect::plain(Delimiter::COMMA)
        };
        let nt = infer_table(&t, sample, true, &d, fields(FirstRecord::Header, None)).unwrap();
        assert_eq!(
            (nt.rows, nt.ddl.as_str()),
            (
                2,
                r#"CREATE TABLE "public"."new" ("x" bigint, "y" bigint, "z" bigint)"#
            )
        );
    }
}
