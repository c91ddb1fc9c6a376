//! The wire format of one CSV row on the topic: the contract between the upload service, the
//! sink and any other consumer group (documented in docs/api.md).
//!
//! - headers: [`RowMeta`] — [`HEADER_IMPORT`] (import id, UUID text), [`HEADER_LINE`] (1-based
//!   line of the record's first line in the file, decimal), [`HEADER_TABLE`] (`schema.table`,
//!   unquoted); encoded per import by [`RowHeaders`], decoded by [`RowMeta::decode`] (or, for a
//!   stream of messages, [`MetaDecoder`]);
//! - value: a JSON object `{"column": "text" | null, ...}` ([`RowEncoder`], [`Row`]);
//! - key: set by the upload (see docs/api.md);
//! - with `CSVBUS_SIGNING_KEY`: [`HEADER_SIGNATURE`], which the sink requires ([`Signer`]);
//! - several keyless rows of one import in one message ([`pack`]): [`HEADER_LINES`] lists their
//!   lines, the value is a JSON array of their objects.

pub mod pack;

pub use pack::{unpack, Pack, PackError, Packed, HEADER_LINES};

use std::borrow::Cow;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use rdkafka::message::{Header, OwnedHeaders};
use serde::Deserialize;
use sha2::Sha256;
use uuid::Uuid;

use crate::catalog::TableName;

pub const HEADER_IMPORT: &str = "csvbus-import";
pub const HEADER_LINE: &str = "csvbus-line";
pub const HEADER_TABLE: &str = "csvbus-table";
/// With a signing key: HMAC-SHA256 of the row (see [`Signer`]), lowercase hex.
pub const HEADER_SIGNATURE: &str = "csvbus-signature";

/// What a row message says of itself in its headers: its import, its line, its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowMeta {
    pub import: Uuid,
    pub line: i64,
    /// Shared by the rows of a run decoded by one [`MetaDecoder`].
    pub table: Arc<TableName>,
}

impl RowMeta {
    /// The csvbus headers among `headers` (name, value); `None` when one is missing or is not
    /// what the upload service writes.
    pub fn decode<'a>(
        headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    ) -> Option<Self> {
        MetaDecoder::default().decode(headers).meta
    }

    /// The headers as text, as they are on the wire.
    pub fn to_text(&self) -> [(&'static str, String); 3] {
        [
            (HEADER_IMPORT, self.import.to_string()),
            (HEADER_LINE, self.line.to_string()),
            (HEADER_TABLE, self.table.to_string()),
        ]
    }
}

/// A message's csvbus headers, decoded.
#[derive(Debug, Default)]
pub struct Decoded<'a> {
    /// `None` when one is missing or is not what the upload service writes.
    pub meta: Option<RowMeta>,
    /// The value of [`HEADER_SIGNATURE`], if any.
    pub signature: Option<&'a [u8]>,
    /// The value of [`HEADER_LINES`]: the message is a pack of rows ([`pack`]).
    pub lines: Option<&'a [u8]>,
}

/// Decodes the csvbus headers of a stream of messages in one pass over each message's headers.
/// The import id and table of a message whose header text is the previous one's (a run of one
/// import's rows, as a rule) are not parsed again, and the table is shared, not allocated: on
/// the sink's fetch thread, parsing them per message was a tenth of the service's CPU.
#[derive(Debug, Default)]
pub struct MetaDecoder {
    import: Option<(Vec<u8>, Uuid)>,
    table: Option<(Vec<u8>, Arc<TableName>)>,
}

