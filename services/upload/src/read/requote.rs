//! A quote inside a quoted field that neither doubles nor ends it is text:
//! `"pedro "pdet" holanda"` is `pedro "pdet" holanda`, as DuckDB reads it and its writer meant.
//! The CSV reader would end the field at the second quote and glue the rest on without it
//! (`pedro pdet" holanda"`): silently another value. This filter doubles such a quote as the
//! bytes stream, so the reader keeps it. A quote ends its field when what follows it (after
//! spaces or tabs) is the delimiter, a line break or the end of the input; two quotes are one;
//! a quote followed by other text is text when a later quote on the same line ends the field
//! (and so are the quotes between), else it ends the field as the reader has it ([`After`]).
//! Only quotes are added: line numbers stay the file's (a rejected row's text shows such a
//! quote doubled). Detection reads its sample through the same filter ([`requoted`]), so both
//! count the same fields.

use std::borrow::Cow;

use crate::read::filter::ByteFilter;

/// Bytes after a quote looked through at most to see what it is (spaces up to the next field,
/// or the rest of the line); past it, the quote ends its field, as the CSV reader reads it.
/// Memory stays bounded whatever the input.
const MAX_LOOKAHEAD: usize = 64 * 1024;

/// What a quote inside a quoted field is.
pub(crate) enum After {
    /// The first of two: one quote of the field's text.
    Pair,
    /// The field's end: the delimiter, a line break or the end follows (after spaces), or
    /// the field does not end on this line otherwise (`"abc"def` then a line break: the CSV
    /// reader's `abcdef`; taking the quote for text would run the field into the next line).
    Ends,
    /// Text: other text follows, and a later quote ends the field on the same line — the
    /// one this many bytes after it (the quotes between are text too, doubled or not).
    Text(usize),
    /// Not known before more input arrives.
    Unknown,
}

fn ends_field(b: u8, delimiter: u8) -> bool {
    b == delimiter || b == b'\n' || b == b'\r'
}

/// What the quote before `rest` (inside a quoted field) is; `end`: no input follows `rest`.
pub(crate) fn after_quote(rest: &[u8], (delimiter, quote, escape): Chars, end: bool) -> After {
    let unknown = |looked: usize| {
        if looked > MAX_LOOKAHEAD {
            After::Ends
        } else {
            After::Unknown
        }
    };
    match next_to(rest, delimiter, quote, end) {
        Some(After::Unknown) => return unknown(rest.len()),
        Some(after) => return after,
        None => {}
    }
    // Other text follows: the quote is text if a later one ends the field on this line.
    let mut i = 0;
    while i < rest.len() && i <= MAX_LOOKAHEAD {
        match rest[i] {
            b'\n' | b'\r' => return After::Ends,
            b if Some(b) == escape => i += 2,
            // Once a field holds a quote that is text, its quotes are text up to the one the
            // delimiter or the line's end follows (`"Lahr "Vis Bus"",x`: `Lahr "Vis Bus"`),
            // two in a row as well: its writer did not double them.
            b if b == quote => match next_to(&rest[i + 1..], delimiter, quote, end) {
                Some(After::Ends) => return After::Text(i + 1),
                Some(After::Unknown) => return unknown(rest.len()),
                _ => i += 1,
            },
            _ => i += 1,
        }
    }
    if end {
        After::Ends
    } else {
        unknown(i)
    }
}

/// What the bytes right after a quote say, `rest` being them: a second quote ([`After::Pair`]);
/// spaces and then the delimiter, a line break or the end ([`After::Ends`]); spaces up to the
/// end of what has arrived ([`After::Unknown`]); `None`: other text.
fn next_to(rest: &[u8], delimiter: u8, quote: u8, end: bool) -> Option<After> {
    if rest.first() == Some(&quote) {
        return Some(After::Pair);
    }
    let space = |b: &u8| matches!(b, b' ' | b'\t') && *b != delimiter;
    match rest.iter().position(|b| !space(b)) {
        Some(i) if ends_field(rest[i], delimiter) => Some(After::Ends),
        Some(_) => None,
        None if end => Some(After::Ends),
        None => Some(After::Unknown),
    }
}

/// The delimiter, the quote and the escape (other than the quote) of a reading.
pub(crate) type Chars = (u8, u8, Option<u8>);

/// The filter's state between chunks.
pub(crate) struct Requote {
    delimiter: u8,
    quote: u8,
    escape: Option<u8>,
    /// Inside a quoted field.
    quoted: bool,
    /// The last byte passed on ends a field (or nothing has been): a quote next opens one.
    at_field_start: bool,
    /// Bytes from a quote or escape on whose meaning depends on what comes next.
    held: Vec<u8>,
    /// Where the quotes were added in the output, when asked (a sample's, in one feed).
    added: Option<Vec<usize>>,
}

