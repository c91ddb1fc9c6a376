//! Numbers as people write them: a decimal comma (`1,5`, `1.234,56`) or point (`1.5`,
//! `1,234.56`), thousands grouped by the other mark or by a space — rewritten to plain
//! `1234.56` before Postgres sees them, for numeric columns.
//!
//! The mark is given (`decimal=,` or `decimal=.`) or decided from the first rows: a value that
//! only one mark reads settles it (`1,5`, `1.234,56`, `1,234.5`, `1.5`). When none settles it,
//! the point is used (as Postgres reads numbers: `1.234` is 1.234, as it always was), and a
//! value that only grouping could make a number of (`1,234`: 1234, or 1.234 with a comma) is
//! a rejected row that says so — never a guess.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// The character between a number's whole part and its fraction.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
pub enum DecimalMark {
    /// `1.5`, `1,234.56`: the default.
    #[default]
    #[serde(rename = ".")]
    Point,
    /// `1,5`, `1.234,56`.
    #[serde(rename = ",")]
    Comma,
}

impl DecimalMark {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "." | "point" => Some(Self::Point),
            "," | "comma" => Some(Self::Comma),
            _ => None,
        }
    }

    pub fn as_char(self) -> char {
        match self {
            Self::Point => '.',
            Self::Comma => ',',
        }
    }

    /// The thousands mark that goes with it.
    fn other(self) -> char {
        match self {
            Self::Point => ',',
            Self::Comma => '.',
        }
    }
}

/// Spaces people group thousands with (space, no-break space, narrow no-break space).
const SPACES: [char; 3] = [' ', '\u{a0}', '\u{202f}'];

/// `v` read with `mark`: its sign, whole digits (grouping removed) and fraction digits; `None`
/// when it is not a number written that way.
fn read(v: &str, mark: DecimalMark) -> Option<(bool, String, Option<&str>)> {
    let (negative, body) = match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v.strip_prefix('+').unwrap_or(v)),
    };
    let (whole, fraction) = match body.split_once(mark.as_char()) {
        Some((w, f)) => (w, Some(f)),
        None => (body, None),
    };
    if fraction.is_some_and(|f| f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let sep = whole
        .chars()
        .find(|c| *c == mark.other() || SPACES.contains(c));
    let digits = match sep {
        None => whole.to_owned(),
        Some(sep) => {
            let groups: Vec<&str> = whole.split(sep).collect();
            // A grouped number does not start with 0 (`0.125` is not thousands).
            let ok = (1..=3).contains(&groups[0].len())
                && !groups[0].starts_with('0')
                && groups[1..].iter().all(|g| g.len() == 3);
            if !ok {
                return None;
            }
            groups.concat()
        }
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((negative, digits, fraction))
}

/// What one value says about the decimal mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// Plain digits, or not a number: nothing.
    None,
    /// Both marks read it, as different numbers (`1,234`, `1.234`).
    Ambiguous,
    /// Only this mark reads it (or both read it as the same number: `1,5` only with a comma).
    Settles(DecimalMark),
}

/// What `v` says about the decimal mark.
pub fn hint(v: &str) -> Hint {
    let v = v.trim();
    if !v.contains([',', '.']) {
        return Hint::None;
    }
    match (read(v, DecimalMark::Point), read(v, DecimalMark::Comma)) {
        (Some(_), None) => Hint::Settles(DecimalMark::Point),
        (None, Some(_)) => Hint::Settles(DecimalMark::Comma),
        (Some(p), Some(c)) if plain(&p) == plain(&c) => Hint::None,
        (Some(_), Some(_)) => Hint::Ambiguous,
        (None, None) => Hint::None,
    }
}

fn plain((negative, digits, fraction): &(bool, String, Option<&str>)) -> String {
    let sign = if *negative { "-" } else { "" };
    match fraction {
        Some(f) => format!("{sign}{digits}.{f}"),
        None => format!("{sign}{digits}"),
    }
}

/// `v` as Postgres reads numbers (`-1234.56`), read with `mark`; borrowed when there is
/// nothing to rewrite (plain digits, or not a number at all: Postgres says what it is). With
/// `settled` false (the mark is the default, nothing in the file decided it), a value the
/// other mark reads as another number is refused rather than guessed.
pub fn to_plain(v: &str, mark: DecimalMark, settled: bool) -> Result<Cow<'_, str>, String> {
    let t = v.trim();
    let grouped = t.contains([',', ' ', '\u{a0}', '\u{202f}']);
    // Plain already (the common case, kept cheap: no copy): digits, or a point and no grouping.
    if (!grouped && (mark == DecimalMark::Point || !t.contains('.')))
        || t.bytes().any(|b| b.is_ascii_alphabetic())
    {
        return Ok(Cow::Borrowed(v));
    }
    match read(t, mark) {
        Some(parts) => {
            // Undecided, the default point reads `1.234` as Postgres always did; only a value
            // that needs the other mark read as grouping (`1,234`) is refused, not guessed.
            if !settled && hint(t) == Hint::Ambiguous && t.contains(mark.other()) {
                return Err(format!(
                    "{v:?} reads as a different number with a decimal comma than with a decimal point; give decimal=, or decimal=."
                ));
            }
            Ok(Cow::Owned(plain(&parts)))
        }
        None => match read(t, other(mark)) {
            Some(_) => Err(format!(
                "{v:?} is written with a decimal {}, the file's first rows with a decimal {} (decimal={})",
                name(other(mark)),
                name(mark),
                mark.as_char()
            )),
            None => Ok(Cow::Borrowed(v)),
        },
    }
}

