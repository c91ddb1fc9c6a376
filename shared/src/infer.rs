//! Column types inferred from a sample of a file's rows, for `create=true` and `csvbus
//! infer`: the narrowest of bigint, numeric, double precision, boolean, date, timestamp,
//! timestamptz, time and uuid that every non-empty value of the column fits, else text. A
//! number written with a leading zero (`01234`, a postal code or an account number) is text:
//! as a number it would lose its zeros. Empty values
//! are NULL and say nothing; a column empty in the whole sample is text. Dates and timestamps
//! are recognized as people write them (`31/12/2024`, `12/31/24 10:00`, `31.12.2024`): a
//! column is a date when one order of day, month and year reads every value.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};

use crate::catalog::{quote_ident, TableName};
use crate::dates::{self, DateOrder};
use crate::numbers::{self, DecimalMark};

/// A type `create=true` gives a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    Boolean,
    Bigint,
    Numeric,
    Double,
    Date,
    Timestamp,
    Timestamptz,
    Time,
    Uuid,
    Text,
}

/// In order of preference: the first one a column's values all fit is its type.
const ORDER: [SqlType; 9] = [
    SqlType::Boolean,
    SqlType::Bigint,
    SqlType::Numeric,
    SqlType::Double,
    SqlType::Date,
    SqlType::Timestamp,
    SqlType::Timestamptz,
    SqlType::Time,
    SqlType::Uuid,
];

impl SqlType {
    /// The type of a column `create=true` made, from its name in the catalog (as
    /// `format_type` prints it: `timestamp without time zone` for `timestamp`).
    pub fn from_sql(name: &str) -> Option<Self> {
        let name = match name {
            "timestamp without time zone" => "timestamp",
            "timestamp with time zone" => "timestamptz",
            "time without time zone" => "time",
            n => n,
        };
        ORDER
            .into_iter()
            .chain([Self::Text])
            .find(|t| t.sql() == name)
    }

    /// Whether the upload reads `v` as this type, dates in `order` and numbers with `mark`
    /// rewritten first, as it writes them.
    pub fn reads(self, v: &str, order: DateOrder, mark: DecimalMark) -> bool {
        let v = v.trim();
        match self {
            Self::Date | Self::Timestamp => {
                dates::to_iso(v, order).is_ok_and(|iso| self.fits(&iso))
            }
            Self::Bigint | Self::Numeric | Self::Double => {
                numbers::to_plain(v, mark, true).is_ok_and(|p| self.fits(&p))
            }
            _ => self.fits(v),
        }
    }

    /// The narrowest wider type that holds every value of this one and `v` too (a column of a
    /// table the import created widens instead of rejecting a row): integer → numeric → text,
    /// date → timestamp → text, anything else → text.
    pub fn widened_for(self, v: &str, order: DateOrder, mark: DecimalMark) -> Self {
        let wider: &[Self] = match self {
            Self::Bigint => &[Self::Numeric],
            Self::Date => &[Self::Timestamp],
            _ => &[],
        };
        wider
            .iter()
            .copied()
            .find(|t| t.reads(v, order, mark))
            .unwrap_or(Self::Text)
    }

