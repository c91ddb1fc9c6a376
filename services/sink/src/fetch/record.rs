//! A message as the sink keeps it between the consumer and a batch: offset, csvbus headers
//! (or, for a message without them, its headers as text for the dead letter), key and payload.

use csvbus_shared::message::{MetaDecoder, RowMeta};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message;

/// One message, owned, as the consumer received it.
#[derive(Debug, Clone)]
pub struct Record {
    pub offset: i64,
    pub partition: i32,
    /// `None` when the message lacks valid csvbus headers (it is dead-lettered).
    pub meta: Option<RowMeta>,
    /// The `csvbus-signature` header, when there is one (checked with a signing key).
    pub signature: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub key: Option<Vec<u8>>,
    /// The headers as text, kept only for messages without valid csvbus headers.
    pub raw_headers: Option<Vec<(String, String)>>,
}

impl Record {
    /// `metas` decodes the csvbus headers of the consumer's messages in turn.
    pub fn from_message(m: &BorrowedMessage<'_>, metas: &mut MetaDecoder) -> Self {
        let (meta, signature) = m
            .headers()
            .map(|h| metas.decode(h.iter().map(|h| (h.key, h.value))))
            .unwrap_or_default();
        let signature = signature.map(<[u8]>::to_vec);
        let raw_headers = meta.is_none().then(|| {
            m.headers().map_or_else(Vec::new, |h| {
                h.iter()
                    .map(|x| {
                        let v = x.value.map(String::from_utf8_lossy).unwrap_or_default();
                        (x.key.to_owned(), v.into_owned())
                    })
                    .collect()
            })
        });
        Self {
            offset: m.offset(),
            partition: m.partition(),
            meta,
            signature,
            payload: m.payload().unwrap_or_default().to_vec(),
            key: m.key().map(<[u8]>::to_vec),
            raw_headers,
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