impl MetaDecoder {
    /// The csvbus headers among `headers` (name, value).
    pub fn decode<'a>(
        &mut self,
        headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    ) -> Decoded<'a> {
        let (mut import, mut line, mut table) = (None, None, None);
        let (mut signature, mut lines) = (None, None);
        for (name, value) in headers {
            let text = || value.and_then(|v| std::str::from_utf8(v).ok());
            match name {
                HEADER_IMPORT => import = value.and_then(|v| self.import(v)),
                HEADER_LINE => line = text().and_then(|t| t.parse::<i64>().ok()),
                HEADER_TABLE => table = value.and_then(|v| self.table(v)),
                HEADER_SIGNATURE => signature = value,
                HEADER_LINES => lines = value,
                _ => {}
            }
        }
        let meta = (|| {
            Some(RowMeta {
                import: import?,
                line: line?,
                table: table?,
            })
        })();
        Decoded {
            meta,
            signature,
            lines,
        }
    }

    fn import(&mut self, v: &[u8]) -> Option<Uuid> {
        match &self.import {
            Some((text, id)) if text == v => Some(*id),
            _ => {
                let id = Uuid::parse_str(std::str::from_utf8(v).ok()?).ok()?;
                self.import = Some((v.to_vec(), id));
                Some(id)
            }
        }
    }

    fn table(&mut self, v: &[u8]) -> Option<Arc<TableName>> {
        match &self.table {
            Some((text, table)) if text == v => Some(table.clone()),
            _ => {
                let table = Arc::new(TableName::parse(std::str::from_utf8(v).ok()?, "")?);
                self.table = Some((v.to_vec(), table.clone()));
                Some(table)
            }
        }
    }
}

/// The headers of one import's rows: its id and table encoded once, the line per row (without
/// allocating), and the row's signature when there is a signing key.
#[derive(Debug, Clone)]
pub struct RowHeaders {
    import: String,
    table: String,
    signer: Option<Signer>,
}

impl RowHeaders {
    pub fn new(import: Uuid, table: &TableName, signer: Option<Signer>) -> Self {
        Self {
            import: import.to_string(),
            table: table.to_string(),
            signer,
        }
    }

    /// The headers of the row at `line` whose message value is `value`.
    pub fn for_row(&self, line: u64, value: &[u8]) -> OwnedHeaders {
        let mut buf = itoa::Buffer::new();
        self.build(buf.format(line), None, value)
    }

    /// The headers of a pack of rows ([`Pack`]) whose first row is at `first_line`.
    pub fn for_pack(&self, first_line: u64, lines: &str, value: &[u8]) -> OwnedHeaders {
        let mut buf = itoa::Buffer::new();
        self.build(buf.format(first_line), Some(lines), value)
    }

    fn build(&self, line: &str, lines: Option<&str>, value: &[u8]) -> OwnedHeaders {
        let mut headers = OwnedHeaders::new_with_capacity(5)
            .insert(Header {
                key: HEADER_IMPORT,
                value: Some(&self.import),
            })
            .insert(Header {
                key: HEADER_LINE,
                value: Some(line),
            })
            .insert(Header {
                key: HEADER_TABLE,
                value: Some(&self.table),
            });
        if let Some(lines) = lines {
            headers = headers.insert(Header {
                key: HEADER_LINES,
                value: Some(lines),
            });
        }
        let Some(s) = &self.signer else {
            return headers;
        };
        // A pack is signed over its lines, a row over its line.
        let place = lines.unwrap_or(line);
        let tag = s.tag(
            [
                self.import.as_bytes(),
                place.as_bytes(),
                self.table.as_bytes(),
            ],
            value,
        );
        let mut hex = [0u8; 64];
        // 32 bytes always fit 64 hex digits.
        let hex = hex::encode_to_slice(tag, &mut hex)
            .map(|()| &hex[..])
            .unwrap_or_default();
        headers.insert(Header {
            key: HEADER_SIGNATURE,
            value: Some(hex),
        })
    }
}

/// Signs row messages and checks them (`CSVBUS_SIGNING_KEY`, the same for both services):
/// HMAC-SHA256 over the import id, the line (for a pack: its lines) and the table as the headers
/// carry them and the message value, each part followed by a NUL byte. Only who holds the key can make a row the
/// sink writes: a producer with write access to the topic cannot.
#[derive(Clone)]
pub struct Signer {
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(***)")
    }
}