    pub fn sql(self) -> &'static str {
        match self {
            Self::Boolean => "boolean",
            Self::Bigint => "bigint",
            Self::Numeric => "numeric",
            Self::Double => "double precision",
            Self::Date => "date",
            Self::Timestamp => "timestamp",
            Self::Timestamptz => "timestamptz",
            Self::Time => "time",
            Self::Uuid => "uuid",
            Self::Text => "text",
        }
    }

    /// Whether Postgres reads `v` as this type (the forms csvbus recognizes).
    pub fn fits(self, v: &str) -> bool {
        let v = v.trim();
        match self {
            Self::Boolean => matches!(
                v.to_ascii_lowercase().as_str(),
                "true" | "false" | "t" | "f" | "yes" | "no"
            ),
            _ if self.is_number() && (leading_zero(v) || phone_number(v)) => false,
            Self::Bigint => v.parse::<i64>().is_ok(),
            Self::Numeric => is_decimal(v),
            Self::Double => is_decimal(v) || exponent(v) || non_finite(v),
            Self::Date => NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok(),
            Self::Timestamp => {
                Self::Date.fits(v)
                    || [
                        "%Y-%m-%d %H:%M:%S%.f",
                        "%Y-%m-%dT%H:%M:%S%.f",
                        "%Y-%m-%d %H:%M",
                        // As HTML's datetime-local and many loggers write it.
                        "%Y-%m-%dT%H:%M",
                        // A 12-hour clock, as US spreadsheets write it (`3/1/2024 1:05 PM`,
                        // its date rewritten to ISO first).
                        "%Y-%m-%d %I:%M %p",
                        "%Y-%m-%d %I:%M:%S %p",
                    ]
                    .iter()
                    .any(|f| NaiveDateTime::parse_from_str(v, f).is_ok())
            }
            Self::Timestamptz => {
                // `… 10:00:00 UTC`, `… EST`: a zone Postgres reads by name (a `timestamp`
                // column would drop it). Not `CST`: US Central to Postgres, China to others.
                let named = ZONE_NAMES
                    .iter()
                    .find_map(|z| v.strip_suffix(z))
                    .is_some_and(|t| !Self::Date.fits(t) && Self::Timestamp.fits(t));
                named
                    || DateTime::parse_from_rfc3339(v).is_ok()
                    // `-0500`, `-05:00`, and the short `-08` ISO 8601 allows (RFC 3339 does not).
                    || [
                        "%Y-%m-%d %H:%M:%S%.f%#z",
                        "%Y-%m-%d %H:%M:%S%.f%:z",
                        "%Y-%m-%dT%H:%M:%S%.f%#z",
                    ]
                    .iter()
                    .any(|f| DateTime::parse_from_str(v, f).is_ok())
            }
            // `08:30`, `18:05:30`, `07:00:00.250`, as timesheets and timetables write them.
            Self::Time => ["%H:%M:%S%.f", "%H:%M"]
                .iter()
                .any(|f| NaiveTime::parse_from_str(v, f).is_ok()),
            Self::Uuid => v.len() == 36 && uuid::Uuid::try_parse(v).is_ok(),
            Self::Text => true,
        }
    }

    /// An integer or decimal type.
    pub fn is_number(self) -> bool {
        matches!(self, Self::Bigint | Self::Numeric | Self::Double)
    }
}

/// `1e3`, `-2.5E-4`: a number with an exponent that `double precision` holds (Postgres
/// refuses `1e999` and `1e-999` as out of range, where Rust reads infinity or zero).
fn exponent(v: &str) -> bool {
    let Some((mantissa, _)) = v.split_once(['e', 'E']) else {
        return false;
    };
    v.parse::<f64>().is_ok_and(|x| {
        x.is_finite() && (x != 0.0 || !mantissa.bytes().any(|b| matches!(b, b'1'..=b'9')))
    })
}

/// `NaN`, `inf`, `-Infinity`: the values beside numbers that `double precision` reads (numpy
/// and R write them).
fn non_finite(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "nan" | "inf" | "+inf" | "-inf" | "infinity" | "+infinity" | "-infinity"
    )
}

/// Time zone abbreviations Postgres' `Default` set reads, and no other zone writes alike.
const ZONE_NAMES: [&str; 16] = [
    " UTC", " GMT", " EST", " EDT", " CDT", " MST", " MDT", " PST", " PDT", " AKST", " AKDT",
    " HST", " WET", " CET", " CEST", " EET",
];

/// `+318855443322`: a plus and 8 to 15 digits, a phone number as E.164 writes it, whose plus
/// a number would drop (a signed reading is shorter, `+3`, or has a point, `+12.5`).
fn phone_number(v: &str) -> bool {
    v.strip_prefix('+')
        .is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

/// `01234`, `-007`: a zero before another digit, which a number would drop.
fn leading_zero(v: &str) -> bool {
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v).as_bytes();
    matches!(digits, [b'0', d, ..] if d.is_ascii_digit())
}

/// `123`, `-1.5`, `.5`: digits with at most one point, no exponent.
fn is_decimal(v: &str) -> bool {
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    let mut points = 0;
    !digits.is_empty()
        && digits != "."
        && digits.chars().all(|c| {
            points += usize::from(c == '.');
            c.is_ascii_digit() || (c == '.' && points == 1)
        })
}

