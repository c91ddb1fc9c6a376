//! `delimiter=auto` (the default) and preamble detection: from the first bytes of an upload,
//! the delimiter and quote under which its records most consistently have the same number of
//! fields, and the lines before the header when it does not start the file.

use std::borrow::Cow;

use csv::ByteRecord;
use csvbus_shared::infer::SqlType;

use csvbus_shared::read_as::Delimiter;

use crate::read::header::{blank, inferred, names_over, past_header, typed, Unnamed};
use crate::read::lines;
use crate::read::parse::{Dialect, Escape, Quote};
use crate::read::quotes::{escapes, opens_fields, swallows_lines, QUOTES};
use crate::read::requote::requoted;

/// Delimiters `delimiter=auto` chooses from, in the order ties are broken.
const CANDIDATES: [Delimiter; 4] = [
    Delimiter::COMMA,
    Delimiter::SEMICOLON,
    Delimiter::TAB,
    Delimiter::PIPE,
];

/// Records of the sample looked at per candidate.
pub(crate) const RECORDS: usize = 200;

/// The most records a detected preamble may have.
const MAX_PREAMBLE: usize = 50;

/// What is to be detected: the delimiter and quote when not given, the preamble when asked.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ask {
    pub delimiter: Option<Delimiter>,
    pub quote: Option<Quote>,
    pub escape: Option<Escape>,
    /// Look for lines before the header (no `skip_lines=` given, and the file has a header).
    pub preamble: bool,
}

/// The dialect found, the preamble, and how sure detection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub delimiter: Delimiter,
    /// `None`: quotes are text.
    pub quote: Option<u8>,
    pub escape: Option<u8>,
    /// Bytes and lines before the header: 0 unless a preamble was found.
    pub preamble_bytes: usize,
    pub preamble_lines: u64,
    /// `Some` when the sample did not decide the delimiter (then `,`), with why.
    pub doubt: Option<String>,
    /// A field the rows have and the header does not name.
    pub unnamed: Unnamed,
}

/// How well one (delimiter, quote) splits the sample.
#[derive(Debug, Clone, Copy)]
struct Score {
    delimiter: Delimiter,
    quote: Option<u8>,
    escape: Option<u8>,
    /// Records from the header on with the most common field count, of all of them.
    agree: usize,
    records: usize,
    /// The most common field count.
    fields: usize,
    /// Where the header starts (0 without a preamble).
    header_at: usize,
    /// A field the rows have and the header does not name.
    unnamed: Unnamed,
}

impl Score {
    fn of(
        sample: &[u8],
        delimiter: Delimiter,
        (quote, escape): (Option<u8>, Option<u8>),
        complete: bool,
        preamble: bool,
    ) -> Option<Self> {
        let records = read_records(sample, delimiter.byte(), (quote, escape), complete);
        let plain: Vec<usize> = records.iter().map(|(r, _)| r.len()).collect();
        let candidate = (delimiter, quote, escape, preamble);
        // Rows counted with a field the header does not name only when the plain counts find
        // no header: a title line over rows whose last column is mostly empty keeps its real
        // header.
        Self::scored(&records, &plain, candidate, Unnamed::None).or_else(|| {
            let (counts, unnamed) = field_counts(&records);
            (unnamed != Unnamed::None)
                .then(|| Self::scored(&records, &counts, candidate, unnamed))
                .flatten()
        })
    }

