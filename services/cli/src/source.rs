//! What an import sends: a file or stdin, read as the request goes, counted for the progress
//! bar, gzip-compressed on the fly when asked. A gzip or zstd file (by its name or its first
//! bytes) is sent as it is, with its `Content-Encoding`.
//!
//! A file can be sent again from the start when the service asks to retry. Stdin cannot be
//! re-read, so its first [`REPLAY_BYTES`] are kept: a retry is possible as long as the
//! service's refusal came before more than that was taken (refusals come before the body is
//! read). Stdin is read by one thread into a small channel, so no chunk is lost when a
//! request's body is dropped mid-read.

use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_compression::tokio::bufread::{GzipDecoder, GzipEncoder, ZstdDecoder};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::io::{InspectReader, ReaderStream, StreamReader};

/// How much of stdin is kept to send again on a retry.
pub const REPLAY_BYTES: usize = 8 << 20;
const CHUNK: usize = 64 << 10;

/// How an input is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
}

impl Compression {
    /// The `Content-Encoding` the input is sent with.
    pub fn content_encoding(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        }
    }

    /// From the first bytes (gzip: 1f 8b; zstd frame: 28 b5 2f fd).
    pub fn from_magic(head: &[u8]) -> Option<Self> {
        match head {
            [0x1f, 0x8b, ..] => Some(Self::Gzip),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Some(Self::Zstd),
            _ => None,
        }
    }

    /// From a file name's extension.
    pub fn from_name(path: &std::path::Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "gz" | "gzip" => Some(Self::Gzip),
            "zst" | "zstd" => Some(Self::Zstd),
            _ => None,
        }
    }
}

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
    /// A read error met while peeking, to be returned after `head`.
    failed: Option<String>,
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

    /// The file's name without its folder (none for stdin).
    pub fn file_name(&self) -> Option<String> {
        match self {
            Self::File(p) => p.file_name().map(|n| n.to_string_lossy().into_owned()),
            Self::Stdin(_) => None,
        }
    }

    /// The input's size, when known (files).
    pub async fn size(&self) -> Option<u64> {
        match self {
            Self::File(p) => tokio::fs::metadata(p).await.ok().map(|m| m.len()),
            Self::Stdin(_) => None,
        }
    }

    /// How the input is compressed: by its first bytes, else by its name. Stdin's first chunk
    /// is read to tell (and kept, to be sent first).
    pub async fn compression(&self) -> std::io::Result<Option<Compression>> {
        let head = match self {
            Self::File(p) => {
                let mut head = Vec::with_capacity(4);
                let f = tokio::fs::File::open(p).await?;
                tokio::io::AsyncReadExt::take(f, 4)
                    .read_to_end(&mut head)
                    .await?;
                head
            }
            Self::Stdin(input) => input.peek().await,
        };
        let by_name = match self {
            Self::File(p) => Compression::from_name(p),
            Self::Stdin(_) => None,
        };
        Ok(Compression::from_magic(&head).or(by_name))
    }

    /// The file's content, decompressed when it is compressed (for its key).
    pub async fn decoded(&self) -> std::io::Result<Box<dyn AsyncRead + Send + Unpin>> {
        let Self::File(p) = self else {
            return Err(std::io::Error::other("stdin cannot be read twice"));
        };
        let raw = BufReader::with_capacity(CHUNK, tokio::fs::File::open(p).await?);
        Ok(match self.compression().await? {
            None => Box::new(raw),
            Some(Compression::Gzip) => {
                let mut d = GzipDecoder::new(raw);
                d.multiple_members(true);
                Box::new(d)
            }
            Some(Compression::Zstd) => Box::new(ZstdDecoder::new(raw)),
        })
    }

    /// Whether the input can be sent again from its start.
    pub fn replayable(&self) -> bool {
        match self {
            Self::File(_) => true,
            Self::Stdin(s) => s.state.lock().is_ok_and(|k| k.taken <= REPLAY_BYTES),
        }
    }

    /// A request body with the input from its start; `seen` gets every raw chunk read. With
    /// `gzip`, it is compressed as it is sent (not an input compressed already: see
    /// [`Source::compression`]).
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

impl StdinInput {
    /// The first bytes of stdin (at most one chunk), read now if none were yet.
    async fn peek(&self) -> Vec<u8> {
        if let Ok(k) = self.state.lock() {
            if k.taken > 0 {
                return k.head.clone();
            }
        }
        let first = self.chunks.lock().await.recv().await;
        let Ok(mut k) = self.state.lock() else {
            return Vec::new();
        };
        match first {
            Some(Ok(chunk)) => {
                k.taken += chunk.len();
                k.head.extend_from_slice(&chunk);
            }
            Some(Err(e)) => k.failed = Some(e.to_string()),
            None => {}
        }
        k.head.clone()
    }
}

/// Stdin from its start: the kept head, then what the reader thread sends.
fn stdin_stream(
    input: Arc<StdinInput>,
) -> std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>> {
    let (head, failed) = input
        .state
        .lock()
        .map(|k| (Bytes::from(k.head.clone()), k.failed.clone()))
        .unwrap_or_default();
    let head = futures::stream::iter(
        (!head.is_empty())
            .then_some(Ok(head))
            .into_iter()
            .chain(failed.map(|e| Err(std::io::Error::other(e)))),
    );
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
