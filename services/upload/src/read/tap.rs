//! A window on the bytes the CSV reader is parsing, so a record's text as it was in the file is
//! at hand (for rejected rows, and to tell a quoted empty field from an unquoted one), and so no
//! record can grow past a bound (an unterminated quote would otherwise swallow the whole file).
//!
//! The window holds the bytes from the start of the record being parsed to the reader's read
//! position: one record plus at most one read buffer.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// A record longer than the bound.
#[derive(Debug, thiserror::Error)]
#[error("a CSV record starting at line {line} is longer than {max} bytes (an unterminated quote?)")]
pub struct RecordTooLong {
    pub line: u64,
    pub max: usize,
}

#[derive(Debug, Default)]
struct Window {
    /// Stream offset of `buf[0]`.
    base: u64,
    buf: Vec<u8>,
    /// Stream offset where the record being parsed starts, and its line.
    record_start: u64,
    record_line: u64,
    eof: bool,
}

/// The shared handle to the window.
#[derive(Debug, Clone)]
pub struct Tap {
    window: Arc<Mutex<Window>>,
    max_record: usize,
    /// Most bytes the whole (decompressed) input may have.
    max_total: u64,
}

/// The reader half: wraps the decompressed body.
pub struct TapReader<R> {
    inner: R,
    tap: Tap,
}

