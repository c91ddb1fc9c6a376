//! How the file's columns meet the table's: by exact name, else by a normalized name (case,
//! spaces and punctuation do not matter: `First Name` → `first_name`); `columns=` renames or
//! drops (`-`) fields by position, and `extra_columns=ignore` drops fields the table lacks.

use std::collections::HashSet;

use csvbus_shared::catalog::Column;
use csvbus_shared::read_as::ColumnMapping;

use crate::rows::HeaderError;

/// `extra_columns=`: what a header name the table lacks does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExtraColumns {
    /// `422 unknown_column` (the default).
    #[default]
    Error,
    /// The field is dropped.
    Ignore,
}

impl crate::error::QueryOption for ExtraColumns {
    const INVALID: &'static str = "invalid_query";
    fn from_query(s: &str) -> Result<Option<Self>, String> {
        match s {
            "" => Ok(None),
            "error" => Ok(Some(Self::Error)),
            "ignore" => Ok(Some(Self::Ignore)),
            other => Err(format!("extra_columns={other:?}: use error or ignore")),
        }
    }
}

use csvbus_shared::infer::identifier;
pub use csvbus_shared::infer::normalize;

/// `evolve=`: how the table may change to take the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evolve {
    /// `add_columns`: a header name the table lacks becomes a new nullable column.
    AddColumns,
}

impl crate::error::QueryOption for Evolve {
    const INVALID: &'static str = "invalid_query";
    fn from_query(s: &str) -> Result<Option<Self>, String> {
        match s {
            "" => Ok(None),
            "add_columns" => Ok(Some(Self::AddColumns)),
            other => Err(format!("evolve={other:?}: use add_columns")),
        }
    }
}

/// Options of the mapping.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    /// `columns=`: a name (or `-`: drop) per field of the file.
    pub names: Option<Vec<String>>,
    /// `extra_columns=ignore`.
    pub ignore_extra: bool,
}

/// Per field of the file, the table column it goes to (`None`: dropped), and the fields that
/// did not go to a column of their own name.
pub type Resolved = (Vec<Option<String>>, Vec<ColumnMapping>);

/// Whether no name of `fields` is a column of `table`.
fn no_name_matches(fields: &[String], table: &[Column]) -> bool {
    fields.iter().all(|f| matches!(find(f, table), Ok(None)))
}

/// The `columns=` that would name `n` fields after `table`'s writable columns (in its order,
/// when it has `n`; else a placeholder).
fn columns_for(n: usize, table: &[Column]) -> String {
    let writable: Vec<&str> = table
        .iter()
        .filter(|c| !c.generated)
        .map(|c| c.name.as_str())
        .collect();
    match writable.len() == n {
        true => writable.join(","),
        false => format!("<{n} column names>"),
    }
}

/// Resolves the file's `fields` (the header's names; without a header, `columns=`) against
/// `table`.
pub fn resolve(fields: &[String], table: &[Column], m: &Mapping) -> Result<Resolved, HeaderError> {
    let names: &[String] = match &m.names {
        Some(n) if n.len() != fields.len() => {
            return Err(HeaderError::ColumnCount(n.len(), fields.len()))
        }
        Some(n) => n,
        None => fields,
    };
    let unknown = |i: usize, name: &String| {
        if m.names.is_none() && no_name_matches(fields, table) {
            HeaderError::NoNameMatches(name.clone(), columns_for(fields.len(), table))
        } else if name.is_empty() {
            HeaderError::Unnamed(i + 1)
        } else {
            HeaderError::UnknownColumn(name.clone())
        }
    };
    let mut out = Vec::with_capacity(fields.len());
    let mut report = Vec::new();
    let mut seen = HashSet::new();
    for (i, (field, name)) in fields.iter().zip(names).enumerate() {
        let shown = if field.is_empty() {
            format!("#{}", i + 1)
        } else {
            field.clone()
        };
        // `-` drops a field in columns= only: a header may name a column "-".
        let target = if name == "-" && m.names.is_some() {
            None
        } else {
            match find(name, table)? {
                Some(c) if c.generated => return Err(HeaderError::Generated(c.name.clone())),
                Some(c) => Some(c.name.clone()),
                None if m.ignore_extra => None,
                None => return Err(unknown(i, name)),
            }
        };
        if let Some(t) = &target {
            if !seen.insert(t.clone()) {
                return Err(HeaderError::Duplicate(t.clone()));
            }
        }
        if target.as_deref() != Some(field.as_str()) {
            report.push(ColumnMapping {
                field: shown,
                column: target.clone(),
            });
        }
        out.push(target);
    }
    Ok((out, report))
}

