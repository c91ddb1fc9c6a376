//! How an upload's dates are read into date and timestamp columns: `dateformat=` (or the first
//! attempt's order, on a resume), else decided from the values of the first rows
//! ([`csvbus_shared::dates::decide`]). Recorded in `read_as`, with a note saying why.

use csvbus_shared::dates::{self, DateOrder};
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
    sample: Option<Sample<'_>>,
    read_as: &mut ReadAs,
) -> DateOrder {
    let fields = header.date_fields();
    if fields.is_empty() {
        return given.unwrap_or_default();
    }
    let order = match given {
        Some(o) => o,
        None => {
            let values = sample.map(|s| values(&s, &fields)).unwrap_or_default();
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
                    d.order
                }
                None => DateOrder::default(),
            }
        }
    };
    read_as.dateformat = Some(order);
    order
}

/// The values of `fields` in the sample's rows.
fn values(s: &Sample<'_>, fields: &[usize]) -> Vec<String> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(s.dialect.delimiter.byte())
        .quote(s.dialect.quote)
        .trim(if s.dialect.trim {
            csv::Trim::All
        } else {
            csv::Trim::None
        })
        .has_headers(false)
        .flexible(true)
        .from_reader(s.bytes);
    let mut rows: Vec<csv::StringRecord> = reader
        .records()
        .skip(usize::from(s.header))
        .map_while(Result::ok)
        .collect();
    if !s.complete {
        rows.pop();
    }
    rows.iter()
        .flat_map(|r| fields.iter().filter_map(|f| r.get(*f)))
        .map(str::to_owned)
        .collect()
}
