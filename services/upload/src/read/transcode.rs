//! Text encodings of an upload (`encoding=`): the body is turned into UTF-8 as it streams, so
//! everything after (CSV parsing, line numbers, raw text of rejected rows) sees UTF-8. Bytes
//! that are invalid in the declared encoding come out as one `0xFF` byte — never valid UTF-8 —
//! so the record holding them is rejected with its line, as invalid UTF-8 is.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use encoding_rs::{Decoder, DecoderResult, UTF_16BE, UTF_16LE, WINDOWS_1252};
use tokio::io::{AsyncRead, ReadBuf};

/// An `encoding=` that is none of those csvbus reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("encoding= is one of utf-8, auto, windows-1252, latin1, utf-16, utf-16be")]
pub struct UnknownEncoding;

/// `encoding=` as given: an encoding, or `auto` (`None`: detected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GivenEncoding(pub Option<TextEncoding>);

impl crate::error::QueryOption for GivenEncoding {
    const INVALID: &'static str = "invalid_encoding";
    fn from_query(s: &str) -> Result<Option<Self>, String> {
        match s {
            "" => Ok(None),
            s => TextEncoding::parse(s)
                .map(|e| Some(Self(e)))
                .map_err(|e| e.to_string()),
        }
    }
}

/// The text encoding of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    /// The default: passed through as is (invalid sequences are rejected per record).
    Utf8,
    Windows1252,
    /// ISO-8859-1: every byte is the code point of its value.
    Latin1,
    Utf16Le,
    Utf16Be,
}

impl TextEncoding {
    /// `encoding=`: `None` is `auto`; `Err` names the encodings there are.
    pub fn parse(s: &str) -> Result<Option<Self>, UnknownEncoding> {
        Ok(Some(
            match s.to_ascii_lowercase().replace('_', "-").as_str() {
                "" | "utf-8" | "utf8" => Self::Utf8,
                "auto" => return Ok(None),
                "windows-1252" | "cp1252" => Self::Windows1252,
                "latin1" | "latin-1" | "iso-8859-1" => Self::Latin1,
                "utf-16" | "utf-16le" | "utf16" | "utf16le" => Self::Utf16Le,
                "utf-16be" | "utf16be" => Self::Utf16Be,
                _ => return Err(UnknownEncoding),
            },
        ))
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Utf8 => "utf-8",
            Self::Windows1252 => "windows-1252",
            Self::Latin1 => "latin1",
            Self::Utf16Le => "utf-16le",
            Self::Utf16Be => "utf-16be",
        }
    }

    /// `encoding=auto` from the first bytes: a byte-order mark; else UTF-16 when every other
    /// byte of the sample is NUL (ASCII text in UTF-16); else UTF-8 when the sample is valid
    /// UTF-8 (a sequence cut at the sample's end allowed); else Windows-1252.
    pub fn detect(sample: &[u8]) -> Self {
        match sample {
            [0xEF, 0xBB, 0xBF, ..] => return Self::Utf8,
            [0xFF, 0xFE, ..] => return Self::Utf16Le,
            [0xFE, 0xFF, ..] => return Self::Utf16Be,
            _ => {}
        }
        let pairs = sample.len() / 2;
        if pairs >= 2 {
            let zeros = |offset: usize| {
                sample
                    .iter()
                    .skip(offset)
                    .step_by(2)
                    .filter(|b| **b == 0)
                    .count()
            };
            if zeros(1) * 10 >= pairs * 9 && zeros(0) == 0 {
                return Self::Utf16Le;
            }
            if zeros(0) * 10 >= pairs * 9 && zeros(1) == 0 {
                return Self::Utf16Be;
            }
        }
        match std::str::from_utf8(sample) {
            Ok(_) => Self::Utf8,
            // A sequence cut by the end of the sample is not an error.
            Err(e) if e.error_len().is_none() => Self::Utf8,
            Err(_) => Self::Windows1252,
        }
    }

    fn decoder(self) -> Option<Decoder> {
        // With BOM handling: a byte-order mark is removed (and wins over the declared
        // encoding, as the WHATWG Encoding Standard decodes).
        match self {
            Self::Utf8 | Self::Latin1 => None,
            Self::Windows1252 => Some(WINDOWS_1252.new_decoder()),
            Self::Utf16Le => Some(UTF_16LE.new_decoder()),
            Self::Utf16Be => Some(UTF_16BE.new_decoder()),
        }
    }
}

/// An input read as UTF-8: `inner` itself for UTF-8, transcoded otherwise.
pub fn utf8<R: AsyncRead + Unpin + Send + 'static>(
    inner: R,
    encoding: TextEncoding,
) -> Pin<Box<dyn AsyncRead + Send>> {
    if encoding == TextEncoding::Utf8 {
        return Box::pin(inner);
    }
    Box::pin(Transcode {
        inner,
        decoder: encoding.decoder(),
        input: vec![0; 8192],
        in_start: 0,
        in_end: 0,
        eof: false,
        done: false,
    })
}

struct Transcode<R> {
    inner: R,
    /// `None`: Latin-1, byte by byte.
    decoder: Option<Decoder>,
    input: Vec<u8>,
    in_start: usize,
    in_end: usize,
    eof: bool,
    done: bool,
}

