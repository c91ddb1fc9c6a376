//! From CSV records to row messages: the header check against the target table, and the
//! conversion of each record into the JSON value of its message (or the reason it is rejected).

pub(crate) mod mapping;

use std::borrow::Cow;

use csv_async::ByteRecord;
use csvbus_shared::catalog::Column;
use csvbus_shared::dates::{self, DateOrder};
use csvbus_shared::message::RowEncoder;
use csvbus_shared::numbers::{self, DecimalMark};
use csvbus_shared::read_as::{ColumnMapping, Delimiter};

use crate::rows::mapping::Mapping;

/// How to read the values of an upload (query options).
#[derive(Debug, Clone, Default)]
pub struct ValueOptions {
    pub delimiter: Delimiter,
    /// The unquoted text that means NULL; `None`: an unquoted empty field (Postgres' CSV default).
    pub null: Option<String>,
    /// How dates in date and timestamp columns are read ([`csvbus_shared::dates`]).
    pub dates: DateOrder,
    /// The decimal mark of numbers in numeric columns ([`csvbus_shared::numbers`]), and
    /// whether it was given or decided (else a number either mark reads differently is refused).
    pub decimal: DecimalMark,
    pub decimal_settled: bool,
}

/// The checked header of an upload.
#[derive(Debug, Clone)]
pub struct Header {
    /// The table columns written, in the file's order.
    pub columns: Vec<String>,
    /// The field of the key column.
    pub key_index: Option<usize>,
    /// Per field of the file, whether it is written (`false`: dropped).
    keep: Vec<bool>,
    /// The file's fields that went to a column of another name, or nowhere.
    pub mapping: Vec<ColumnMapping>,
    /// Per written column, whether it takes dates csvbus rewrites to ISO.
    dates: Vec<bool>,
    /// Per written column, whether it takes numbers csvbus rewrites to plain digits.
    numbers: Vec<bool>,
    /// Per written column, whether its type has no empty value (numbers, dates, booleans,
    /// uuids, times): a quoted empty field (`""`, as the World Bank writes a missing number)
    /// is NULL there, as an unquoted one is (unless `null=` names another text); in a text
    /// column it stays an empty string.
    no_empty: Vec<bool>,
    encoder: RowEncoder,
}

/// Whether a column of `type_name` has no empty value (`''` is no number, date, boolean…).
fn has_no_empty_value(type_name: &str) -> bool {
    numbers::is_number_type(type_name)
        || dates::is_date_type(type_name)
        || type_name.starts_with("time")
        || matches!(type_name, "boolean" | "uuid" | "interval")
}

/// Why a header record is refused (always at line 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("header field {0} is not valid UTF-8; a file in another encoding needs encoding= (encoding=auto detects it)")]
    NotUtf8(usize),
    #[error("the first record must name the columns")]
    Empty,
    #[error("column {0:?} appears twice in the header")]
    Duplicate(String),
    #[error("the table has no column {0:?}")]
    UnknownColumn(String),
    /// An empty name in the header (row names, a padded header) into an existing table.
    #[error("header field {0} has no name: name it, or leave it out with -, in columns= (columns=-,… leaves out a first field of row names)")]
    Unnamed(usize),
    /// No name of the header is a column: likely a file without a header.
    #[error("the table has no column {0:?}, nor any other name on line 1: if the file has no header, header=false&columns={1} reads line 1 as a row")]
    NoNameMatches(String, String),
    #[error("column {0:?} is generated and cannot be written")]
    Generated(String),
    #[error("NOT NULL column(s) without a default missing from the header: {}", .0.join(", "))]
    MissingColumns(Vec<String>),
    #[error("key column {0:?} is not in the header")]
    UnknownKey(String),
    #[error("columns= names {0} fields but the file has {1}")]
    ColumnCount(usize, usize),
    #[error("header name {0:?} matches both {1:?} and {2:?}; name one with columns=")]
    Ambiguous(String, String, String),
    #[error("the header has {0} fields; a table has at most {max} columns", max = csvbus_shared::infer::MAX_COLUMNS)]
    TooManyColumns(usize),
}

