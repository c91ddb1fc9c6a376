//! Dates as people write them — day-first, month-first or year-first, with `/`, `-` or `.`, a
//! two- or four-digit year, and a time after them — rewritten to ISO 8601 before Postgres sees
//! them, so that its `DateStyle` never decides what `01/02/2024` means.
//!
//! The order is given (`dateformat=`) or decided from the first rows: a value whose first part
//! is over 12 is day-first, one whose second part is over 12 month-first. When none settles it
//! the default is month-first (as Postgres' own default reads such dates), and the import says
//! so. A value that cannot be a date in the order chosen is a rejected row, never a guess.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// The order of day, month and year in dates that do not start with a four-digit year.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DateOrder {
    /// `31/12/2024`, `31.12.24`.
    Dmy,
    /// `12/31/2024`: the default when nothing in the file settles it.
    #[default]
    Mdy,
    /// `24-12-31` (a four-digit year first is always read year-first).
    Ymd,
}

impl DateOrder {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "dmy" => Self::Dmy,
            "mdy" => Self::Mdy,
            "ymd" => Self::Ymd,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dmy => "dmy",
            Self::Mdy => "mdy",
            Self::Ymd => "ymd",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Dmy => "day first",
            Self::Mdy => "month first",
            Self::Ymd => "year first",
        }
    }
}

/// A date's three numbers as written, and what follows them (a time, a zone).
struct Parts<'a> {
    numbers: [&'a str; 3],
    sep: char,
    rest: &'a str,
}

/// The date at the start of `v`: three runs of digits joined by one separator (`/`, `-` or
/// `.`), ending the value or followed by a space or `T`.
fn parts(v: &str) -> Option<Parts<'_>> {
    let end = v.find([' ', 'T']).unwrap_or(v.len());
    let (date, rest) = v.split_at(end);
    let sep = date.chars().find(|c| !c.is_ascii_digit())?;
    if !matches!(sep, '/' | '-' | '.') {
        return None;
    }
    let mut it = date.split(sep);
    let numbers = [it.next()?, it.next()?, it.next()?];
    let digits = |n: &str| !n.is_empty() && n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit());
    if it.next().is_some() || !numbers.iter().all(|n| digits(n)) {
        return None;
    }
    Some(Parts { numbers, sep, rest })
}

fn num(s: &str) -> u32 {
    s.parse().unwrap_or(0)
}

/// What one value says about the order of its date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// Not a date csvbus rewrites (ISO already, a keyword, or not a date at all).
    None,
    /// Day and month could be either way round (both 12 or less).
    Ambiguous,
    /// Only this order reads it.
    Settles(DateOrder),
    /// Two-digit numbers first and last, the first over 12 (`24-12-31`): day first or year
    /// first. Carries the order its separator is usually written in: `-` year first (ISO
    /// shortened), `.` and `/` day first (`31.12.24`).
    DayOrYear(DateOrder),
}

/// What `v` says about the order of dates.
pub fn hint(v: &str) -> Hint {
    let Some(p) = parts(v) else {
        return Hint::None;
    };
    let [a, b, c] = p.numbers;
    match (a.len(), c.len()) {
        (4, _) => Hint::None,
        (_, 2 | 4) => match (num(a) > 12, num(b) > 12) {
            (false, false) => Hint::Ambiguous,
            (true, false) if a.len() == 2 && c.len() == 2 && num(a) > 31 => {
                Hint::Settles(DateOrder::Ymd)
            }
            (true, false) if a.len() == 2 && c.len() == 2 && (1..=31).contains(&num(c)) => {
                Hint::DayOrYear(if p.sep == '-' {
                    DateOrder::Ymd
                } else {
                    DateOrder::Dmy
                })
            }
            (true, false) => Hint::Settles(DateOrder::Dmy),
            (false, true) => Hint::Settles(DateOrder::Mdy),
            (true, true) => Hint::None,
        },
        _ => Hint::None,
    }
}

