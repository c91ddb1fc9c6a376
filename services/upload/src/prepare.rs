//! From the body's bytes to what the CSV reader reads: the text encoding (given, or detected
//! with `encoding=auto`), preamble lines skipped (`skip_lines=`), and the dialect (given, or
//! detected: `delimiter=auto`, the default). Looks only at the first [`SAMPLE_BYTES`], held
//! once and then read again by the parser: the file is read once.

use csvbus_shared::read_as::ReadAs;

use crate::error::ApiError;
use crate::mapping::Mapping;
use crate::parse::Dialect;
use crate::sniff::{self, Input, SAMPLE_BYTES};
use crate::transcode::{self, TextEncoding};

/// How to read an upload's bytes (query options).
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// `None`: detect (`delimiter=auto`, the default).
    pub delimiter: Option<u8>,
    /// `None`: `"`, or detected with the delimiter.
    pub quote: Option<u8>,
    /// `None`: detect (`encoding=auto`).
    pub encoding: Option<TextEncoding>,
    pub skip_lines: u64,
    pub trim: bool,
    /// The first record names the columns (`header=false`: `columns=` does).
    pub header: bool,
    pub mapping: Mapping,
    /// Bytes of the start of the body to keep for [`Prepared::sample`] (`create=true`: the
    /// rows column types are inferred from); 0: none.
    pub keep_sample: usize,
}

impl ReadOptions {
    /// A retry of an upload reads its file as the first upload did: what was detected then
    /// (delimiter, encoding) is taken as given.
    pub fn same_as(&mut self, first: &ReadAs) {
        if self.delimiter.is_none() {
            self.delimiter = match first.delimiter.as_str() {
                "tab" => Some(b'\t'),
                d => d.bytes().next(),
            };
        }
        if self.quote.is_none() {
            self.quote = first.quote.bytes().next();
        }
        if self.encoding.is_none() {
            self.encoding = TextEncoding::parse(&first.encoding).ok().flatten();
        }
    }
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            delimiter: None,
            quote: None,
            encoding: Some(TextEncoding::Utf8),
            skip_lines: 0,
            trim: false,
            header: true,
            mapping: Mapping::default(),
            keep_sample: 0,
        }
    }
}

/// The input as the CSV reader takes it, with its dialect and how it was decided.
pub struct Prepared {
    pub input: Input,
    pub dialect: Dialect,
    pub read_as: ReadAs,
    /// With [`ReadOptions::keep_sample`]: the first bytes after the skipped lines (UTF-8), and
    /// whether they are the whole body.
    pub sample: Option<(Vec<u8>, bool)>,
}

/// Decides the encoding and the dialect from the first bytes of `input`.
pub async fn prepare(input: Input, o: &ReadOptions) -> Result<Prepared, ApiError> {
    let mut notes = Vec::new();
    let (encoding, input) = match o.encoding {
        Some(e) => (e, input),
        None => {
            let p = sniff::peek(input, SAMPLE_BYTES, false).await;
            (TextEncoding::detect(&p.sample), p.input)
        }
    };
    let input = transcode::utf8(input, encoding);
    let want = SAMPLE_BYTES.max(o.keep_sample);
    let sniff::Peeked {
        sample,
        ended: complete,
        input,
    } = sniff::peek(input, want, o.keep_sample > 0).await;
    let skip = sniff::after_lines(&sample, o.skip_lines).ok_or_else(|| {
        let why = if complete {
            "the body has fewer lines"
        } else {
            "skip_lines reaches past the first 64 KiB"
        };
        ApiError::unprocessable(
            "invalid_skip_lines",
            format!("skip_lines={}: {why}", o.skip_lines),
        )
    })?;
    let (delimiter, quote) = match o.delimiter {
        Some(d) => (d, o.quote.unwrap_or(b'"')),
        None => {
            let head = &sample[skip..];
            let head = &head[..head.len().min(SAMPLE_BYTES)];
            let found = sniff::detect(head, complete && head.len() == sample.len() - skip);
            notes.extend(found.doubt);
            (found.delimiter, o.quote.unwrap_or(found.quote))
        }
    };
    let input = sniff::skip(input, skip);
    let kept = (o.keep_sample > 0).then(|| (sample[skip..].to_vec(), complete));
    Ok(Prepared {
        sample: kept,
        input,
        dialect: Dialect {
            delimiter,
            quote,
            trim: o.trim,
            first_line: o.skip_lines + 1,
        },
        read_as: ReadAs {
            delimiter: sniff::show(delimiter),
            delimiter_detected: o.delimiter.is_none(),
            quote: (quote as char).to_string(),
            line_break: sniff::line_break(&sample[skip..]).to_owned(),
            encoding: encoding.name().to_owned(),
            encoding_detected: o.encoding.is_none(),
            skip_lines: o.skip_lines,
            header: o.header,
            trim: o.trim,
            notes,
            ..ReadAs::default()
        },
    })
}
