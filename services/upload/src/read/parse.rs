//! The CSV records of a body, each with the line it really starts on and its raw bytes at hand.
//!
//! Wraps the CSV reader (csv-async), the [`Tap`] window on the bytes it parses and the [`Lines`]
//! counter. A record's bytes stay in the window until [`Records::done`]: the raw text of a
//! rejected row, which fields were quoted, and whether a final quote was left open are read
//! from there, without copying.

use std::borrow::Cow;

use csv_async::{AsyncReader, AsyncReaderBuilder, ByteRecord, Trim};
use csvbus_shared::read_as::Delimiter;
use tokio::io::AsyncRead;

use crate::read::header::{blank, Unnamed};
use crate::read::lines::Lines;
use crate::read::requote::requoted;
use crate::read::tap::{quoted_fields, Tap, TapReader};

/// Where the current record is: its line and its bytes in the (decompressed) input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub line: u64,
    pub start: u64,
    pub end: u64,
}

/// `quote=`: the quote character, one ASCII character other than a line break, or `none`
/// (quotes are text: a field ends at the next delimiter or line break, whatever it holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote(pub Option<u8>);

impl Quote {
    /// How `read_as.quote` names a quote: the character, or `none`.
    pub fn name(quote: Option<u8>) -> String {
        quote.map_or_else(|| "none".to_owned(), |q| (q as char).to_string())
    }
}

impl crate::error::QueryOption for Quote {
    const INVALID: &'static str = "invalid_quote";
    fn from_query(s: &str) -> Result<Option<Self>, String> {
        match s.as_bytes() {
            [] => Ok(None),
            b"none" => Ok(Some(Self(None))),
            [b] if b.is_ascii() && !matches!(b, b'\n' | b'\r') => Ok(Some(Self(Some(*b)))),
            _ => Err(format!(
                "quote={s:?}: use one ASCII character, such as ' or \", or none"
            )),
        }
    }
}

/// `escape=`: the character that escapes a quote inside a quoted field (`\` in
/// `"say \"hi\""`, as MySQL and PHP write it), or `none`. Not given: detected with the
/// delimiter (a doubled quote is read as one quote either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Escape(pub Option<u8>);

impl crate::error::QueryOption for Escape {
    const INVALID: &'static str = "invalid_escape";
    fn from_query(s: &str) -> Result<Option<Self>, String> {
        match s.as_bytes() {
            [] => Ok(None),
            b"none" => Ok(Some(Self(None))),
            [b] if b.is_ascii() && !matches!(b, b'\n' | b'\r') => Ok(Some(Self(Some(*b)))),
            _ => Err(format!(
                "escape={s:?}: use one ASCII character, such as \\, or none"
            )),
        }
    }
}

/// `comment=`: the character that starts a comment line (a line starting with it that does
/// not split into the header's fields is skipped, not a row), or `none`. Not given: `#` when
/// the first lines have such a line between the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Comment(pub Option<u8>);

impl Comment {
    /// What is looked for when `comment=` is not given.
    pub const DETECTED: u8 = b'#';
}

impl crate::error::QueryOption for Comment {
    const INVALID: &'static str = "invalid_comment";
    fn from_query(s: &str) -> Result<Option<Self>, String> {
        match s.as_bytes() {
            [] => Ok(None),
            b"none" => Ok(Some(Self(None))),
            [b] if b.is_ascii_punctuation() => Ok(Some(Self(Some(*b)))),
            _ => Err(format!(
                "comment={s:?}: use one ASCII punctuation character, such as #, or none"
            )),
        }
    }
}

/// `quotes=`: how a quote inside an unquoted field, or inside a quoted one that neither
/// doubles it nor ends the field, is read; `lenient` (kept as text) is the only way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quotes {
    Lenient,
}

impl crate::error::QueryOption for Quotes {
    const INVALID: &'static str = "invalid_query";
    fn from_query(s: &str) -> Result<Option<Self>, String> {
        match s {
            "" => Ok(None),
            "lenient" => Ok(Some(Self::Lenient)),
            _ => Err(
                "quotes= is lenient: a quote inside an unquoted field is always kept as text"
                    .into(),
            ),
        }
    }
}

