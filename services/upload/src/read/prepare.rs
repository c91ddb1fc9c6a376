//! From the body's bytes to what the CSV reader reads: the text encoding (given, or detected
//! with `encoding=auto`), preamble lines skipped (given with `skip_lines=`, or detected), and
//! the dialect (given, or detected: `delimiter=auto`, the default). Looks only at the first
//! [`SAMPLE_BYTES`], held once and then read again by the parser: the file is read once.

use csvbus_shared::dates::DateOrder;
use csvbus_shared::numbers::DecimalMark;
use csvbus_shared::read_as::{Delimiter, ReadAs};

use crate::error::ApiError;
use crate::error::QueryOption;
use crate::read::detect::{self, Ask};
use crate::read::header::{self, Unnamed};
use crate::read::lines;
use crate::read::parse::{Comment, Dialect, Escape, Quote};
use crate::read::quotes;
use crate::read::requote::requoted;
use crate::read::sniff::{self, Input, SAMPLE_BYTES};
use crate::read::transcode::{self, TextEncoding};
use crate::rows::mapping::Mapping;

/// How to read an upload's bytes (query options).
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// `None`: detect (`delimiter=auto`, the default).
    pub delimiter: Option<Delimiter>,
    /// `None`: `"`, or detected with the delimiter.
    pub quote: Option<Quote>,
    /// `None`: detected with the delimiter (`\` where the first lines escape quotes with it).
    pub escape: Option<Escape>,
    /// `None`: detect (`encoding=auto`).
    pub encoding: Option<TextEncoding>,
    /// `encoding=` was given. Without it (UTF-8 by default) a UTF-16 byte-order mark is still
    /// honoured, and a body that is not UTF-8 gets a note naming `encoding=auto`.
    pub encoding_given: bool,
    /// `None`: detect a preamble (when the file has a header).
    pub skip_lines: Option<u64>,
    pub trim: bool,
    /// The first record names the columns (`header=false`: `columns=` does).
    pub header: bool,
    /// `header=` was given. Without it, a table `create=true` makes may find the first record
    /// is data ([`FirstRecord::Detect`]).
    pub header_given: bool,
    pub mapping: Mapping,
    /// Bytes of the start of the body to keep for [`Prepared::sample`] (`create=true`: the
    /// rows column types are inferred from); 0: none.
    pub keep_sample: usize,
    /// `dateformat=`: `None` decides from the first rows.
    pub dateformat: Option<DateOrder>,
    /// `decimal=`: `None` decides from the first rows.
    pub decimal: Option<DecimalMark>,
    /// Return the bytes looked at (whatever has arrived, not waited for) as the sample.
    pub value_sample: bool,
    /// `comment=`: `None` detects `#`.
    pub comment: Option<Comment>,
}

impl ReadOptions {
    /// A retry of an upload reads its file as the first upload did: what was detected then
    /// (delimiter, encoding, preamble) is taken as given.
    pub fn same_as(&mut self, first: &ReadAs) {
        if self.delimiter.is_none() {
            self.delimiter = Some(first.delimiter);
        }
        if self.dateformat.is_none() {
            self.dateformat = first.dateformat;
        }
        if self.decimal.is_none() {
            self.decimal = first.decimal;
        }
        if self.quote.is_none() {
            self.quote = Quote::from_query(&first.quote).ok().flatten();
        }
        if self.escape.is_none() {
            self.escape = Some(Escape(first.escape.as_ref().and_then(|e| e.bytes().next())));
        }
        if self.encoding.is_none() || !self.encoding_given {
            self.encoding = TextEncoding::parse(&first.encoding).ok().flatten();
            self.encoding_given = true;
        }
        self.skip_lines = self.skip_lines.or(Some(first.skip_lines));
        if self.comment.is_none() {
            self.comment = Some(Comment(
                first.comment.as_ref().and_then(|c| c.bytes().next()),
            ));
        }
        // A first record that was read as data is data again (the caller names the fields
        // as they were named then).
        if !first.header && !self.header_given {
            self.header = false;
        }
    }
}

/// What the first record (after skipped lines) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstRecord {
    /// The header: given (`header=true`), or the fields are named by `columns=`.
    Header,
    /// Data (`header=false`).
    Data,
    /// The header, unless it reads as data with the rows after it (no `header=`, no `columns=`).
    Detect,
}

