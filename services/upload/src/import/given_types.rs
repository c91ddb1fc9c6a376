//! `types=`: the types a user gives columns of the table `create=true` makes, over the ones
//! inferred from the first rows — `code:text,amount:numeric(12,2)`. Postgres reads each type
//! (in a temporary table, rolled back) and it is written as Postgres names it; a column given a
//! type is never widened: a value the type does not take is a rejected row with its line, as
//! in a table the user made.

use csvbus_shared::catalog::Column;
use csvbus_shared::infer::normalize;
use sqlx::PgPool;

use crate::error::ApiError;

/// The most columns `types=` may name.
const MAX_GIVEN: usize = 1600;

/// A column's type from `types=`: the name as given and the type as Postgres names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GivenType {
    pub name: String,
    pub type_name: String,
    /// The created column it names, once found ([`apply`]).
    pub column: Option<String>,
}

fn invalid(message: String) -> ApiError {
    ApiError::bad_request("invalid_types", format!("types=: {message}"))
}

/// `name:type` pairs, comma-separated (a comma inside a type's parentheses is the type's:
/// `numeric(12,2)`). A type is letters, digits, `_` and spaces, then at most one
/// parenthesized list of one or two numbers and `[]` — nothing Postgres would read as more
/// than a type name.
pub fn parse(s: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut pairs = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in s.char_indices().chain([(s.len(), ',')]) {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                pairs.push(pair(&s[start..i.min(s.len())])?);
                start = i + 1;
            }
            _ => {}
        }
    }
    if pairs.len() > MAX_GIVEN {
        return Err(invalid(format!("at most {MAX_GIVEN} columns")));
    }
    Ok(pairs)
}

fn pair(item: &str) -> Result<(String, String), ApiError> {
    let Some((name, ty)) = item.rsplit_once(':') else {
        return Err(invalid(format!("{item:?} is not name:type")));
    };
    let (name, ty) = (name.trim(), ty.trim().to_ascii_lowercase());
    if name.is_empty() || !type_syntax(&ty) {
        return Err(invalid(format!(
            "{item:?} is not name:type (a type such as text, bigint, numeric(12,2), date)"
        )));
    }
    Ok((name.to_owned(), ty))
}

/// Whether `t` is a plain type name, with a type modifier and `[]` at most.
fn type_syntax(t: &str) -> bool {
    let (base, rest) = t.split_at(t.find(['(', '[']).unwrap_or(t.len()));
    let base_ok = base.starts_with(|c: char| c.is_ascii_alphabetic())
        && base
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ' ');
    let rest = rest.strip_suffix("[]").unwrap_or(rest).trim();
    let modifier_ok = rest.is_empty()
        || rest
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .is_some_and(|m| {
                let n: Vec<&str> = m.split(',').map(str::trim).collect();
                n.len() <= 2
                    && n.iter()
                        .all(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            });
    base_ok && modifier_ok && t.len() <= 100
}

/// Each type as Postgres names it in a table (`int` → `integer`, `numeric(12, 2)` →
/// `numeric(12,2)`); a type it does not know is a 400 naming it.
pub async fn resolve(
    pool: &PgPool,
    pairs: Vec<(String, String)>,
) -> Result<Vec<GivenType>, ApiError> {
    let mut tx = pool.begin().await?;
    let mut given = Vec::with_capacity(pairs.len());
    for (name, ty) in pairs {
        let unknown = || {
            invalid(format!(
                "{ty:?} (for {name:?}) is not a type Postgres knows"
            ))
        };
        sqlx::query("SAVEPOINT csvbus_type")
            .execute(&mut *tx)
            .await?;
        // Postgres' own type-name grammar reads `ty` (a parameter, not SQL text): what it
        // accepts is a type name and nothing more (`text default 1` is no type name).
        let named: Result<Option<String>, _> = sqlx::query_scalar("SELECT to_regtype($1)::text")
            .bind(&ty)
            .fetch_one(&mut *tx)
            .await;
        if !matches!(named, Ok(Some(_))) {
            return Err(unknown());
        }
        // With its modifier checked and named as a table's column will have it.
        let create = format!("CREATE TEMP TABLE csvbus_given_type (c {ty}) ON COMMIT DROP");
        if let Err(e) = sqlx::query(&create).execute(&mut *tx).await {
            tracing::info!(error = %e, ty, "types=: not a column type");
            return Err(unknown());
        }
        let type_name: String = sqlx::query_scalar(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
              WHERE attrelid = 'pg_temp.csvbus_given_type'::regclass AND attname = 'c'",
        )
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("ROLLBACK TO SAVEPOINT csvbus_type")
            .execute(&mut *tx)
            .await?;
        given.push(GivenType {
            name,
            type_name,
            column: None,
        });
    }
    tx.rollback().await?;
    Ok(given)
}

/// The column of `columns` (created from `header`, field by field) that `name` names: its
/// created name, its header name, or either normalized.
fn find(name: &str, columns: &[Column], header: &[String]) -> Option<usize> {
    let exact = columns.iter().position(|c| c.name == name);
    let by_header = || header.iter().position(|h| h == name);
    let normal = || {
        let n = normalize(name);
        columns.iter().position(|c| c.name == n)
    };
    exact.or_else(by_header).or_else(normal)
}

/// Gives `columns` (created from the file's `header`, the fields left out already gone) the
/// types of `given`, and each of `given` its column; the names of the columns given a type. A
/// name that is no column is a 422.
pub fn apply(
    given: &mut [GivenType],
    columns: &mut [Column],
    header: &[String],
) -> Result<Vec<String>, ApiError> {
    let mut named = Vec::with_capacity(given.len());
    for g in given {
        let Some(i) = find(&g.name, columns, header).filter(|i| *i < columns.len()) else {
            let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
            return Err(ApiError::unprocessable(
                "unknown_column",
                format!(
                    "types= names {:?}, which is no column of the file (its columns: {})",
                    g.name,
                    names.join(", ")
                ),
            ));
        };
        columns[i].type_name = g.type_name.clone();
        g.column = Some(columns[i].name.clone());
        named.push(columns[i].name.clone());
    }
    Ok(named)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_split_at_commas_outside_parentheses() {
        let p = parse("code:text, amount:NUMERIC(12, 2),tags:text[]").unwrap();
        assert_eq!(
            p,
            [
                ("code".into(), "text".into()),
                ("amount".into(), "numeric(12, 2)".into()),
                ("tags".into(), "text[]".into())
            ]
        );
        // A name may hold a colon: the type is after the last one.
        assert_eq!(parse("a:b:date").unwrap(), [("a:b".into(), "date".into())]);
        assert_eq!(
            parse("t:timestamp with time zone").unwrap()[0].1,
            "timestamp with time zone"
        );
    }

    #[test]
    fn only_type_names_pass() {
        for bad in [
            "a",
            ":text",
            "a:",
            "a:text); DROP TABLE t; --",
            "a:text default 1",
            "a:numeric(1,2,3)",
            "a:numeric(x)",
            "a:\"text\"",
            "a:text collate \"C\"",
            "a:1text",
        ] {
            // `text default 1` reads as type syntax here; Postgres' type grammar refuses it
            // (limits test).
            let e = parse(bad).err().map(|e| e.code);
            let ok = e == Some("invalid_types") || bad == "a:text default 1";
            assert!(ok, "{bad}: {e:?}");
        }
    }
}
