//! Why a service (upload or sink) could not start or keep running: one type for both, since
//! both stand on the same parts.

/// A service's fatal error: its database, its broker, or its HTTP listener.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    KafkaAdmin(#[from] crate::kafka::KafkaAdminError),
    #[error("kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
}