impl Signer {
    pub fn new(key: &[u8]) -> Self {
        Self {
            // HMAC takes a key of any length.
            keyed: Hmac::new_from_slice(key).unwrap_or_else(|_| unreachable!()),
        }
    }

    fn mac(&self, headers: [&[u8]; 3], value: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        for part in headers.into_iter().chain([value]) {
            mac.update(part);
            mac.update(&[0]);
        }
        mac
    }

    fn tag(&self, headers: [&[u8]; 3], value: &[u8]) -> [u8; 32] {
        self.mac(headers, value).finalize().into_bytes().into()
    }

    /// Whether `signature` (the header's hex text) signs the row `meta` with value `value`;
    /// compared in constant time.
    pub fn verify(&self, meta: &RowMeta, value: &[u8], signature: Option<&[u8]>) -> bool {
        let mut line = itoa::Buffer::new();
        self.verify_at(meta, line.format(meta.line).as_bytes(), value, signature)
    }

    /// Whether `signature` signs the pack of rows of `meta`'s import and table with lines
    /// `lines` (the header's text) and value `value`.
    pub fn verify_pack(
        &self,
        meta: &RowMeta,
        lines: &[u8],
        value: &[u8],
        signature: Option<&[u8]>,
    ) -> bool {
        self.verify_at(meta, lines, value, signature)
    }

    fn verify_at(&self, meta: &RowMeta, place: &[u8], value: &[u8], sig: Option<&[u8]>) -> bool {
        let mut tag = [0u8; 32];
        if hex::decode_to_slice(sig.unwrap_or_default(), &mut tag).is_err() {
            return false;
        }
        let mut import = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let import = meta.import.hyphenated().encode_lower(&mut import);
        let table = meta.table.to_string();
        let parts = [import.as_bytes(), place, table.as_bytes()];
        self.mac(parts, value).verify_slice(&tag).is_ok()
    }
}

/// A message that is not a csvbus row.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("message has no value")]
    NoValue,
    #[error("message header {0} is missing or invalid")]
    Header(&'static str),
    #[error("message value is not a JSON object of strings or nulls: {0}")]
    Value(#[from] serde_json::Error),
}

/// Encodes rows for one header: the JSON keys are escaped once, values per row.
#[derive(Debug, Clone)]
pub struct RowEncoder {
    /// `"col":` for each column, already JSON-escaped, with the leading `{` or `,`.
    prefixes: Vec<Vec<u8>>,
}

impl RowEncoder {
    pub fn new<S: AsRef<str>>(columns: &[S]) -> Self {
        let prefixes = columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut p = vec![if i == 0 { b'{' } else { b',' }];
                // Serializing a &str into a Vec cannot fail.
                serde_json::to_writer(&mut p, c.as_ref()).expect("json string");
                p.push(b':');
                p
            })
            .collect();
        Self { prefixes }
    }

    /// Appends the JSON object of one row to `out`. `values` must yield one item per column.
    pub fn encode<'v>(&self, out: &mut Vec<u8>, values: impl IntoIterator<Item = Option<&'v str>>) {
        let mut n = 0;
        for (prefix, value) in self.prefixes.iter().zip(values) {
            out.extend_from_slice(prefix);
            match value {
                None => out.extend_from_slice(b"null"),
                Some(v) => write_json_str(out, v),
            }
            n += 1;
        }
        if n == 0 {
            out.push(b'{');
        }
        out.push(b'}');
    }
}

/// JSON string escaping without going through serde for the common, plain case.
fn write_json_str(out: &mut Vec<u8>, v: &str) {
    if v.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(v.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(out, v).expect("json string");
    }
}

#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// One decoded row: `(column, value)` pairs in the order they were produced.
#[derive(Debug, PartialEq)]
pub struct Row<'a> {
    pub fields: Vec<(Cow<'a, str>, Option<Cow<'a, str>>)>,
}