impl Tap {
    pub fn new<R>(inner: R, max_record: usize, max_total: u64) -> (Self, TapReader<R>) {
        let tap = Self {
            window: Arc::default(),
            max_record,
            max_total,
        };
        let reader = TapReader {
            inner,
            tap: tap.clone(),
        };
        (tap, reader)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The parser is done with everything before `offset`; the next record starts there.
    pub fn advance(&self, offset: u64, line: u64) {
        let mut w = self.lock();
        w.record_start = offset;
        w.record_line = line;
    }

    /// `f` of the bytes `start..end` of the stream, if still in the window (no copy).
    pub fn scan<T>(&self, start: u64, end: u64, f: impl FnOnce(&[u8]) -> T) -> Option<T> {
        let w = self.lock();
        if start < w.base || end > w.base + w.buf.len() as u64 || start > end {
            return None;
        }
        Some(f(&w.buf[(start - w.base) as usize..(end - w.base) as usize]))
    }

    /// Whether the reader has reached the end of the input, and the total bytes read.
    pub fn eof(&self) -> (bool, u64) {
        let w = self.lock();
        (w.eof, w.base + w.buf.len() as u64)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for TapReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = out.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, out) {
            Poll::Ready(Ok(())) => {
                let new = &out.filled()[before..];
                let mut w = this.tap.lock();
                if new.is_empty() {
                    w.eof = true;
                    return Poll::Ready(Ok(()));
                }
                // Drop what lies before the current record once it is worth the move.
                let dead = (w.record_start.saturating_sub(w.base) as usize).min(w.buf.len());
                if dead > 0 && dead >= w.buf.len() / 2 {
                    w.buf.drain(..dead);
                    w.base += dead as u64;
                }
                w.buf.extend_from_slice(new);
                if w.base + w.buf.len() as u64 > this.tap.max_total {
                    let e = crate::read::body::BodyError::Decompressed(this.tap.max_total);
                    return Poll::Ready(Err(io::Error::other(e)));
                }
                let pending = w.base + w.buf.len() as u64 - w.record_start;
                if pending > (this.tap.max_record + 64 * 1024) as u64 {
                    let e = RecordTooLong {
                        line: w.record_line,
                        max: this.tap.max_record,
                    };
                    return Poll::Ready(Err(io::Error::other(e)));
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

/// Which fields of a raw record were quoted (with `quote`), honouring doubled quotes inside
/// and quotes after `escape`.
pub fn quoted_fields(raw: &[u8], delimiter: u8, quote: u8, escape: Option<u8>) -> Vec<bool> {
    let mut quoted = Vec::new();
    let mut i = 0;
    loop {
        let q = raw.get(i) == Some(&quote);
        quoted.push(q);
        if q {
            i += 1;
            while i < raw.len() {
                if Some(raw[i]) == escape && raw[i] != quote {
                    i += 2;
                    continue;
                }
                if raw[i] == quote {
                    if raw.get(i + 1) == Some(&quote) {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
        }
        while i < raw.len() && raw[i] != delimiter && raw[i] != b'\n' && raw[i] != b'\r' {
            i += 1;
        }
        if i < raw.len() && raw[i] == delimiter {
            i += 1;
        } else {
            return quoted;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields_are_found() {
        assert_eq!(
            quoted_fields(b"1,\"\",,\"a,\"\"b\"\"\",x\r\n", b',', b'"', None),
            vec![false, true, false, true, false]
        );
        assert_eq!(
            quoted_fields(b"\"multi\nline\";z", b';', b'"', None),
            vec![true, false]
        );
        assert_eq!(quoted_fields(b"", b',', b'"', None), vec![false]);
        // An escaped quote does not end its field.
        assert_eq!(
            quoted_fields(b"1,\"say \\\"hi\\\", ok\",x\n", b',', b'"', Some(b'\\')),
            vec![false, true, false]
        );
    }

    /// One field as it would be written: quoted (any text, quotes doubled) or bare (no
    /// delimiter, quote or line break).
    fn field(delimiter: u8) -> impl proptest::strategy::Strategy<Value = (bool, Vec<u8>)> {
        use proptest::prelude::*;
        let any_text = proptest::collection::vec(
            prop_oneof![
                Just(b'"'),
                Just(b'\n'),
                Just(b'\r'),
                Just(delimiter),
                Just(b'a'),
                any::<u8>()
            ],
            0..12,
        );
        let bare = proptest::collection::vec(any::<u8>(), 0..12).prop_map(move |mut v| {
            v.retain(|b| ![b'"', b'\n', b'\r', delimiter].contains(b));
            v
        });
        prop_oneof![
            any_text.prop_map(|t| {
                let mut out = vec![b'"'];
                for b in t {
                    out.push(b);
                    if b == b'"' {
                        out.push(b'"');
                    }
                }
                out.push(b'"');
                (true, out)
            }),
            bare.prop_map(|v| (false, v)),
        ]
    }

    proptest::proptest! {
        /// The tracker reads the same fields as the csv crate, and finds the quoted ones.
        #[test]
        fn quoted_fields_agree_with_the_csv_crate(
            fields in proptest::collection::vec(field(b','), 1..8),
            semicolon in proptest::bool::ANY,
        ) {
            let delimiter = if semicolon { b';' } else { b',' };
            let fields: Vec<(bool, Vec<u8>)> = fields
                .into_iter()
                .map(|(q, f)| if q { (q, f) } else { (q, f.into_iter().filter(|b| *b != delimiter).collect()) })
                .collect();
            // A record of one empty bare field is an empty line, which CSV readers skip.
            proptest::prop_assume!(fields.len() > 1 || fields[0].0 || !fields[0].1.is_empty());
            let mut raw = Vec::new();
            for (i, (_, f)) in fields.iter().enumerate() {
                if i > 0 {
                    raw.push(delimiter);
                }
                raw.extend_from_slice(f);
            }
            raw.extend_from_slice(b"\r\n");
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .delimiter(delimiter)
                .from_reader(&raw[..]);
            let mut record = csv::ByteRecord::new();
            proptest::prop_assert!(reader.read_byte_record(&mut record).unwrap());
            let found = quoted_fields(&raw, delimiter, b'"', None);
            proptest::prop_assert_eq!(found.len(), record.len(), "{:?}", String::from_utf8_lossy(&raw));
            let expected: Vec<bool> = fields.iter().map(|(q, _)| *q).collect();
            proptest::prop_assert_eq!(found, expected);
        }
    }
}
