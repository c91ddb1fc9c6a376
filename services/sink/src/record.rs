//! A message as the sink keeps it between the consumer and a batch: offset, csvbus headers
//! (or, for a message without them, its headers as text for the dead letter), key and payload.

use csvbus_shared::message::{HEADER_IMPORT, HEADER_LINE, HEADER_TABLE};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message;
use uuid::Uuid;

/// One message, owned, as the consumer received it.
#[derive(Debug, Clone)]
pub struct Record {
    pub offset: i64,
    pub partition: i32,
    /// `None` when the message lacks valid csvbus headers (it is dead-lettered).
    pub meta: Option<Meta>,
    pub payload: Vec<u8>,
    pub key: Option<Vec<u8>>,
    /// The headers as text, kept only for messages without valid csvbus headers.
    pub raw_headers: Option<Vec<(String, String)>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub import: Uuid,
    pub line: i64,
    pub table: String,
}

impl Record {
    pub fn from_message(m: &BorrowedMessage<'_>) -> Self {
        let header = |name: &str| -> Option<&str> {
            m.headers()?
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
        };
        let meta = (|| {
            Some(Meta {
                import: header(HEADER_IMPORT)?.parse().ok()?,
                line: header(HEADER_LINE)?.parse().ok()?,
                table: header(HEADER_TABLE)?.to_owned(),
            })
        })();
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
        if let Some(m) = &self.meta {
            map.insert(HEADER_IMPORT.into(), m.import.to_string().into());
            map.insert(HEADER_LINE.into(), m.line.to_string().into());
            map.insert(HEADER_TABLE.into(), m.table.clone().into());
        }
        for (k, v) in self.raw_headers.iter().flatten() {
            map.insert(k.clone(), v.clone().into());
        }
        serde_json::Value::Object(map)
    }
}
