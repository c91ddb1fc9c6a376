//! `trim=true` before an opening quote: `1, "Zoë" , Köln` is read as `1`, `Zoë`, `Köln`. The CSV
//! reader only knows a field is quoted when the quote is its first byte, and trims afterwards,
//! so ` "Zoë"` would keep its quotes (and ` "a,b"` would split). This filter drops the spaces
//! and tabs between a field's start and its opening quote as the bytes stream; nothing else
//! changes, so line numbers stay the file's.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

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

/// The byte stream with whitespace before opening quotes removed.
pub(crate) struct TrimBeforeQuote<R> {
    inner: R,
    delimiter: u8,
    quote: u8,
    escape: Option<u8>,
    state: State,
    held: Vec<u8>,
    read: Box<[u8]>,
    out: Vec<u8>,
    at: usize,
    ended: bool,
}

impl<R> TrimBeforeQuote<R> {
    pub(crate) fn new(inner: R, delimiter: u8, quote: u8, escape: Option<u8>) -> Self {
        Self {
            inner,
            delimiter,
            quote,
            escape,
            state: State::FieldStart,
            held: Vec::new(),
            read: vec![0; 64 * 1024].into_boxed_slice(),
            out: Vec::new(),
            at: 0,
            ended: false,
        }
    }

    /// Filters one byte into `out`.
    fn step(&mut self, b: u8) {
        let space = (b == b' ' || b == b'\t') && b != self.delimiter;
        match self.state {
            State::Quoted => {
                if b == self.quote {
                    self.state = State::QuoteSeen;
                } else if Some(b) == self.escape {
                    self.state = State::Escaped;
                }
                self.out.push(b);
                return;
            }
            State::Escaped => {
                self.state = State::Quoted;
                self.out.push(b);
                return;
            }
            State::QuoteSeen if b == self.quote => {
                self.state = State::Quoted;
                self.out.push(b);
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
                self.out.push(b);
                return;
            }
            State::FieldStart => {
                self.out.append(&mut self.held);
                self.state = State::Unquoted;
            }
            State::Unquoted => {}
        }
        if b == self.delimiter || b == b'\n' || b == b'\r' {
            self.state = State::FieldStart;
        }
        self.out.push(b);
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for TrimBeforeQuote<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.at < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.at);
                buf.put_slice(&this.out[this.at..this.at + n]);
                this.at += n;
                return Poll::Ready(Ok(()));
            }
            if this.ended {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = ReadBuf::new(&mut this.read);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk))?;
            let n = chunk.filled().len();
            this.out.clear();
            this.at = 0;
            if n == 0 {
                // Whitespace held at the very end is the file's.
                this.ended = true;
                this.out.append(&mut this.held);
                continue;
            }
            for i in 0..n {
                let b = this.read[i];
                this.step(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn filtered(input: &[u8], chunk: usize) -> Vec<u8> {
        let chunks: Vec<std::io::Result<bytes::Bytes>> = input
            .chunks(chunk)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        let reader = tokio_util::io::StreamReader::new(futures::stream::iter(chunks));
        let mut out = Vec::new();
        TrimBeforeQuote::new(reader, b',', b'"', Some(b'\\'))
            .read_to_end(&mut out)
            .await
            .unwrap();
        out
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
        for (input, want) in cases {
            for chunk in [1, 2, 3, 64] {
                assert_eq!(
                    filtered(input, chunk).await,
                    want,
                    "{:?} in chunks of {chunk}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[tokio::test]
    async fn a_long_run_of_spaces_is_not_held_whole() {
        let mut input = b"a,".to_vec();
        input.extend(std::iter::repeat_n(b' ', 10_000));
        input.extend_from_slice(b"\"x\"\n");
        assert_eq!(filtered(&input, 4096).await, input);
    }
}
