//! How an upload's bytes were read (`csvbus.imports.read_as`), shown with the import: what was
//! given, what was detected, and how the file's columns met the table's.

use serde::{Deserialize, Serialize};

/// How the file was read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReadAs {
    /// The delimiter: `,` `;` `tab` `|` or the character given.
    pub delimiter: String,
    /// Chosen by `delimiter=auto` (the default) from the first lines.
    pub delimiter_detected: bool,
    /// The quote character: `"`, or `'` (detected with the delimiter, or given).
    #[serde(default)]
    pub quote: String,
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
    /// The file's columns that were matched to a differently-named table column, or dropped.
    pub mapping: Vec<ColumnMapping>,
    /// What detection was unsure of, and what it did about it.
    pub notes: Vec<String>,
    /// `create=true`: the statement that created the table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
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
