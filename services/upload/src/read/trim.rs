//! `trim=true` before an opening quote: `1, "Zoë" , Köln` is read as `1`, `Zoë`, `Köln`. The CSV
//! reader only knows a field is quoted when the quote is its first byte, and trims afterwards,
//! so ` "Zoë"` would keep its quotes (and ` "a,b"` would split). This filter drops the spaces
//! and tabs between a field's start and its opening quote as the bytes stream; nothing else
//! changes, so line numbers stay the file's.

use crate::read::filter::ByteFilter;

/// Whitespace held at a field's start at most; past it the field is taken as unquoted (memory
/// stays bounded whatever the input).
const MAX_HELD: usize = 256;

/// Where the filter is in the CSV text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a field: whitespace is held until what follows it is seen.
    FieldStart,
    /// In an unquoted field.
    Unquoted,
    /// In a quoted field.
    Quoted,
    /// In a quoted field, just after a quote: a second one is an escaped quote.
    QuoteSeen,
    /// In a quoted field, just after the escape character: the next byte is the field's.
    Escaped,
}

/// Whitespace before opening quotes removed from the bytes.
pub(crate) struct TrimBeforeQuote {
    delimiter: u8,
    quote: u8,
    escape: Option<u8>,
    state: State,
    held: Vec<u8>,
}

impl TrimBeforeQuote {
    pub(crate) fn new(delimiter: u8, quote: u8, escape: Option<u8>) -> Self {
        Self {
            delimiter,
            quote,
            escape,
            state: State::FieldStart,
            held: Vec::new(),
        }
    }

    /// Filters one byte into `out`.
    fn step(&mut self, b: u8, out: &mut Vec<u8>) {
        let space = (b == b' ' || b == b'\t') && b != self.delimiter;
        match self.state {
            State::Quoted => {
                if b == self.quote {
                    self.state = State::QuoteSeen;
                } else if Some(b) == self.escape {
                    self.state = State::Escaped;
                }
                out.push(b);
                return;
            }
            State::Escaped => {
                self.state = State::Quoted;
                out.push(b);
                return;
            }
            State::QuoteSeen if b == self.quote => {
                self.state = State::Quoted;
                out.push(b);
                return;
            }
            State::QuoteSeen => self.state = State::Unquoted,
            State::FieldStart if space && self.held.len() < MAX_HELD => {
                self.held.push(b);
                return;
            }
            State::FieldStart if b == self.quote => {
                self.held.clear();
                self.state = State::Quoted;
                out.push(b);
                return;
            }
            State::FieldStart => {
                out.append(&mut self.held);
                self.state = State::Unquoted;
            }
            State::Unquoted => {}
        }
        if b == self.delimiter || b == b'\n' || b == b'\r' {
            self.state = State::FieldStart;
        }
        out.push(b);
    }
}

impl ByteFilter for TrimBeforeQuote {
    fn feed(&mut self, input: &[u8], end: bool, out: &mut Vec<u8>) {
        for &b in input {
            self.step(b, out);
        }
        if end {
            // Whitespace held at the very end is the file's.
            out.append(&mut self.held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn filtered(input: &[u8], chunk: usize) -> Vec<u8> {
        let trim = TrimBeforeQuote::new(b',', b'"', Some(b'\\'));
        crate::read::filter::filtered(trim, input, chunk).await
    }

    #[tokio::test]
    async fn whitespace_before_an_opening_quote_goes_and_nothing_else_changes() {
        let cases: [(&[u8], &[u8]); 7] = [
            (
                b"1, \"Zo\xc3\xab\" , K\xc3\xb6ln\n",
                b"1,\"Zo\xc3\xab\" , K\xc3\xb6ln\n",
            ),
            (b"a,\t \"b,c\",d\r\n  \"e\"\n", b"a,\"b,c\",d\r\n\"e\"\n"),
            // Inside quotes, escaped quotes and a lenient quote mid-field stay as they are.
            (
                b"\" a \"\" , b\", x\"y, \"z\"\n",
                b"\" a \"\" , b\", x\"y,\"z\"\n",
            ),
            (b"a, b , c\n", b"a, b , c\n"),
            // An escaped quote does not end its field: the spaces after it are the field's.
            (b" \"a\\\", b\", \"c\"\n", b"\"a\\\", b\",\"c\"\n"),
            (b"a,  ", b"a,  "),
            (b"", b""),
        ];
        crate::read::filter::assert_filters(
            || TrimBeforeQuote::new(b',', b'"', Some(b'\\')),
            &cases,
        )
        .await;
    }

    #[tokio::test]
    async fn a_long_run_of_spaces_is_not_held_whole() {
        let mut input = b"a,".to_vec();
        input.extend(std::iter::repeat_n(b' ', 10_000));
        input.extend_from_slice(b"\"x\"\n");
        assert_eq!(filtered(&input, 4096).await, input);
    }
}
