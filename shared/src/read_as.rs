//! How an upload's bytes were read (`csvbus.imports.read_as`), shown with the import: what was
//! given, what was detected, and how the file's columns met the table's.

use serde::{Deserialize, Serialize};

/// How the file was read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReadAs {
    /// The delimiter: `,` `;` `tab` `|` or the character given.
    #[schema(value_type = String)]
    pub delimiter: Delimiter,
    /// Chosen by `delimiter=auto` (the default) from the first lines.
    pub delimiter_detected: bool,
    /// The quote character: `"`, `'`, or `none` (quotes read as text), detected with the
    /// delimiter or given.
    #[serde(default)]
    pub quote: String,
    /// The character that escapes a quote inside a quoted field (`\`), given (`escape=`) or
    /// detected (see `notes`); absent: none (a doubled quote is one quote either way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escape: Option<String>,
    /// How the first line ends: `lf`, `crlf` or `cr` (every one ends a line wherever it is;
    /// `none` when the sample has no line break).
    #[serde(default)]
    pub line_break: String,
    /// `utf-8`, `windows-1252`, `latin1`, `utf-16le` or `utf-16be`.
    pub encoding: String,
    /// Chosen by `encoding=auto`.
    pub encoding_detected: bool,
    /// Lines skipped before the header: given (`skip_lines=`) or detected.
    pub skip_lines: u64,
    /// The skipped lines were detected as a preamble (no `skip_lines=` given).
    #[serde(default)]
    pub skip_lines_detected: bool,
    /// Whether the first record named the columns (`header=false`: `columns=` did).
    pub header: bool,
    /// Whitespace around fields was dropped (`trim=true`).
    pub trim: bool,
    /// The character that starts a comment line (a line starting with it that does not split
    /// into the header's fields is skipped): given (`comment=`) or detected (`#`, see
    /// `notes`); absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The file's columns that were matched to a differently-named table column, or dropped.
    pub mapping: Vec<ColumnMapping>,
    /// What detection was unsure of, and what it did about it.
    pub notes: Vec<String>,
    /// How dates that do not start with a four-digit year were read into date and timestamp
    /// columns: given (`dateformat=`) or decided from the first rows (see `notes`); absent when
    /// the file has no such column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dateformat: Option<crate::dates::DateOrder>,
    /// `true`: `dateformat` was not given and no date of the first rows settled it, so dates
    /// such as `01/02/2024` are read in a default order — a guess (see `notes`); the CLI exits
    /// 6. Absent otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dateformat_guessed: bool,
    /// The decimal mark of numbers read into numeric columns: given (`decimal=`) or decided
    /// from the first rows (see `notes`); absent when the file has no such column or nothing
    /// decided it (then a number either mark reads differently is a rejected row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimal: Option<crate::numbers::DecimalMark>,
    /// `create=true`: the statement that created the table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// `evolve=add_columns`: the statements that added the columns the file has and the table
    /// lacked (nullable, typed from the first rows), run with the import's record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<String>,
    /// `create=true`: the statements that widened a column of the table this import created,
    /// for a later value its first rows' type did not hold (instead of rejecting the row).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub widened: Vec<String>,
}

/// One file column that did not go to a column of its own name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ColumnMapping {
    /// The name in the file's header (or `columns=`), or `#n` for the n-th field.
    pub field: String,
    /// The table column it went to; `null`: dropped (`-` in `columns=`, or
    /// `extra_columns=ignore`).
    pub column: Option<String>,
}

/// A field delimiter: one ASCII character other than a quote or a line break. Shown and
/// stored as the character, `tab` for a tab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Delimiter(u8);

impl Delimiter {
    pub const COMMA: Self = Self(b',');
    pub const SEMICOLON: Self = Self(b';');
    pub const TAB: Self = Self(b'\t');
    pub const PIPE: Self = Self(b'|');

    /// `delimiter=` as given: `None` for `auto` (or nothing): detected.
    pub fn parse(s: &str) -> Result<Option<Self>, String> {
        match s {
            "" | "auto" => Ok(None),
            "\\t" | "tab" | "\t" => Ok(Some(Self::TAB)),
            _ => Self::from_bytes(s.as_bytes()).map(Some).ok_or_else(|| {
                format!("delimiter {s:?} must be one ASCII character other than a quote or newline")
            }),
        }
    }

    /// One byte that can be a delimiter.
    pub fn from_byte(b: u8) -> Option<Self> {
        (b.is_ascii() && !matches!(b, b'"' | b'\n' | b'\r')).then_some(Self(b))
    }

    fn from_bytes(b: &[u8]) -> Option<Self> {
        match b {
            [b] => Self::from_byte(*b),
            _ => None,
        }
    }

    /// The byte the CSV reader splits on.
    pub fn byte(self) -> u8 {
        self.0
    }
}

impl Default for Delimiter {
    fn default() -> Self {
        Self::COMMA
    }
}

impl std::fmt::Display for Delimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            b'\t' => f.write_str("tab"),
            b => write!(f, "{}", b as char),
        }
    }
}

impl Serialize for Delimiter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Delimiter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        Self::parse(&s)
            .map_err(serde::de::Error::custom)?
            .ok_or_else(|| serde::de::Error::custom("a delimiter, not auto"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiters_read_and_show_as_given() {
        assert_eq!(Delimiter::parse("auto"), Ok(None));
        assert_eq!(Delimiter::parse(""), Ok(None));
        for (given, shown) in [
            ("tab", "tab"),
            ("\\t", "tab"),
            ("\t", "tab"),
            (";", ";"),
            ("|", "|"),
        ] {
            let d = Delimiter::parse(given).unwrap().unwrap();
            assert_eq!(d.to_string(), shown);
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(serde_json::from_str::<Delimiter>(&json).unwrap(), d);
        }
        for bad in ["\"", "\n", "ab", "é"] {
            assert!(Delimiter::parse(bad).is_err(), "{bad:?}");
        }
    }
}