impl Requote {
    pub(crate) fn new(delimiter: u8, quote: u8, escape: Option<u8>) -> Self {
        Self {
            delimiter,
            quote,
            escape: escape.filter(|e| *e != quote),
            quoted: false,
            at_field_start: true,
            held: Vec::new(),
            added: None,
        }
    }

    fn ends_field(&self, b: u8) -> bool {
        ends_field(b, self.delimiter)
    }
}

impl ByteFilter for Requote {
    /// Doubles the quotes that are text.
    fn feed(&mut self, input: &[u8], end: bool, out: &mut Vec<u8>) {
        let joined;
        let input = if self.held.is_empty() {
            input
        } else {
            self.held.extend_from_slice(input);
            joined = std::mem::take(&mut self.held);
            &joined[..]
        };
        // Where the quote that ends the current field is, once a look along the line found
        // it: the quotes before it are text without looking again.
        let (mut written, mut at, mut text_until) = (0, 0, 0);
        while at < input.len() {
            let rest = &input[at..];
            if !self.quoted {
                let Some(p) = memchr::memchr(self.quote, rest).map(|p| at + p) else {
                    break;
                };
                self.quoted = if p == 0 {
                    self.at_field_start
                } else {
                    self.ends_field(input[p - 1])
                };
                at = p + 1;
                continue;
            }
            let found = match self.escape {
                Some(e) => memchr::memchr2(self.quote, e, rest),
                None => memchr::memchr(self.quote, rest),
            };
            let Some(p) = found.map(|p| at + p) else {
                break;
            };
            let after = if input[p] != self.quote {
                if p + 1 < input.len() || end {
                    // An escape: the byte after it is the field's.
                    at = p + 2;
                    continue;
                }
                After::Unknown
            } else if p < text_until {
                After::Text(text_until - p)
            } else {
                after_quote(
                    &input[p + 1..],
                    (self.delimiter, self.quote, self.escape),
                    end,
                )
            };
            match after {
                After::Pair => at = p + 2,
                After::Ends => {
                    self.quoted = false;
                    at = p + 1;
                }
                After::Text(closing) => {
                    text_until = p + closing;
                    out.extend_from_slice(&input[written..=p]);
                    out.push(self.quote);
                    if let Some(added) = &mut self.added {
                        added.push(out.len() - 1);
                    }
                    (written, at) = (p + 1, p + 1);
                }
                After::Unknown => {
                    out.extend_from_slice(&input[written..p]);
                    self.held = input[p..].to_vec();
                    return;
                }
            }
        }
        out.extend_from_slice(&input[written..]);
        if let Some(&last) = input.last() {
            self.at_field_start = self.ends_field(last);
        }
    }
}

