//! The first bytes of an upload, looked at before it is parsed: held once (at most
//! [`SAMPLE_BYTES`]), then streamed ahead of the rest, so the file is read once. From them:
//! the encoding (`encoding=auto`), the preamble lines to skip (`skip_lines=`) and the CSV
//! dialect (`delimiter=auto`, the default).

use std::io;
use std::pin::Pin;

use std::task::Poll;

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// The most bytes held to decide on the encoding and the dialect.
pub const SAMPLE_BYTES: usize = 64 * 1024;

/// Delimiters `delimiter=auto` chooses from, in the order ties are broken.
const CANDIDATES: [u8; 4] = [b',', b';', b'\t', b'|'];

/// Records of the sample looked at per candidate.
const RECORDS: usize = 200;

pub type Input = Pin<Box<dyn AsyncRead + Send>>;

/// The first bytes of an input, and the input to read instead of it.
pub struct Peeked {
    pub sample: Vec<u8>,
    /// The sample is the whole input.
    pub ended: bool,
    /// Yields the sample again, then the rest.
    pub input: Input,
}

/// Reads up to `n` bytes of `input` — fewer when the input ends, or (unless `patient`) when
/// it has no more bytes ready and at least one line has come: a slow client's first rows are
/// not held back until `n` bytes have come. A read error is not returned here: the returned
/// input gives it after the sample, where it would have come without the look ahead (the
/// upload answers it as usual).
pub async fn peek(mut input: Input, n: usize, patient: bool) -> Peeked {
    let mut sample = Vec::with_capacity(n.min(SAMPLE_BYTES));
    let mut err = None;
    let mut ended = false;
    let mut chunk = vec![0u8; 16 * 1024];
    std::future::poll_fn(|cx| loop {
        let want = (n - sample.len()).min(chunk.len());
        if want == 0 {
            return Poll::Ready(());
        }
        let mut buf = ReadBuf::new(&mut chunk[..want]);
        match input.as_mut().poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                ended = true;
                return Poll::Ready(());
            }
            Poll::Ready(Ok(())) => sample.extend_from_slice(buf.filled()),
            Poll::Ready(Err(e)) => {
                err = Some(e);
                return Poll::Ready(());
            }
            Poll::Pending if !patient && sample.iter().any(|b| *b == b'\n' || *b == b'\r') => {
                return Poll::Ready(())
            }
            Poll::Pending => return Poll::Pending,
        }
    })
    .await;
    let head = io::Cursor::new(sample.clone());
    let rest: Input = match err {
        None => input,
        Some(e) => Box::pin(Failing(Some(e))),
    };
    Peeked {
        sample,
        ended,
        input: Box::pin(head.chain(rest)),
    }
}

/// `input` without its first `n` bytes (they were read already: they are in the sample).
pub fn skip(input: Input, n: usize) -> Input {
    if n == 0 {
        return input;
    }
    Box::pin(Skip {
        inner: input,
        left: n,
    })
}

struct Skip {
    inner: Input,
    left: usize,
}

impl AsyncRead for Skip {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let mut scratch = [0u8; 4096];
        while self.left > 0 {
            let want = self.left.min(scratch.len());
            let mut b = tokio::io::ReadBuf::new(&mut scratch[..want]);
            std::task::ready!(self.inner.as_mut().poll_read(cx, &mut b))?;
            if b.filled().is_empty() {
                return std::task::Poll::Ready(Ok(()));
            }
            self.left -= b.filled().len();
        }
        self.inner.as_mut().poll_read(cx, buf)
    }
}

/// An input whose next read fails with the error it holds.
struct Failing(Option<io::Error>);

impl AsyncRead for Failing {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(match self.0.take() {
            Some(e) => Err(e),
            None => Ok(()),
        })
    }
}