impl HeaderError {
    /// The API's error code for it.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotUtf8(_) => "invalid_header",
            Self::Empty => "missing_header",
            Self::Duplicate(_) => "duplicate_column",
            Self::UnknownColumn(_) | Self::Unnamed(_) | Self::NoNameMatches(..) => "unknown_column",
            Self::Generated(_) => "generated_column",
            Self::MissingColumns(_) => "missing_column",
            Self::UnknownKey(_) => "unknown_key_column",
            Self::ColumnCount(..) => "invalid_columns",
            Self::Ambiguous(..) => "ambiguous_column",
            Self::TooManyColumns(_) => "too_many_columns",
        }
    }
}

/// Checks the header record against the table (see [`check_names`]).
pub fn check_header(
    record: &ByteRecord,
    table: &[Column],
    key: Option<&str>,
    mapping: &Mapping,
) -> Result<Header, HeaderError> {
    check_names(&names(record)?, table, key, mapping)
}

/// Maps the file's field names onto the table ([`crate::rows::mapping`]): every kept field is a
/// writable column, none twice, every NOT NULL column without a default is there, and the key
/// column is one of them.
pub fn check_names(
    fields: &[String],
    table: &[Column],
    key: Option<&str>,
    mapping: &Mapping,
) -> Result<Header, HeaderError> {
    if fields.len() > csvbus_shared::infer::MAX_COLUMNS {
        return Err(HeaderError::TooManyColumns(fields.len()));
    }
    let (targets, report) = crate::rows::mapping::resolve(fields, table, mapping)?;
    let columns: Vec<String> = targets.iter().flatten().cloned().collect();
    check_required(&columns, table)?;
    let key_index = match key {
        None => None,
        Some(k) => Some(
            targets
                .iter()
                .position(|c| c.as_deref() == Some(k))
                .ok_or_else(|| HeaderError::UnknownKey(k.to_owned()))?,
        ),
    };
    let encoder = RowEncoder::new(&columns);
    let typed = |is: fn(&str) -> bool| -> Vec<bool> {
        columns
            .iter()
            .map(|c| table.iter().any(|t| t.name == *c && is(&t.type_name)))
            .collect()
    };
    Ok(Header {
        dates: typed(dates::is_date_type),
        numbers: typed(numbers::is_number_type),
        no_empty: typed(has_no_empty_value),
        columns,
        key_index,
        keep: targets.iter().map(Option::is_some).collect(),
        mapping: report,
        encoder,
    })
}

/// The header's names (a byte-order mark before the first dropped).
fn names(record: &ByteRecord) -> Result<Vec<String>, HeaderError> {
    let mut columns = Vec::with_capacity(record.len());
    for (i, raw) in record.iter().enumerate() {
        let name = std::str::from_utf8(raw).map_err(|_| HeaderError::NotUtf8(i + 1))?;
        let name = if i == 0 {
            name.trim_start_matches('\u{feff}')
        } else {
            name
        };
        columns.push(name.to_owned());
    }
    if columns.is_empty() || (columns.len() == 1 && columns[0].is_empty()) {
        return Err(HeaderError::Empty);
    }
    Ok(columns)
}

/// No NOT NULL column without a default left out.
fn check_required(columns: &[String], table: &[Column]) -> Result<(), HeaderError> {
    let missing: Vec<String> = table
        .iter()
        .filter(|c| c.not_null && !c.has_default && !columns.contains(&c.name))
        .map(|c| c.name.clone())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(HeaderError::MissingColumns(missing))
    }
}

impl Header {
    /// The fields of the file that go to date or timestamp columns.
    pub fn date_fields(&self) -> Vec<usize> {
        self.fields_where(&self.dates)
    }

    /// The fields of the file that go to numeric columns.
    pub fn number_fields(&self) -> Vec<usize> {
        self.fields_where(&self.numbers)
    }

    fn fields_where(&self, column: &[bool]) -> Vec<usize> {
        let kept = self.keep.iter().enumerate().filter(|(_, k)| **k);
        kept.zip(column)
            .filter(|(_, d)| **d)
            .map(|((i, _), _)| i)
            .collect()
    }

