//! What a header is, and which lines after it are no rows: a record that reads as column
//! names over the rows below it (or as data, in a file without a header), the fields a row
//! may have past the header's, comment lines, and lines that repeat the header. Used by
//! detection ([`crate::read::detect`]), the reader ([`crate::read::parse`]), what is decided
//! from the first bytes ([`crate::read::prepare`]) and `create=true`'s inference; it uses none
//! of them.

use csv::ByteRecord;
use csvbus_shared::infer::{Inference, SqlType};

/// A field the rows of the sample have past the header's: one more in most rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unnamed {
    #[default]
    None,
    /// After the last column, empty or blank (`a,b` over `1,2,`, as some banks write them, or
    /// a quoted line break): the reader drops it ([`past_header`]).
    Trailing,
    /// Before the first: each row starts with a label the header does not name (R's
    /// `write.table` writes row names so: `"x","y"` over `"1",3,4`). The header is read with
    /// an empty first name (`Dialect::read_header` of the reader).
    RowNames,
    /// Not a field the rows have but names the header has: it ends with empty names the
    /// rows lack (`a,b,` over `1,2`, a delimiter the rows do not end with). The header is
    /// read without them.
    PaddedHeader,
}

/// Whether `header` reads as column names over the records after it: no name empty (but
/// the last ones, a trailing delimiter's or a spreadsheet's padding) or a number (but a year,
/// as wide tables name their columns: `Country Name,2015,2016`), some name text, and at least
/// one column whose values all have a type (a number, a date…) named by text that does not —
/// or by a year while its values are numbers that are not all years.
pub(crate) fn names_over<'r>(
    header: &ByteRecord,
    rows: impl Iterator<Item = &'r ByteRecord>,
) -> bool {
    let Some(names) = trimmed_fields(header) else {
        return false;
    };
    let named = names.iter().rposition(|n| !n.is_empty()).unwrap_or(0);
    let bad = |(i, n): (usize, &&str)| {
        (n.is_empty() && i < named) || (numeric(n) && !year(n)) || MISSING.contains(n)
    };
    if names.iter().enumerate().any(bad) || !names.iter().any(|n| !n.is_empty() && !year(n)) {
        return false;
    }
    let rows: Vec<&ByteRecord> = rows.collect();
    let types = inferred(names.len(), &rows);
    types.rows > 0
        && names
            .iter()
            .zip(types.types())
            .enumerate()
            .any(|(i, (n, t))| {
                (t != SqlType::Text && !t.fits(n))
                    || (year(n) && t.is_number() && years_over_numbers(&rows, i))
            })
}

/// Whether `first`, the record a header would be, reads as data with the `rows` after it (a
/// file without a header, as database dumps and many feeds are written): it changes no
/// column's type, and at least one of its values sits in a typed column (a number, a date…) —
/// a header's names are text over typed values, or empty. Not when its typed values are all
/// years over numbers that are not all years (`Country,2015` over `France,12.5`: a header;
/// `France,2015,12.5` over `Spain,12.1,13.0` is data). With no rows, `first` alone decides:
/// data when any value is typed.
pub(crate) fn first_record_is_data(first: &ByteRecord, rows: &[ByteRecord]) -> bool {
    let Some(values) = trimmed_fields(first) else {
        return false;
    };
    let rows: Vec<&ByteRecord> = rows.iter().filter(|r| has_width(r, values.len())).collect();
    let below = inferred(values.len(), &rows);
    let mut with = below.clone();
    with.observe(values.iter().copied().map(Some));
    let (types, typed_with) = (below.types(), with.types());
    if rows.is_empty() {
        return typed_with.iter().any(|t| *t != SqlType::Text);
    }
    let typed_value = values
        .iter()
        .zip(&types)
        .any(|(v, t)| !v.is_empty() && *t != SqlType::Text);
    // Every typed value a year over numbers that are not: the years name the columns.
    let year_names = values
        .iter()
        .zip(&types)
        .enumerate()
        .filter(|(_, (v, t))| !v.is_empty() && **t != SqlType::Text)
        .all(|(i, (v, t))| year(v) && t.is_number() && years_over_numbers(&rows, i));
    types == typed_with && typed_value && !year_names
}

/// Whether a record whose text is `raw` (from its start, blank lines before it included) is a
/// comment line after the header (`row_shaped`: it has the header's fields): it starts with
/// `c`, and `c` is followed by a space (`# 20;7`) or the record is not row-shaped
/// (`#red,10` is a row; `# note` and `#end` are not).
pub(crate) fn is_comment_line(raw: &[u8], c: u8, row_shaped: bool) -> bool {
    let mut text = raw
        .iter()
        .copied()
        .skip_while(|b| matches!(b, b'\r' | b'\n'));
    text.next() == Some(c) && (matches!(text.next(), Some(b' ' | b'\t')) || !row_shaped)
}

