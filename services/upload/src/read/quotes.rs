//! Which quote and escape a sample's fields use: the readings detection tries
//! ([`QUOTES`], [`escapes`]) and what tells a quote that is text from one that quotes.

use csvbus_shared::read_as::Delimiter;

use crate::read::parse::Escape;
use crate::read::requote::{after_quote, After};

/// Quotes tried, `"` first: `'` is chosen only when the sample holds one and it splits
/// strictly more consistently (more fields is no reason: a quote that splits quoted fields
/// apart makes more of them); no quote (quotes are text) when it splits strictly more
/// consistently, or as consistently where a quote runs a field over a line break into more
/// text (see [`swallows_lines`]).
pub(crate) const QUOTES: [Option<u8>; 3] = [Some(b'"'), Some(b'\''), None];

/// The escapes tried with delimiter `d` and quote `q`: the one given; else none, and `\`
/// too when the sample has a backslash before a quote that does not end the field there
/// (`"say \"hi\""`: read with doubled quotes, that quote would end the field early).
pub(crate) fn escapes(
    sample: &[u8],
    d: Delimiter,
    q: Option<u8>,
    given: Option<Escape>,
) -> impl Iterator<Item = Option<u8>> {
    let backslash = given.is_none() && q.is_some_and(|q| backslash_escapes(sample, d, q));
    let first = given.and_then(|e| e.0);
    std::iter::once(first).chain(backslash.then_some(Some(b'\\')))
}

/// Whether `sample` has a backslash and quote `q` followed by more of a field.
pub fn backslash_escapes(sample: &[u8], d: Delimiter, q: u8) -> bool {
    sample
        .windows(3)
        .any(|w| w[0] == b'\\' && w[1] == q && !matches!(w[2], b'\r' | b'\n') && w[2] != d.byte())
}

/// Whether a field of `sample` starts with `q` (on the first line, after a delimiter or a line
/// break).
pub(crate) fn opens_fields(sample: &[u8], d: u8, q: u8) -> bool {
    sample.first() == Some(&q)
        || sample
            .windows(2)
            .any(|w| w[1] == q && (w[0] == d || matches!(w[0], b'\n' | b'\r')))
}

