//! What an API key may see and write: every table csvbus may write, or only some schemas and
//! tables (`CSVBUS_API_KEYS` entries `key@sales.*|public.orders`). A scoped key's requests
//! see only imports into its tables, only its tables in `/v1/tables`, and may upload only
//! into them; anything else is answered as if it did not exist (404) or refused (403).

use crate::catalog::{TableName, DEFAULT_SCHEMA};

/// The tables a key reaches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// `None`: every table csvbus may write.
    grants: Option<Vec<Grant>>,
}

/// One schema (`table: None`, written `schema.*`) or one table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Grant {
    schema: String,
    table: Option<String>,
}

impl Scope {
    /// Every table csvbus may write (a key without `@`, or no keys at all).
    pub fn all() -> Self {
        Self::default()
    }

    /// `sales.*|public.orders|orders` (a bare name is a table of the default schema).
    pub fn parse(s: &str) -> Result<Self, String> {
        let grants = s
            .split('|')
            .map(str::trim)
            .map(|g| match g.strip_suffix(".*") {
                Some(schema) if !schema.is_empty() && !schema.contains('.') => Ok(Grant {
                    schema: schema.to_owned(),
                    table: None,
                }),
                _ => TableName::parse(g, DEFAULT_SCHEMA)
                    .map(|t| Grant {
                        schema: t.schema,
                        table: Some(t.table),
                    })
                    .ok_or_else(|| format!("{g:?} is neither schema.* nor schema.table")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            grants: Some(grants),
        })
    }

    /// Whether the key reaches `t`.
    pub fn allows(&self, t: &TableName) -> bool {
        self.grants.as_ref().is_none_or(|gs| {
            gs.iter()
                .any(|g| g.schema == t.schema && g.table.as_ref().is_none_or(|x| *x == t.table))
        })
    }

    /// The scope as SQL arrays, `None` for every table: whole schemas, and the schemas and
    /// tables of single tables (in pairs).
    pub fn sql_lists(&self) -> Option<(Vec<String>, Vec<String>, Vec<String>)> {
        let gs = self.grants.as_ref()?;
        let mut lists = (Vec::new(), Vec::new(), Vec::new());
        for g in gs {
            match &g.table {
                None => lists.0.push(g.schema.clone()),
                Some(t) => {
                    lists.1.push(g.schema.clone());
                    lists.2.push(t.clone());
                }
            }
        }
        Some(lists)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TableName {
        TableName::parse(s, DEFAULT_SCHEMA).unwrap()
    }

    #[test]
    fn a_scope_reaches_its_schemas_and_tables_only() {
        let s = Scope::parse("sales.*| public.orders|items").unwrap();
        assert!(s.allows(&t("sales.anything")));
        assert!(s.allows(&t("orders")));
        assert!(s.allows(&t("public.items")));
        assert!(!s.allows(&t("public.secrets")));
        assert!(!s.allows(&t("salesx.a")));
        assert!(Scope::all().allows(&t("x.y")));
        assert_eq!(
            s.sql_lists().unwrap(),
            (
                vec!["sales".to_owned()],
                vec!["public".to_owned(), "public".to_owned()],
                vec!["orders".to_owned(), "items".to_owned()]
            )
        );
        assert!(Scope::parse("a.b.c").is_err());
        assert!(Scope::parse("").is_err());
        assert!(Scope::parse(".*").is_err());
    }
}
