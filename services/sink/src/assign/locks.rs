//! Session-level advisory locks, the claims' tool: 31-bit keys, taking and releasing, and who
//! holds which keys of a namespace.

use sqlx::PgConnection;

/// A 31-bit key for `parts`, so that it reads the same as an `oid` in `pg_locks`.
pub fn key(parts: &[&str]) -> i32 {
    (xxhash_rust::xxh3::xxh3_64(parts.join("\u{0}").as_bytes()) & 0x7fff_ffff) as i32
}

pub async fn try_lock(conn: &mut PgConnection, ns: i32, k: i32) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
        .bind(ns)
        .bind(k)
        .fetch_one(&mut *conn)
        .await
}

pub async fn unlock(conn: &mut PgConnection, ns: i32, k: i32) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_unlock($1, $2)")
        .bind(ns)
        .bind(k)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The keys held under `ns` in this database by any session, sorted.
pub async fn holders(conn: &mut PgConnection, ns: i32) -> Result<Vec<i32>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT objid::bigint::int FROM pg_locks
          WHERE locktype = 'advisory' AND granted AND objsubid = 2
            AND classid = $1::int::oid
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
          ORDER BY 1",
    )
    .bind(ns)
    .fetch_all(conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_31_bit_and_differ_by_group_and_topic() {
        let a = key(&["csvbus-members", "g", "t"]);
        assert!(a >= 0);
        assert_eq!(a, key(&["csvbus-members", "g", "t"]));
        assert_ne!(a, key(&["csvbus-members", "g2", "t"]));
        assert_ne!(a, key(&["csvbus-partitions", "g", "t"]));
        // The separator keeps ("ab", "c") apart from ("a", "bc").
        assert_ne!(key(&["ab", "c"]), key(&["a", "bc"]));
    }
}