    /// The score of `records` whose field counts are `counts`.
    fn scored(
        records: &[(ByteRecord, usize)],
        counts: &[usize],
        (delimiter, quote, escape, preamble): (Delimiter, Option<u8>, Option<u8>, bool),
        unnamed: Unnamed,
    ) -> Option<Self> {
        // Of the records this candidate splits: lines it does not split (a preamble longer
        // than the rows in a small file, say) do not decide the count.
        let split: Vec<usize> = counts.iter().copied().filter(|c| *c > 1).collect();
        let (fields, _) = most_common(&split)?;
        // The header must agree: a one-column file whose values hold a delimiter is not split
        // by it. Records before a header that is clearly one (see `names_over`) are a preamble
        // — a comment line that splits like the header (`# site: roof, units: degC`) as well.
        // A first record of the rows' width that holds one value at most is a title a
        // spreadsheet padded to that width (`Invoices over £250,,,,` then `,,,,`): the
        // header is looked for after it and the records like it.
        let first = counts.iter().position(|c| *c == fields)?;
        let titled = preamble && first == 0 && title_like(&records[0].0);
        let first = if first == 0 && !titled {
            0
        } else {
            let header = (first.max(1)..=MAX_PREAMBLE.min(counts.len() - 1)).find(|&at| {
                preamble
                    && counts[at] == fields
                    && (!titled || records[..at].iter().all(|r| title_like(&r.0)))
                    && names_over(&records[at].0, records[at + 1..].iter().map(|r| &r.0))
            });
            match header {
                Some(at) => at,
                None if titled => 0,
                None if preamble && text_before_rows(records, first, fields) => first,
                None => return None,
            }
        };
        let after = &counts[first..];
        // From the header on, it is the most common count of all (as without a preamble).
        if most_common(after)?.0 != fields {
            return None;
        }
        Some(Self {
            delimiter,
            quote,
            escape,
            agree: after.iter().filter(|c| **c == fields).count(),
            records: after.len(),
            fields,
            header_at: if first == 0 { 0 } else { records[first].1 },
            unnamed: if first == 0 { unnamed } else { Unnamed::None },
        })
    }

    /// Better: more records agreeing (as a share), then a shorter preamble (none, best: a
    /// header on the first line is not given up for more fields), then more fields.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.consistency(other).then(self.fields.cmp(&other.fields))
    }

    /// More records agreeing (as a share), then a shorter preamble: how two quotes of one
    /// delimiter are compared (the field count is left out: reading `"B,B"` with `'` as the
    /// quote makes one more field, not a better reading).
    fn consistency(&self, other: &Self) -> std::cmp::Ordering {
        let share = (self.agree * other.records).cmp(&(other.agree * self.records));
        share.then(other.header_at.cmp(&self.header_at))
    }
}

/// Detects what `ask` leaves open in `sample` (the last record is left out when the sample
/// was cut: `complete` false). Per candidate delimiter, the quote that splits best; then the
/// best candidate: the share of records (from the header on) with the most common field
/// count, which must be the header's and more than one; then the shorter preamble; then the
/// field count (quotes: see [`QUOTES`]). Ties between delimiters, and samples no candidate splits, fall back to `,`
/// and `"` (or what was given) without a preamble.
pub fn detect(sample: &[u8], complete: bool, ask: Ask) -> Detected {
    let delimiters = ask
        .delimiter
        .as_ref()
        .map_or(&CANDIDATES[..], std::slice::from_ref);
    // A quote character the sample does not hold is never chosen.
    let quotes: Vec<Option<u8>> = match ask.quote {
        Some(Quote(q)) => vec![q],
        None => QUOTES
            .into_iter()
            .filter(|q| q.is_none_or(|q| q == b'"' || sample.contains(&q)))
            .collect(),
    };
    let mut scores: Vec<Score> = delimiters
        .iter()
        .filter_map(|d| {
            quotes
                .iter()
                .flat_map(|q| escapes(sample, *d, *q, ask.escape).map(|e| (*q, e)))
                .filter_map(|qe| Score::of(sample, *d, qe, complete, ask.preamble))
                // Quotes as text only instead of a quote's reading: where no quote splits
                // the sample (`"100,000"` alone on each line), its quotes are quoting.
                .skip_while(|s| s.quote.is_none() && ask.quote.is_none())
                .reduce(|best, s| {
                    // An escape is tried only where the sample shows one (see `escapes`):
                    // as consistent as without it, it is the reading that keeps `\"` whole.
                    let escaped = s.quote == best.quote && s.escape.is_some();
                    let as_text = s.quote.is_none()
                        && best
                            .quote
                            .is_some_and(|q| swallows_lines(sample, d.byte(), (q, best.escape)));
                    // `'` with `\'` inside its fields (as PHP and MySQL write them) where no
                    // `"` is in the sample: `"` quotes nothing there, `'` keeps `'it\'s'` whole.
                    let single_escaped = s.quote == Some(b'\'')
                        && s.escape == Some(b'\\')
                        && best.quote == Some(b'"')
                        && !sample.contains(&b'"')
                        && opens_fields(sample, d.byte(), b'\'');
                    match s.consistency(&best) {
                        std::cmp::Ordering::Greater => s,
                        std::cmp::Ordering::Equal if escaped || as_text || single_escaped => s,
                        _ => best,
                    }
                })
        })
        .collect();
    scores.sort_by(|a, b| b.cmp(a));
    let fallback = |doubt: String| Detected {
        delimiter: ask.delimiter.unwrap_or_default(),
        quote: ask.quote.map_or(Some(b'"'), |q| q.0),
        escape: ask.escape.and_then(|e| e.0),
        preamble_bytes: 0,
        preamble_lines: 0,
        doubt: ask.delimiter.is_none().then_some(doubt),
        unnamed: Unnamed::None,
    };
    match scores.as_slice() {
        [] => fallback(
            "no delimiter (, ; tab |) splits the first lines into columns; read as ','".into(),
        ),
        [best, second, ..] if best.cmp(second).is_eq() => fallback(format!(
            "{} and {} split the first lines equally well; read as ','",
            best.delimiter, second.delimiter
        )),
        [best, ..] => Detected {
            delimiter: best.delimiter,
            quote: best.quote,
            escape: best.escape,
            preamble_bytes: best.header_at,
            preamble_lines: lines::lines_in(&sample[..best.header_at]),
            doubt: None,
            unnamed: best.unnamed,
        },
    }
}