    /// Per written column (its index in [`Header::columns`]), the record's raw value; none
    /// when the record has not the header's number of fields (it is rejected for that).
    pub fn written_values<'r>(
        &self,
        record: &'r ByteRecord,
    ) -> impl Iterator<Item = (usize, &'r [u8])> + use<'r, '_> {
        let whole = record.len() == self.keep.len();
        record
            .iter()
            .take(if whole { usize::MAX } else { 0 })
            .zip(&self.keep)
            .filter(|(_, k)| **k)
            .map(|(v, _)| v)
            .enumerate()
    }

    /// Column `n` is now of `type_name` (widened): its values are rewritten as that type's.
    pub fn column_is(&mut self, n: usize, type_name: &str) {
        self.dates[n] = dates::is_date_type(type_name);
        self.numbers[n] = numbers::is_number_type(type_name);
        self.no_empty[n] = has_no_empty_value(type_name);
    }

    /// The field of the file that goes to column `name`.
    pub fn field_of(&self, name: &str) -> Option<usize> {
        let nth = self.columns.iter().position(|c| c == name)?;
        self.keep
            .iter()
            .enumerate()
            .filter(|(_, k)| **k)
            .nth(nth)
            .map(|(i, _)| i)
    }

    /// Writes the JSON value of `record` into `out` (cleared first), or says why the record is
    /// rejected. `quoted` tells which fields were quoted in the file; it is asked only when a
    /// field could be the NULL text.
    pub fn encode(
        &self,
        record: &ByteRecord,
        opts: &ValueOptions,
        quoted: impl FnOnce() -> Vec<bool>,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        if record.len() != self.keep.len() {
            return Err(format!(
                "expected {} fields, found {}",
                self.keep.len(),
                record.len()
            ));
        }
        let null_text = opts.null.as_deref().unwrap_or("");
        let mut quoted = Some(quoted);
        let mut quoted_fields: Option<Vec<bool>> = None;
        let mut values: Vec<Option<Cow<'_, str>>> = Vec::with_capacity(self.columns.len());
        for (i, raw) in record.iter().enumerate().filter(|(i, _)| self.keep[*i]) {
            let s = std::str::from_utf8(raw).map_err(|_| {
                let column = &self.columns[values.len()];
                format!("invalid UTF-8 in field {} ({column})", i + 1)
            })?;
            let n = values.len();
            let null = (s.is_empty() && null_text.is_empty() && self.no_empty[n])
                || s == null_text && {
                    let q = quoted_fields
                        .get_or_insert_with(|| quoted.take().map(|f| f()).unwrap_or_default());
                    !q.get(i).copied().unwrap_or(false)
                };
            let rewritten = match (null, self.dates[n], self.numbers[n]) {
                (true, ..) => None,
                (false, true, _) => Some(dates::to_iso(s, opts.dates)),
                (false, _, true) => Some(numbers::to_plain(s, opts.decimal, opts.decimal_settled)),
                (false, false, false) => Some(Ok(Cow::Borrowed(s))),
            };
            let value = match rewritten {
                None => None,
                Some(Ok(v)) => Some(v),
                Some(Err(why)) => {
                    return Err(format!("field {} ({}): {why}", i + 1, self.columns[n]));
                }
            };
            values.push(value);
        }
        out.clear();
        self.encoder
            .encode(out, values.iter().map(Option::as_deref));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, not_null: bool, has_default: bool) -> Column {
        Column {
            name: name.into(),
            type_name: "text".into(),
            not_null,
            has_default,
            generated: false,
        }
    }

    fn rec(fields: &[&str]) -> ByteRecord {
        ByteRecord::from(fields.to_vec())
    }

    #[test]
    fn header_errors_are_specific() {
        let table = [
            col("id", true, false),
            col("name", false, false),
            col("ts", true, true),
        ];
        let e = check_header(&rec(&["id", "nope"]), &table, None, &Mapping::default()).unwrap_err();
        assert_eq!(e, HeaderError::UnknownColumn("nope".into()));
        assert_eq!(e.code(), "unknown_column");
        let e = check_header(&rec(&["id", "id"]), &table, None, &Mapping::default()).unwrap_err();
        assert_eq!(e.code(), "duplicate_column");
        let e = check_header(&rec(&["name"]), &table, None, &Mapping::default()).unwrap_err();
        assert_eq!(e, HeaderError::MissingColumns(vec!["id".into()]));
        assert!(e.to_string().contains("id"));
        let e = check_header(&rec(&["id"]), &table, Some("name"), &Mapping::default()).unwrap_err();
        assert_eq!(e.code(), "unknown_key_column");
        let e = check_header(&rec(&[""]), &table, None, &Mapping::default()).unwrap_err();
        assert_eq!(e.code(), "missing_header");
        let h = check_header(
            &rec(&["\u{feff}id", "name"]),
            &table,
            Some("name"),
            &Mapping::default(),
        )
        .unwrap();
        assert_eq!(h.columns, ["id", "name"]);
        assert_eq!(h.key_index, Some(1));
    }

    #[test]
    fn empty_fields_are_null_unless_quoted_and_the_null_text_is_configurable() {
        let table = [col("a", false, false), col("b", false, false)];
        let h = check_header(&rec(&["a", "b"]), &table, None, &Mapping::default()).unwrap();
        let mut out = Vec::new();
        let opts = ValueOptions {
            delimiter: Delimiter::COMMA,
            null: None,
            dates: DateOrder::Mdy,
            decimal: DecimalMark::Point,
            decimal_settled: false,
        };
        h.encode(&rec(&["", ""]), &opts, || vec![true, false], &mut out)
            .unwrap();
        assert_eq!(out, br#"{"a":"","b":null}"#);
        let opts = ValueOptions {
            delimiter: Delimiter::COMMA,
            null: Some("NULL".into()),
            dates: DateOrder::Mdy,
            decimal: DecimalMark::Point,
            decimal_settled: false,
        };
        h.encode(&rec(&["NULL", ""]), &opts, || vec![false, false], &mut out)
            .unwrap();
        assert_eq!(out, br#"{"a":null,"b":""}"#);
        let e = h
            .encode(&rec(&["1"]), &opts, Vec::new, &mut out)
            .unwrap_err();
        assert_eq!(e, "expected 2 fields, found 1");
        let bad = ByteRecord::from(vec![&b"ok"[..], &b"\xff"[..]]);
        let e = h.encode(&bad, &opts, Vec::new, &mut out).unwrap_err();
        assert!(e.contains("invalid UTF-8 in field 2"), "{e}");
    }

    #[test]
    fn a_quoted_empty_field_is_null_where_the_type_has_no_empty_value() {
        let mut table = [
            col("n", false, false),
            col("d", false, false),
            col("t", false, false),
        ];
        table[0].type_name = "bigint".into();
        table[1].type_name = "date".into();
        let h = check_header(&rec(&["n", "d", "t"]), &table, None, &Mapping::default()).unwrap();
        let mut out = Vec::new();
        let opts = ValueOptions::default();
        let all_quoted = || vec![true, true, true];
        h.encode(&rec(&["", "", ""]), &opts, all_quoted, &mut out)
            .unwrap();
        assert_eq!(out, br#"{"n":null,"d":null,"t":""}"#);
        // With null= another text, an empty field is no NULL anywhere: Postgres says why.
        let told = ValueOptions {
            null: Some("NA".into()),
            ..ValueOptions::default()
        };
        h.encode(&rec(&["", "NA", ""]), &told, all_quoted, &mut out)
            .unwrap();
        assert_eq!(out, br#"{"n":"","d":"NA","t":""}"#);
    }

    #[test]
    fn dates_in_date_columns_are_written_in_iso_order_and_others_are_left_alone() {
        let mut day = col("day", false, false);
        day.type_name = "date".into();
        let mut at = col("at", false, false);
        at.type_name = "timestamp with time zone".into();
        let table = [col("note", false, false), day, at];
        let h = check_header(
            &rec(&["note", "day", "at"]),
            &table,
            None,
            &Mapping::default(),
        )
        .unwrap();
        assert_eq!(h.date_fields(), [1, 2]);
        let opts = ValueOptions {
            delimiter: Delimiter::COMMA,
            null: None,
            dates: DateOrder::Dmy,
            decimal: DecimalMark::Point,
            decimal_settled: false,
        };
        let mut out = Vec::new();
        let r = rec(&["01/02/2024", "01/02/2024", "31.12.2024 10:00+01"]);
        h.encode(&r, &opts, Vec::new, &mut out).unwrap();
        assert_eq!(
            out,
            br#"{"note":"01/02/2024","day":"2024-02-01","at":"2024-12-31 10:00+01"}"#
        );
        let r = rec(&["x", "12/31/2024", ""]);
        let e = h.encode(&r, &opts, Vec::new, &mut out).unwrap_err();
        assert!(e.starts_with("field 2 (day): \"12/31/2024\""), "{e}");
    }
}