/// How to split an input into records and fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    pub delimiter: Delimiter,
    /// `None`: quotes are text (`quote=none`).
    pub quote: Option<u8>,
    /// The character that escapes a quote (or itself) inside a quoted field.
    pub escape: Option<u8>,
    /// Whitespace around fields (and after a closing quote) is dropped.
    pub trim: bool,
    /// The line the input's first byte is on (preamble lines were skipped before it).
    pub first_line: u64,
    /// A line starting with this character that does not split into the header's fields is
    /// a comment: skipped, not a row (`comment=`).
    pub comment: Option<u8>,
    /// How the header's fields and the rows' differ ([`Unnamed`]): with row names the header
    /// is read with an empty first name; padded with empty names the rows lack, without them.
    pub unnamed: Unnamed,
    /// The header is clearly one (names over typed values): a later line with its fields
    /// repeats it and is skipped, not a row. Not so for a header of text over text
    /// (`happy` over `sad`, `happy`): a value may equal a name.
    pub skip_repeated_header: bool,
}

impl Dialect {
    pub fn plain(delimiter: Delimiter) -> Self {
        Self {
            delimiter,
            quote: Some(b'"'),
            escape: None,
            trim: false,
            first_line: 1,
            comment: None,
            unnamed: Unnamed::None,
            skip_repeated_header: false,
        }
    }

    /// Reads `record`, the header, as this dialect does: with an empty first name for the
    /// rows' row names, without the empty names at its end the rows do not have.
    pub fn read_header<R>(&self, record: &mut R)
    where
        for<'r> &'r R: IntoIterator<Item = &'r [u8]>,
        R: for<'r> FromIterator<&'r [u8]>,
    {
        match self.unnamed {
            Unnamed::RowNames => {
                *record = std::iter::once(&b""[..]).chain(&*record).collect();
            }
            Unnamed::PaddedHeader => {
                let fields: Vec<&[u8]> = (&*record).into_iter().collect();
                let named = fields.iter().rposition(|f| !blank(f)).map_or(0, |i| i + 1);
                *record = fields[..named].iter().copied().collect();
            }
            Unnamed::None | Unnamed::Trailing => {}
        }
    }

    /// A reader of the records of `sample` (bytes held in memory) as this dialect reads them
    /// (quotes that are text kept: [`requoted`]).
    pub fn sample_reader<'s>(
        &self,
        sample: &'s [u8],
    ) -> csv::Reader<std::io::Cursor<Cow<'s, [u8]>>> {
        let sample = match self.quote {
            Some(q) => requoted(sample, self.delimiter.byte(), q, self.escape).0,
            None => Cow::Borrowed(sample),
        };
        csv::ReaderBuilder::new()
            .delimiter(self.delimiter.byte())
            .quote(self.quote.unwrap_or(b'"'))
            .quoting(self.quote.is_some())
            .escape(self.escape)
            .trim(if self.trim {
                csv::Trim::All
            } else {
                csv::Trim::None
            })
            .has_headers(false)
            .flexible(true)
            .from_reader(std::io::Cursor::new(sample))
    }

    /// Whether `sample` ends where a record ends (a line break outside a quoted field), so that
    /// its last record is whole though more of the body may follow: a streaming client's small
    /// file often arrives before its end is known. Read with one more byte, such a sample has
    /// one more record; cut inside a record, or inside a quoted line break, it has not.
    pub fn ends_a_record(&self, sample: &[u8]) -> bool {
        if !matches!(sample.last(), Some(b'\n' | b'\r')) {
            return false;
        }
        let taken = [
            Some(self.delimiter.byte()),
            self.quote,
            self.escape,
            self.comment,
        ];
        let Some(more) = (b'0'..=b'9').find(|b| !taken.contains(&Some(*b))) else {
            return false;
        };
        let count = |bytes: &[u8]| {
            self.sample_reader(bytes)
                .byte_records()
                .take_while(Result::is_ok)
                .count()
        };
        count(&[sample, &[more]].concat()) > count(sample)
    }
}

/// The records of one input.
pub struct Records<R> {
    reader: AsyncReader<TapReader<R>>,
    tap: Tap,
    lines: Lines,
    prev_end: u64,
    /// The header's field count, once read: a row with one field more whose last is empty or
    /// blank (a delimiter the header lacks, `a,b` over `1,2,`) is read without that field.
    width: Option<usize>,
    dialect: Dialect,
    /// The comment lines skipped.
    pub comments: Skipped,
    /// The header as read, once read: a later record with the same fields repeats it (files
    /// concatenated with their headers) and is skipped, not a row.
    header: Option<ByteRecord>,
    /// The lines that repeated the header.
    pub repeated_headers: Skipped,
    /// The record last read by [`Records::next`].
    pub record: ByteRecord,
}

