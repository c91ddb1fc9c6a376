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
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.clone())
            .await;
        match attempt {
            Ok(pool) => return Ok(pool),
            Err(e) if is_retryable(&e) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "postgres not reachable yet");
            }
            Err(e) => return Err(e.into()),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Err(DbError::Cancelled),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
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

/// Errors worth waiting out: the database is down, restarting, overloaded, or a transaction lost
/// a race. Everything else (data errors, SQL errors) is not retried.
pub fn is_retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => match db.code() {
            // 08: connection exception; 40: transaction rollback (serialization, deadlock);
            // 53: insufficient resources; 57P0x: admin shutdown / crash shutdown / cannot connect now.
            Some(code) => {
                code.starts_with("08")
                    || code.starts_with("40")
                    || code.starts_with("53")
                    || code.starts_with("57P")
            }
            None => false,
        },
        _ => false,
    }
}

/// Errors caused by the values of a row (SQLSTATE class 22 data exception, 23 integrity
/// constraint violation): the row is rejected, the rest goes on.
pub fn is_data_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("22") || c.starts_with("23")),
        _ => false,
    }
}
