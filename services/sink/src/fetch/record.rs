//! A row as the sink keeps it between the consumer and a batch: its message's offset (and its
//! place in the message, for a pack of rows), csvbus headers (or, for a message without them,
//! its headers as text for the dead letter), key and value.

use bytes::Bytes;
use csvbus_shared::message::{unpack, MetaDecoder, RowMeta, Signer, HEADER_LINES};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message;

/// One row (or one message that is not a readable row), owned, as the consumer received it.
#[derive(Debug, Clone)]
pub struct Record {
    pub offset: i64,
    /// Its place among its message's rows (0 for a message of one row).
    pub sub: u32,
    /// The last (or only) row of its message: a batch ends only after one, since the position
    /// stored with a batch is an offset.
    pub last: bool,
    pub partition: i32,
    /// `None` when the message lacks valid csvbus headers (it is dead-lettered).
    pub meta: Option<RowMeta>,
    pub signature: Signature,
    /// Its value: for a row of a pack, its part of the message's value, copied once for all
    /// its rows.
    pub payload: Bytes,
    pub key: Option<Vec<u8>>,
    /// The headers as text, kept only for messages without valid csvbus headers (and a pack's
    /// lines when the pack cannot be read).
    pub raw_headers: Option<Vec<(String, String)>>,
    /// A pack that cannot be read, and why: the whole message is this one record, a dead letter.
    pub unreadable: Option<String>,
}

/// What vouches for a record, checked with `CSVBUS_SIGNING_KEY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// A row's own `csvbus-signature` header, if any: checked when its batch is sorted.
    Row(Option<Vec<u8>>),
    /// A row of a pack: the pack's signature was checked once, when it was read (true without
    /// a signing key).
    Pack { valid: bool },
}

impl Default for Record {
    fn default() -> Self {
        Self {
            offset: 0,
            sub: 0,
            last: true,
            partition: 0,
            meta: None,
            signature: Signature::Row(None),
            payload: Bytes::new(),
            key: None,
            raw_headers: None,
            unreadable: None,
        }
    }
}

impl Record {
    /// Appends the rows of `m` to `out`: one record for a row message, one per row for a pack.
    /// `metas` decodes the csvbus headers of the consumer's messages in turn; `signer` checks a
    /// pack's signature.
    pub fn read(
        m: &BorrowedMessage<'_>,
        metas: &mut MetaDecoder,
        signer: Option<&Signer>,
        out: &mut Vec<Record>,
    ) {
        let decoded = m
            .headers()
            .map(|h| metas.decode(h.iter().map(|h| (h.key, h.value))))
            .unwrap_or_default();
        let raw_headers = decoded.meta.is_none().then(|| headers_text(m));
        let payload = m.payload().unwrap_or_default();
        let one = Record {
            offset: m.offset(),
            partition: m.partition(),
            key: m.key().map(<[u8]>::to_vec),
            ..Record::default()
        };
        let (Some(lines), Some(meta)) = (decoded.lines, decoded.meta.as_ref()) else {
            out.push(Record {
                meta: decoded.meta,
                signature: Signature::Row(decoded.signature.map(<[u8]>::to_vec)),
                payload: Bytes::copy_from_slice(payload),
                raw_headers,
                ..one
            });
            return;
        };
        let valid = signer.is_none_or(|s| s.verify_pack(meta, lines, payload, decoded.signature));
        let signature = Signature::Pack { valid };
        match unpack(meta.line, lines, payload) {
            Ok(rows) if valid => {
                let n = rows.len();
                let value = Bytes::copy_from_slice(payload);
                out.reserve(n);
                for (i, (line, row)) in rows.into_iter().enumerate() {
                    // `row` lies within `payload`: the same range of the copy.
                    let start = row.as_ptr() as usize - payload.as_ptr() as usize;
                    out.push(Record {
                        sub: i as u32,
                        last: i + 1 == n,
                        meta: Some(RowMeta {
                            line,
                            ..meta.clone()
                        }),
                        signature: signature.clone(),
                        payload: value.slice(start..start + row.len()),
                        ..one.clone()
                    });
                }
            }
            unread => out.push(Record {
                meta: decoded.meta.clone(),
                signature,
                payload: Bytes::copy_from_slice(payload),
                raw_headers: Some(vec![(
                    HEADER_LINES.to_owned(),
                    String::from_utf8_lossy(lines).into_owned(),
                )]),
                unreadable: unread.err().map(|e| e.to_string()),
                ..one
            }),
        }
    }