/// The column named `name`, else the one whose normalized name is `name`'s (two: ambiguous).
/// A name longer than an identifier is compared as Postgres would keep it (cut to 63 bytes),
/// so that a table `create=true` made from it is found again.
fn find<'t>(name: &str, table: &'t [Column]) -> Result<Option<&'t Column>, HeaderError> {
    let exact = identifier(name);
    if let Some(c) = table.iter().find(|c| c.name == exact) {
        return Ok(Some(c));
    }
    let n = identifier(&normalize(name));
    let mut matches = table.iter().filter(|c| normalize(&c.name) == n);
    match (matches.next(), matches.next()) {
        (Some(a), Some(b)) => Err(HeaderError::Ambiguous(
            name.to_owned(),
            a.name.clone(),
            b.name.clone(),
        )),
        (found, _) => Ok(found),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(names: &[&str]) -> Vec<Column> {
        names
            .iter()
            .map(|n| Column {
                name: (*n).into(),
                type_name: "text".into(),
                not_null: false,
                has_default: false,
                generated: false,
            })
            .collect()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn names_normalize_case_spaces_and_punctuation() {
        assert_eq!(normalize("First Name"), "first_name");
        assert_eq!(normalize(" E-Mail (work) "), "e_mail_work");
        assert_eq!(normalize("Straße"), "straße");
        assert_eq!(normalize("B "), "b");
        // Decomposed (as macOS writes it) and composed are the same name.
        assert_eq!(normalize("Gro\u{308}ße"), "größe");
        let (cols, _) = resolve(
            &s(&["Gro\u{308}ße"]),
            &table(&["größe"]),
            &Mapping::default(),
        )
        .unwrap();
        assert_eq!(cols, [Some("größe".to_owned())]);
    }

    #[test]
    fn exact_names_win_then_normalized_ones_are_reported() {
        let t = table(&["id", "first_name", "Last Name"]);
        let (cols, report) = resolve(
            &s(&["id", "FIRST NAME", "last_name"]),
            &t,
            &Mapping::default(),
        )
        .unwrap();
        assert_eq!(
            cols,
            [
                Some("id".to_owned()),
                Some("first_name".to_owned()),
                Some("Last Name".to_owned())
            ]
        );
        assert_eq!(report.len(), 2);
        assert_eq!(
            report[0],
            ColumnMapping {
                field: "FIRST NAME".into(),
                column: Some("first_name".into())
            }
        );
        // An exact name wins over a normalized one; two normalized matches are ambiguous.
        let t = table(&["first_name", "First Name"]);
        let (cols, report) = resolve(&s(&["First Name"]), &t, &Mapping::default()).unwrap();
        assert_eq!(cols, [Some("First Name".to_owned())]);
        assert!(report.is_empty());
        assert!(matches!(
            resolve(&s(&["first name"]), &t, &Mapping::default()),
            Err(HeaderError::Ambiguous(..))
        ));
    }

    #[test]
    fn columns_rename_and_drop_and_extra_ones_can_be_ignored() {
        let t = table(&["id", "name", "amount"]);
        let m = Mapping {
            names: Some(s(&["id", "name", "-", "amount"])),
            ignore_extra: false,
        };
        let (cols, report) = resolve(&s(&["ID", "Who", "junk", "Sum"]), &t, &m).unwrap();
        assert_eq!(
            cols,
            [
                Some("id".into()),
                Some("name".into()),
                None,
                Some("amount".into())
            ]
        );
        assert_eq!(report.len(), 4);
        assert!(matches!(
            resolve(&s(&["a", "b"]), &t, &m),
            Err(HeaderError::ColumnCount(4, 2))
        ));
        let extra = Mapping {
            names: None,
            ignore_extra: true,
        };
        let (cols, report) = resolve(&s(&["id", "colour"]), &t, &extra).unwrap();
        assert_eq!(cols, [Some("id".into()), None]);
        assert_eq!(
            report,
            [ColumnMapping {
                field: "colour".into(),
                column: None
            }]
        );
        assert!(matches!(
            resolve(&s(&["id", "colour"]), &t, &Mapping::default()),
            Err(HeaderError::UnknownColumn(c)) if c == "colour"
        ));
        assert!(matches!(
            resolve(&s(&["id", "ID"]), &t, &Mapping::default()),
            Err(HeaderError::Duplicate(c)) if c == "id"
        ));
        // An empty name (row names) is asked to be named or left out.
        assert_eq!(
            resolve(&s(&["", "id"]), &t, &Mapping::default()).unwrap_err(),
            HeaderError::Unnamed(1)
        );
    }
}