/// Where the first `n` lines of `sample` end (`\n`, `\r\n` and a lone `\r` each end a line),
/// or `None` when the sample holds fewer.
pub fn after_lines(sample: &[u8], n: u64) -> Option<usize> {
    let mut left = n;
    let mut i = 0;
    while left > 0 {
        let j = sample[i..]
            .iter()
            .position(|b| *b == b'\n' || *b == b'\r')?
            + i;
        i = if sample[j] == b'\r' && sample.get(j + 1) == Some(&b'\n') {
            j + 2
        } else {
            j + 1
        };
        left -= 1;
    }
    Some(i)
}

/// How the first line of `sample` ends: `lf`, `crlf`, `cr`, or `none`.
pub fn line_break(sample: &[u8]) -> &'static str {
    match sample.iter().position(|b| *b == b'\n' || *b == b'\r') {
        None => "none",
        Some(i) if sample[i] == b'\n' => "lf",
        Some(i) if sample.get(i + 1) == Some(&b'\n') => "crlf",
        Some(_) => "cr",
    }
}

/// The dialect `delimiter=auto` found, and how sure it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub delimiter: u8,
    pub quote: u8,
    /// `None` when the sample did not decide (then `,`), with why.
    pub doubt: Option<String>,
}

/// Quote characters tried, `"` first: `'` is chosen only when it splits strictly better.
const QUOTES: [u8; 2] = [b'"', b'\''];

/// How well one (delimiter, quote) splits the sample.
#[derive(Debug, Clone, Copy)]
struct Score {
    delimiter: u8,
    quote: u8,
    /// Records with the most common field count, of all records read.
    agree: usize,
    records: usize,
    /// The most common field count.
    fields: usize,
}

impl Score {
    fn of(sample: &[u8], delimiter: u8, quote: u8, complete: bool) -> Option<Self> {
        let counts = field_counts(sample, delimiter, quote, complete);
        let (fields, agree) = most_common(&counts)?;
        // The first record (the header, usually) must agree: a one-column file whose values
        // hold a delimiter is not split by it.
        (fields > 1 && counts.first() == Some(&fields)).then_some(Self {
            delimiter,
            quote,
            agree,
            records: counts.len(),
            fields,
        })
    }

    /// Better: more records agreeing (as a share), then more fields.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let share = (self.agree * other.records).cmp(&(other.agree * self.records));
        share.then(self.fields.cmp(&other.fields))
    }
}

/// The delimiter (and quote) under which the sample's records most consistently have the same
/// number (more than one, and the first record's) of fields: per candidate, the share of
/// records with the most common field count, then that count. The last record is left out
/// when the sample was cut (`complete` false). Ties between delimiters, and samples no
/// candidate splits, fall back to `,` and `"`.
pub fn detect(sample: &[u8], complete: bool) -> Detected {
    let mut scores: Vec<Score> = CANDIDATES
        .iter()
        .filter_map(|d| {
            // Per delimiter, the quote that splits best; `"` on a tie.
            QUOTES
                .iter()
                .filter_map(|q| Score::of(sample, *d, *q, complete))
                .reduce(|best, s| if s.cmp(&best).is_gt() { s } else { best })
        })
        .collect();
    scores.sort_by(|a, b| b.cmp(a));
    let fallback = |doubt: String| Detected {
        delimiter: b',',
        quote: b'"',
        doubt: Some(doubt),
    };
    match scores.as_slice() {
        [] => fallback(
            "no delimiter (, ; tab |) splits the first lines into columns; read as ','".into(),
        ),
        [best, second, ..] if best.cmp(second).is_eq() => fallback(format!(
            "{} and {} split the first lines equally well; read as ','",
            show(best.delimiter),
            show(second.delimiter)
        )),
        [best, ..] => Detected {
            delimiter: best.delimiter,
            quote: best.quote,
            doubt: None,
        },
    }
}

/// A delimiter as the import record shows it.
pub fn show(d: u8) -> String {
    match d {
        b'\t' => "tab".to_owned(),
        d => (d as char).to_string(),
    }
}

