//! What the types inferred for a table `create=true` makes leave unsaid, said in
//! `read_as.notes`: a value that alone makes text of a column of numbers or dates, and what
//! would type it. Nothing is changed unasked; each note names the option that would.

use csvbus_shared::infer::SqlType;

use crate::read::header;

/// Columns (at most three named) whose type is text with one reading and another type
/// without: `n (else bigint)`.
fn gained(names: &[String], with: &[SqlType], without: &[SqlType]) -> Vec<String> {
    names
        .iter()
        .zip(with.iter().zip(without))
        .filter(|(_, (with, without))| **with == SqlType::Text && **without != SqlType::Text)
        .map(|(n, (_, t))| format!("{n} (else {})", t.sql()))
        .collect()
}

/// `columns`, three at most, then `…`.
fn listed(columns: &[String]) -> String {
    let more = if columns.len() > 3 { ", …" } else { "" };
    format!("{}{more}", columns[..columns.len().min(3)].join(", "))
}

/// A second header row (labels under codes, as the US Census writes them) that alone makes
/// text of two or more columns whose values below it are numbers or dates (`rest`: the types
/// without it), with the option that reads it as the header. `first_line`: the header's.
pub(crate) fn second_header(
    names: &[String],
    types: &[SqlType],
    rest: &[SqlType],
    first_line: u64,
) -> Option<String> {
    let typed = gained(names, types, rest);
    (typed.len() >= 2).then(|| {
        format!(
            "line {} looks like a second header row: it alone makes text of {}; \
             skip_lines={first_line} reads it as the header instead",
            first_line + 1,
            listed(&typed),
        )
    })
}

/// The columns a missing-value marker alone makes text (R's `NA`, Excel's `#N/A`): the marker
/// that types the most of them when read as NULL (`typed(marker)`: the types then), and
/// `null=` that does so. `None` when no marker does.
pub(crate) fn missing_marker(
    names: &[String],
    types: &[SqlType],
    typed: impl Fn(&str) -> Vec<SqlType>,
) -> Option<String> {
    let (marker, columns) = header::MISSING
        .iter()
        .map(|m| (m, gained(names, types, &typed(m))))
        .max_by_key(|(_, c)| c.len())?;
    (!columns.is_empty()).then(|| {
        format!(
            "{marker} alone makes text of {}; null={marker} reads it as NULL and types them",
            listed(&columns)
        )
    })
}

/// The text columns whose values are all timestamps, some with a UTC offset and some without
/// (`2020-01-01T00:00:00`, `2020-01-01T00:00:00-08`): in a `timestamptz` column the ones without
/// would take the server's time zone, a guess, so they stay text — said, not silent.
/// `values(j)`: the sampled values of column `j`.
pub(crate) fn mixed_zones<'v, I: Iterator<Item = &'v str>>(
    names: &[String],
    types: &[SqlType],
    values: impl Fn(usize) -> I,
) -> Option<String> {
    let mixed = |j: usize| {
        let (mut naive, mut zoned) = (false, false);
        for v in values(j).filter(|v| !v.is_empty()) {
            if SqlType::Timestamptz.fits(v) {
                zoned = true;
            } else if SqlType::Timestamp.fits(v) {
                naive = true;
            } else {
                return false;
            }
        }
        naive && zoned
    };
    let columns: Vec<String> = (0..names.len())
        .filter(|j| types[*j] == SqlType::Text && mixed(*j))
        .map(|j| names[j].clone())
        .collect();
    (!columns.is_empty()).then(|| {
        format!(
            "{} mix times with and without a UTC offset: text, as a timestamptz column would read the ones without in the server's time zone (give each an offset to type them)",
            listed(&columns)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_with_and_without_an_offset_in_one_column_are_said() {
        let names = ["time".to_owned(), "at".to_owned(), "note".to_owned()];
        let types = [SqlType::Text, SqlType::Timestamptz, SqlType::Text];
        let columns: [&[&str]; 3] = [
            &[
                "2020-01-01T00:00:00",
                "2020-01-01T00:00:00-08",
                "",
                "2020-01-01T00:00:00Z",
            ],
            &["2020-01-01T00:00:00Z"],
            &["2020-01-01T00:00:00", "2020-01-01T00:00:00+01:00", "noon"],
        ];
        let note = mixed_zones(&names, &types, |j| columns[j].iter().copied()).unwrap();
        // `note` has a value that is no timestamp: not named.
        assert!(
            note.starts_with("time mix times with and without"),
            "{note}"
        );
        // All with an offset: nothing to say.
        let zoned = [SqlType::Text];
        let one = [&["2020-01-01T00:00:00Z", "2020-01-02T00:00:00+01:00"][..]];
        assert_eq!(
            mixed_zones(&names[..1], &zoned, |j| one[j].iter().copied()),
            None
        );
    }
}