/// `sample` as the filter passes it on (the whole of it: `end`), and where in the result a
/// quote was added, in order (to map its positions back to the sample's).
pub(crate) fn requoted(
    sample: &[u8],
    delimiter: u8,
    quote: u8,
    escape: Option<u8>,
) -> (Cow<'_, [u8]>, Vec<usize>) {
    let mut filter = Requote::new(delimiter, quote, escape);
    filter.added = Some(Vec::new());
    let mut out = Vec::new();
    filter.feed(sample, true, &mut out);
    match filter.added {
        Some(added) if !added.is_empty() => (Cow::Owned(out), added),
        _ => (Cow::Borrowed(sample), Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn filtered(input: &[u8], chunk: usize) -> Vec<u8> {
        let requote = Requote::new(b';', b'"', Some(b'\\'));
        crate::read::filter::filtered(requote, input, chunk).await
    }

    #[tokio::test]
    async fn quotes_that_neither_double_nor_end_a_quoted_field_are_doubled() {
        let cases: [(&[u8], &[u8]); 14] = [
            (
                b"1;\"pedro \"pdet\" ho;landa\"\n2;x\n",
                b"1;\"pedro \"\"pdet\"\" ho;landa\"\n2;x\n",
            ),
            (b"\"x\" y\"\r\n", b"\"x\"\" y\"\r\n"),
            // Doubled, escaped, ending the field (after spaces too), or in an unquoted field:
            // as they are.
            (b"\"a\"\"b\";c\n", b"\"a\"\"b\";c\n"),
            (b"\"a\\\"b\";c\n", b"\"a\\\"b\";c\n"),
            (b"\"a\" ;b\n\"c\"\t\n", b"\"a\" ;b\n\"c\"\t\n"),
            (b"a\"b;c\"d\n", b"a\"b;c\"d\n"),
            (b"\"end\"", b"\"end\""),
            (b"\"end\"  ", b"\"end\"  "),
            (b"\"two\nlines\";x\n", b"\"two\nlines\";x\n"),
            // Text after a quote, and the field does not end on the line: that quote ends it
            // (no line is run into the next).
            (b"1;\"abc\"def\n2;\"x\"\n", b"1;\"abc\"def\n2;\"x\"\n"),
            (b"1;\"pedro \"pdet\" holanda", b"1;\"pedro \"pdet\" holanda"),
            (
                b"\"a \"b\"\" c\" d\\\" e\";x\n",
                b"\"a \"\"b\"\"\"\" c\"\" d\\\" e\";x\n",
            ),
            (b"\"Lahr \"Vis Bus\"\";x\n", b"\"Lahr \"\"Vis Bus\"\"\";x\n"),
            (b"", b""),
        ];
        crate::read::filter::assert_filters(|| Requote::new(b';', b'"', Some(b'\\')), &cases).await;
    }

    #[tokio::test]
    async fn a_quote_looked_past_the_lookahead_ends_its_field() {
        // Within it: text, as a later quote ends the field on the line.
        let mut near = b"\"a\" ".to_vec();
        near.extend(std::iter::repeat_n(b'x', 10_000));
        near.extend_from_slice(b"\"\n");
        let mut want = b"\"a\"\" ".to_vec();
        want.extend(std::iter::repeat_n(b'x', 10_000));
        want.extend_from_slice(b"\"\n");
        assert_eq!(filtered(&near, 4096).await, want);
        // Past it: the field ends there, as the CSV reader has it; nothing is held longer.
        let mut far = b"\"a\" ".to_vec();
        far.extend(std::iter::repeat_n(b'x', MAX_LOOKAHEAD + 10));
        far.extend_from_slice(b"\"\n");
        assert_eq!(filtered(&far, 4096).await, far);
    }

    #[test]
    fn the_reader_keeps_the_quotes_and_a_sample_maps_back() {
        let sample = b"id;name\n1;\"pedro \"pdet\" holanda\"\n";
        let (out, added) = requoted(sample, b';', b'"', None);
        let mut r = csv::ReaderBuilder::new()
            .delimiter(b';')
            .has_headers(false)
            .from_reader(&out[..]);
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(&rows[1][1], "pedro \"pdet\" holanda");
        assert_eq!(added, vec![18, 24]);
        assert_eq!((out[18], out[24]), (b'"', b'"'));
        let (same, none) = requoted(b"a;\"b\"\n", b';', b'"', None);
        assert!(matches!(same, Cow::Borrowed(_)) && none.is_empty());
    }

    proptest::proptest! {
        /// However the bytes are cut into chunks, the filter passes on the same bytes as when
        /// it reads them whole: what it holds back between chunks is decided alike.
        #[test]
        fn chunks_change_nothing(
            input in proptest::collection::vec(
                proptest::sample::select(vec![b'"', b'"', b';', b'\n', b'\r', b' ', b'a', b'\\']),
                0..80,
            ),
            cuts in proptest::collection::vec(1usize..9, 1..20),
        ) {
            let mut whole = Vec::new();
            Requote::new(b';', b'"', Some(b'\\')).feed(&input, true, &mut whole);
            let mut filter = Requote::new(b';', b'"', Some(b'\\'));
            let (mut chunked, mut rest) = (Vec::new(), &input[..]);
            for n in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (chunk, after) = rest.split_at((*n).min(rest.len()));
                filter.feed(chunk, false, &mut chunked);
                rest = after;
            }
            filter.feed(&[], true, &mut chunked);
            proptest::prop_assert_eq!(chunked, whole, "{:?}", String::from_utf8_lossy(&input));
        }

        /// What a CSV writer writes passes unchanged.
        #[test]
        fn written_csv_passes_unchanged(
            rows in proptest::collection::vec(
                proptest::collection::vec("[a\"\n\r,; \t]{0,6}", 3),
                1..20,
            ),
            delimiter in proptest::sample::select(vec![b',', b';', b'\t']),
        ) {
            let mut w = csv::WriterBuilder::new().delimiter(delimiter).from_writer(Vec::new());
            for row in &rows {
                w.write_record(row).unwrap();
            }
            let written = w.into_inner().unwrap();
            let (out, _) = requoted(&written, delimiter, b'"', None);
            proptest::prop_assert_eq!(&out[..], &written[..]);
        }
    }
}
