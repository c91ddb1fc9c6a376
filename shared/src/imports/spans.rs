//! Where an import's rows are on the topic: per partition, the first and last offset of its
//! rows, kept by the sink with each batch (`csvbus.import_partitions`). A replay reads them
//! back from there.

use sqlx::PgPool;
use uuid::Uuid;

/// The offsets of an import's rows on one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Span {
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// The spans of import `id`, by partition; `None` when a partition the sink handled rows of it
/// on has no span (rows handled before csvbus kept spans).
pub async fn spans(pool: &PgPool, id: Uuid) -> Result<Option<Vec<Span>>, sqlx::Error> {
    let rows: Vec<(i32, Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT partition, first_offset, last_offset FROM csvbus.import_partitions
          WHERE import_id = $1 ORDER BY partition",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(partition, f, l)| {
            Some(Span {
                partition,
                first_offset: f?,
                last_offset: l?,
            })
        })
        .collect())
}
