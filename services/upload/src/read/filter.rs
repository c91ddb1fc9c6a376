//! A byte stream rewritten as it passes, chunk by chunk: the reading side of the filters that
//! run before the CSV reader ([`trim`](crate::read::trim), [`requote`](crate::read::requote)).
//! Each holds at most a bounded number of bytes between chunks.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// One rewrite of the bytes.
pub(crate) trait ByteFilter {
    /// Rewrites `input` into `out`, holding back what depends on bytes yet to come; `end`: no
    /// input follows, nothing may stay held.
    fn feed(&mut self, input: &[u8], end: bool, out: &mut Vec<u8>);
}

/// `inner` read through `filter`.
pub(crate) struct Filtered<R, F> {
    inner: R,
    filter: F,
    read: Box<[u8]>,
    out: Vec<u8>,
    at: usize,
    ended: bool,
}

impl<R, F> Filtered<R, F> {
    pub(crate) fn new(inner: R, filter: F) -> Self {
        Self {
            inner,
            filter,
            read: vec![0; 64 * 1024].into_boxed_slice(),
            out: Vec::new(),
            at: 0,
            ended: false,
        }
    }
}

impl<R: AsyncRead + Unpin, F: ByteFilter + Unpin> AsyncRead for Filtered<R, F> {
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
            this.ended = n == 0;
            this.out.clear();
            this.at = 0;
            this.filter.feed(&this.read[..n], n == 0, &mut this.out);
        }
    }
}

/// `input` read through `filter` in chunks of `chunk` bytes.
#[cfg(test)]
pub(crate) async fn filtered(
    filter: impl ByteFilter + Unpin,
    input: &[u8],
    chunk: usize,
) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let chunks: Vec<std::io::Result<bytes::Bytes>> = input
        .chunks(chunk)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let reader = tokio_util::io::StreamReader::new(futures::stream::iter(chunks));
    let mut out = Vec::new();
    Filtered::new(reader, filter)
        .read_to_end(&mut out)
        .await
        .unwrap();
    out
}

/// Checks that `filter` (a fresh one per reading) turns each case's input into its output,
/// however the input is cut into chunks.
#[cfg(test)]
pub(crate) async fn assert_filters<F: ByteFilter + Unpin>(
    filter: impl Fn() -> F,
    cases: &[(&[u8], &[u8])],
) {
    for (input, want) in cases {
        for chunk in [1, 2, 3, 64] {
            assert_eq!(
                filtered(filter(), input, chunk).await,
                *want,
                "{:?} in chunks of {chunk}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
