//! Whether the topic still holds an import's rows: where each partition starts now, and the
//! messages at the spans' first offsets.

use std::time::Duration;

use csvbus_shared::config::CommonConfig;
use csvbus_shared::imports::spans::Span;
use rdkafka::consumer::{Consumer, StreamConsumer};
use uuid::Uuid;

use super::reader::{reader_config, PartitionRows, ReadError};

/// Why a span of the import can no longer be read back whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gone {
    pub partition: i32,
    pub reason: String,
}

/// Whether the partition still holds the start of `span`, given where it now starts (its low
/// watermark). Its end is checked by reading it: a high watermark is not trusted (tansu's
/// counts record batches, not records).
fn judge(span: &Span, low: i64) -> Option<Gone> {
    (low > span.first_offset).then(|| Gone {
        partition: span.partition,
        reason: format!(
            "offsets {}..{} are gone (retention; the partition now starts at {low})",
            span.first_offset,
            low.min(span.last_offset + 1)
        ),
    })
}

/// The spans of `import` the topic no longer holds: by where each partition starts now (its
/// low watermark), then by the messages at each span's ends, which must be the import's rows
/// (a recreated topic has other messages at those offsets, or none). Mid-span holes only a
/// compacted topic would make.
pub async fn missing(
    config: &CommonConfig,
    import: Uuid,
    spans: &[Span],
) -> Result<Vec<Gone>, String> {
    let mut gone = Vec::new();
    for s in spans {
        let (c, topic, p) = (config.clone(), config.topic.clone(), s.partition);
        let (low, _) = tokio::task::spawn_blocking(move || {
            let consumer: StreamConsumer = reader_config(&c).create()?;
            consumer.fetch_watermarks(&topic, p, Duration::from_secs(10))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        if let Some(g) = judge(s, low) {
            gone.push(g);
            continue;
        }
        // Only the first offset: tansu hands out nothing when a fetch starts inside a batch,
        // and a span's last row is often in the middle of one.
        {
            let at = s.first_offset;
            let one = Span {
                partition: s.partition,
                first_offset: at,
                last_offset: at,
            };
            let mut r = PartitionRows::open(config, one, import)?;
            r.max_line = i64::MIN;
            let row = match r.next().await {
                Ok(row) => row,
                Err(ReadError::Gone) => None,
                Err(ReadError::Broker(e)) => return Err(e),
            };
            if row.is_none() {
                gone.push(Gone {
                    partition: s.partition,
                    reason: format!(
                        "offset {at} holds no row of the import (the topic was recreated, or \
                         compacted)"
                    ),
                });
            }
        }
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_is_gone_when_the_partition_no_longer_reaches_it() {
        let s = Span {
            partition: 2,
            first_offset: 100,
            last_offset: 200,
        };
        assert_eq!(judge(&s, 0), None);
        assert_eq!(judge(&s, 100), None);
        let g = judge(&s, 150).unwrap();
        assert_eq!(g.partition, 2);
        assert!(g.reason.contains("100..150"), "{g:?}");
        assert!(judge(&s, 300).unwrap().reason.contains("100..201"));
    }
}