/// The types still possible for one column of a sample.
#[derive(Debug, Clone, Copy)]
struct Possible {
    /// Which of [`ORDER`] every value so far fits.
    fits: [bool; 9],
    /// Whether any value came.
    seen: bool,
    /// Date and timestamp, per date order ([`DATE_ORDERS`]): every value so far is one when
    /// read in that order (`31/12/2024` only day-first; ISO values in every order).
    dates: [[bool; 3]; 2],
    /// Numeric and double, per decimal mark (point, comma): every value so far is one when
    /// read with that mark (`1,5` only with a comma; `1,234`, which the marks read as two
    /// different numbers, with neither).
    numbers: [[bool; 2]; 2],
    /// Per decimal mark, bigint, numeric and double: every value so far is one when read
    /// with that mark once the file has settled it (`1,234` is 1234 when the point is).
    grouped: [[bool; 3]; 2],
    /// Per decimal mark: a value of this column that only it reads (`12,345.50`: the point).
    settles: [bool; 2],
}

/// The number types, as [`Possible::grouped`] holds them.
const NUMBERS: [SqlType; 3] = [SqlType::Bigint, SqlType::Numeric, SqlType::Double];

/// The orders a column of dates may be written in; the upload reads them in the order the
/// file's first rows settle ([`crate::dates`]).
const DATE_ORDERS: [DateOrder; 3] = [DateOrder::Dmy, DateOrder::Mdy, DateOrder::Ymd];

/// The decimal marks a column of numbers may be written with ([`crate::numbers`]).
const MARKS: [DecimalMark; 2] = [DecimalMark::Point, DecimalMark::Comma];

impl Possible {
    fn observe(&mut self, v: &str) {
        self.seen = true;
        for (m, mark) in MARKS.into_iter().enumerate() {
            let plain = numbers::to_plain(v.trim(), mark, true);
            for (ok, t) in self.grouped[m].iter_mut().zip(NUMBERS) {
                *ok = *ok && plain.as_ref().is_ok_and(|p| t.fits(p));
            }
        }
        if let numbers::Hint::Settles(m) = numbers::hint(v) {
            self.settles[m as usize] = true;
        }
        for (i, t) in ORDER.iter().enumerate() {
            self.fits[i] = match t {
                SqlType::Date | SqlType::Timestamp => {
                    let k = usize::from(*t == SqlType::Timestamp);
                    for (ok, order) in self.dates[k].iter_mut().zip(DATE_ORDERS) {
                        *ok = *ok && dates::to_iso(v.trim(), order).is_ok_and(|iso| t.fits(&iso));
                    }
                    self.dates[k].contains(&true)
                }
                SqlType::Numeric | SqlType::Double => {
                    let k = usize::from(*t == SqlType::Double);
                    for (ok, mark) in self.numbers[k].iter_mut().zip(MARKS) {
                        *ok = *ok && read_number(v.trim(), mark).is_some_and(|p| t.fits(&p));
                    }
                    self.numbers[k].contains(&true)
                }
                _ => self.fits[i] && t.fits(v),
            };
        }
    }
}

/// `v` as a plain number when the upload would read it so with `mark` before anything settled
/// the file's mark: the point as Postgres reads numbers (`1.234` too), the comma only where it
/// is not ambiguous (`1,234` could be 1234).
fn read_number(v: &str, mark: DecimalMark) -> Option<std::borrow::Cow<'_, str>> {
    match mark {
        DecimalMark::Point => numbers::to_plain(v, mark, false).ok(),
        DecimalMark::Comma if numbers::hint(v) == numbers::Hint::Ambiguous => None,
        DecimalMark::Comma => numbers::to_plain(v, mark, true).ok(),
    }
}

/// The types still possible for each column of a sample.
#[derive(Debug, Clone)]
pub struct Inference {
    possible: Vec<Possible>,
    pub rows: usize,
}

impl Inference {
    pub fn new(columns: usize) -> Self {
        let fresh = Possible {
            fits: [true; 9],
            seen: false,
            dates: [[true; 3]; 2],
            numbers: [[true; 2]; 2],
            grouped: [[true; 3]; 2],
            settles: [false; 2],
        };
        Self {
            possible: vec![fresh; columns],
            rows: 0,
        }
    }