impl<R: AsyncRead + Unpin> AsyncRead for Transcode<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.done || out.remaining() < 4 {
                return Poll::Ready(Ok(()));
            }
            if this.in_start == this.in_end && !this.eof {
                let mut buf = ReadBuf::new(&mut this.input);
                ready!(Pin::new(&mut this.inner).poll_read(cx, &mut buf))?;
                this.in_start = 0;
                this.in_end = buf.filled().len();
                this.eof = this.in_end == 0;
            }
            let before = out.filled().len();
            this.step(out);
            if out.filled().len() > before {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<R> Transcode<R> {
    /// Decodes what input there is into `out`.
    fn step(&mut self, out: &mut ReadBuf<'_>) {
        let src = &self.input[self.in_start..self.in_end];
        let dst = out.initialize_unfilled();
        let Some(decoder) = &mut self.decoder else {
            let (read, written) = encoding_rs::mem::convert_latin1_to_utf8_partial(src, dst);
            self.in_start += read;
            out.advance(written);
            self.done = self.eof && self.in_start == self.in_end;
            return;
        };
        let (result, read, written) =
            decoder.decode_to_utf8_without_replacement(src, dst, self.eof);
        self.in_start += read;
        out.advance(written);
        match result {
            DecoderResult::InputEmpty => self.done = self.eof,
            DecoderResult::OutputFull => {}
            DecoderResult::Malformed(_, _) => {
                let dst = out.initialize_unfilled();
                if let Some(b) = dst.first_mut() {
                    *b = 0xFF;
                    out.advance(1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn read_all(bytes: &[u8], enc: TextEncoding) -> Vec<u8> {
        // One byte at a time: sequences split across reads must come out whole.
        read_chunked(bytes, 1, enc).await
    }

    async fn read_chunked(bytes: &[u8], chunk: usize, enc: TextEncoding) -> Vec<u8> {
        let mut out = Vec::new();
        let chunks: Vec<Result<bytes::Bytes, io::Error>> = bytes
            .chunks(chunk.max(1))
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        let slow = tokio_util::io::StreamReader::new(futures::stream::iter(chunks));
        utf8(slow, enc).read_to_end(&mut out).await.unwrap();
        out
    }

    proptest::proptest! {
        /// Any text, encoded in UTF-16 or Windows-1252 and cut into any chunks, comes out as
        /// the same text (what encoding_rs decodes in one piece).
        #[test]
        fn any_text_in_any_chunks_comes_out_whole(text in "\\PC{0,200}", chunk in 1usize..64) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let le: Vec<u8> = text.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
            let got = rt.block_on(read_chunked(&le, chunk, TextEncoding::Utf16Le));
            proptest::prop_assert_eq!(String::from_utf8(got).unwrap(), text.clone());
            let (cp, _, lossy) = WINDOWS_1252.encode(&text);
            let got = rt.block_on(read_chunked(&cp, chunk, TextEncoding::Windows1252));
            let (want, _) = WINDOWS_1252.decode_without_bom_handling(&cp);
            proptest::prop_assert_eq!(String::from_utf8(got).unwrap(), want.into_owned());
            let _ = lossy;
        }
    }

    #[tokio::test]
    async fn each_encoding_comes_out_as_utf8() {
        assert_eq!(
            read_all(b"na\xefve,\x80\n", TextEncoding::Windows1252).await,
            "naïve,€\n".as_bytes()
        );
        assert_eq!(
            read_all(b"na\xefve,\x80\n", TextEncoding::Latin1).await,
            "naïve,\u{80}\n".as_bytes()
        );
        let le: Vec<u8> = "\u{feff}Zoë,ß\n"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        assert_eq!(
            read_all(&le, TextEncoding::Utf16Le).await,
            "Zoë,ß\n".as_bytes()
        );
        let be: Vec<u8> = "Zoë\n"
            .encode_utf16()
            .flat_map(|u| u.to_be_bytes())
            .collect();
        assert_eq!(
            read_all(&be, TextEncoding::Utf16Be).await,
            "Zoë\n".as_bytes()
        );
    }

    #[tokio::test]
    async fn invalid_sequences_become_one_invalid_byte_and_the_rest_goes_on() {
        // An unpaired surrogate, then more text.
        let mut le: Vec<u8> = "a,".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        le.extend_from_slice(&0xD800u16.to_le_bytes());
        le.extend("b\nc\n".encode_utf16().flat_map(|u| u.to_le_bytes()));
        let out = read_all(&le, TextEncoding::Utf16Le).await;
        assert_eq!(out, b"a,\xFFb\nc\n");
        assert!(std::str::from_utf8(&out).is_err());
    }

    #[test]
    fn auto_detection_reads_boms_nul_patterns_and_utf8_validity() {
        assert_eq!(TextEncoding::detect(b"\xEF\xBB\xBFa,b"), TextEncoding::Utf8);
        assert_eq!(TextEncoding::detect(b"\xFF\xFEa\0"), TextEncoding::Utf16Le);
        assert_eq!(TextEncoding::detect(b"\xFE\xFF\0a"), TextEncoding::Utf16Be);
        assert_eq!(
            TextEncoding::detect(b"a\0,\0b\0\n\0"),
            TextEncoding::Utf16Le
        );
        assert_eq!(
            TextEncoding::detect(b"\0a\0,\0b\0\n"),
            TextEncoding::Utf16Be
        );
        assert_eq!(
            TextEncoding::detect("Zoë,1\n".as_bytes()),
            TextEncoding::Utf8
        );
        // Cut in the middle of "ë": still UTF-8.
        assert_eq!(
            TextEncoding::detect(&"Zoë".as_bytes()[..3]),
            TextEncoding::Utf8
        );
        assert_eq!(
            TextEncoding::detect(b"Zo\xeb,1\n"),
            TextEncoding::Windows1252
        );
    }
}
