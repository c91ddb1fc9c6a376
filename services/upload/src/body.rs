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

/// The body as an `AsyncRead` of CSV bytes. `bytes_read` counts bytes as sent (before
/// decompression).
pub fn reader(
    body: Body,
    encoding: Encoding,
    max_bytes: u64,
    idle: Duration,
    bytes_read: Arc<AtomicU64>,
) -> Pin<Box<dyn AsyncRead + Send>> {
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
    let stream = IdleTimeout::new(counted.boxed(), idle);
    let raw = StreamReader::new(stream);
    match encoding {
        Encoding::Identity => Box::pin(raw),
        Encoding::Gzip => {
            let mut d = GzipDecoder::new(raw);
            d.multiple_members(true);
            Box::pin(d)
        }
        Encoding::Zstd => Box::pin(ZstdDecoder::new(raw)),
    }
}

/// Ends a stream with [`BodyError::Idle`] when it has been asked for data and delivered none for
/// `idle`. Time spent not asking (backpressure) does not count.
struct IdleTimeout<S> {
    inner: S,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
    armed: bool,
}

impl<S> IdleTimeout<S> {
    fn new(inner: S, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            armed: false,
        }
    }
}

impl<S: Stream<Item = io::Result<Bytes>> + Unpin> Stream for IdleTimeout<S> {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(item) = self.inner.poll_next_unpin(cx) {
            self.armed = false;
            return Poll::Ready(item);
        }
        if !self.armed {
            let deadline = Instant::now() + self.idle;
            self.sleep.as_mut().reset(deadline);
            self.armed = true;
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::Idle(self.idle).into_io()))),
            Poll::Pending => Poll::Pending,
        }
    }
}

use std::future::Future as _;

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn the_limit_counts_bytes_as_sent() {
        let body = Body::from("a,b\n1,2\n3,4\n");
        let n = Arc::new(AtomicU64::new(0));
        let mut r = reader(
            body,
            Encoding::Identity,
            5,
            Duration::from_secs(5),
            n.clone(),
        );
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
            1 << 20,
            Duration::from_millis(50),
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