/// `v` with its date in ISO order (`2024-12-31`, then the rest as written), read in `order`;
/// borrowed when there is nothing to rewrite. `Err` says why it is not a date in that order.
pub fn to_iso(v: &str, order: DateOrder) -> Result<Cow<'_, str>, String> {
    if let Some(n) = named(v) {
        return n.iso(v, order);
    }
    let Some(p) = parts(v) else {
        return Ok(Cow::Borrowed(v));
    };
    let [a, b, c] = p.numbers;
    if p.sep == '-' && (a.len(), b.len(), c.len()) == (4, 2, 2) {
        // ISO already.
        return Ok(Cow::Borrowed(v));
    }
    let (y, m, d) = match (a.len(), order) {
        (4, _) => (a, b, c),
        (_, DateOrder::Dmy) => (c, b, a),
        (_, DateOrder::Mdy) => (c, a, b),
        (_, DateOrder::Ymd) => (a, b, c),
    };
    let year = year(v, y)?;
    let (month, day) = (num(m), num(d));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || m.len() > 2 || d.len() > 2 {
        return Err(format!(
            "{v:?} is not a date read {} (dateformat={})",
            order.describe(),
            order.as_str()
        ));
    }
    Ok(Cow::Owned(format!(
        "{year:04}-{month:02}-{day:02}{}",
        p.rest
    )))
}

/// The year `y` of date `v`: four digits, or two — 00–69 are 2000–2069, 70–99 1970–1999.
fn year(v: &str, y: &str) -> Result<u32, String> {
    match y.len() {
        4 => Ok(num(y)),
        2 => Ok(match num(y) {
            n @ 0..=69 => 2000 + n,
            n => 1900 + n,
        }),
        _ => Err(format!(
            "{v:?} is not a date: the year must have 2 or 4 digits"
        )),
    }
}

/// A date written with its month's English name: `01-Mar-2024`, `01/Mar/24` (Jira), `01-MAR-24`
/// (Oracle), `1 March 2024`, `Mar 1, 2024`. Rewritten like the others, so that `create=true`
/// types a column of them and the year rules are csvbus' own.
struct Named<'a> {
    /// The numbers before and after the month (`Mar 1, 2024`: none before).
    first: &'a str,
    month: u32,
    last: &'a str,
    rest: &'a str,
}

/// The month `name` is (`Mar`, `MAR`, `March`, `Sept`).
fn month_number(name: &str) -> Option<u32> {
    const NAMES: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    let n = name.to_ascii_lowercase();
    let n = if n == "sept" { "sep".to_owned() } else { n };
    NAMES
        .iter()
        .position(|full| *full == n || (n.len() == 3 && full.starts_with(&n)))
        .map(|i| i as u32 + 1)
}

/// The date with a month name at the start of `v`, if it is one.
fn named(v: &str) -> Option<Named<'_>> {
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    let letters = |s: &str| s.bytes().take_while(u8::is_ascii_alphabetic).count();
    let ends = |rest: &str| rest.is_empty() || rest.starts_with([' ', 'T']);
    let n = digits(v);
    if (1..=4).contains(&n) {
        // 01-Mar-2024, 01/Mar/24, 1 March 2024: one separator on both sides of the name.
        let sep = v[n..]
            .chars()
            .next()
            .filter(|c| matches!(c, '-' | '/' | '.' | ' '))?;
        let after = &v[n + 1..];
        let m = letters(after);
        let tail = after[m..].strip_prefix(sep)?;
        let y = digits(tail);
        let named = Named {
            first: &v[..n],
            month: month_number(&after[..m])?,
            last: &tail[..y],
            rest: &tail[y..],
        };
        return ((1..=4).contains(&y) && ends(named.rest)).then_some(named);
    }
    // Mar 1, 2024 and March 1 2024.
    let m = letters(v);
    let after = v[m..].strip_prefix(' ')?;
    let d = digits(after);
    let tail = after[d..].strip_prefix(',').unwrap_or(&after[d..]);
    let tail = tail.strip_prefix(' ')?;
    let y = digits(tail);
    let named = Named {
        first: &after[..d],
        month: month_number(&v[..m])?,
        last: &tail[..y],
        rest: &tail[y..],
    };
    ((1..=2).contains(&d) && y == 4 && ends(named.rest)).then_some(named)
}

