//! The transaction every write of the sink runs in: a batch's ([`super::writer`]) and an
//! import's move from staging ([`crate::finalize`]) alike.

use std::time::Duration;

use sqlx::{PgPool, Postgres, Transaction};

/// Begins a write: deferred constraints fire per statement (inside the savepoint of the rows
/// that break them, so they are bisected like any refusal), and no statement runs longer than
/// `statement_timeout` (a trigger that never ends refuses its rows instead of holding the
/// partition).
pub(crate) async fn begin(
    pool: &PgPool,
    statement_timeout: Duration,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET CONSTRAINTS ALL IMMEDIATE")
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!(
        "SET LOCAL statement_timeout = {}",
        statement_timeout.as_millis()
    ))
    .execute(&mut *tx)
    .await?;
    Ok(tx)
}
