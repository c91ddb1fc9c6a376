//! `csvbus.deliveries`: the webhook deliveries an import's end owes, with one owner. A delivery
//! is owed by the transaction that makes an import's status final (the `imports_owe_delivery`
//! trigger, so that no transition can forget it); a sender claims a due one with
//! `FOR UPDATE SKIP LOCKED` and records the attempt in the same transaction, so that replicas
//! never send one delivery at the same time and a restart finds every delivery still owed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use super::ImportStatus;

/// Where a delivery stands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum DeliveryState {
    /// Owed: the next attempt is at `next_attempt_at`.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// The retry window passed without a 2xx (the import itself is not affected).
    Failed,
}

/// One webhook delivery of an import, as `GET /v1/imports/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    /// The delivery's id, sent as `Csvbus-Delivery` (the same on every retry).
    pub id: Uuid,
    /// The final status announced.
    pub event: ImportStatus,
    pub state: DeliveryState,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The last failed attempt: the receiver's HTTP status, or why no answer came.
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// The select expression of an import's deliveries, oldest first (a JSON array).
pub(crate) const DELIVERIES_SQL: &str = "COALESCE((SELECT jsonb_agg(jsonb_build_object(
        'id', d.id, 'event', d.event, 'state', d.state, 'attempts', d.attempts,
        'next_attempt_at', CASE WHEN d.state = 'pending' THEN d.next_attempt_at END,
        'last_status', d.last_status, 'last_error', d.last_error,
        'delivered_at', d.delivered_at) ORDER BY d.created_at)
      FROM csvbus.deliveries d WHERE d.import_id = csvbus.imports.id), '[]'::jsonb)";

/// A delivery claimed for one attempt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Due {
    pub id: Uuid,
    pub import_id: Uuid,
    pub event: ImportStatus,
    pub url: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

/// Claims the delivery due first that no other transaction holds; it stays locked until `tx`
/// ends, which must record the attempt ([`record`]).
pub async fn claim_due(tx: &mut Transaction<'_, Postgres>) -> Result<Option<Due>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, import_id, event, url, attempts, created_at FROM csvbus.deliveries
         WHERE state = 'pending' AND next_attempt_at <= now()
         ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED",
    )
    .fetch_optional(&mut **tx)
    .await
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// 2xx.
    Delivered { status: i32 },
    /// No 2xx; tried again after `retry_in`, or given up (`None`: the window is over).
    Failed {
        status: Option<i32>,
        error: String,
        retry_in: Option<std::time::Duration>,
    },
}

/// Records the attempt at `id` (in the transaction that claimed it).
pub async fn record(conn: &mut PgConnection, id: Uuid, a: &Attempt) -> Result<(), sqlx::Error> {
    let q = match a {
        Attempt::Delivered { status } => sqlx::query(
            "UPDATE csvbus.deliveries SET state = 'delivered', attempts = attempts + 1,
                    last_status = $2, last_error = NULL, delivered_at = now() WHERE id = $1",
        )
        .bind(id)
        .bind(status),
        Attempt::Failed {
            status,
            error,
            retry_in,
        } => sqlx::query(
            "UPDATE csvbus.deliveries SET attempts = attempts + 1, last_status = $2,
                    last_error = $3,
                    state = CASE WHEN $4::float8 IS NULL THEN 'failed' ELSE 'pending' END,
                    next_attempt_at = now() + make_interval(secs => coalesce($4, 0))
             WHERE id = $1",
        )
        .bind(id)
        .bind(status)
        .bind(error)
        .bind(retry_in.map(|d| d.as_secs_f64())),
    };
    q.execute(conn).await?;
    Ok(())
}