/// Whether `record` is read as a row of `width` fields: it has that many, or one more past
/// the header ([`past_header`]); any other record is a rejected row.
pub(crate) fn has_width(record: &ByteRecord, width: usize) -> bool {
    record.len() == width || past_header(record, width)
}

/// Whether `record` has one field more than a header of `width` fields, empty or blank (a
/// delimiter the header lacks, `a,b` over `1,2,`, or a quoted line break after it): read
/// without it.
pub(crate) fn past_header(record: &ByteRecord, width: usize) -> bool {
    record.len() == width + 1 && record.get(width).is_some_and(blank)
}

/// How many columns of `rows` have a type (a number, a date…), missing values left out.
pub(crate) fn typed(rows: &[ByteRecord]) -> usize {
    let width = rows.first().map_or(0, ByteRecord::len);
    let rows: Vec<&ByteRecord> = rows.iter().collect();
    let types = inferred(width, &rows).types();
    types.iter().filter(|t| **t != SqlType::Text).count()
}

/// Whether two records have the same fields, whitespace around them aside (a header and a
/// line that repeats it).
pub(crate) fn same_fields<'a, 'b>(
    a: impl IntoIterator<Item = &'a [u8]>,
    b: impl IntoIterator<Item = &'b [u8]>,
) -> bool {
    let (mut a, mut b) = (a.into_iter(), b.into_iter());
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x.trim_ascii() == y.trim_ascii() => {}
            _ => return false,
        }
    }
}

/// Whether a field is empty or whitespace only.
pub(crate) fn blank(field: &[u8]) -> bool {
    field.iter().all(u8::is_ascii_whitespace)
}

/// The record's fields, trimmed (`None`: one is not UTF-8).
fn trimmed_fields(record: &ByteRecord) -> Option<Vec<&str>> {
    record
        .iter()
        .map(|f| std::str::from_utf8(f).ok().map(str::trim))
        .collect()
}

/// Values that say a value is missing (`NA` as R writes it, Excel's `#N/A`): they say nothing
/// of what is a header.
pub(crate) const MISSING: [&str; 7] = ["NA", "N/A", "n/a", "#N/A", "NULL", "null", "-"];

/// The types `rows` give `width` columns, a missing value ([`MISSING`]) counted as empty.
pub(crate) fn inferred(width: usize, rows: &[&ByteRecord]) -> Inference {
    let mut types = Inference::new(width);
    for r in rows {
        types.observe(r.iter().map(|f| {
            std::str::from_utf8(f)
                .ok()
                .map(|v| if MISSING.contains(&v.trim()) { "" } else { v })
        }));
    }
    types
}

/// Whether column `i` of `rows` has a number that is no year: a year naming it is a period,
/// not one of its values.
fn years_over_numbers(rows: &[&ByteRecord], i: usize) -> bool {
    rows.iter()
        .filter_map(|r| r.get(i).and_then(|v| std::str::from_utf8(v).ok()))
        .any(|v| numeric(v) && !year(v.trim()))
}

/// A number of any type (`numeric`'s forms are `double precision`'s too).
fn numeric(v: &str) -> bool {
    SqlType::Bigint.fits(v) || SqlType::Double.fits(v)
}

/// A four-digit year, 1800 to 2199.
fn year(v: &str) -> bool {
    v.len() == 4 && v.parse::<u16>().is_ok_and(|y| (1800..2200).contains(&y))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The records of `text`, read as a CSV file without a header.
    pub(crate) fn records(text: &str) -> Vec<ByteRecord> {
        csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes())
            .byte_records()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn a_first_record_with_the_types_of_the_rows_is_data() {
        let is_data = |text: &str| {
            let r = records(text);
            first_record_is_data(&r[0], &r[1..])
        };
        // Dumps and feeds without a header.
        assert!(is_data("1,AAAB,1997-09-03\n2,AAAC,1997-09-04\n"));
        assert!(is_data("123,TEST4,text1\n\"345\",TEST4,text2\n"));
        assert!(is_data("1,StreetA\n"));
        assert!(is_data("100000.5\n300000.2\n50\n"));
        // Names over values, names alone, names over text.
        assert!(!is_data("id,name\n1,Ann\n2,Bob\n"));
        assert!(!is_data("id,name\n"));
        assert!(!is_data("a,b\nx,y\n"));
        // A name empty where the rows have numbers, and text elsewhere: no typed value.
        assert!(!is_data(",name\n1,Ann\n"));
        // Years naming columns of numbers (the World Bank's indicators): a header.
        assert!(!is_data("Country,2015,2016\nFrance,12.5,13.1\n"));
        // ...but a year in a column of years is a value, and so is one beside other numbers.
        assert!(is_data("2015,a\n2016,b\n"));
        assert!(is_data("France,2015,12.5\nSpain,12.1,13.0\n"));
        // One value that breaks its column's type: a header.
        assert!(!is_data("1,x\n2024-01-01,y\n2024-01-02,z\n"));
    }
}
