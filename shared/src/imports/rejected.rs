//! Rows that did not make it into their table (`csvbus.rejected_rows`): where and why, stored
//! whatever their text.

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Where a row was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The upload service: CSV or encoding errors.
    Parse,
    /// The sink: Postgres refused the values.
    Write,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::Parse => "parse",
            Stage::Write => "write",
        }
    }
}

/// A rejected row to record (upload: `raw` text; sink: `fields`).
#[derive(Debug, Clone)]
pub struct Rejected<'a> {
    pub import_id: Uuid,
    pub line: i64,
    pub stage: Stage,
    pub reason: &'a str,
    pub raw: Option<&'a str>,
    pub fields: Option<serde_json::Value>,
}

/// Rejected rows of one import kept with their content (`raw`, `fields`); later ones keep their
/// line and reason only, so what an import's refusals store is bounded by its `max_rejected`
/// times a short record, not by the rows' size.
pub const KEPT_IN_FULL: i64 = 10_000;

/// Largest row (its message value, in bytes) the sink keeps with a refusal.
pub const FIELDS_LIMIT: usize = 16 * 1024;

/// Longest reason kept (Postgres' messages quote the value they refuse).
pub const REASON_LIMIT: usize = 1024;

impl Rejected<'_> {
    /// Drops the row's content when `earlier` rows of its import were rejected already, past
    /// [`KEPT_IN_FULL`].
    pub fn kept_in_full_after(mut self, earlier: i64) -> Self {
        if earlier >= KEPT_IN_FULL {
            self.raw = None;
            self.fields = None;
        }
        self
    }
}

/// Records a rejected row. Whatever its text, it is storable: NUL characters, which neither
/// `text` nor `jsonb` accept, are stored as the six characters `\u0000`; the reason is cut at
/// [`REASON_LIMIT`] bytes.
pub async fn insert_rejected(conn: &mut PgConnection, r: Rejected<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO csvbus.rejected_rows (import_id, line, stage, reason, raw, fields)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(r.import_id)
    .bind(r.line)
    .bind(r.stage.as_str())
    .bind(storable_text(cut(r.reason, REASON_LIMIT)).as_ref())
    .bind(r.raw.map(storable_text).as_deref())
    .bind(r.fields.map(storable_json))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records rejected rows as [`insert_rejected`] does, a statement per [`MANY_AT_ONCE`] of them:
/// where a tenth of a file's rows are refused, a round trip each was most of the sink's time.
pub async fn insert_rejected_many(
    conn: &mut PgConnection,
    rows: &[Rejected<'_>],
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(MANY_AT_ONCE) {
        let ids: Vec<Uuid> = chunk.iter().map(|r| r.import_id).collect();
        let lines: Vec<i64> = chunk.iter().map(|r| r.line).collect();
        let stages: Vec<&str> = chunk.iter().map(|r| r.stage.as_str()).collect();
        let reasons: Vec<String> = chunk
            .iter()
            .map(|r| storable_text(cut(r.reason, REASON_LIMIT)).into_owned())
            .collect();
        let raws: Vec<Option<String>> = chunk
            .iter()
            .map(|r| r.raw.map(|t| storable_text(t).into_owned()))
            .collect();
        let fields: Vec<Option<serde_json::Value>> = chunk
            .iter()
            .map(|r| r.fields.clone().map(storable_json))
            .collect();
        sqlx::query(
            "INSERT INTO csvbus.rejected_rows (import_id, line, stage, reason, raw, fields)
             SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                                  $6::jsonb[])",
        )
        .bind(&ids)
        .bind(&lines)
        .bind(&stages)
        .bind(&reasons)
        .bind(&raws)
        .bind(&fields)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Rejected rows [`insert_rejected_many`] sends in one statement.
const MANY_AT_ONCE: usize = 1000;

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Text Postgres stores as is: NUL becomes the six characters `\u0000`.
pub fn storable_text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\\u0000"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// A JSON value `jsonb` accepts: NUL in strings and keys becomes the six characters `\u0000`.
pub fn storable_json(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => Value::String(storable_text(&s).into_owned()),
        Value::Array(a) => Value::Array(a.into_iter().map(storable_json).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (storable_text(&k).into_owned(), storable_json(v)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_made_storable_in_text_and_json() {
        assert_eq!(storable_text("a\0b"), "a\\u0000b");
        assert!(matches!(
            storable_text("plain"),
            std::borrow::Cow::Borrowed("plain")
        ));
        let v = serde_json::json!({"k\0": ["x\0", 1], "n": null});
        assert_eq!(
            storable_json(v),
            serde_json::json!({"k\\u0000": ["x\\u0000", 1], "n": null})
        );
    }
}

/// A page of rejected rows (`GET /v1/imports/{id}/rejected`), in file order; pass `next_after`
/// (the page's last line) as `after` for the next page.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RejectedPage {
    pub rows: Vec<RejectedRow>,
    /// The last line of this page when more may follow.
    pub next_after: Option<i64>,
}

/// One rejected row.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct RejectedRow {
    pub id: i64,
    /// The line of the file the record starts on (1 is the header).
    pub line: i64,
    /// `parse` (the upload service: CSV or encoding) or `write` (Postgres refused the values).
    pub stage: String,
    pub reason: String,
    /// parse: the record's text as it was in the file (bounded).
    pub raw: Option<String>,
    /// write: the values as sent to Postgres, `{column: text | null}`.
    #[schema(value_type = Option<Object>)]
    pub fields: Option<serde_json::Value>,
}

/// The rejected rows of an import on the lines after `after`, in file order (the upload's
/// rejections and the sink's are recorded at different times): `limit` rows, or more when
/// the page's last line holds several, so that a page never splits a line and the next page
/// starts after the last line of this one.
pub async fn page(
    pool: &PgPool,
    id: Uuid,
    after: i64,
    limit: i64,
) -> Result<Vec<RejectedRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, line, stage, reason, raw, fields FROM csvbus.rejected_rows
          WHERE import_id = $1 AND line > $2
            AND line <= (SELECT max(line) FROM (
                  SELECT line FROM csvbus.rejected_rows
                   WHERE import_id = $1 AND line > $2 ORDER BY line LIMIT $3) first)
          ORDER BY line, id",
    )
    .bind(id)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}
