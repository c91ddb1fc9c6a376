//! The request body as a byte stream for the CSV reader: counted, capped, cut off when idle, and
//! decompressed (gzip, zstd) on the fly. Nothing here buffers more than one chunk: when the reader
//! stops asking, the body is not polled and the client's TCP window closes.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
use axum::body::Body;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::io::AsyncRead;
use tokio::time::{Instant, Sleep};
use tokio_util::io::StreamReader;

/// Why reading the body stopped, carried inside `io::Error` through the decoder and CSV reader.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body is larger than the limit of {0} bytes")]
    TooLarge(u64),
    #[error("no data from the client for {0:?}")]
    Idle(Duration),
    #[error("the client sent less than {rate} bytes/s over {window:?}")]
    TooSlow { rate: u64, window: Duration },
    #[error("the body decompresses to more than {0} bytes")]
    Decompressed(u64),
    #[error("the body decompresses to more than {0} times its compressed size")]
    Ratio(u64),
    #[error("reading the body failed: {0}")]
    Client(String),
}

impl BodyError {
    /// The `BodyError` inside an I/O error, if that is what it is.
    pub fn find(e: &io::Error) -> Option<&BodyError> {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<BodyError>())
    }
    fn into_io(self) -> io::Error {
        io::Error::other(self)
    }
}

/// Content encodings a body may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

impl Encoding {
    /// From a `Content-Encoding` header value; `None` when unsupported.
    pub fn parse(v: Option<&str>) -> Option<Self> {
        match v.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("identity") => Some(Self::Identity),
            Some("gzip") | Some("x-gzip") => Some(Self::Gzip),
            Some("zstd") => Some(Self::Zstd),
            _ => None,
        }
    }
}

/// What a body may cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes as sent (compressed).
    pub max_bytes: u64,
    /// Silence while the service asks for data.
    pub idle: Duration,
    /// Least bytes per second while the service asks for data, measured over `idle`.
    pub min_rate: u64,
    /// Largest zstd window (log2): a frame may otherwise ask for up to 2 GiB of memory.
    pub zstd_window_log_max: u32,
    /// Most decompressed bytes per compressed byte (past [`RATIO_SLACK`]).
    pub max_ratio: u64,
}

/// Decompressed bytes allowed whatever the ratio: a small body of a repetitive file is fine.
pub const RATIO_SLACK: u64 = 16 << 20;

impl Limits {
    /// The body limits of one upload under `c`.
    pub fn of(c: &crate::config::UploadConfig) -> Self {
        Self {
            max_bytes: c.max_body_bytes,
            idle: c.body_idle_timeout,
            min_rate: c.body_min_bytes_per_sec,
            zstd_window_log_max: c.zstd_window_log_max,
            max_ratio: c.max_decompression_ratio,
        }
    }
}

/// The body as an `AsyncRead` of CSV bytes. `bytes_read` counts bytes as sent (before
/// decompression).
pub fn reader(
    body: Body,
    encoding: Encoding,
    limits: &Limits,
    bytes_read: Arc<AtomicU64>,
) -> Pin<Box<dyn AsyncRead + Send>> {
    let max_bytes = limits.max_bytes;
    let compressed = bytes_read.clone();
    let counted = body
        .into_data_stream()
        .map_err(|e| BodyError::Client(e.to_string()).into_io())
        .and_then(move |chunk: Bytes| {
            let total =
                bytes_read.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
            let r = if total > max_bytes {
                Err(BodyError::TooLarge(max_bytes).into_io())
            } else {
                Ok(chunk)
            };
            futures::future::ready(r)
        });
    let stream = Pace::new(counted.boxed(), limits.idle, limits.min_rate);
    let raw = StreamReader::new(stream);
    let ratio = |inner| Ratio {
        inner,
        compressed,
        out: 0,
        max_ratio: limits.max_ratio,
    };
    match encoding {
        Encoding::Identity => Box::pin(raw),
        Encoding::Gzip => {
            let mut d = GzipDecoder::new(raw);
            d.multiple_members(true);
            Box::pin(ratio(Box::pin(d)))
        }
        Encoding::Zstd => {
            let window =
                async_compression::zstd::DParameter::window_log_max(limits.zstd_window_log_max);
            Box::pin(ratio(Box::pin(ZstdDecoder::with_params(raw, &[window]))))
        }
    }
}

/// Ends a decompressed stream with [`BodyError::Ratio`] once it has given more than
/// `max_ratio` bytes per compressed byte read (plus [`RATIO_SLACK`]): a small body cannot
/// become a file hundreds of times its size (a zip bomb's rows would all be produced).
struct Ratio {
    inner: Pin<Box<dyn AsyncRead + Send>>,
    compressed: Arc<AtomicU64>,
    out: u64,
    max_ratio: u64,
}

impl AsyncRead for Ratio {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = self.inner.as_mut().poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            self.out += (buf.filled().len() - before) as u64;
            let compressed = self.compressed.load(Ordering::Relaxed);
            let allowed = compressed
                .saturating_mul(self.max_ratio)
                .saturating_add(RATIO_SLACK);
            if self.out > allowed {
                return Poll::Ready(Err(BodyError::Ratio(self.max_ratio).into_io()));
            }
        }
        r
    }
}

/// Ends a stream with [`BodyError::Idle`] when it has been asked for data and delivered none for
/// `idle`, and with [`BodyError::TooSlow`] when, over `idle` of time spent asking, it delivered
/// less than `min_rate` bytes per second (one byte every few seconds would otherwise hold an
/// upload slot forever). Time spent not asking (backpressure) does not count.
struct Pace<S> {
    inner: S,
    idle: Duration,
    min_rate: u64,
    sleep: Pin<Box<Sleep>>,
    /// When the current wait for data began, if the stream is waiting.
    waiting_since: Option<Instant>,
    /// Time spent waiting and bytes delivered in the current measuring window.
    waited: Duration,
    delivered: u64,
}