/// Lines an upload skipped (comment lines, repeated headers): how many, and the first few.
#[derive(Debug, Clone, Default)]
pub struct Skipped {
    pub count: u64,
    pub first_lines: Vec<u64>,
}

impl Skipped {
    /// The first lines kept.
    const SHOWN: usize = 5;

    fn add(&mut self, line: u64) {
        if self.first_lines.len() < Self::SHOWN {
            self.first_lines.push(line);
        }
        self.count += 1;
    }

    /// What `read_as.notes` says of them, `what` naming them (`None`: there were none).
    pub fn note(&self, what: &str) -> Option<String> {
        let lines: Vec<String> = self.first_lines.iter().map(u64::to_string).collect();
        (self.count > 0).then(|| {
            format!(
                "{} {what} skipped, not rows: line {}{}",
                self.count,
                lines.join(", "),
                if self.count > lines.len() as u64 {
                    ", …"
                } else {
                    ""
                }
            )
        })
    }

    /// The note on skipped comment lines starting with `c`.
    pub fn comment_note(&self, c: u8) -> Option<String> {
        self.note(&format!("comment line(s) starting with {}", c as char))
    }

    /// The note on skipped lines that repeat the header.
    pub fn header_note(&self) -> Option<String> {
        self.note("line(s) repeating the header")
    }
}

impl<R: AsyncRead + Unpin + Send> Records<R> {
    /// `max_record`: longest record; `max_total`: most bytes the input may have.
    pub fn new(input: R, delimiter: Delimiter, max_record: usize, max_total: u64) -> Self {
        Self::with(input, Dialect::plain(delimiter), max_record, max_total)
    }

    /// Records read as `dialect` says.
    pub fn with(input: R, dialect: Dialect, max_record: usize, max_total: u64) -> Self {
        let (tap, input) = Tap::new(input, max_record, max_total);
        let reader = AsyncReaderBuilder::new()
            .delimiter(dialect.delimiter.byte())
            .quote(dialect.quote.unwrap_or(b'"'))
            .quoting(dialect.quote.is_some())
            .escape(dialect.escape)
            .trim(if dialect.trim { Trim::All } else { Trim::None })
            .has_headers(false)
            .flexible(true)
            .create_reader(input);
        Self {
            reader,
            tap,
            lines: Lines::starting_at(dialect.first_line),
            prev_end: 0,
            width: None,
            dialect,
            comments: Skipped::default(),
            header: None,
            repeated_headers: Skipped::default(),
            record: ByteRecord::new(),
        }
    }

    /// Reads the next record into [`Records::record`]; `None` at the end of the input.
    /// Comment lines are skipped ([`Dialect::comment`]).
    pub async fn next(&mut self) -> Result<Option<Span>, csv_async::Error> {
        loop {
            if !self.reader.read_byte_record(&mut self.record).await? {
                return Ok(None);
            }
            // Per row: the length is compared first.
            match self.width {
                Some(w)
                    if self.record.len() == w + 1
                        && self.record.get(w).is_some_and(crate::read::header::blank) =>
                {
                    self.record.truncate(w);
                }
                _ => {}
            }
            let end = self.reader.position().byte();
            let lines = &mut self.lines;
            let (line, lead) = self
                .tap
                .scan(self.prev_end, end, |b| lines.record(b))
                .unwrap_or((0, 0));
            let start = self.prev_end + lead as u64;
            self.prev_end = end;
            let span = Span { line, start, end };
            if self.is_comment(span) {
                self.comments.add(line);
            } else if self.repeats_header() {
                self.repeated_headers.add(line);
            } else {
                return Ok(Some(span));
            }
            self.done();
        }
    }

    /// Whether the record at `span` is a comment line, once the header is read
    /// ([`crate::read::header::is_comment_line`]).
    fn is_comment(&self, span: Span) -> bool {
        let (Some(c), Some(w)) = (self.dialect.comment, self.width) else {
            return false;
        };
        // A line that starts with it starts its first field with it: most rows stop here.
        if self.record.get(0).and_then(<[u8]>::first) != Some(&c) {
            return false;
        }
        self.tap
            .scan(span.start, span.end, |raw| {
                crate::read::header::is_comment_line(raw, c, self.record.len() == w)
            })
            .unwrap_or(false)
    }

