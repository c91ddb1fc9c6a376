//! The `nums` table of the sink tests: ids with values derived from them, so a table can be
//! checked whole after kills and outages.

use crate::TestDb;

/// The table.
pub const NUMS: &str = "CREATE TABLE nums (id bigint PRIMARY KEY, v text NOT NULL, half int)";

/// CSV of ids `from..=to` in chunks of 10,000 rows, values derived from the id.
pub fn nums_csv(
    from: u64,
    to: u64,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    let header = futures::stream::iter([Ok(b"id,v,half\n".to_vec())]);
    let chunks = futures::stream::iter((from..=to).step_by(10_000).map(move |s| {
        let mut out = Vec::with_capacity(300_000);
        for i in s..=(s + 9_999).min(to) {
            use std::io::Write;
            writeln!(out, "{i},\"v{i}, \"\"q\"\"\",{}", i / 2).expect("write to a Vec");
        }
        Ok(out)
    }));
    futures::StreamExt::chain(header, chunks)
}

/// Asserts `nums` holds ids 1..=n exactly once with their derived values, and nothing was
/// rejected.
pub async fn assert_nums_exact(db: &TestDb, n: i64) {
    let (count, distinct, min, max, bad): (i64, i64, Option<i64>, Option<i64>, i64) =
        sqlx::query_as(
            "SELECT count(*), count(DISTINCT id), min(id), max(id),
                    count(*) FILTER (WHERE v <> 'v' || id || ', \"q\"' OR half <> id / 2)
               FROM nums",
        )
        .fetch_one(&db.pool)
        .await
        .expect("count nums");
    assert_eq!(
        (count, distinct, min, max, bad),
        (n, n, Some(1), Some(n), 0),
        "(rows, distinct ids, min, max, wrong values)"
    );
    let rejected: i64 = sqlx::query_scalar("SELECT count(*) FROM csvbus.rejected_rows")
        .fetch_one(&db.pool)
        .await
        .expect("count rejected");
    assert_eq!(rejected, 0, "no row was rejected");
}
