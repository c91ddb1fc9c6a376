//! What an import sends: a file or stdin, read as the request goes, counted for the progress
//! bar, gzip-compressed on the fly when asked.
//!
//! A file can be sent again from the start when the service asks to retry. Stdin cannot be
//! re-read, so its first [`REPLAY_BYTES`] are kept: a retry is possible as long as the
//! service's refusal came before more than that was taken (refusals come before the body is
//! read). Stdin is read by one thread into a small channel, so no chunk is lost when a
//! request's body is dropped mid-read.

use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_compression::tokio::bufread::GzipEncoder;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, BufReader};
use tokio::sync::mpsc;
use tokio_util::io::{InspectReader, ReaderStream, StreamReader};

/// How much of stdin is kept to send again on a retry.
pub const REPLAY_BYTES: usize = 8 << 20;
const CHUNK: usize = 64 << 10;

/// One input of `csvbus import`.
pub enum Source {
    File(PathBuf),
    Stdin(Arc<StdinInput>),
}

pub struct StdinInput {
    chunks: tokio::sync::Mutex<mpsc::Receiver<std::io::Result<Bytes>>>,
    state: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    /// The first bytes taken from stdin, while they fit in [`REPLAY_BYTES`].
    head: Vec<u8>,
    /// Bytes taken from stdin in all.
    taken: usize,
}

impl Source {
    pub fn new(arg: &str) -> Self {
        if arg != "-" {
            return Self::File(arg.into());
        }
        let (tx, rx) = mpsc::channel(4);
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            loop {
                let mut buf = vec![0; CHUNK];
                let r = match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        buf.truncate(n);
                        Ok(Bytes::from(buf))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(e),
                };
                let stop = r.is_err();
                if tx.blocking_send(r).is_err() || stop {
                    break;
                }
            }
        });
        Self::Stdin(Arc::new(StdinInput {
            chunks: tokio::sync::Mutex::new(rx),
            state: Mutex::default(),
        }))
    }

    pub fn name(&self) -> String {
        match self {
            Self::File(p) => p.display().to_string(),
            Self::Stdin(_) => "<stdin>".into(),
        }
    }

    /// The input's size, when known (files).
    pub async fn size(&self) -> Option<u64> {
        match self {
            Self::File(p) => tokio::fs::metadata(p).await.ok().map(|m| m.len()),
            Self::Stdin(_) => None,
        }
    }

    /// The Idempotency-Key of sending this input with `query` (target and options): for a
    /// file, derived from its bytes, so every retry — and a later run with the same file —
    /// names the same import; for stdin, one per run.
    pub async fn idempotency_key(&self, query: &str) -> std::io::Result<String> {
        let Self::File(p) = self else {
            return Ok(format!("csvbus-stdin-{}", uuid::Uuid::new_v4().simple()));
        };
        let p = p.clone();
        let query = query.to_owned();
        let digest = tokio::task::spawn_blocking(move || -> std::io::Result<u128> {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            h.update(query.as_bytes());
            h.update(b"\0");
            let mut f = std::fs::File::open(p)?;
            let mut buf = vec![0; 1 << 20];
            loop {
                match f.read(&mut buf)? {
                    0 => break,
                    n => h.update(&buf[..n]),
                }
            }
            Ok(h.digest128())
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(format!("csvbus-file-{digest:032x}"))
    }

    /// Whether the input can be sent again from its start.
    pub fn replayable(&self) -> bool {
        match self {
            Self::File(_) => true,
            Self::Stdin(s) => s.state.lock().is_ok_and(|k| k.taken <= REPLAY_BYTES),
        }
    }

    /// A request body with the input from its start; `seen` gets every raw chunk read.
    pub async fn body(
        &self,
        gzip: bool,
        seen: impl FnMut(&[u8]) + Send + Unpin + 'static,
    ) -> std::io::Result<reqwest::Body> {
        let reader: Box<dyn AsyncRead + Send + Unpin> = match self {
            Self::File(p) => Box::new(tokio::fs::File::open(p).await?),
            Self::Stdin(input) => Box::new(StreamReader::new(stdin_stream(input.clone()))),
        };
        let counted = InspectReader::new(reader, seen);
        let stream = if gzip {
            let gz = GzipEncoder::new(BufReader::with_capacity(CHUNK, counted));
            ReaderStream::with_capacity(gz, CHUNK).boxed()
        } else {
            ReaderStream::with_capacity(counted, CHUNK).boxed()
        };
        Ok(reqwest::Body::wrap_stream(stream))
    }
}

/// Stdin from its start: the kept head, then what the reader thread sends.
fn stdin_stream(
    input: Arc<StdinInput>,
) -> std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>> {
    let head = input
        .state
        .lock()
        .map(|k| Bytes::from(k.head.clone()))
        .unwrap_or_default();
    let head = futures::stream::iter((!head.is_empty()).then_some(Ok(head)));
    let rest = futures::stream::unfold(input, |input| async move {
        // `recv` is cancel-safe: a chunk is either returned here or stays in the channel.
        let next = input.chunks.lock().await.recv().await?;
        if let (Ok(chunk), Ok(mut k)) = (&next, input.state.lock()) {
            k.taken += chunk.len();
            if k.head.len() + chunk.len() <= REPLAY_BYTES {
                k.head.extend_from_slice(chunk);
            }
        }
        Some((next, input))
    });
    Box::pin(head.chain(rest))
}
