//! Postgres connections and csvbus' own schema.
//!
//! One migrator, embedded from `migrations/`, is used by `csvbus migrate` and by each service at
//! start, under an advisory lock of ours, so two services starting at once on a fresh database
//! apply each migration once.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use crate::failure::{classify, Failure};

/// The migrations in `migrations/`, embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid DATABASE_URL: {0}")]
    Url(#[source] sqlx::Error),
    #[error("postgres: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migrating csvbus schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cancelled while waiting for postgres")]
    Cancelled,
}

/// A pool of at most `max_connections`, connected once Postgres answers: at start the database
/// may still be coming up, so connection errors are retried with a capped backoff until
/// `shutdown` is cancelled.
pub async fn connect(
    url: &str,
    max_connections: u32,
    shutdown: &CancellationToken,
) -> Result<PgPool, DbError> {
    let opts: PgConnectOptions = url.parse().map_err(DbError::Url)?;
    // A fixed search_path: the default `"$user", public` would resolve to the `csvbus` schema for a
    // role named csvbus, and sqlx's `_sqlx_migrations` would move there. Every csvbus query names
    // its schema, so nothing else depends on it.
    let opts = opts
        .application_name("csvbus")
        .options([("search_path", "public")]);
    let connect = || {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.clone())
    };
    tokio::select! {
        r = retry_outages("connecting to postgres", None, connect) => Ok(r?),
        _ = shutdown.cancelled() => Err(DbError::Cancelled),
    }
}

/// Key of the session advisory lock held while migrating ("csvbus" in ASCII).
const MIGRATE_LOCK: i64 = 0x6373_7662_7573;

/// Applies csvbus' migrations (idempotent). Services starting at once queue on an advisory lock
/// held on one connection for the whole run, so each migration is applied exactly once.
pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATE_LOCK)
        .execute(&mut *conn)
        .await?;
    // The migrator runs on another connection of the pool while this one holds the lock.
    let result = MIGRATOR.run(pool).await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATE_LOCK)
        .execute(&mut *conn)
        .await?;
    result?;
    Ok(())
}

/// The backoff of every retry that waits out an outage: 100 ms doubling to 5 s, jittered,
/// without end unless `patience` is given (else the caller's cancellation ends it).
pub fn outage_backoff(patience: Option<Duration>) -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .with_total_delay(patience)
}

/// Runs `op` until it succeeds or fails with something other than an outage ([`classify`]),
/// waiting out outages on [`outage_backoff`] for up to `patience` (`None`: for as long as it
/// takes; the caller cancels). Each wait is logged with `what`.
pub async fn retry_outages<T, Fut>(
    what: &str,
    patience: Option<Duration>,
    op: impl FnMut() -> Fut,
) -> Result<T, sqlx::Error>
where
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    use backon::Retryable;
    op.retry(outage_backoff(patience))
        .sleep(tokio::time::sleep)
        .when(|e| classify(e) == Failure::Outage)
        .notify(|e, delay| {
            tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "{what}: the database is unavailable; retrying");
        })
        .await
}