    /// One row's values (`None`: NULL). Fields past the header's count are ignored.
    pub fn observe<'v>(&mut self, row: impl IntoIterator<Item = Option<&'v str>>) {
        self.rows += 1;
        for (p, v) in self.possible.iter_mut().zip(row) {
            if let Some(v) = v.filter(|v| !v.trim().is_empty()) {
                p.observe(v);
            }
        }
    }

    /// Per column, the narrowest type every value fits; when the file's number columns settle
    /// the decimal mark, numbers are typed as the upload then reads them
    /// ([`crate::numbers::decide`]): `1,234` is a number (1234) once the point is settled,
    /// `1.234` an integer once the comma is.
    pub fn types(&self) -> Vec<SqlType> {
        let types: Vec<SqlType> = self.possible.iter().map(Possible::narrowest).collect();
        let settles = |m: usize| {
            self.possible
                .iter()
                .zip(&types)
                .any(|(p, t)| t.is_number() && p.settles[m])
        };
        let mark = match (settles(0), settles(1)) {
            (true, false) => 0,
            (false, true) => 1,
            _ => return types,
        };
        self.possible
            .iter()
            .zip(types)
            .map(|(p, t)| match (t, p.seen) {
                (SqlType::Text | SqlType::Bigint | SqlType::Numeric | SqlType::Double, true) => {
                    NUMBERS
                        .into_iter()
                        .zip(p.grouped[mark])
                        .find(|(_, ok)| *ok)
                        .map_or(t, |(n, _)| n)
                }
                _ => t,
            })
            .collect()
    }
}

impl Possible {
    fn narrowest(&self) -> SqlType {
        match self.seen {
            false => SqlType::Text,
            true => ORDER
                .iter()
                .zip(self.fits)
                .find(|(_, ok)| *ok)
                .map_or(SqlType::Text, |(t, _)| *t),
        }
    }
}

/// The longest identifier Postgres keeps, in bytes (longer ones are cut, so a table created
/// with them would never be found again under the names csvbus knows).
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// The most columns a Postgres table may have.
pub const MAX_COLUMNS: usize = 1600;

/// Column names for a new table from a header: normalized ([`normalize`]), `column_N` when
/// nothing is left, `_2`, `_3`… for repeats; each within [`MAX_IDENTIFIER_BYTES`] (cut at a
/// character boundary before its suffix). Linear in the header: a header of thousands of
/// repeated names costs no more than any other.
pub fn column_names(header: &[String]) -> Vec<String> {
    use std::collections::{HashMap, HashSet};
    let mut taken: HashSet<String> = HashSet::with_capacity(header.len());
    // Per base name, the next suffix to try.
    let mut next: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<String> = Vec::with_capacity(header.len());
    for (i, h) in header.iter().enumerate() {
        let base = match normalize(h.trim_start_matches('\u{feff}')) {
            n if n.is_empty() => format!("column_{}", i + 1),
            n => n,
        };
        let mut name = fit(&base, "");
        if taken.contains(&name) {
            let k = next.entry(base.clone()).or_insert(2);
            loop {
                name = fit(&base, &format!("_{k}"));
                *k += 1;
                if !taken.contains(&name) {
                    break;
                }
            }
        }
        taken.insert(name.clone());
        out.push(name);
    }
    out
}

/// `name` as Postgres keeps an identifier: cut to [`MAX_IDENTIFIER_BYTES`] at a character
/// boundary.
pub fn identifier(name: &str) -> String {
    fit(name, "")
}

/// `base` cut at a character boundary so that `base` + `suffix` fits an identifier.
fn fit(base: &str, suffix: &str) -> String {
    let room = MAX_IDENTIFIER_BYTES - suffix.len();
    let mut end = base.len().min(room);
    while !base.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", &base[..end])
}

/// `CREATE TABLE` for `table` with these columns and types.
pub fn create_table(table: &TableName, columns: &[String], types: &[SqlType]) -> String {
    create_table_of(
        table,
        columns
            .iter()
            .map(String::as_str)
            .zip(types.iter().map(|t| t.sql())),
    )
}

/// `CREATE TABLE` for `table` with these columns, each with its type as SQL names it.
pub fn create_table_of<'a>(
    table: &TableName,
    columns: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let cols: Vec<String> = columns
        .into_iter()
        .map(|(c, t)| format!("{} {t}", quote_ident(c)))
        .collect();
    format!("CREATE TABLE {} ({})", table.quoted(), cols.join(", "))
}