    /// [`Record::read`], except that a message whose reading panics — a csvbus defect, not
    /// the message's — is one dead letter with that reason instead of the end of the fetch
    /// thread, and with it of every partition's writes.
    pub fn read_or_set_aside(
        m: &BorrowedMessage<'_>,
        metas: &mut MetaDecoder,
        signer: Option<&Signer>,
        out: &mut Vec<Record>,
    ) {
        let unread = |out: &mut Vec<Record>| {
            out.push(Record {
                offset: m.offset(),
                partition: m.partition(),
                payload: Bytes::copy_from_slice(m.payload().unwrap_or_default()),
                key: m.key().map(<[u8]>::to_vec),
                raw_headers: Some(headers_text(m)),
                unreadable: Some(READ_PANICKED.to_owned()),
                ..Record::default()
            })
        };
        if guarded(out, |out| Record::read(m, metas, signer, out), unread) {
            // Its cache may be half updated.
            *metas = MetaDecoder::default();
        }
    }

    /// Bytes this record holds in memory (for the sink's buffer bound).
    pub fn held_bytes(&self) -> usize {
        self.payload.len() + self.key.as_ref().map_or(0, Vec::len) + 160
    }

    /// Its headers as JSON, for a dead letter.
    pub fn headers_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for (k, v) in self.meta.iter().flat_map(RowMeta::to_text) {
            map.insert(k.into(), v.into());
        }
        for (k, v) in self.raw_headers.iter().flatten() {
            map.insert(k.clone(), v.clone().into());
        }
        serde_json::Value::Object(map)
    }
}

/// The dead letter's reason for a message [`Record::read_or_set_aside`] could not read.
pub const READ_PANICKED: &str =
    "the sink failed while reading this message (a csvbus defect: its log has the panic)";

/// Runs `read` on `out`; when it panics, drops what it pushed and runs `unread` instead: true.
fn guarded(
    out: &mut Vec<Record>,
    read: impl FnOnce(&mut Vec<Record>),
    unread: impl FnOnce(&mut Vec<Record>),
) -> bool {
    let before = out.len();
    let panicked =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(&mut *out))).is_err();
    if panicked {
        out.truncate(before);
        unread(out);
    }
    panicked
}

fn headers_text(m: &BorrowedMessage<'_>) -> Vec<(String, String)> {
    m.headers().map_or_else(Vec::new, |h| {
        h.iter()
            .map(|x| {
                let v = x.value.map(String::from_utf8_lossy).unwrap_or_default();
                (x.key.to_owned(), v.into_owned())
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_that_panics_leaves_one_record_in_place_of_its_rows() {
        let mut out = vec![Record::default()];
        let unread = |out: &mut Vec<Record>| {
            out.push(Record {
                unreadable: Some(READ_PANICKED.to_owned()),
                ..Record::default()
            })
        };
        assert!(!guarded(
            &mut out,
            |out| out.push(Record::default()),
            unread
        ));
        assert_eq!(out.len(), 2);
        let panics = |out: &mut Vec<Record>| {
            out.push(Record::default());
            panic!("a defect");
        };
        assert!(guarded(&mut out, panics, unread));
        assert_eq!(
            out.len(),
            3,
            "the half-read row is dropped, one record stands for it"
        );
        assert_eq!(out[2].unreadable.as_deref(), Some(READ_PANICKED));
    }
}