fn other(mark: DecimalMark) -> DecimalMark {
    match mark {
        DecimalMark::Point => DecimalMark::Comma,
        DecimalMark::Comma => DecimalMark::Point,
    }
}

fn name(mark: DecimalMark) -> &'static str {
    match mark {
        DecimalMark::Point => "point",
        DecimalMark::Comma => "comma",
    }
}

/// The mark the sample's number values settle (the more common one when they disagree), and
/// a note saying why; `None` when nothing settles it.
pub fn decide<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<(DecimalMark, String)> {
    let mut settled = [0usize; 2];
    let mut examples: [Option<&str>; 2] = [None; 2];
    for v in values {
        if let Hint::Settles(m) = hint(v) {
            settled[m as usize] += 1;
            examples[m as usize].get_or_insert(v);
        }
    }
    let best = match settled {
        [0, 0] => return None,
        [p, c] if c > p => DecimalMark::Comma,
        _ => DecimalMark::Point,
    };
    let note = match examples[other(best) as usize] {
        None => format!(
            "numbers read with a decimal {} ({:?} settles it)",
            name(best),
            examples[best as usize].unwrap_or_default()
        ),
        Some(e) => format!(
            "numbers read with a decimal {} as most of the first rows write them, but {e:?} reads only with a decimal {}: such rows are rejected",
            name(best),
            name(other(best))
        ),
    };
    Some((best, note))
}

/// Whether a column of this type takes numbers csvbus rewrites.
pub fn is_number_type(type_name: &str) -> bool {
    matches!(
        type_name,
        "numeric" | "real" | "double precision" | "smallint" | "integer" | "bigint"
    ) || type_name.starts_with("numeric(")
}

#[cfg(test)]
mod tests {
    use super::*;
    use DecimalMark::{Comma, Point};

    #[test]
    fn numbers_are_rewritten_with_the_mark_given() {
        let p = |v, m, s| to_plain(v, m, s).map(Cow::into_owned);
        assert_eq!(p("1,5", Comma, true), Ok("1.5".into()));
        assert_eq!(p("-1.234,56", Comma, true), Ok("-1234.56".into()));
        assert_eq!(p("1 234,5", Comma, true), Ok("1234.5".into()));
        assert_eq!(p("1\u{a0}234", Comma, true), Ok("1234".into()));
        assert_eq!(p("1,234.5", Point, true), Ok("1234.5".into()));
        assert_eq!(p("1.5", Point, false), Ok("1.5".into()));
        assert_eq!(p("12", Point, false), Ok("12".into()));
        assert_eq!(p("1.234", Point, false), Ok("1.234".into()));
        assert!(p("0.125", Comma, true)
            .unwrap_err()
            .contains("decimal point"));
        assert_eq!(p("1,234", Comma, true), Ok("1.234".into()));
        assert_eq!(p("1,234", Point, true), Ok("1234".into()));
        // Not numbers: left to Postgres, which says what they are.
        assert_eq!(p("abc", Comma, true), Ok("abc".into()));
        assert_eq!(p("1e5", Comma, true), Ok("1e5".into()));
        assert_eq!(p("NaN", Comma, true), Ok("NaN".into()));
        // The other mark, or undecidable: refused, never guessed.
        assert!(p("1,5", Point, true).unwrap_err().contains("decimal comma"));
        assert!(p("1,234", Point, false).unwrap_err().contains("decimal=,"));
        assert!(p("1,23,4", Comma, true).is_ok_and(|v| v == "1,23,4"));
    }

    #[test]
    fn the_first_rows_settle_the_mark() {
        assert_eq!(hint("1,5"), Hint::Settles(Comma));
        assert_eq!(hint("1.234,56"), Hint::Settles(Comma));
        assert_eq!(hint("1,234.5"), Hint::Settles(Point));
        assert_eq!(hint("1.5"), Hint::Settles(Point));
        assert_eq!(hint("1,234"), Hint::Ambiguous);
        assert_eq!(hint("1.234"), Hint::Ambiguous);
        assert_eq!(hint("12"), Hint::None);
        assert_eq!(hint("0.125"), Hint::Settles(Point));
        assert_eq!(hint("0,125"), Hint::Settles(Comma));
        assert_eq!(decide(["1,5", "2", "1.234,56"]).unwrap().0, Comma);
        assert_eq!(decide(["1.5", "2,5", "3.5"]).unwrap().0, Point);
        assert_eq!(decide(["1,234", "7"]), None);
    }
}