impl ReadOptions {
    pub fn first_record(&self) -> FirstRecord {
        match (
            self.header,
            self.header_given || self.mapping.names.is_some(),
        ) {
            (false, _) => FirstRecord::Data,
            (true, true) => FirstRecord::Header,
            (true, false) => FirstRecord::Detect,
        }
    }
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            delimiter: None,
            quote: None,
            escape: None,
            encoding: Some(TextEncoding::Utf8),
            encoding_given: false,
            skip_lines: None,
            trim: false,
            header: true,
            header_given: false,
            mapping: Mapping::default(),
            keep_sample: 0,
            dateformat: None,
            decimal: None,
            value_sample: false,
            comment: None,
        }
    }
}

/// The input as the CSV reader takes it, with its dialect and how it was decided.
pub struct Prepared {
    pub input: Input,
    pub dialect: Dialect,
    pub read_as: ReadAs,
    /// With [`ReadOptions::keep_sample`]: the first bytes after the skipped lines (UTF-8), and
    /// whether they are the whole body.
    pub sample: Option<(Vec<u8>, bool)>,
}

/// The encoding of a body sent without `encoding=`: UTF-8, unless a UTF-16 byte-order mark
/// leaves no doubt; and a note when the first bytes are not UTF-8 (their rows will be rejected),
/// naming what `encoding=auto` would read.
fn default_encoding(sample: &[u8]) -> (TextEncoding, Option<String>) {
    match sample {
        [0xFF, 0xFE, ..] | [0xFE, 0xFF, ..] => {
            let e = TextEncoding::detect(sample);
            (
                e,
                Some(format!("a UTF-16 byte-order mark: read as {}", e.name())),
            )
        }
        _ => match std::str::from_utf8(sample) {
            Err(e) if e.error_len().is_some() => {
                let auto = TextEncoding::detect(sample).name();
                let note = format!(
                    "the first bytes are not UTF-8: rows holding such bytes are rejected; \
                     encoding=auto would read the file as {auto}"
                );
                (TextEncoding::Utf8, Some(note))
            }
            _ => (TextEncoding::Utf8, None),
        },
    }
}

/// Decides the encoding and the dialect from the first bytes of `input`.
pub async fn prepare(input: Input, o: &ReadOptions) -> Result<Prepared, ApiError> {
    let mut notes = Vec::new();
    let until = Some(tokio::time::Instant::now() + sniff::SAMPLE_WAIT);
    let (encoding, input, detected) = match o.encoding {
        Some(TextEncoding::Utf8) if !o.encoding_given => {
            let p = sniff::peek(input, SAMPLE_BYTES, until).await;
            let (e, note) = default_encoding(&p.sample);
            notes.extend(note);
            (e, p.input, e != TextEncoding::Utf8)
        }
        Some(e) => (e, input, false),
        None => {
            let p = sniff::peek(input, SAMPLE_BYTES, until).await;
            (TextEncoding::detect(&p.sample), p.input, true)
        }
    };
    let input = transcode::utf8(input, encoding);
    let want = SAMPLE_BYTES.max(o.keep_sample);
    let sniff::Peeked {
        sample,
        ended: complete,
        input,
    } = sniff::peek(input, want, until.filter(|_| o.keep_sample == 0)).await;
    let given = o.skip_lines.unwrap_or(0);
    let skip = lines::after_lines(&sample, given).ok_or_else(|| {
        let why = if complete {
            "the body has fewer lines"
        } else {
            "skip_lines reaches past the first 64 KiB"
        };
        ApiError::unprocessable("invalid_skip_lines", format!("skip_lines={given}: {why}"))
    })?;
    let found = decide(&sample[skip..], complete, o);
    let preamble = found.preamble_lines;
    if preamble > 0 {
        notes.push(format!(
            "{preamble} line(s) before the header skipped as a preamble (skip_lines=0 reads them)"
        ));
    }
    notes.extend(found.doubt);
    let (delimiter, quote, escape) = (found.delimiter, found.quote, found.escape);
    if quote.is_none() && o.quote.is_none() {
        notes.push(
            "\" read as text, not as a quote: as one it would run fields over line breaks, or split the first lines less consistently (quote=\" reads it as one)"
                .to_owned(),
        );
    }
    if quote == Some(b'\'') && o.quote.is_none() {
        notes.push("fields quoted with ' (detected): quote=\" reads ' as text".to_owned());
    }
    if let (Some(e), None) = (escape, o.escape) {
        let e = e as char;
        notes.push(format!(
            "quotes escaped with {e} inside quoted fields: read with escape={e} (escape=none reads {e} as text)"
        ));
    }
    match found.unnamed {
        Unnamed::None => {}
        Unnamed::Trailing => notes.push(
            "rows end with a delimiter the header does not have: the empty field after the last column is dropped"
                .to_owned(),
        ),
        Unnamed::RowNames => notes.push(
            "the header names one field fewer than the rows have: each row's first field is a row name (as R writes them), read as a first column without a name"
                .to_owned(),
        ),
        Unnamed::PaddedHeader => notes.push(
            "the header ends with empty names the rows do not have (a delimiter the rows do not end with): read without them"
                .to_owned(),
        ),
    }
    let skip = skip + found.preamble_bytes;
    let skip_lines = given + preamble;
    let input = sniff::skip(input, skip);
    let kept = (o.keep_sample > 0 || o.value_sample).then(|| (sample[skip..].to_vec(), complete));
    let mut dialect = Dialect {
        delimiter,
        quote,
        escape,
        trim: o.trim,
        first_line: skip_lines + 1,
        comment: None,
        unnamed: found.unnamed,
        skip_repeated_header: false,
    };
    notes.extend(text_quotes(&sample[skip..], &dialect));
    dialect.comment = comment(o, &sample[skip..], &dialect, &mut notes);
    dialect.skip_repeated_header = o.header && clear_header(&sample[skip..], &dialect);
    Ok(Prepared {
        sample: kept,
        input,
        dialect,
        read_as: ReadAs {
            delimiter,
            delimiter_detected: o.delimiter.is_none(),
            quote: Quote::name(quote),
            escape: escape.map(|e| (e as char).to_string()),
            line_break: lines::line_break(&sample[skip..]).to_owned(),
            encoding: encoding.name().to_owned(),
            encoding_detected: detected,
            skip_lines,
            skip_lines_detected: preamble > 0,
            header: o.header,
            trim: o.trim,
            comment: dialect.comment.map(|c| (c as char).to_string()),
            notes,
            ..ReadAs::default()
        },
    })
}

