//! The first bytes of an upload, looked at before it is parsed: held once (at most
//! [`SAMPLE_BYTES`]), then streamed ahead of the rest, so the file is read once. From them
//! come the encoding (`encoding=auto`), and [`crate::read::detect`] finds the CSV dialect and the
//! preamble in them; lines are skipped here.

use std::io;
use std::pin::Pin;

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// The most bytes held to decide on the encoding and the dialect.
pub const SAMPLE_BYTES: usize = 64 * 1024;

/// How long a look ahead waits for its bytes before it decides on those that have come (a
/// line at least): long enough that a file sent as fast as it can be read (the CLI, curl, a
/// browser) is looked at as far as it would be sent whole, so it reads the same whoever sends
/// it; short enough that a client that pauses after its first rows has them sent.
pub const SAMPLE_WAIT: Duration = Duration::from_secs(1);

pub type Input = Pin<Box<dyn AsyncRead + Send>>;

/// The first bytes of an input, and the input to read instead of it.
pub struct Peeked {
    pub sample: Vec<u8>,
    /// The sample is the whole input.
    pub ended: bool,
    /// Yields the sample again, then the rest.
    pub input: Input,
}

/// Reads up to `n` bytes of `input` — fewer when the input ends, or when it has no more bytes
/// ready after `until` (`None`: never; an upload's looks share one, [`SAMPLE_WAIT`] after the
/// first starts) and at least one line has come: a slow client's first rows are not held back
/// until `n` bytes have come. A read error is not returned here: the returned
/// input gives it after the sample, where it would have come without the look ahead (the
/// upload answers it as usual).
pub async fn peek(mut input: Input, n: usize, until: Option<tokio::time::Instant>) -> Peeked {
    let mut sample = Vec::with_capacity(n.min(SAMPLE_BYTES));
    let mut err = None;
    let mut ended = false;
    let mut chunk = vec![0u8; 16 * 1024];
    let mut wait = until.map(|t| Box::pin(tokio::time::sleep_until(t)));
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
            Poll::Pending => {
                // Polled, the wait wakes this look when it is over.
                let waited = wait
                    .as_mut()
                    .is_some_and(|w| w.as_mut().poll(cx).is_ready());
                let line = sample.iter().any(|b| *b == b'\n' || *b == b'\r');
                return if waited && line {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                };
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_peeked_input_reads_the_same_bytes() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut p = peek(Box::pin(io::Cursor::new(data.clone())), 1000, None).await;
        assert_eq!((&p.sample[..], p.ended), (&data[..1000], false));
        let mut all = Vec::new();
        p.input.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, data);
    }

    /// Bytes that come within [`SAMPLE_WAIT`] are looked at, however they are paced; a client
    /// that pauses longer after a line has that line looked at alone.
    #[tokio::test(start_paused = true)]
    async fn a_look_ahead_waits_a_while_for_more_then_decides_on_what_came() {
        use tokio::io::AsyncWriteExt;
        let (mut client, server) = tokio::io::duplex(1024);
        let sending = tokio::spawn(async move {
            client.write_all(b"d\n01/02/2024\n").await.unwrap();
            tokio::time::sleep(SAMPLE_WAIT / 2).await;
            client.write_all(b"31/12/2024\n").await.unwrap();
            tokio::time::sleep(SAMPLE_WAIT * 10).await;
            client.write_all(b"12/01/2024\n").await.unwrap();
        });
        let started = tokio::time::Instant::now();
        let p = peek(Box::pin(server), 1000, Some(started + SAMPLE_WAIT)).await;
        assert_eq!(&p.sample[..], b"d\n01/02/2024\n31/12/2024\n");
        assert!(!p.ended);
        assert_eq!(started.elapsed(), SAMPLE_WAIT);
        // A second look of the same upload (after the encoding's) shares the deadline: it
        // does not wait again.
        let again = peek(p.input, 1000, Some(started + SAMPLE_WAIT)).await;
        assert_eq!(again.sample, p.sample);
        assert_eq!(started.elapsed(), SAMPLE_WAIT);
        sending.abort();
    }
}
