//! Target tables as Postgres' catalog describes them. Table and column names reach SQL only
//! after they were found here, and always through [`quote_ident`].

use sqlx::PgPool;

/// The schema of a table name given without one.
pub const DEFAULT_SCHEMA: &str = "public";

/// The schema holding csvbus' own state: never a target.
pub const OWN_SCHEMA: &str = "csvbus";

/// sqlx's migration history (in the connection's `search_path`, `public`): never a target,
/// whatever its schema.
pub const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// Whether csvbus may write into `table`: its schema is allowed, and it is none of csvbus' own
/// tables (the `csvbus` schema, the migration history).
pub fn may_target(table: &TableName, allowed_schemas: &[String]) -> bool {
    table.schema != OWN_SCHEMA
        && table.table != MIGRATIONS_TABLE
        && allowed_schemas.contains(&table.schema)
}

/// A `schema.table` name as the client gave it (case-sensitive, not SQL-quoted).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    pub schema: String,
    pub table: String,
}

impl TableName {
    /// `"table"` (in `default_schema`) or `"schema.table"`.
    pub fn parse(s: &str, default_schema: &str) -> Option<Self> {
        let (schema, table) = match s.split_once('.') {
            Some((sc, t)) => (sc, t),
            None => (default_schema, s),
        };
        if schema.is_empty() || table.is_empty() || table.contains('.') {
            return None;
        }
        Some(Self {
            schema: schema.to_owned(),
            table: table.to_owned(),
        })
    }

    /// `"schema"."table"`, safe to splice into SQL.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.table))
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

/// A SQL identifier in double quotes, inner quotes doubled.
pub fn quote_ident(name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 2);
    s.push('"');
    for ch in name.chars() {
        if ch == '"' {
            s.push('"');
        }
        s.push(ch);
    }
    s.push('"');
    s
}

/// One column of a target table.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Column {
    pub name: String,
    /// The type as `format_type` prints it, e.g. `numeric(10,2)`.
    pub type_name: String,
    pub not_null: bool,
    /// A default, identity or generated value fills it when the CSV lacks it.
    pub has_default: bool,
    /// Generated columns cannot be written.
    pub generated: bool,
}

/// The columns of `table` in table order, or `None` when no such ordinary or partitioned table
/// exists.
pub async fn table_columns(
    pool: &PgPool,
    table: &TableName,
) -> Result<Option<Vec<Column>>, sqlx::Error> {
    let cols: Vec<Column> = sqlx::query_as(
        "SELECT a.attname::text AS name,
                format_type(a.atttypid, a.atttypmod) AS type_name,
                a.attnotnull AS not_null,
                (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '') AS has_default,
                (a.attgenerated <> '') AS generated
           FROM pg_attribute a
           JOIN pg_class c ON c.oid = a.attrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
            AND a.attnum > 0 AND NOT a.attisdropped
          ORDER BY a.attnum",
    )
    .bind(&table.schema)
    .bind(&table.table)
    .fetch_all(pool)
    .await?;
    Ok(if cols.is_empty() { None } else { Some(cols) })
}

/// A table csvbus may write, with its columns (`GET /v1/tables`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct TableInfo {
    /// `schema.table`, as the `table` option of an upload takes it.
    pub name: String,
    pub columns: Vec<ColumnInfo>,
}

/// One column of a [`TableInfo`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ColumnInfo {
    pub name: String,
    /// The type as Postgres prints it, e.g. `numeric(10,2)`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// A value is required: NOT NULL without a default.
    pub required: bool,
    /// Generated columns cannot be written.
    pub generated: bool,
}

/// Every ordinary or partitioned table in `schemas` that csvbus may write ([`may_target`]),
/// by schema and name, with its columns in table order.
pub async fn list_tables(pool: &PgPool, schemas: &[String]) -> Result<Vec<TableInfo>, sqlx::Error> {
    let rows: Vec<(String, String, String, String, bool, bool)> = sqlx::query_as(
        "SELECT n.nspname::text, c.relname::text, a.attname::text,
                format_type(a.atttypid, a.atttypmod),
                a.attnotnull AND NOT (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> ''),
                a.attgenerated <> ''
           FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
          WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p') AND NOT c.relispartition
          ORDER BY n.nspname, c.relname, a.attnum",
    )
    .bind(schemas)
    .fetch_all(pool)
    .await?;
    let mut tables: Vec<TableInfo> = Vec::new();
    for (schema, table, column, type_name, required, generated) in rows {
        let name = TableName { schema, table };
        if !may_target(&name, schemas) {
            continue;
        }
        let name = name.to_string();
        if tables.last().is_none_or(|t| t.name != name) {
            tables.push(TableInfo {
                name,
                columns: Vec::new(),
            });
        }
        if let Some(t) = tables.last_mut() {
            t.columns.push(ColumnInfo {
                name: column,
                type_name,
                required,
                generated,
            });
        }
    }
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_with_and_without_schema() {
        let t = TableName::parse("flights", "public").unwrap();
        assert_eq!((t.schema.as_str(), t.table.as_str()), ("public", "flights"));
        let t = TableName::parse("s.t", "public").unwrap();
        assert_eq!((t.schema.as_str(), t.table.as_str()), ("s", "t"));
        assert!(TableName::parse("a.b.c", "public").is_none());
        assert!(TableName::parse(".t", "public").is_none());
        assert!(TableName::parse("", "public").is_none());
    }

    #[test]
    fn csvbus_own_tables_are_never_targets() {
        let allowed = vec!["public".to_owned(), "csvbus".to_owned()];
        let t = |s: &str| TableName::parse(s, "public").unwrap();
        assert!(may_target(&t("people"), &allowed));
        assert!(!may_target(&t("_sqlx_migrations"), &allowed));
        assert!(!may_target(&t("csvbus.imports"), &allowed));
        assert!(!may_target(&t("other.people"), &allowed));
    }

    #[test]
    fn identifiers_are_quoted_with_inner_quotes_doubled() {
        assert_eq!(quote_ident(r#"we"ird"#), r#""we""ird""#);
        let t = TableName::parse(r#"x.Robert"); DROP TABLE s; --"#, "public").unwrap();
        assert_eq!(t.quoted(), r#""x"."Robert""); DROP TABLE s; --""#);
    }
}