/// Whether the records before `first` are two or more lines of text, each split into fewer
/// fields than the rows and none a number, date or other typed value (a description over a
/// dump, `17738.csv` of DuckDB's tests): a preamble, though no clear header follows it — the
/// import decides whether the record at `first` is a header or data
/// ([`first_record_is_data`]). One such line may be a one-column file's header over values
/// that hold the delimiter (`name` over `A;B`): it stays the header. Short rows of values
/// (`1,2` over `3,4,5`) are rows, not a preamble.
fn text_before_rows(records: &[(ByteRecord, usize)], first: usize, fields: usize) -> bool {
    let text = |r: &ByteRecord| {
        r.len() < fields
            && inferred(r.len(), &[r])
                .types()
                .iter()
                .all(|t| *t == SqlType::Text)
    };
    (2..=MAX_PREAMBLE).contains(&first) && records[..first].iter().all(|r| text(&r.0))
}

/// Whether `record` holds one value at most (a title line padded with delimiters, or none).
fn title_like(record: &ByteRecord) -> bool {
    record.iter().filter(|f| !blank(f)).count() <= 1
}

/// The first [`RECORDS`] records of `sample` read with delimiter `d` (quotes that are text
/// kept, as the import reads them: [`requoted`]), each with the byte of `sample` where it
/// starts.
fn read_records(
    sample: &[u8],
    d: u8,
    (quote, escape): (Option<u8>, Option<u8>),
    complete: bool,
) -> Vec<(ByteRecord, usize)> {
    let (read, added) = match quote {
        Some(q) => requoted(sample, d, q, escape),
        None => (Cow::Borrowed(sample), Vec::new()),
    };
    let mut r = csv::ReaderBuilder::new()
        .delimiter(d)
        .quote(quote.unwrap_or(b'"'))
        .quoting(quote.is_some())
        .escape(escape)
        .has_headers(false)
        .flexible(true)
        .from_reader(&read[..]);
    let mut records = Vec::new();
    let mut rec = ByteRecord::new();
    let mut ended = 0;
    while records.len() < RECORDS {
        match r.read_byte_record(&mut rec) {
            Ok(true) => {
                // A record's position can include the `\n` of the `\r\n` before it.
                let mut start = rec.position().map_or(0, |p| p.byte() as usize);
                while matches!(read.get(start), Some(b'\r' | b'\n')) {
                    start += 1;
                }
                // Back to the sample's bytes: without the quotes added before it.
                let start = start - added.partition_point(|a| *a < start);
                records.push((rec.clone(), start));
                ended = r.position().byte() as usize;
            }
            _ => break,
        }
    }
    // A record cut by the end of the sample says nothing (one that ends with it is whole).
    let whole = || {
        let dialect = Dialect {
            quote,
            escape,
            ..Dialect::plain(Delimiter::from_byte(d).unwrap_or_default())
        };
        dialect.ends_a_record(sample)
    };
    if !complete && ended >= read.len() && records.len() > 1 && !whole() {
        records.pop();
    }
    records
}

