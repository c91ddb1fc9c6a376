//! How an upload's dates and numbers are read into date, timestamp and numeric columns:
//! `dateformat=` and `decimal=` (or the first attempt's, on a resume), else decided from the
//! values of the first rows ([`csvbus_shared::dates::decide`], [`csvbus_shared::numbers::decide`]).
//! Recorded in `read_as`, with a note saying why.

use csvbus_shared::dates::{self, DateOrder};
use csvbus_shared::numbers::{self, DecimalMark};
use csvbus_shared::read_as::ReadAs;

use crate::read::parse::Dialect;
use crate::rows::Header;

/// The first rows the decision looks at, before the body is read on.
pub(crate) struct Sample<'a> {
    pub bytes: &'a [u8],
    /// The sample is the whole body (else its last record may be cut).
    pub complete: bool,
    pub dialect: &'a Dialect,
    /// The first record of the sample is the header.
    pub header: bool,
}

/// The order dates are read in; `read_as` records it when the file has date columns.
pub(crate) fn decide(
    given: Option<DateOrder>,
    header: &Header,
    sample: Option<&Sample<'_>>,
    read_as: &mut ReadAs,
) -> DateOrder {
    let fields = header.date_fields();
    if fields.is_empty() {
        return given.unwrap_or_default();
    }
    let order = match given {
        Some(o) => o,
        None => {
            let values = sample.map(|s| values(s, &fields)).unwrap_or_default();
            if values.is_empty() {
                read_as.notes.push(
                    "dates read month first (the default): no row arrived with the first bytes \
                     to decide from; give dateformat=dmy if the file writes the day first"
                        .to_owned(),
                );
            }
            match dates::decide(values.iter().map(String::as_str)) {
                Some(d) => {
                    read_as.notes.extend(d.note);
                    read_as.dateformat_guessed = d.guessed;
                    d.order
                }
                None => DateOrder::default(),
            }
        }
    };
    read_as.dateformat = Some(order);
    order
}

/// The decimal mark of numbers, and whether it was given or decided; `read_as` records it when
/// the file has numeric columns and something decided it.
pub(crate) fn decide_decimal(
    given: Option<DecimalMark>,
    header: &Header,
    sample: Option<&Sample<'_>>,
    read_as: &mut ReadAs,
) -> (DecimalMark, bool) {
    let fields = header.number_fields();
    if fields.is_empty() {
        return (given.unwrap_or_default(), given.is_some());
    }
    let decided = match given {
        Some(m) => Some(m),
        None => {
            let values = sample.map(|s| values(s, &fields)).unwrap_or_default();
            numbers::decide(values.iter().map(String::as_str)).map(|(m, note)| {
                read_as.notes.push(note);
                m
            })
        }
    };
    read_as.decimal = decided;
    (decided.unwrap_or_default(), decided.is_some())
}

/// The values of `fields` in the sample's rows.
fn values(s: &Sample<'_>, fields: &[usize]) -> Vec<String> {
    let mut reader = s.dialect.sample_reader(s.bytes);
    let mut rows: Vec<csv::StringRecord> = reader
        .records()
        .skip(usize::from(s.header))
        .map_while(Result::ok)
        .collect();
    if !s.complete && !s.dialect.ends_a_record(s.bytes) {
        rows.pop();
    }
    rows.iter()
        .flat_map(|r| fields.iter().filter_map(|f| r.get(*f)))
        .map(str::to_owned)
        .collect()
}