impl<'a> Row<'a> {
    /// Decodes a message value, borrowing from it where no escapes were needed.
    pub fn decode(value: &'a [u8]) -> Result<Self, MessageError> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Row<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object of strings or nulls")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Row<'de>, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((k, v)) = map.next_entry::<Text<'de>, Option<Text<'de>>>()? {
                    fields.push((k.0, v.map(|t| t.0)));
                }
                Ok(Row { fields })
            }
        }
        let mut de = serde_json::Deserializer::from_slice(value);
        let row = serde::Deserializer::deserialize_map(&mut de, V)?;
        de.end()?;
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_with_escapes_nulls_and_unicode() {
        let enc = RowEncoder::new(&["id", "na\"me", "note"]);
        let mut out = Vec::new();
        enc.encode(&mut out, [Some("1"), Some("a \"q\", b\nc"), None]);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"id":"1","na\"me":"a \"q\", b\nc","note":null}"#
        );
        let row = Row::decode(&out).unwrap();
        assert_eq!(row.fields[1].0, "na\"me");
        assert_eq!(row.fields[1].1.as_deref(), Some("a \"q\", b\nc"));
        assert_eq!(row.fields[2].1, None);
        assert!(matches!(row.fields[0].1, Some(Cow::Borrowed("1"))));

        let mut out = Vec::new();
        enc.encode(&mut out, [Some("é漢字"), Some(""), Some("\u{1}")]);
        let row = Row::decode(&out).unwrap();
        assert_eq!(row.fields[0].1.as_deref(), Some("é漢字"));
        assert_eq!(row.fields[1].1.as_deref(), Some(""));
        assert_eq!(row.fields[2].1.as_deref(), Some("\u{1}"));
    }

    #[test]
    fn row_headers_decode_to_what_was_encoded() {
        use rdkafka::message::Headers;
        let table = TableName::parse("sales.orders", "public").unwrap();
        let import = Uuid::now_v7();
        let h = RowHeaders::new(import, &table, None).for_row(42, b"{}");
        let pairs: Vec<(&str, Option<&[u8]>)> = h.iter().map(|h| (h.key, h.value)).collect();
        let meta = RowMeta::decode(pairs).unwrap();
        assert_eq!(
            meta,
            RowMeta {
                import,
                line: 42,
                table: Arc::new(table.clone())
            }
        );
        assert_eq!(meta.to_text()[2], (HEADER_TABLE, "sales.orders".to_owned()));
        // A table without its schema, a line that is not a number, a missing header: not a row.
        let forged = |t: &'static str, l: &'static str| {
            RowMeta::decode([
                (HEADER_IMPORT, Some(import.to_string().leak().as_bytes())),
                (HEADER_LINE, Some(l.as_bytes())),
                (HEADER_TABLE, Some(t.as_bytes())),
            ])
        };
        assert!(forged("sales.orders", "7").is_some());
        assert!(forged("orders", "7").is_none());
        assert!(forged("sales.orders", "x").is_none());
        assert!(RowMeta::decode([(HEADER_LINE, Some(&b"7"[..]))]).is_none());
    }

    #[test]
    fn a_stream_decoder_reuses_a_run_and_decodes_every_change() {
        let (a, b) = (Uuid::now_v7().to_string(), Uuid::now_v7().to_string());
        let row = |import: &'static str, line: &'static str, table: &'static str| {
            [
                (HEADER_IMPORT, Some(import.as_bytes())),
                (HEADER_LINE, Some(line.as_bytes())),
                (HEADER_TABLE, Some(table.as_bytes())),
                (HEADER_SIGNATURE, Some(&b"ab"[..])),
            ]
        };
        let (a, b): (&'static str, &'static str) = (a.leak(), b.leak());
        let mut d = MetaDecoder::default();
        let first = d.decode(row(a, "2", "s.t")).meta.unwrap();
        let decoded = d.decode(row(a, "3", "s.t"));
        let (second, sig) = (decoded.meta.unwrap(), decoded.signature);
        assert!(
            Arc::ptr_eq(&first.table, &second.table),
            "a run shares its table"
        );
        assert_eq!((second.line, sig), (3, Some(&b"ab"[..])));
        // Every change is decoded, and what does not parse is not taken from the run before.
        let other = d.decode(row(b, "4", "s.u")).meta.unwrap();
        assert_eq!(
            (other.import.to_string(), other.table.to_string()),
            (b.to_owned(), "s.u".to_owned())
        );
        assert!(
            d.decode(row(b, "5", "u")).meta.is_none(),
            "a table without schema"
        );
        assert!(d.decode(row("x", "5", "s.u")).meta.is_none(), "not a UUID");
        assert_eq!(
            d.decode(row(a, "6", "s.t"))
                .meta
                .unwrap()
                .import
                .to_string(),
            a
        );
        assert_eq!(
            d.decode(row(a, "7", "s.t")).meta.unwrap().table.to_string(),
            "s.t"
        );
    }

    #[test]
    fn a_signed_row_verifies_and_any_change_or_another_key_does_not() {
        use rdkafka::message::Headers;
        let table = TableName::parse("public.t", "public").unwrap();
        let import = Uuid::now_v7();
        let signer = Signer::new(b"a signing key of some length");
        let value = br#"{"id":"1"}"#;
        let h = RowHeaders::new(import, &table, Some(signer.clone())).for_row(7, value);
        let pairs: Vec<(&str, Option<&[u8]>)> = h.iter().map(|h| (h.key, h.value)).collect();
        let meta = RowMeta::decode(pairs.iter().copied()).unwrap();
        let sig = pairs
            .iter()
            .find(|(k, _)| *k == HEADER_SIGNATURE)
            .unwrap()
            .1;
        assert_eq!(sig.unwrap().len(), 64);
        assert!(signer.verify(&meta, value, sig));
        assert!(
            !signer.verify(&meta, br#"{"id":"2"}"#, sig),
            "another value"
        );
        let moved = RowMeta {
            line: 8,
            ..meta.clone()
        };
        assert!(!signer.verify(&moved, value, sig), "another line");
        let elsewhere = RowMeta {
            table: Arc::new(TableName::parse("public.u", "").unwrap()),
            ..meta.clone()
        };
        assert!(!signer.verify(&elsewhere, value, sig), "another table");
        assert!(!Signer::new(b"another key").verify(&meta, value, sig));
        assert!(!signer.verify(&meta, value, None), "unsigned");
        assert!(!signer.verify(&meta, value, Some(b"00")), "not a signature");
        // Without a key, no signature header.
        let plain = RowHeaders::new(import, &table, None).for_row(7, value);
        assert!(plain.iter().all(|h| h.key != HEADER_SIGNATURE));
    }

    #[test]
    fn a_signed_pack_verifies_over_its_lines_and_not_as_a_row() {
        use rdkafka::message::Headers;
        let table = TableName::parse("public.t", "public").unwrap();
        let import = Uuid::now_v7();
        let signer = Signer::new(b"a signing key of some length");
        let value = br#"[{"id":"1"},{"id":"2"}]"#;
        let h = RowHeaders::new(import, &table, Some(signer.clone())).for_pack(7, "7,9", value);
        let pairs: Vec<(&str, Option<&[u8]>)> = h.iter().map(|h| (h.key, h.value)).collect();
        let d = MetaDecoder::default().decode(pairs.iter().copied());
        let meta = d.meta.unwrap();
        assert_eq!((meta.line, d.lines), (7, Some(&b"7,9"[..])));
        assert!(signer.verify_pack(&meta, b"7,9", value, d.signature));
        assert!(
            !signer.verify_pack(&meta, b"7,8", value, d.signature),
            "lines"
        );
        assert!(!signer.verify(&meta, value, d.signature), "as a row");
        let other = br#"[{"id":"1"},{"id":"3"}]"#;
        assert!(!signer.verify_pack(&meta, b"7,9", other, d.signature));
    }

    #[test]
    fn non_objects_are_refused() {
        assert!(Row::decode(b"[1,2]").is_err());
        assert!(Row::decode(br#"{"a":1}"#).is_err());
        assert!(Row::decode(br#"{"a":"x"} trailing"#).is_err());
    }
}
