//! Retention: ended imports (with their rejected rows and partition marks) and dead letters
//! older than the operator's setting are deleted, in bounded batches, so that csvbus' own
//! tables do not grow without end.
//!
//! An import counts as ended once it is `completed`, `failed` or `aborted` (`finished_at` is
//! set) and its Idempotency-Key can no longer resume it. Rows of a deleted import that come
//! again from the topic are dead letters (unknown import), never written twice.

use std::time::Duration;

use sqlx::PgPool;

/// What one [`purge`] deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub imports: u64,
    pub rejected_rows: u64,
    pub dead_letters: u64,
}

/// Deletes what is older than `keep`, `batch` rows per statement, until nothing is left.
pub async fn purge(pool: &PgPool, keep: Duration, batch: i64) -> Result<Purged, sqlx::Error> {
    let secs = keep.as_secs_f64();
    // Rejected rows first, a batch at a time: an import's cascade could be 100,000 of them.
    let rejected_rows = repeat(
        pool,
        batch,
        secs,
        "
        DELETE FROM csvbus.rejected_rows WHERE id IN (
          SELECT r.id FROM csvbus.rejected_rows r JOIN csvbus.imports i ON i.id = r.import_id
           WHERE i.finished_at < now() - make_interval(secs => $2)
             AND coalesce(i.key_expires_at, '-infinity') < now()
           LIMIT $1)",
    )
    .await?;
    let imports = repeat(
        pool,
        batch,
        secs,
        "
        DELETE FROM csvbus.imports WHERE id IN (
          SELECT id FROM csvbus.imports
           WHERE finished_at < now() - make_interval(secs => $2)
             AND coalesce(key_expires_at, '-infinity') < now()
           LIMIT $1)",
    )
    .await?;
    let dead_letters = repeat(
        pool,
        batch,
        secs,
        "
        DELETE FROM csvbus.dead_letters WHERE id IN (
          SELECT id FROM csvbus.dead_letters
           WHERE created_at < now() - make_interval(secs => $2) LIMIT $1)",
    )
    .await?;
    Ok(Purged {
        imports,
        rejected_rows,
        dead_letters,
    })
}

/// Runs `sql` (`$1` batch, `$2` seconds kept) until it deletes nothing; the rows deleted.
async fn repeat(pool: &PgPool, batch: i64, secs: f64, sql: &str) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let n = sqlx::query(sql)
            .bind(batch)
            .bind(secs)
            .execute(pool)
            .await?
            .rows_affected();
        total += n;
        if n == 0 {
            return Ok(total);
        }
    }
}