/// The field most rows of `sample`, read with delimiter `d`, have and the header does not
/// name (see [`Unnamed`]).
pub fn unnamed(
    sample: &[u8],
    d: Delimiter,
    quote: (Option<u8>, Option<u8>),
    complete: bool,
) -> Unnamed {
    field_counts(&read_records(sample, d.byte(), quote, complete)).1
}

/// Each record's field count, and the field most rows have past the first record's (the
/// header's): counted out when it is past its last column ([`past_header`]), counted in for
/// the header when it is a row name before its first.
fn field_counts(records: &[(ByteRecord, usize)]) -> (Vec<usize>, Unnamed) {
    let mut counts: Vec<usize> = records.iter().map(|(r, _)| r.len()).collect();
    let (Some((header, _)), Some(rows)) = (records.first(), records.get(1..)) else {
        return (counts, Unnamed::None);
    };
    let width = header.len();
    let most = |f: &dyn Fn(&ByteRecord) -> bool| {
        rows.iter().filter(|(r, _)| f(r)).count() * 2 > rows.len()
    };
    if width < 2 {
        return (counts, Unnamed::None);
    }
    if most(&|r| past_header(r, width)) {
        for (c, (r, _)) in counts.iter_mut().zip(records) {
            if past_header(r, width) {
                *c = width;
            }
        }
        return (counts, Unnamed::Trailing);
    }
    // The header's empty names at its end, when most rows stop before them.
    let named = header.iter().rposition(|f| !blank(f)).map_or(0, |i| i + 1);
    if named > 1 && named < width && most(&|r| r.len() == named) {
        counts[0] = named;
        return (counts, Unnamed::PaddedHeader);
    }
    let longer = |r: &ByteRecord| r.len() == width + 1;
    // The header names the fields after each row's first, and that reading types more of its
    // columns than the one where it names the first fields (`id,name,lat,lon` over
    // `1,x,0,0,extra` has no row names).
    let (after, before): (Vec<ByteRecord>, Vec<ByteRecord>) = rows
        .iter()
        .filter(|(r, _)| longer(r))
        .map(|(r, _)| (r.iter().skip(1).collect(), r.iter().take(width).collect()))
        .unzip();
    if most(&longer) && names_over(header, after.iter()) && typed(&after) > typed(&before) {
        counts[0] = width + 1;
        return (counts, Unnamed::RowNames);
    }
    (counts, Unnamed::None)
}