/// Whether reading `sample` with quote `q` (and `escape`) runs a quoted field over a line
/// break and holds a quote that is text in it ([`after_quote`]): `0<tab>"` then `0<tab>"!"` in
/// a dump of titles, where a quote is a title's first character. Read so, lines vanish into a
/// value; read with quotes as text, each line is its row. A quoted field still open where the
/// sample ends is not this: a row left unterminated (rejected as such), or a sample cut short.
pub(crate) fn swallows_lines(sample: &[u8], d: u8, (q, escape): (u8, Option<u8>)) -> bool {
    let (mut i, mut field_start) = (0, true);
    while i < sample.len() {
        if !(field_start && sample[i] == q) {
            field_start = matches!(sample[i], b'\n' | b'\r') || sample[i] == d;
            i += 1;
            continue;
        }
        let (mut j, mut line_break, mut text) = (i + 1, false, false);
        loop {
            match sample.get(j) {
                None => return false,
                Some(&c) if Some(c) == escape && c != q => j += 2,
                Some(&c) if c == q => {
                    match after_quote(&sample[j + 1..], (d, q, escape.filter(|e| *e != q)), true) {
                        After::Pair => j += 2,
                        After::Ends => break,
                        After::Text(closing) => {
                            text = true;
                            j += closing;
                        }
                        After::Unknown => unreachable!("the whole sample is at hand"),
                    }
                }
                Some(&c) => {
                    line_break |= matches!(c, b'\n' | b'\r');
                    j += 1;
                }
            }
        }
        if line_break && text {
            return true;
        }
        (i, field_start) = (j + 1, false);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::detect::{detect, Ask, Detected};

    fn d(s: &str) -> Detected {
        detect(s.as_bytes(), true, Ask::default())
    }

    #[test]
    fn single_quotes_are_found_only_when_they_split_better() {
        let q = d("id,name\n1,'Smith, John'\n2,'Lee, Ann'\n");
        assert_eq!((q.delimiter, q.quote), (Delimiter::COMMA, Some(b'\'')));
        // Apostrophes in text are no quotes.
        let a = d("id,name\n1,'90s hits\n2,it's\n");
        assert_eq!((a.delimiter, a.quote), (Delimiter::COMMA, Some(b'"')));
        assert_eq!(d("a;b\n1;\"x;y\"\n").quote, Some(b'"'));
    }

    #[test]
    fn a_quoted_delimiter_stays_in_its_field_whatever_else_splits_as_well() {
        // One line: `'` would make four fields of it, all as consistent as `"`'s three.
        let one = d("A,\"B,B\",C\n");
        assert_eq!((one.delimiter, one.quote), (Delimiter::COMMA, Some(b'"')));
        // Every row quotes one comma: both quotes split every record alike.
        let names = d("\"Last, First\",age\n\"Doe, Jane\",41\n\"Roe, Rick\",39\n");
        assert_eq!(
            (names.delimiter, names.quote),
            (Delimiter::COMMA, Some(b'"'))
        );
        // No `'` in the sample: never the quote, even when a backslash-escaped quote makes `"`
        // split one row unevenly.
        let escaped = d("id,text\n10,\"He said \\\"hi\\\", ok\"\n11,plain\n12,\"unterminated\n");
        assert_eq!(
            (escaped.delimiter, escaped.quote),
            (Delimiter::COMMA, Some(b'"'))
        );
    }

    #[test]
    fn quotes_that_run_fields_over_lines_into_more_text_are_text() {
        // Titles that start with `"`: read as a quote, `"` alone runs into the next line.
        let titles = "ns\ttitle\n0\t!\n0\t\"\n0\t\"!\"\n0\t\"\"\n0\t(It)\n";
        assert_eq!(d(titles).quote, None);
        assert_eq!(d(&titles.replace('\t', ",")).quote, None);
        // A quoted line break that ends its field is quoting.
        assert_eq!(d("id,note\n1,\"two\nlines\"\n2,x\n").quote, Some(b'"'));
        assert_eq!(d("\"a\"\t\"b\"\n\"1\"\t\"x\"\n").quote, Some(b'"'));
        // Open at the end of the body: a row left unterminated, rejected as one.
        assert_eq!(d("id,note\n1,x\n2,\"open\n").quote, Some(b'"'));
        let cut = detect(b"id,note\n1,x\n2,\"open\n3,y", false, Ask::default());
        assert_eq!(cut.quote, Some(b'"'));
        // One column of quoted values that hold the delimiter: no quote splits it, and it
        // stays one column.
        let one = d("\"100,000\"\n\"140,000\"\n\"9,0,0\"\n");
        assert_eq!((one.delimiter, one.quote), (Delimiter::COMMA, Some(b'"')));
        assert_eq!(d("\"a;b;c\"\n\"1;2;3\"\n\"4;5;6\"\n").quote, Some(b'"'));
    }

    #[test]
    fn a_backslash_before_a_quote_inside_a_field_is_an_escape() {
        // As MySQL writes it: with doubled quotes only, `\"` would end the field early.
        let mysql = d("id,title,price\n1,\"Widget \\\"1\\\", large\",0.99\n2,\"Widget 2\",2.49\n");
        assert_eq!((mysql.quote, mysql.escape), (Some(b'"'), Some(b'\\')));
        // Even where the fields split alike either way.
        let alike = d("id,title\n1,\"say \\\"hi\\\"\"\n2,\"x\"\n");
        assert_eq!(alike.escape, Some(b'\\'));
        // A backslash that ends a field (a Windows folder) escapes nothing.
        let path = d("id,dir\n1,\"C:\\temp\\\"\n2,\"D:\\\",x\n");
        assert_eq!(path.escape, None);
        assert_eq!(d("a,b\n1,\"x\"\"y\"\n").escape, None);
        // `'` quoting with `\'` escapes (PHP, MySQL) where no `"` is in the sample: `'` is the
        // quote, though `"` (quoting nothing) splits as consistently.
        let single = d("123|T|t1\n345|T|'text\\'2\\'text'\n'567'|T|t3\n");
        assert_eq!((single.quote, single.escape), (Some(b'\''), Some(b'\\')));
        // With a `"` in the sample, `"` stays the quote on a tie.
        let both = d("id|t\n1|\"x\"\n2|'it\\'s'\n");
        assert_eq!(both.quote, Some(b'"'));
        // An apostrophe after a backslash in unquoted text is no reason for `'`.
        let text = d("id,dir\n1,C:\\'temp\n2,x\n");
        assert_eq!(text.quote, Some(b'"'));
        // escape=none is kept.
        let none = Ask {
            escape: Some(Escape(None)),
            ..Ask::default()
        };
        let told = detect(b"id,t\n1,\"say \\\"hi\\\"\"\n", true, none);
        assert_eq!(told.escape, None);
    }

    proptest::proptest! {
        /// What a CSV writer writes, quoting what needs it (quotes, line breaks and delimiters
        /// in any field), never reads as a quote running into more text.
        #[test]
        fn written_csv_never_swallows_lines(
            rows in proptest::collection::vec(
                proptest::collection::vec("[a\"\n\r,;\t| ]{0,6}", 3),
                1..20,
            ),
            delimiter in proptest::sample::select(vec![b',', b';', b'\t', b'|']),
        ) {
            let mut w = csv::WriterBuilder::new().delimiter(delimiter).from_writer(Vec::new());
            for row in &rows {
                w.write_record(row).unwrap();
            }
            let written = w.into_inner().unwrap();
            proptest::prop_assert!(!swallows_lines(&written, delimiter, (b'"', None)));
        }
    }
}