    /// Whether the record last read has the header's fields (whitespace around them aside).
    /// Per row: most stop at the field count or the first field.
    fn repeats_header(&self) -> bool {
        self.header.as_ref().is_some_and(|h| {
            h.len() == self.record.len() && crate::read::header::same_fields(h, &self.record)
        })
    }

    /// The record last read is the header: read with an empty first name when the rows have
    /// row names ([`Dialect::row_names`]); rows with an empty field past its last are read
    /// without it, and a record with its fields is skipped.
    pub fn is_header(&mut self) {
        if self.dialect.skip_repeated_header {
            self.header = Some(self.record.clone());
        }
        self.dialect.read_header(&mut self.record);
        self.width = Some(self.record.len());
    }

    /// Done with the current record: its bytes may leave the window.
    pub fn done(&self) {
        self.tap.advance(self.prev_end, self.lines.next());
    }

    /// Whether `span` is the last record of the input and leaves a quote open.
    pub fn unterminated(&self, span: Span) -> bool {
        let (eof, total) = self.tap.eof();
        eof && span.end == total
            && self
                .tap
                .scan(span.start, span.end, |b| {
                    let d = &self.dialect;
                    d.quote.is_some_and(|q| open_quote(b, q, d.escape))
                })
                .unwrap_or(false)
    }

    /// Which fields of the record at `span` were quoted in the file.
    pub fn quoted(&self, span: Span) -> Vec<bool> {
        self.tap
            .scan(span.start, span.end, |raw| {
                let d = &self.dialect;
                match d.quote {
                    Some(q) => quoted_fields(raw, d.delimiter.byte(), q, d.escape),
                    None => Vec::new(),
                }
            })
            .unwrap_or_default()
    }

    /// The chained digest after the record at `span` (see [`crate::produce::checkpoint::chain`]).
    pub fn digest(&self, span: Span, prev: i64) -> i64 {
        self.tap
            .scan(span.start, span.end, |raw| {
                crate::produce::checkpoint::chain(prev, raw)
            })
            .unwrap_or(prev)
    }

    /// The record's text as in the file, without its line break, at most `limit` characters
    /// (invalid UTF-8 replaced).
    pub fn raw_text(&self, span: Span, limit: usize) -> String {
        self.tap
            .scan(span.start, span.end, |raw| {
                let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
                let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
                let raw = &raw[..raw.len().min(limit * 4)];
                String::from_utf8_lossy(raw).chars().take(limit).collect()
            })
            .unwrap_or_default()
    }
}

/// Whether `raw` leaves a quote open: an odd number of quotes, an escaped one not counted.
fn open_quote(raw: &[u8], quote: u8, escape: Option<u8>) -> bool {
    let (mut open, mut i) = (false, 0);
    while i < raw.len() {
        if Some(raw[i]) == escape && raw[i] != quote {
            i += 2;
            continue;
        }
        open ^= raw[i] == quote;
        i += 1;
    }
    open
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_ends_a_record_at_a_line_break_outside_quotes() {
        let d = Dialect::plain(Delimiter::COMMA);
        assert!(d.ends_a_record(b"d\n01/02/2024\n31/12/2024\n"));
        assert!(d.ends_a_record(b"a,b\r\n1,2\r\n"));
        assert!(d.ends_a_record(b"a,b\r"));
        // Cut inside a record, or after a line break inside a quoted field.
        assert!(!d.ends_a_record(b"a,b\n1,2"));
        assert!(!d.ends_a_record(b"a,b\n1,\"two\n"));
        assert!(!d.ends_a_record(b""));
        // Quotes as text: the line break ends the record.
        let none = Dialect {
            quote: None,
            ..Dialect::plain(Delimiter::COMMA)
        };
        assert!(none.ends_a_record(b"a,b\n1,\"two\n"));
        // A digit that is the delimiter is not the byte added.
        let digit = Dialect::plain(Delimiter::from_byte(b'0').unwrap());
        assert!(digit.ends_a_record(b"a0b\n10\n"));
    }
}
