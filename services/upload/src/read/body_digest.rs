//! The digest of an upload's body as decoded (after its `Content-Encoding`, before any
//! transcoding): saved with an import whose body was read to its end, and compared with the
//! body of a repeat under the same Idempotency-Key. A different file under a used key is then
//! answered `422 idempotency_key_mismatch`, never with the first file's answer.
//!
//! The digest is taken as the bytes pass; nothing is buffered.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use xxhash_rust::xxh3::Xxh3;

/// The digest of a body being read: known once the reader reached its end.
#[derive(Clone, Default)]
pub struct BodyDigest(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    hasher: Xxh3,
    ended: bool,
}

impl BodyDigest {
    /// The digest as stored (32 hex digits), once the whole body was read; `None` before.
    pub fn finished(&self) -> Option<String> {
        let s = self.0.lock().ok()?;
        s.ended.then(|| format!("{:032x}", s.hasher.digest128()))
    }
}

/// `inner`, digesting every byte read from it.
pub fn digesting(
    inner: Pin<Box<dyn AsyncRead + Send>>,
) -> (Pin<Box<dyn AsyncRead + Send>>, BodyDigest) {
    let digest = BodyDigest::default();
    let reader = Digesting {
        inner,
        digest: digest.clone(),
    };
    (Box::pin(reader), digest)
}

/// Reads `body` to its end and returns its digest (for a repeat, whose rows are not needed).
pub async fn digest_to_end(body: Pin<Box<dyn AsyncRead + Send>>) -> io::Result<String> {
    let (mut reader, digest) = digesting(body);
    let mut buf = vec![0; 64 << 10];
    while reader.read(&mut buf).await? > 0 {}
    digest
        .finished()
        .ok_or_else(|| io::Error::other("the body's digest was not finished"))
}

struct Digesting {
    inner: Pin<Box<dyn AsyncRead + Send>>,
    digest: BodyDigest,
}

impl AsyncRead for Digesting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let room = buf.remaining() > 0;
        let polled = self.inner.as_mut().poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            let new = &buf.filled()[before..];
            if let Ok(mut s) = self.digest.0.lock() {
                if new.is_empty() && room {
                    s.ended = true;
                } else {
                    s.hasher.update(new);
                }
            }
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_digest_is_known_only_at_the_end_and_follows_the_bytes_not_the_chunks() {
        let whole = digest_to_end(Box::pin(&b"id,name\n1,a\n"[..]))
            .await
            .unwrap();
        let chunked = tokio_test_chunks(&[b"id,n", b"ame\n1", b",a\n"]).await;
        assert_eq!(whole, chunked);
        let other = digest_to_end(Box::pin(&b"id,name\n1,b\n"[..]))
            .await
            .unwrap();
        assert_ne!(whole, other);

        let (mut r, d) = digesting(Box::pin(&b"abc"[..]));
        let mut two = [0; 2];
        r.read_exact(&mut two).await.unwrap();
        assert_eq!(d.finished(), None, "not read to its end yet");
    }

    async fn tokio_test_chunks(chunks: &[&'static [u8]]) -> String {
        let chunks: Vec<_> = chunks
            .iter()
            .map(|c| Ok::<_, io::Error>(bytes::Bytes::from_static(c)))
            .collect();
        let stream = futures::stream::iter(chunks);
        digest_to_end(Box::pin(tokio_util::io::StreamReader::new(stream)))
            .await
            .unwrap()
    }
}