impl<S> Pace<S> {
    fn new(inner: S, idle: Duration, min_rate: u64) -> Self {
        Self {
            inner,
            idle,
            min_rate,
            sleep: Box::pin(tokio::time::sleep(idle)),
            waiting_since: None,
            waited: Duration::ZERO,
            delivered: 0,
        }
    }

    /// Books a delivered chunk; an error when the window is over and the rate too low.
    fn delivered(&mut self, n: usize) -> Result<(), BodyError> {
        if let Some(since) = self.waiting_since.take() {
            self.waited += since.elapsed();
        }
        self.delivered += n as u64;
        if self.waited < self.idle {
            return Ok(());
        }
        let needed = (self.min_rate as f64 * self.waited.as_secs_f64()) as u64;
        if self.delivered < needed {
            return Err(BodyError::TooSlow {
                rate: self.min_rate,
                window: self.waited,
            });
        }
        self.waited = Duration::ZERO;
        self.delivered = 0;
        Ok(())
    }
}

impl<S: Stream<Item = io::Result<Bytes>> + Unpin> Stream for Pace<S> {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(item) = self.inner.poll_next_unpin(cx) {
            if let Some(Ok(chunk)) = &item {
                if let Err(e) = self.delivered(chunk.len()) {
                    return Poll::Ready(Some(Err(e.into_io())));
                }
            }
            self.waiting_since = None;
            return Poll::Ready(item);
        }
        if self.waiting_since.is_none() {
            let now = Instant::now();
            self.waiting_since = Some(now);
            let deadline = now + self.idle;
            self.sleep.as_mut().reset(deadline);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::Idle(self.idle).into_io()))),
            Poll::Pending => Poll::Pending,
        }
    }
}

use std::future::Future as _;

/// Reads a body to its end and drops it (for an answer that needs none of it), under the same
/// limits as any body: a client that trickles a body that is only dropped is cut off at the
/// minimum rate, as one whose rows are read.
pub async fn discard(body: Body, encoding: Encoding, limits: &Limits) {
    use tokio::io::AsyncReadExt;
    let mut input = reader(body, encoding, limits, Arc::default());
    let mut buf = vec![0; 64 << 10];
    while let Ok(n) = input.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn limits(max_bytes: u64, idle_ms: u64) -> Limits {
        Limits {
            max_bytes,
            idle: Duration::from_millis(idle_ms),
            min_rate: 100,
            zstd_window_log_max: 23,
            max_ratio: 100,
        }
    }

    async fn inflate(sent: u64, out: u64) -> io::Result<u64> {
        let mut r = Ratio {
            inner: Box::pin(tokio::io::repeat(b'a').take(out)),
            compressed: Arc::new(AtomicU64::new(sent)),
            out: 0,
            max_ratio: 100,
        };
        tokio::io::copy(&mut r, &mut tokio::io::sink()).await
    }

    #[tokio::test]
    async fn a_body_may_not_decompress_past_the_ratio() {
        // 100 bytes per byte sent, past the first 16 MiB.
        assert!(inflate(1, RATIO_SLACK).await.is_ok());
        assert!(inflate(100_000, RATIO_SLACK + 10_000_000).await.is_ok());
        let e = inflate(100_000, RATIO_SLACK + 10_000_000 + 64 * 1024)
            .await
            .unwrap_err();
        assert!(
            matches!(BodyError::find(&e), Some(BodyError::Ratio(100))),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_client_below_the_minimum_rate_is_cut_off() {
        // One byte every 20 ms (50 B/s) against a minimum of 100 B/s over 200 ms windows.
        let trickle = futures::stream::unfold(0u32, |i| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            (i < 1000).then(|| (Ok::<_, io::Error>(Bytes::from_static(b"x")), i + 1))
        });
        let body = Body::from_stream(trickle);
        let mut r = reader(
            body,
            Encoding::Identity,
            &limits(1 << 20, 200),
            Arc::default(),
        );
        let err = r.read_to_end(&mut Vec::new()).await.unwrap_err();
        assert!(
            matches!(BodyError::find(&err), Some(BodyError::TooSlow { .. })),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_limit_counts_bytes_as_sent() {
        let body = Body::from("a,b\n1,2\n3,4\n");
        let n = Arc::new(AtomicU64::new(0));
        let mut r = reader(body, Encoding::Identity, &limits(5, 5_000), n.clone());
        let err = r.read_to_end(&mut Vec::new()).await.unwrap_err();
        assert!(
            matches!(BodyError::find(&err), Some(BodyError::TooLarge(5))),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_silent_client_times_out() {
        let (tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, io::Error>>(1);
        let body = Body::from_stream(rx);
        let mut r = reader(
            body,
            Encoding::Identity,
            &limits(1 << 20, 50),
            Arc::default(),
        );
        let err = r.read_to_end(&mut Vec::new()).await.unwrap_err();
        assert!(
            matches!(BodyError::find(&err), Some(BodyError::Idle(_))),
            "{err}"
        );
        drop(tx);
    }

    #[test]
    fn encodings() {
        assert_eq!(Encoding::parse(None), Some(Encoding::Identity));
        assert_eq!(Encoding::parse(Some("GZIP")), Some(Encoding::Gzip));
        assert_eq!(Encoding::parse(Some("zstd")), Some(Encoding::Zstd));
        assert_eq!(Encoding::parse(Some("br")), None);
    }
}
