//! Kafka client construction and topic administration, the same for every binary.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::ClientConfig;

/// A Kafka operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaAdminError {
    #[error("kafka client: {0}")]
    Client(#[from] KafkaError),
    #[error("creating topic {topic}: {code}")]
    CreateTopic {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("topic {0} did not appear in the broker's metadata")]
    TopicMissing(String),
}

/// The base client configuration: bootstrap servers and what every client shares.
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        // Addresses in the metadata are loopback in the local stack; keep lookups simple.
        .set("broker.address.family", "v4")
        .set("socket.keepalive.enable", "true");
    c
}

/// The configuration every Kafka client of a service starts from: [`client_config`] and the
/// operator's client-wide settings (`CSVBUS_KAFKA_CLIENT_*`: TLS, SASL). Admin clients,
/// probes, producers and consumers are all built from it, so none of them misses a setting.
pub fn service_client(config: &crate::config::CommonConfig) -> ClientConfig {
    let mut c = client_config(&config.kafka_brokers);
    for (k, v) in &config.kafka_client {
        c.set(k, v);
    }
    c
}

/// Creates `topic` with `partitions` partitions unless it exists; waits until the broker's
/// metadata shows it, so producers and consumers can use it at once.
pub async fn ensure_topic(
    base: &ClientConfig,
    topic: &str,
    partitions: i32,
) -> Result<(), KafkaAdminError> {
    // A topic that is there already (every start but the first) needs no admin client, no
    // request to create it and no second client to wait for it: one metadata answer.
    if topic_ready(&base.create()?, topic).await {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = base.create()?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics([&new], &opts).await? {
        match result {
            Ok(_) => tracing::info!(topic, partitions, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(KafkaAdminError::CreateTopic { topic, code }),
        }
    }
    wait_for_topic(base, topic, Duration::from_secs(20)).await
}

/// Whether the metadata has `topic`, without error, with partitions.
fn has_partitions(md: &rdkafka::metadata::Metadata, topic: &str) -> bool {
    md.topics()
        .iter()
        .any(|x| x.name() == topic && x.error().is_none() && !x.partitions().is_empty())
}

/// Makes sure the topic of `config` exists: creates it (`CSVBUS_TOPIC_CREATE=true`) or waits
/// for it.
pub async fn prepare_topic(config: &crate::config::CommonConfig) -> Result<(), KafkaAdminError> {
    let base = service_client(config);
    if config.topic_create {
        ensure_topic(&base, &config.topic, config.topic_partitions).await
    } else {
        wait_for_topic(&base, &config.topic, Duration::from_secs(60)).await
    }
}

/// Polls the broker's metadata until `topic` has partitions, or `timeout` passes.
pub async fn wait_for_topic(
    base: &ClientConfig,
    topic: &str,
    timeout: Duration,
) -> Result<(), KafkaAdminError> {
    let producer: FutureProducer = base.create()?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if topic_ready(&producer, topic).await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(KafkaAdminError::TopicMissing(topic.to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether the brokers' metadata has `topic` with partitions (asked on a blocking thread).
async fn topic_ready(producer: &FutureProducer, topic: &str) -> bool {
    let (p, t) = (producer.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        p.client()
            .fetch_metadata(Some(&t), Duration::from_secs(5))
            .is_ok_and(|md| has_partitions(&md, &t))
    })
    .await
    .unwrap_or(false)
}

/// Whether the brokers answer a metadata request within `timeout` (readiness probes).
pub async fn brokers_reachable(producer: &FutureProducer, timeout: Duration) -> bool {
    let p = producer.clone();
    tokio::task::spawn_blocking(move || p.client().fetch_metadata(None, timeout).is_ok())
        .await
        .unwrap_or(false)
}

/// How many partitions `topic` has, as the brokers say (0: the topic is not there, or in
/// error). `fetch` asks the brokers with the client at hand (a producer or a consumer), on a
/// blocking thread.
pub async fn partition_count<C: Send + 'static>(
    client: C,
    topic: &str,
    timeout: Duration,
    fetch: fn(&C, &str, Duration) -> rdkafka::error::KafkaResult<rdkafka::metadata::Metadata>,
) -> Result<i32, KafkaError> {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let md = fetch(&client, &topic, timeout)?;
        Ok(md
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map_or(0, |t| t.partitions().len() as i32))
    })
    .await
    .unwrap_or(Err(KafkaError::Canceled))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CommonConfig, Env};

    #[test]
    fn client_wide_settings_reach_the_base_of_every_client() {
        let env = Env::from_pairs([
            ("KAFKA_BROKERS", "b1:9093"),
            ("CSVBUS_KAFKA_CLIENT_SECURITY_PROTOCOL", "sasl_ssl"),
            ("CSVBUS_KAFKA_CLIENT_SASL_MECHANISM", "SCRAM-SHA-512"),
        ]);
        let c = service_client(&CommonConfig::from_env(&env).unwrap());
        assert_eq!(c.get("bootstrap.servers"), Some("b1:9093"));
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
    }
}
