//! Readiness as both services report it on `/readyz`: the database answers and the brokers
//! give metadata.

use std::time::Duration;

use rdkafka::producer::FutureProducer;
use serde::Serialize;
use sqlx::PgPool;

/// What `/readyz` answers: whether each dependency answers.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub database: bool,
    pub broker: bool,
}

impl Readiness {
    /// Asks both, at once; the broker gets `timeout`.
    pub async fn check(pool: &PgPool, probe: &FutureProducer, timeout: Duration) -> Self {
        let (db, broker) = tokio::join!(
            sqlx::query("SELECT 1").execute(pool),
            crate::kafka::brokers_reachable(probe, timeout)
        );
        Self {
            database: db.is_ok(),
            broker,
        }
    }

    pub fn ready(&self) -> bool {
        self.database && self.broker
    }
}