/// A name as compared when no column has it exactly: Unicode NFC (a macOS export writes `ö` as
/// `o` and a combining mark), lower case, each run of other characters than letters and digits
/// one `_`, none at either end (`First Name` → `first_name`).
pub fn normalize(n: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let mut out = String::with_capacity(n.len());
    for ch in n.trim().nfc() {
        if ch.is_alphanumeric() {
            out.extend(ch.to_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_owned()
}

#[cfg(test)]
mod tests {

    #[test]
    fn new_column_names_are_unique_short_enough_and_linear_to_find() {
        let long = "ä".repeat(40); // 80 bytes
        let names = column_names(&[
            long.clone(),
            long.clone(),
            "a".into(),
            "a".into(),
            "a_2".into(),
        ]);
        assert_eq!(names[0], "ä".repeat(31)); // 62 bytes: the next char would pass 63
        assert!(
            names[1].ends_with("_2") && names[1].len() <= MAX_IDENTIFIER_BYTES,
            "{names:?}"
        );
        assert_eq!(&names[2..], ["a", "a_2", "a_2_2"]);
        // 20,000 repeats of one name: unique (the cubic search this replaced took about half
        // an hour of a core for these).
        let header = vec!["x".to_owned(); 20_000];
        let names = column_names(&header);
        let unique: std::collections::HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), 20_000);
        assert_eq!(names[19_999], "x_20000");
    }
    use super::*;

    fn infer(rows: &[&[&str]]) -> Vec<&'static str> {
        let mut inf = Inference::new(rows[0].len());
        for r in rows {
            inf.observe(r.iter().map(|v| Some(*v)));
        }
        inf.types().into_iter().map(SqlType::sql).collect()
    }

    #[test]
    fn each_type_is_inferred_from_its_values() {
        let got = infer(&[
            &[
                "1",
                "1.5",
                "1e3",
                "true",
                "2026-01-31",
                "2026-01-31 12:00:00",
                "2026-01-31T12:00:00Z",
                "0b9c2ad4-7d53-4a3c-9a53-4f0f5a1f4e11",
                "x",
                "",
            ],
            &[
                "-20",
                "2",
                "2.5",
                "F",
                "2025-12-01",
                "2026-01-31",
                "2026-01-31 12:00:00+01:00",
                "6f1c0a0e-0000-4000-8000-000000000001",
                "12",
                "",
            ],
        ]);
        assert_eq!(
            got,
            [
                "bigint",
                "numeric",
                "double precision",
                "boolean",
                "date",
                "timestamp",
                "timestamptz",
                "uuid",
                "text",
                "text"
            ]
        );
    }

    #[test]
    fn leading_zeros_stay_text_and_times_of_day_are_times() {
        let got = infer(&[
            &["01234", "0", "0.5", "08:30", "-007"],
            &["10001", "12", "-0.25", "18:05:30", "5"],
        ]);
        assert_eq!(got, ["text", "bigint", "numeric", "time", "text"]);
        assert!(!SqlType::Bigint.fits("00"));
        // A phone number keeps its plus; a signed number is a number.
        assert_eq!(
            infer(&[&["+318855443322", "+3"], &["+12233445567", "+12.5"]]),
            ["text", "numeric"]
        );
        assert!(SqlType::Double.fits("0e5"));
        // What Postgres' double precision reads beside numbers, and what it refuses.
        assert_eq!(
            infer(&[&["1.5", "1e3"], &["NaN", "-Infinity"], &["inf", "2E-3"]]),
            ["double precision", "double precision"]
        );
        assert!(!SqlType::Double.fits("1e999") && !SqlType::Double.fits("1e-999"));
        assert!(!SqlType::Double.fits("nan1"));
        assert_eq!(
            infer(&[&["2024-03-01T10:00", "2024-03-01 10:00:00 UTC"]]),
            ["timestamp", "timestamptz"]
        );
        assert!(!SqlType::Timestamptz.fits("2024-03-01 UTC"));
        assert!(SqlType::Timestamptz.fits("2020-01-01T00:00:00-08"));
        assert!(!SqlType::Timestamptz.fits("2020-01-01T00:00:00"));
        // US and European zone names, as exports write them; CST is ambiguous.
        assert_eq!(
            infer(&[
                &["2021-05-25 04:55:03.382494 EST"],
                &["2021-05-25 04:55:03 CEST"]
            ]),
            ["timestamptz"]
        );
        assert!(!SqlType::Timestamptz.fits("2021-05-25 04:55:03 CST"));
        assert_eq!(
            infer(&[&["3/1/2024 10:00 AM"], &["12/31/2024 1:05:09 pm"]]),
            ["timestamp"]
        );
        assert!(!SqlType::Timestamp.fits("2024-03-01 13:00 PM"));
        assert!(!SqlType::Time.fits("25:00"));
        // A created column's type as the catalog prints it.
        for (catalog, t) in [
            ("timestamp without time zone", SqlType::Timestamp),
            ("timestamp with time zone", SqlType::Timestamptz),
            ("time without time zone", SqlType::Time),
            ("double precision", SqlType::Double),
            ("bigint", SqlType::Bigint),
        ] {
            assert_eq!(SqlType::from_sql(catalog), Some(t), "{catalog}");
        }
    }

    #[test]
    fn dates_as_people_write_them_are_dates_when_one_order_reads_them_all() {
        let got = infer(&[
            &[
                "31/12/2024",
                "12/31/2024",
                "31.12.2024 10:00",
                "24-12-31",
                "01/02/2024",
                "31/12/2024",
            ],
            &[
                "01/02/2024",
                "01/13/2024",
                "01.02.2024 23:59:59",
                "25-01-02",
                "02/01/2024",
                "12/31/2024",
            ],
        ]);
        assert_eq!(
            got,
            ["date", "date", "timestamp", "date", "date", "text"],
            "the last column needs day-first for one value and month-first for the other"
        );
    }

    #[test]
    fn numbers_with_a_decimal_comma_or_grouped_thousands_are_numbers() {
        let got = infer(&[
            &["1,5", "1.234,56", "1,234.5", "1,234", "1 234"],
            &["-2,25", "12,5", "2.5", "7", "12 345"],
        ]);
        assert_eq!(
            got,
            ["numeric", "numeric", "numeric", "text", "numeric"],
            "1,234 reads as two different numbers: text, not a guess"
        );
    }

    #[test]
    fn grouped_thousands_are_numbers_once_the_file_settles_its_decimal_mark() {
        // A US spreadsheet: 12,345.50 only reads with a point, so 1,234 units are 1234.
        let us = infer(&[&["1,234", "12,345.50", "x"], &["56", "3", "y"]]);
        assert_eq!(us, ["bigint", "numeric", "text"]);
        // A German one: 1.234,5 settles the comma, so 1.234 is 1234.
        let de = infer(&[&["1.234", "1.234,5"], &["2.000", "7"]]);
        assert_eq!(de, ["bigint", "numeric"]);
        // A text column that happens to hold a settling value settles nothing.
        assert_eq!(
            infer(&[&["1,234", "v 2.5"], &["5", "12.5"]]),
            ["text", "text"]
        );
    }

    #[test]
    fn a_value_that_does_not_fit_widens_its_column_as_little_as_it_can() {
        let (o, m) = (DateOrder::Dmy, DecimalMark::Comma);
        assert_eq!(SqlType::Bigint.widened_for("1,5", o, m), SqlType::Numeric);
        assert_eq!(SqlType::Bigint.widened_for("oops", o, m), SqlType::Text);
        assert_eq!(
            SqlType::Date.widened_for("31/12/2024 10:00", o, m),
            SqlType::Timestamp
        );
        assert_eq!(SqlType::Date.widened_for("soon", o, m), SqlType::Text);
        assert_eq!(SqlType::Uuid.widened_for("x", o, m), SqlType::Text);
        assert!(SqlType::Date.reads("31/12/2024", o, m));
        assert!(!SqlType::Bigint.reads("1,5", o, m));
        assert_eq!(SqlType::from_sql("double precision"), Some(SqlType::Double));
        assert_eq!(SqlType::from_sql("text"), Some(SqlType::Text));
    }

    #[test]
    fn one_value_that_does_not_fit_widens_or_falls_to_text() {
        assert_eq!(infer(&[&["1"], &["2.5"]]), ["numeric"]);
        assert_eq!(infer(&[&["1"], &["abc"]]), ["text"]);
        assert_eq!(infer(&[&["2026-01-01"], &["2026-13-01"]]), ["text"]);
        assert_eq!(infer(&[&["99999999999999999999"]]), ["numeric"]);
        assert_eq!(infer(&[&["1"], &[""], &["3"]]), ["bigint"]);
    }

    #[test]
    fn header_names_become_plain_column_names() {
        let h: Vec<String> = ["First Name", "", "first-name", "\u{feff}ID"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            column_names(&h),
            ["first_name", "column_2", "first_name_2", "id"]
        );
        // The same name decomposed (NFD) and composed (NFC) is one name.
        let nfd: Vec<String> = ["Gro\u{308}ße", "Größe", "a", "a", ""]
            .map(String::from)
            .to_vec();
        assert_eq!(
            column_names(&nfd),
            ["größe", "größe_2", "a", "a_2", "column_5"]
        );
        let t = TableName::parse("s.new", "public").unwrap();
        assert_eq!(
            create_table(&t, &column_names(&h)[..1], &[SqlType::Bigint]),
            r#"CREATE TABLE "s"."new" ("first_name" bigint)"#
        );
    }
}