/// Field counts of the first [`RECORDS`] records of `sample` read with delimiter `d`.
fn field_counts(sample: &[u8], d: u8, quote: u8, complete: bool) -> Vec<usize> {
    let mut r = csv::ReaderBuilder::new()
        .delimiter(d)
        .quote(quote)
        .has_headers(false)
        .flexible(true)
        .from_reader(sample);
    let mut counts = Vec::new();
    let mut rec = csv::ByteRecord::new();
    let mut ended = 0;
    while counts.len() < RECORDS {
        match r.read_byte_record(&mut rec) {
            Ok(true) => {
                counts.push(rec.len());
                ended = r.position().byte() as usize;
            }
            _ => break,
        }
    }
    // A record cut by the end of the sample says nothing.
    if !complete && ended >= sample.len() && counts.len() > 1 {
        counts.pop();
    }
    counts
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

    fn d(s: &str) -> Detected {
        detect(s.as_bytes(), true)
    }

    #[test]
    fn the_delimiter_that_splits_consistently_wins() {
        assert_eq!(d("a;b;c\n1;\"x;y\";3\n4;5,5;6\n").delimiter, b';');
        assert_eq!(d("a\tb\n1\t2,5\n").delimiter, b'\t');
        assert_eq!(d("a|b|c\n1|2|3\n").delimiter, b'|');
        assert_eq!(d("a,b\n1,\"2;3\"\n").delimiter, b',');
        // European decimals: one ; per line beats a varying number of commas.
        assert_eq!(d("name;amount\nx;1,5\ny;2\nz;3,25\n").delimiter, b';');
    }

    #[test]
    fn single_quotes_are_found_only_when_they_split_better() {
        let q = d("id,name\n1,'Smith, John'\n2,'Lee, Ann'\n");
        assert_eq!((q.delimiter, q.quote), (b',', b'\''));
        // Apostrophes in text are no quotes.
        let a = d("id,name\n1,'90s hits\n2,it's\n");
        assert_eq!((a.delimiter, a.quote), (b',', b'"'));
        assert_eq!(d("a;b\n1;\"x;y\"\n").quote, b'"');
    }

    #[test]
    fn undecided_samples_fall_back_to_comma_and_say_why() {
        let single = d("name\nA;B\nC;D\n");
        assert_eq!(single.delimiter, b',');
        let one = d("name\nAnn\nBob\n");
        assert_eq!(one.delimiter, b',');
        assert!(one.doubt.unwrap().contains("no delimiter"));
        let tie = d("a;b|c\n1;2|3\n");
        assert_eq!(tie.delimiter, b',');
        assert!(tie.doubt.unwrap().contains("equally well"));
    }

    #[test]
    fn a_record_cut_by_the_sample_end_is_left_out() {
        assert_eq!(detect(b"a;b;c\n1;2;3\n4;5", false).delimiter, b';');
        assert_eq!(detect(b"a;b;c\n1;2;3\n4;5", false).doubt, None);
    }

    #[test]
    fn lines_are_skipped_whatever_their_break() {
        assert_eq!(after_lines(b"x\r\ny\rz\na,b\n", 3), Some(7));
        assert_eq!(after_lines(b"x\na", 1), Some(2));
        assert_eq!(after_lines(b"x\na", 2), None);
        assert_eq!(after_lines(b"abc", 0), Some(0));
        let breaks = [b"a\nb".as_slice(), b"a\r\nb", b"a\rb", b"ab"].map(line_break);
        assert_eq!(breaks, ["lf", "crlf", "cr", "none"]);
    }

    #[tokio::test]
    async fn a_peeked_input_reads_the_same_bytes() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut p = peek(Box::pin(io::Cursor::new(data.clone())), 1000, false).await;
        assert_eq!((&p.sample[..], p.ended), (&data[..1000], false));
        let mut all = Vec::new();
        p.input.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, data);
    }
}