/// The most common value and how often it appears.
fn most_common(counts: &[usize]) -> Option<(usize, usize)> {
    let mut freq: Vec<(usize, usize)> = Vec::new();
    for c in counts {
        match freq.iter_mut().find(|(v, _)| v == c) {
            Some((_, n)) => *n += 1,
            None => freq.push((*c, 1)),
        }
    }
    freq.into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::header::first_record_is_data;
    use crate::read::header::tests::records;

    fn d(s: &str) -> Detected {
        detect(s.as_bytes(), true, Ask::default())
    }

    fn pre(s: &str) -> Detected {
        let ask = Ask {
            preamble: true,
            ..Ask::default()
        };
        detect(s.as_bytes(), true, ask)
    }

    #[test]
    fn the_delimiter_that_splits_consistently_wins() {
        assert_eq!(
            d("a;b;c\n1;\"x;y\";3\n4;5,5;6\n").delimiter,
            Delimiter::SEMICOLON
        );
        assert_eq!(d("a\tb\n1\t2,5\n").delimiter, Delimiter::TAB);
        assert_eq!(d("a|b|c\n1|2|3\n").delimiter, Delimiter::PIPE);
        assert_eq!(d("a,b\n1,\"2;3\"\n").delimiter, Delimiter::COMMA);
        // European decimals: one ; per line beats a varying number of commas.
        assert_eq!(
            d("name;amount\nx;1,5\ny;2\nz;3,25\n").delimiter,
            Delimiter::SEMICOLON
        );
    }

    #[test]
    fn undecided_samples_fall_back_to_comma_and_say_why() {
        let single = pre("name\nA;B\nC;D\n");
        assert_eq!(
            (single.delimiter, single.preamble_lines),
            (Delimiter::COMMA, 0)
        );
        let one = d("name\nAnn\nBob\n");
        assert_eq!(one.delimiter, Delimiter::COMMA);
        assert!(one.doubt.unwrap().contains("no delimiter"));
        let tie = d("a;b|c\n1;2|3\n");
        assert_eq!(tie.delimiter, Delimiter::COMMA);
        assert!(tie.doubt.unwrap().contains("equally well"));
    }

    #[test]
    fn a_record_cut_by_the_sample_end_is_left_out() {
        let cut = detect(b"a;b;c\n1;2;3\n4;5", false, Ask::default());
        assert_eq!((cut.delimiter, cut.doubt), (Delimiter::SEMICOLON, None));
        // Ended by a line break, the last record is whole though more may follow: here it
        // alone has the header's fields, so left out nothing would split the sample.
        // Ended by a line break, the last record is whole though more may follow: here it
        // alone tells `;` from the `|` in a header name.
        let whole = detect(b"a|b;c\n1;2\n", false, Ask::default());
        assert_eq!((whole.delimiter, whole.doubt), (Delimiter::SEMICOLON, None));
    }

    #[test]
    fn lines_before_a_clear_header_are_a_preamble() {
        let file =
            "Sales export, EMEA\r\n\r\nRegion: all\r\nid;name;amount\r\n1;Ann;2,5\r\n2;Bob;3\r\n";
        let p = pre(file);
        assert_eq!((p.delimiter, p.preamble_lines), (Delimiter::SEMICOLON, 3));
        assert!(file[p.preamble_bytes..].starts_with("id;name"));
        // Asked only with the delimiter given, too.
        let given = Ask {
            delimiter: Some(Delimiter::SEMICOLON),
            preamble: true,
            ..Ask::default()
        };
        assert_eq!(detect(file.as_bytes(), true, given).preamble_lines, 3);
        // More preamble lines than rows (found by the proptest below).
        assert_eq!(pre("A\nA\nA\nc0,c1\n0,0\n").preamble_lines, 3);
        // Not asked (skip_lines= given, or no header): no preamble, and ; no longer fits.
        assert_eq!(d(file).preamble_lines, 0);
        // A comment line that splits like the header is no header: the rows do not confirm it.
        let log = "# exported by tool 2.3\n# site: roof, units: degC, %RH\ntime,temp,rh\n\
                   2024-03-01T10:00,21.5,40\n2024-03-01T10:30,21.7,41\n";
        let p = pre(log);
        assert_eq!((p.delimiter, p.preamble_lines), (Delimiter::COMMA, 2));
        // A spreadsheet's title padded to the table's width, a padded empty line, and a
        // header padded with empty names (as UK councils publish their spending).
        let council = "Invoices over £250 paid in June 2015,,,,,\n,,,,,\n\
                       Directorate,Paid Date,Supplier,Total,,\n\
                       Adults,02/06/2015,ORCHARD CARE,2170.88,,\n\
                       Children,03/06/2015,ZURICH,911.6,,\n";
        let p = pre(council);
        assert_eq!((p.delimiter, p.preamble_lines), (Delimiter::COMMA, 2));
        // Lines of text over rows without a clear header (DuckDB's 17738.csv): the rows
        // start after them (whether the first is data, the import decides).
        let described = "some text\ndescription\n\nxyz\n\n1,Doe,120 Jefferson St.,NJ,2.5\n\
                         2,McGinnis,220 hobo Av.,PA,3\n3,Tyler,7452 Terrace,SD,4.25\n";
        let p = pre(described);
        assert!(described[p.preamble_bytes..].starts_with("1,Doe"), "{p:?}");
        assert_eq!((p.delimiter, p.preamble_lines), (Delimiter::COMMA, 5));
        let text = "about\nus\nx,y\nu,v\nw,z\n";
        assert!(text[pre(text).preamble_bytes..].starts_with("x,y"));
        // Not short rows of values before them.
        assert_eq!(pre("1,2\n3,4\n1,2,3\n4,5,6\n").preamble_lines, 0);
        // Without a header after it the title line stays the first record.
        assert_eq!(pre("Title,,\n,,\nx,y,z\nu,v,w\n").preamble_lines, 0);
        // A one-name header stays when no record after it reads as names.
        assert_eq!(pre("id,,\n1,,\n2,,\nx,y,3\n").preamble_lines, 0);
    }

    /// A value as files hold them: numbers, dates, words, and text with any candidate
    /// delimiter or quote in it.
    fn value(tricky: bool) -> proptest::strategy::BoxedStrategy<String> {
        use proptest::prelude::*;
        let plain = prop_oneof![
            any::<i32>().prop_map(|i| i.to_string()),
            (0u32..10_000, 0u32..100).prop_map(|(a, b)| format!("{a}.{b:02}")),
            (1u32..28, 1u32..12).prop_map(|(d, m)| format!("2026-{m:02}-{d:02}")),
            "[a-z]{0,8}( [a-z]{1,6})?",
        ];
        if tricky {
            prop_oneof![plain, "[a-z,;|\t\"' ]{0,10}"].boxed()
        } else {
            plain.boxed()
        }
    }

    /// `rows` (the first `columns` values of each) under a header `c0,c1,…`, written by the
    /// csv crate with `delimiter`, after `preamble` lines; every first value is a number.
    fn file(
        preamble: &[String],
        rows: &[Vec<String>],
        columns: usize,
        delimiter: Delimiter,
    ) -> Vec<u8> {
        let mut out: Vec<u8> = preamble
            .iter()
            .flat_map(|l| format!("{l}\r\n").into_bytes())
            .collect();
        let mut w = csv::WriterBuilder::new()
            .delimiter(delimiter.byte())
            .from_writer(Vec::new());
        w.write_record((0..columns).map(|i| format!("c{i}")))
            .unwrap();
        for (n, r) in rows.iter().enumerate() {
            let first = std::iter::once(n.to_string());
            w.write_record(first.chain(r[1..columns].iter().cloned()))
                .unwrap();
        }
        out.extend(w.into_inner().unwrap());
        out
    }

    proptest::proptest! {
        /// A file that starts with its header never loses it to a preamble, nor gets a
        /// field the header does not name, whatever its values hold.
        #[test]
        fn a_header_on_the_first_line_is_never_skipped(
            columns in 2usize..6,
            rows in proptest::collection::vec(proptest::collection::vec(value(true), 6), 1..40),
            delimiter in proptest::sample::select(CANDIDATES.to_vec()),
        ) {
            let f = file(&[], &rows, columns, delimiter);
            let found = detect(&f, true, Ask { preamble: true, ..Ask::default() });
            proptest::prop_assert_eq!(found.preamble_lines, 0, "{}", String::from_utf8_lossy(&f));
            proptest::prop_assert_eq!(found.unnamed, Unnamed::None, "{}", String::from_utf8_lossy(&f));
        }

        /// Names over rows are never read as data, whatever the rows hold; rows whose
        /// columns each hold one kind of value (the first a number) are data from the first.
        #[test]
        fn names_are_a_header_and_a_first_row_of_values_is_data(
            columns in 2usize..6,
            rows in proptest::collection::vec(proptest::collection::vec(value(true), 6), 1..40),
            kinds in proptest::collection::vec(0u8..4, 6),
            seeds in proptest::collection::vec(proptest::collection::vec(0u32..100_000, 6), 1..40),
        ) {
            let f = file(&[], &rows, columns, Delimiter::COMMA);
            let recs = records(std::str::from_utf8(&f).unwrap());
            proptest::prop_assert!(!first_record_is_data(&recs[0], &recs[1..]));
            let kind = |k: u8, s: u32| match k {
                0 => s.to_string(),
                1 => format!("{}.{:02}", s / 100, s % 100),
                2 => format!("20{:02}-{:02}-{:02}", s % 30, 1 + s % 12, 1 + s % 28),
                _ => format!("w{s}"),
            };
            let rows: Vec<Vec<String>> = seeds
                .iter()
                .map(|r| r.iter().zip(&kinds).map(|(s, k)| kind(*k, *s)).collect())
                .collect();
            let f = file(&[], &rows, columns, Delimiter::COMMA);
            let recs = records(std::str::from_utf8(&f).unwrap());
            proptest::prop_assert!(first_record_is_data(&recs[1], &recs[2..]));
        }

        /// Text lines (or blank ones) before a header are found, line for line, with the
        /// delimiter.
        #[test]
        fn a_preamble_of_text_lines_is_found_exactly(
            columns in 2usize..6,
            rows in proptest::collection::vec(proptest::collection::vec(value(false), 6), 1..40),
            preamble in proptest::collection::vec("([A-Z][a-z]{0,9}( [a-z0-9.:-]{1,8}){0,4})?", 1..6),
            delimiter in proptest::sample::select(CANDIDATES.to_vec()),
        ) {
            let f = file(&preamble, &rows, columns, delimiter);
            let found = detect(&f, true, Ask { preamble: true, ..Ask::default() });
            let lines = if preamble.iter().all(String::is_empty) { 0 } else { preamble.len() as u64 };
            let text = String::from_utf8_lossy(&f);
            proptest::prop_assert_eq!(found.delimiter, delimiter, "{}", text);
            proptest::prop_assert_eq!(found.preamble_lines, lines, "{}", text);
        }
    }

    #[test]
    fn a_header_that_names_years_over_numbers_ends_a_preamble() {
        // As the World Bank writes its indicators: two lines of metadata with blank lines
        // between, every line ending with a comma.
        let wb = "\"Data Source\",\"WDI\",\n\n\"Last Updated Date\",\"2024-03-28\",\n\n\
                  \"Country Name\",\"Code\",\"2015\",\"2016\",\n\
                  \"Aruba\",\"ABW\",\"104257\",\"104874\",\n\
                  \"Angola\",\"AGO\",\"28127721\",\"\",\n";
        let p = pre(wb);
        assert_eq!((p.delimiter, p.preamble_lines), (Delimiter::COMMA, 4));
        assert!(wb[p.preamble_bytes..].starts_with("\"Country Name\""));
        // A row of years over years is no header: nothing tells it from the rows.
        assert_eq!(
            pre("Title\nCity,1999,2001\nParis,2004,2010\n").preamble_lines,
            0
        );
        // Nor are numbers that are no years, nor years alone.
        assert_eq!(pre("Title\nx,12,13\ny,140,150\n").preamble_lines, 0);
        assert_eq!(pre("Title\n2015,2016\n140,150\n").preamble_lines, 0);
    }

    #[test]
    fn rows_that_end_with_a_delimiter_the_header_lacks_split_like_the_header() {
        // As a US bank writes its statements: every row ends with a comma.
        let bank =
            "Details,Posting Date,Amount,Check\nDEBIT,03/01/2024,-2.50,,\nCREDIT,03/02/2024,9,,\n";
        let p = pre(bank);
        assert_eq!(
            (p.delimiter, p.preamble_lines, p.doubt),
            (Delimiter::COMMA, 0, None)
        );
        assert_eq!(p.unnamed, Unnamed::Trailing);
        // A blank field there (a quoted line break) is read so as well.
        assert_eq!(
            pre("a;b\n\"x\";2;\"\n\"\n\"y\";3;\"\n\"\n").unnamed,
            Unnamed::Trailing
        );
        // A header that ends with one too has a column there (its empty name).
        assert_eq!(pre("a,b,\n1,2,\n3,4,\n").unnamed, Unnamed::None);
        // A header that ends with empty names the rows do not have is read without them.
        let padded = pre("a,b,\n1,2\n3,4\n");
        assert_eq!(
            (padded.delimiter, padded.unnamed),
            (Delimiter::COMMA, Unnamed::PaddedHeader)
        );
        assert_eq!(
            pre("id,name,,,\n1,Ann\n2,Bob\n").unnamed,
            Unnamed::PaddedHeader
        );
        assert_eq!(pre("a,b,\n1,2\n3,4,\n5,6,\n").unnamed, Unnamed::None);
        // Nor rows after a two-field title whose last column is mostly empty: the header
        // under the title has a name there.
        let titled = pre("Sales report, 2024\nid,name,note\n1,Ann,\n2,Bob,\n3,Cy,\n4,Dee,x\n");
        assert_eq!(titled.unnamed, Unnamed::None);
        assert_eq!(
            (titled.preamble_lines, titled.delimiter),
            (1, Delimiter::COMMA)
        );
        // Nor a few such rows among many that are not.
        assert_eq!(pre("a,b\n1,2,\n3,4\n5,6\n7,8\n").unnamed, Unnamed::None);
    }

    #[test]
    fn rows_with_a_field_before_the_header_s_first_have_row_names() {
        // R's write.table: a header of names over rows that start with a label.
        let r = pre("\"x\";\"y\";\"ok\"\n\"Org\";0;1;TRUE\n\"Hyp\";1;1;FALSE\n\"Cg\";0;0;TRUE\n");
        assert_eq!(
            (r.delimiter, r.preamble_lines, r.unnamed),
            (Delimiter::SEMICOLON, 0, Unnamed::RowNames)
        );
        // Read either way, as many columns have a type: no row names (the rows are rejected).
        assert_eq!(pre("a,b\n1,2,3\n4,5,6\n").unnamed, Unnamed::None);
        // Nor when the header fits the first fields better (an extra field at the end).
        assert_eq!(
            pre("id,name,lat,lon\n1,name,0,0,value\n").unnamed,
            Unnamed::None
        );
        // R writes a missing value NA: it says nothing of the header, and a row with one
        // is no header either.
        assert_eq!(
            pre("x;y\nOrg;0;1.5\nHyp;1;NA\nNA;NA;NA\n").unnamed,
            Unnamed::RowNames
        );
        let na_first = pre("\"x\";\"y\"\n\"Org\";NA;NA\n\"Hyp\";1;3\n\"Cg\";2;4.5\n");
        assert_eq!(
            (na_first.preamble_lines, na_first.unnamed),
            (0, Unnamed::RowNames)
        );
        // Not when the header does not read as names over the rest of the rows.
        assert_eq!(pre("1,2\nx,3,4\ny,5,6\n").unnamed, Unnamed::None);
        // Nor over a one-field header (a single column of unquoted 1,234).
        assert_eq!(pre("n\n1,234\n5,678\n").unnamed, Unnamed::None);
        // Nor when only some rows are longer.
        assert_eq!(pre("a,b\n1,2,3\n4,5\n6,7\n").unnamed, Unnamed::None);
    }

    #[test]
    fn a_first_line_that_only_looks_short_is_no_preamble() {
        // Rows longer than the header (a trailing delimiter): the "header" found would be
        // a row of values.
        assert_eq!(pre("a,b\n1,2,3\n4,5,6\n").preamble_lines, 0);
        assert_eq!(pre("a,b,c\n1,2,3,\n4,5,6,\n").preamble_lines, 0);
        // All text: nothing tells a header from a row.
        assert_eq!(pre("Title\nx,y\nz,w\n").preamble_lines, 0);
        // A header in the first line is never skipped.
        assert_eq!(pre("id,name\n1,Ann\n2,Bob\n").preamble_lines, 0);
        // Not even for a delimiter that splits as consistently into more fields behind a
        // "header" the rows confirm (| here: `aa`, `n/a`, `x,1` over numbers in the middle).
        let pipes = pre("name,code\naa|n/a|x,1\ncc|7|y,2\nee|8|z,3\n");
        assert_eq!(
            (pipes.delimiter, pipes.preamble_lines),
            (Delimiter::COMMA, 0)
        );
    }
}