impl Named<'_> {
    /// In ISO order: a four-digit number is the year; of two two-digit ones the day comes
    /// first (`01-Mar-24`), unless the file is read year first (`dateformat=ymd`).
    fn iso<'v>(&self, v: &'v str, order: DateOrder) -> Result<Cow<'v, str>, String> {
        let year_first = self.first.len() == 4
            || (order == DateOrder::Ymd && self.first.len() <= 2 && self.last.len() <= 2);
        let (y, d) = match year_first {
            true => (self.first, self.last),
            false => (self.last, self.first),
        };
        let (year, day) = (year(v, y)?, num(d));
        if !(1..=31).contains(&day) || d.len() > 2 {
            return Err(format!("{v:?} is not a date: no day {d:?}"));
        }
        Ok(Cow::Owned(format!(
            "{year:04}-{:02}-{day:02}{}",
            self.month, self.rest
        )))
    }
}

/// The order the sample's date values settle, and what to say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub order: DateOrder,
    /// `None` when the values settled it without doubt.
    pub note: Option<String>,
    /// Nothing settled it: the order is a default or a convention, and dates such as
    /// `01/02/2024` are read in it on that ground alone.
    pub guessed: bool,
}

/// Decides the order from the date values of the first rows: the one their values settle (the
/// more common one when they disagree), else the default, with a note saying which.
pub fn decide<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Decided> {
    let (mut ambiguous, mut settled, mut day_or_year) = (0usize, [0usize; 3], [0usize; 3]);
    let mut examples: [Option<&str>; 3] = [None; 3];
    let mut day_or_year_example = None;
    for v in values {
        match hint(v) {
            Hint::None => {}
            Hint::Ambiguous => ambiguous += 1,
            Hint::Settles(o) => {
                settled[o as usize] += 1;
                examples[o as usize].get_or_insert(v);
            }
            Hint::DayOrYear(o) => {
                day_or_year[o as usize] += 1;
                day_or_year_example.get_or_insert(v);
            }
        }
    }
    let total: usize = settled.iter().sum();
    if let (0, Some(example)) = (total, day_or_year_example) {
        return Some(day_or_year_order(day_or_year, example));
    }
    if total == 0 {
        return (ambiguous > 0).then(|| Decided {
            order: DateOrder::default(),
            note: Some(
                "dates read month first (the default): no date in the first rows has a day over \
                 12 to settle it; give dateformat=dmy if the file writes the day first"
                    .to_owned(),
            ),
            guessed: true,
        });
    }
    let orders = [DateOrder::Dmy, DateOrder::Mdy, DateOrder::Ymd];
    let best = orders
        .into_iter()
        .max_by_key(|o| settled[*o as usize])
        .unwrap_or_default();
    let others: Vec<String> = orders
        .into_iter()
        .filter(|o| *o != best && settled[*o as usize] > 0)
        .filter_map(|o| examples[o as usize].map(|e| format!("{e:?} reads only {}", o.describe())))
        .collect();
    let note = if others.is_empty() {
        format!(
            "dates read {} ({:?} settles it)",
            best.describe(),
            examples[best as usize].unwrap_or_default()
        )
    } else {
        format!(
            "dates read {} as most of the first rows write them, but {}: such rows are rejected",
            best.describe(),
            others.join(", ")
        )
    };
    Some(Decided {
        order: best,
        note: Some(note),
        guessed: false,
    })
}