/// The comment character: given (`comment=`), or `#` when the first lines (`head`, after
/// the preamble) have a line between the rows that starts with it and does not split like
/// the header (said in `notes`). Only a file with a header has comment lines.
fn comment(o: &ReadOptions, head: &[u8], dialect: &Dialect, notes: &mut Vec<String>) -> Option<u8> {
    if !o.header {
        return None;
    }
    if let Some(Comment(given)) = o.comment {
        return given;
    }
    let c = Comment::DETECTED;
    let n = comment_lines(head, dialect, c);
    (n > 0).then(|| {
        let c = c as char;
        notes.push(format!(
            "lines starting with {c} that do not split like the header are comments ({n} in the first lines): skipped, not rows; comment=none reads them as rows"
        ));
        Comment::DETECTED
    })
}

/// How many records after the first (the header) of `head`, read as `dialect`, are comment
/// lines ([`header::is_comment_line`]).
fn comment_lines(head: &[u8], dialect: &Dialect, c: u8) -> usize {
    let mut records = dialect.sample_reader(head).into_byte_records();
    let Some(Ok(mut header)) = records.next() else {
        return 0;
    };
    dialect.read_header(&mut header);
    records
        .filter_map(Result::ok)
        .filter(|r| {
            let at = r.position().map_or(0, |p| p.byte() as usize);
            header::is_comment_line(
                &head[at.min(head.len())..],
                c,
                header::has_width(r, header.len()),
            )
        })
        .count()
}

/// Whether the first record of `head`, read as `dialect`, is clearly a header over the
/// records after it ([`header::names_over`]), records that repeat it aside.
fn clear_header(head: &[u8], dialect: &Dialect) -> bool {
    let mut records = dialect.sample_reader(head).into_byte_records();
    let Some(Ok(header)) = records.next() else {
        return false;
    };
    let rows: Vec<csv::ByteRecord> = records
        .take(detect::RECORDS)
        .filter_map(Result::ok)
        .filter(|r| !header::same_fields(&header, r))
        .collect();
    header::names_over(&header, rows.iter())
}

/// The note for quotes inside quoted fields of `head` that neither double nor end them
/// (`"pedro "pdet" holanda"`): read as text, as the line it names shows.
fn text_quotes(head: &[u8], dialect: &Dialect) -> Option<String> {
    let q = dialect.quote?;
    let (_, added) = requoted(head, dialect.delimiter.byte(), q, dialect.escape);
    let first = *added.first()?;
    let line = dialect.first_line + lines::lines_in(&head[..first]);
    let q = q as char;
    Some(format!(
        "a {q} inside a quoted field that neither doubles it nor ends the field is read as text, not dropped (line {line}: {q}a {q}b{q} c{q} is a {q}b{q} c)"
    ))
}

