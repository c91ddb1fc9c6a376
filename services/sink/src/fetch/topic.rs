//! What the brokers say of the sink's topic, asked through the consumer (the answer also
//! refreshes the consumer's own view of the topic): partition count, high watermarks; and
//! partition lists for assigning.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};

use crate::fetch::feed::SinkConsumer;

pub fn tpl(
    topic: &str,
    partitions: &[i32],
    offset: Offset,
) -> Result<TopicPartitionList, rdkafka::error::KafkaError> {
    let mut list = TopicPartitionList::new();
    for p in partitions {
        list.add_partition_offset(topic, *p, offset)?;
    }
    Ok(list)
}

/// The partition's high watermark, if the brokers answer.
pub async fn high_watermark(
    consumer: &Arc<SinkConsumer>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let (consumer, topic) = (consumer.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        consumer
            .fetch_watermarks(&topic, partition, Duration::from_secs(2))
            .ok()
            .map(|(_, high)| high)
    })
    .await
    .ok()
    .flatten()
}

/// The topic's partition count, from the brokers (see [`csvbus_shared::kafka::partition_count`]).
pub async fn partition_count(
    consumer: &Arc<SinkConsumer>,
    topic: &str,
) -> Result<i32, rdkafka::error::KafkaError> {
    csvbus_shared::kafka::partition_count(
        consumer.clone(),
        topic,
        Duration::from_secs(2),
        |c, t, d| c.fetch_metadata(Some(t), d),
    )
    .await
}