/// Dates that read day first as well as year first (`24-12-31`, and nothing settles it): the
/// order their separators are usually written in, and a note naming the other.
fn day_or_year_order(counts: [usize; 3], example: &str) -> Decided {
    let (order, other) = if counts[DateOrder::Ymd as usize] > counts[DateOrder::Dmy as usize] {
        (DateOrder::Ymd, DateOrder::Dmy)
    } else {
        (DateOrder::Dmy, DateOrder::Ymd)
    };
    Decided {
        order,
        note: Some(format!(
            "dates read {} as their separator is usually written, but {example:?} reads {} \
             too and no date in the first rows settles it; give dateformat={} if the file \
             writes the {}",
            order.describe(),
            other.describe(),
            other.as_str(),
            if other == DateOrder::Ymd {
                "year first"
            } else {
                "day first"
            },
        )),
        guessed: true,
    }
}

/// Whether a column of this type takes dates csvbus rewrites (`date`, `timestamp…`).
pub fn is_date_type(type_name: &str) -> bool {
    type_name == "date" || type_name.starts_with("timestamp")
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Any text is read without a panic; a date with a month name, in any of the ways it is
        /// written, comes out as the one ISO date.
        #[test]
        fn month_names_read_back_as_the_date_written(
            y in 1970u32..2070, m in 1u32..=12, d in 1u32..=28, form in 0usize..5,
            junk in "[0-9A-Za-z ,./:-]{0,16}",
        ) {
            let _ = to_iso(&junk, DateOrder::Dmy);
            let name = chrono::NaiveDate::from_ymd_opt(y as i32, m, 1).unwrap();
            let (short, long) = (name.format("%b").to_string(), name.format("%B").to_string());
            let v = match form {
                0 => format!("{d:02}-{short}-{y}"),
                1 => format!("{d}/{}/{:02} 9:05 AM", short.to_uppercase(), y % 100),
                2 => format!("{d} {long} {y}"),
                3 => format!("{short} {d}, {y}"),
                _ => format!("{y}-{short}-{d:02}T10:00"),
            };
            let rest = match form { 1 => " 9:05 AM", 4 => "T10:00", _ => "" };
            let got = to_iso(&v, DateOrder::Mdy).unwrap();
            proptest::prop_assert_eq!(got, format!("{y:04}-{m:02}-{d:02}{rest}"));
        }
    }

    #[test]
    fn dates_with_month_names_are_rewritten_whatever_the_order() {
        let iso = |v: &str, o: DateOrder| to_iso(v, o).map(|c| c.into_owned());
        for o in [DateOrder::Dmy, DateOrder::Mdy] {
            assert_eq!(iso("01-Mar-2024", o).unwrap(), "2024-03-01");
            assert_eq!(iso("01/Mar/24 9:05 AM", o).unwrap(), "2024-03-01 9:05 AM");
            assert_eq!(iso("31-DEC-99", o).unwrap(), "1999-12-31");
            assert_eq!(iso("1 March 2024", o).unwrap(), "2024-03-01");
            assert_eq!(iso("Mar 1, 2024", o).unwrap(), "2024-03-01");
            assert_eq!(
                iso("September 30 2024 10:00", o).unwrap(),
                "2024-09-30 10:00"
            );
            assert_eq!(iso("2024-Sept-03", o).unwrap(), "2024-09-03");
        }
        // Two two-digit numbers: the day first, unless the file is read year first.
        assert_eq!(iso("24-Mar-01", DateOrder::Ymd).unwrap(), "2024-03-01");
        assert!(iso("32-Mar-2024", DateOrder::Dmy).is_err());
        assert!(iso("01-Mar-202", DateOrder::Dmy).is_err());
        // Words that are no month, and month names in other text, are left alone.
        for v in [
            "01-Foo-2024",
            "May 2024",
            "Mayday 1, 2024",
            "3 apples 2024",
            "Mar 1st, 2024",
        ] {
            assert_eq!(iso(v, DateOrder::Dmy).unwrap(), v);
        }
        assert_eq!(hint("01-Mar-2024"), Hint::None);
    }

    #[test]
    fn dates_are_rewritten_in_the_order_given() {
        let iso = |v, o| to_iso(v, o).unwrap().into_owned();
        assert_eq!(iso("31/12/2024", DateOrder::Dmy), "2024-12-31");
        assert_eq!(iso("01/02/2024", DateOrder::Dmy), "2024-02-01");
        assert_eq!(iso("01/02/2024", DateOrder::Mdy), "2024-01-02");
        assert_eq!(iso("31.12.2024 10:00", DateOrder::Dmy), "2024-12-31 10:00");
        assert_eq!(
            iso("1-2-24T08:30:00+02", DateOrder::Dmy),
            "2024-02-01T08:30:00+02"
        );
        assert_eq!(iso("24-12-31", DateOrder::Ymd), "2024-12-31");
        assert_eq!(iso("31/12/99", DateOrder::Dmy), "1999-12-31");
        assert_eq!(iso("2024/12/31", DateOrder::Dmy), "2024-12-31");
        // Nothing to rewrite: borrowed as it is, for Postgres to read.
        for v in [
            "2024-12-31",
            "2024-12-31 10:00",
            "today",
            "",
            "12",
            "1.5",
            "a/b/c",
        ] {
            assert!(
                matches!(to_iso(v, DateOrder::Dmy), Ok(Cow::Borrowed(_))),
                "{v}"
            );
        }
        // Not a date in the order chosen: refused, never guessed.
        let e = to_iso("12/31/2024", DateOrder::Dmy).unwrap_err();
        assert!(e.contains("dateformat=dmy"), "{e}");
        assert!(to_iso("31/12/2024", DateOrder::Mdy).is_err());
        assert!(to_iso("1/2/202", DateOrder::Dmy).is_err());
    }

    #[test]
    fn the_first_rows_decide_the_order_and_say_how() {
        let d = decide(["01/02/2024", "13/02/2024"]).unwrap();
        assert_eq!(d.order, DateOrder::Dmy);
        assert!(d.note.unwrap().contains("13/02/2024"));
        assert_eq!(
            decide(["02/13/2024", "01/02/2024"]).unwrap().order,
            DateOrder::Mdy
        );
        let d = decide(["01/02/2024", "03/04/2024"]).unwrap();
        assert_eq!(d.order, DateOrder::Mdy);
        assert!(d.note.unwrap().contains("dateformat=dmy"));
        let d = decide(["13/01/2024", "14/01/2024", "01/13/2024"]).unwrap();
        assert_eq!(d.order, DateOrder::Dmy);
        assert!(d.note.unwrap().contains("rejected"));
        assert_eq!(decide(["2024-01-02", "x"]), None);
        assert_eq!(hint("31.12.2024 10:00"), Hint::Settles(DateOrder::Dmy));
        assert_eq!(hint("99-12-31"), Hint::Settles(DateOrder::Ymd));
    }

    #[test]
    fn two_digit_dates_that_read_day_or_year_first_say_so() {
        assert_eq!(hint("24-12-31"), Hint::DayOrYear(DateOrder::Ymd));
        assert_eq!(hint("31.12.24"), Hint::DayOrYear(DateOrder::Dmy));
        // A last number no day can be settles it.
        assert_eq!(hint("15-06-85"), Hint::Settles(DateOrder::Dmy));
        let d = decide(["24-12-31", "25-01-02"]).unwrap();
        assert_eq!(d.order, DateOrder::Ymd);
        assert!(d.note.unwrap().contains("dateformat=dmy"));
        let d = decide(["31.12.24", "02.01.25"]).unwrap();
        assert_eq!(d.order, DateOrder::Dmy);
        assert!(d.note.unwrap().contains("dateformat=ymd"));
        // Anything that settles it wins, without a doubt to report.
        assert_eq!(
            decide(["24-12-31", "99-01-05"]).unwrap().order,
            DateOrder::Ymd
        );
        assert_eq!(
            decide(["24-12-31", "31-12-2024"]).unwrap().order,
            DateOrder::Dmy
        );
    }
}