/// The dialect and the preamble: as given, or detected in `head` (the sample after the lines
/// `skip_lines=` skips; `complete`: the sample is the whole body).
fn decide(head: &[u8], complete: bool, o: &ReadOptions) -> detect::Detected {
    let ask = Ask {
        delimiter: o.delimiter,
        quote: o.quote,
        escape: o.escape,
        preamble: o.skip_lines.is_none() && o.header,
    };
    let looked = &head[..head.len().min(SAMPLE_BYTES)];
    match ask.delimiter {
        Some(delimiter) if !ask.preamble => {
            let quote = o.quote.map_or(Some(b'"'), |q| q.0);
            let escape = match o.escape {
                Some(given) => given.0,
                None => quote
                    .is_some_and(|q| quotes::backslash_escapes(looked, delimiter, q))
                    .then_some(b'\\'),
            };
            let unnamed = detect::unnamed(
                looked,
                delimiter,
                (quote, escape),
                complete && looked.len() == head.len(),
            );
            detect::Detected {
                delimiter,
                quote,
                escape,
                preamble_bytes: 0,
                preamble_lines: 0,
                doubt: None,
                unnamed,
            }
        }
        _ => detect::detect(looked, complete && looked.len() == head.len(), ask),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    async fn read(body: &'static [u8], o: &ReadOptions) -> (Prepared, String) {
        let mut p = prepare(Box::pin(body), o).await.unwrap();
        let mut rest = String::new();
        p.input.read_to_string(&mut rest).await.unwrap();
        (p, rest)
    }

    const FILE: &[u8] = b"Export of 2026-11-25\nid;name\n1;Ann\n2;Bob\n";

    #[test]
    fn comment_lines_are_lines_that_start_with_the_character_and_split_otherwise() {
        let d = Dialect::plain(Delimiter::COMMA);
        let n = |text: &str| comment_lines(text.as_bytes(), &d, b'#');
        assert_eq!(n("a,b\n1,2\n\n# note\n3,4\n#x,5\n# two, fields\n#end"), 3);
        // The header itself, a value with # inside and a row starting with # are no comments.
        assert_eq!(n("#a\n1\n"), 0);
        assert_eq!(n("a,b\n1,x # y\n#2,3\n"), 0);
    }

    #[tokio::test]
    async fn a_detected_preamble_is_skipped_and_lines_keep_their_numbers() {
        let (p, rest) = read(FILE, &ReadOptions::default()).await;
        assert_eq!(rest, "id;name\n1;Ann\n2;Bob\n");
        assert_eq!(
            (p.dialect.delimiter, p.dialect.first_line),
            (Delimiter::SEMICOLON, 2)
        );
        assert_eq!(p.read_as.skip_lines, 1);
        assert!(p.read_as.skip_lines_detected);
        assert!(p.read_as.notes[0].contains("preamble"), "{:?}", p.read_as);
        // skip_lines=0 reads every line.
        let given = ReadOptions {
            skip_lines: Some(0),
            ..ReadOptions::default()
        };
        let (p, rest) = read(FILE, &given).await;
        assert_eq!((rest.len(), p.read_as.skip_lines), (FILE.len(), 0));
    }

    #[test]
    fn a_retry_reads_as_the_first_upload_did_unless_told_otherwise() {
        let first = ReadAs {
            delimiter: Delimiter::TAB,
            quote: "'".into(),
            encoding: "windows-1252".into(),
            skip_lines: 3,
            ..ReadAs::default()
        };
        let mut retry = ReadOptions {
            encoding: None,
            ..ReadOptions::default()
        };
        retry.same_as(&first);
        assert_eq!(
            (retry.delimiter, retry.quote, retry.skip_lines),
            (Some(Delimiter::TAB), Some(Quote(Some(b'\''))), Some(3))
        );
        assert_eq!(retry.encoding, Some(TextEncoding::Windows1252));
        let mut told = ReadOptions {
            skip_lines: Some(0),
            delimiter: Some(Delimiter::COMMA),
            ..ReadOptions::default()
        };
        told.same_as(&first);
        assert_eq!(
            (told.delimiter, told.skip_lines),
            (Some(Delimiter::COMMA), Some(0))
        );
    }
}
