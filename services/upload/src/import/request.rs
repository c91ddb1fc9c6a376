//! What an upload request says (its query options) and what it is answered when accepted:
//! the types the OpenAPI document and the CLI share.

use csvbus_shared::dates::DateOrder;
use csvbus_shared::imports::ImportStatus;
use csvbus_shared::modes::ImportMode;
use csvbus_shared::numbers::DecimalMark;
use csvbus_shared::read_as::{Delimiter, ReadAs};

use crate::read::parse::{Comment, Escape, Quote, Quotes};
use crate::read::transcode::GivenEncoding;
use crate::rows::mapping::{Evolve, ExtraColumns};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Query options of an upload.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
// An unknown parameter is refused (400 unknown_parameter), never ignored: a typo such as
// `mdoe=upsert` would otherwise run with the default.
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// The target table: `table` (in `public`) or `schema.table`.
    pub table: String,
    /// `auto` (the default: detected from the first lines among `,` `;` tab `|`), one ASCII
    /// character other than a quote or line break, or `tab`.
    #[param(value_type = Option<String>, pattern = r#"^([\x00-\x09\x0B\x0C\x0E-\x21\x23-\x7F]|tab|\\t|auto)?$"#)]
    #[serde(default, deserialize_with = "crate::error::typed")]
    pub delimiter: Option<Delimiter>,
    /// The quote character, or `none` (quotes are text). Default `"`; with `delimiter=auto`,
    /// `'` when the first lines hold one and it splits them more consistently, none when `"`
    /// splits them less consistently or runs a field over a line break into more text (said
    /// in `read_as.notes`).
    #[param(value_type = Option<String>, pattern = r"^([\x00-\x09\x0B\x0C\x0E-\x7F]|none)?$")]
    #[serde(default, deserialize_with = "crate::error::typed")]
    pub quote: Option<Quote>,
    /// The character that escapes a quote inside a quoted field (`\`, as MySQL and PHP write
    /// `"say \"hi\""`), or `none`. Default: `\` when the first lines escape quotes with it
    /// (said in `read_as.notes`), else none; a doubled quote is one quote either way.
    #[param(value_type = Option<String>, pattern = r"^([\x00-\x09\x0B\x0C\x0E-\x7F]|none)?$")]
    #[serde(default, deserialize_with = "crate::error::typed")]
    pub escape: Option<Escape>,
    /// `lenient` (the default and only mode): a quote inside an unquoted field is kept as text
    /// (`a,b"c,d` → `b"c`), and so is one inside a quoted field that neither doubles it nor
    /// ends the field (`"a "b" c"` → `a "b" c`).
    #[param(value_type = Option<String>, pattern = "^(lenient)?$")]
    #[serde(default, deserialize_with = "crate::error::typed")]
    pub quotes: Option<Quotes>,
    /// The character that starts a comment line, or `none`: a line starting with it that does
    /// not split into the header's fields is skipped, not a row. Default: `#` when the first
    /// lines have such a line between the rows (`read_as.comment`, `notes`).
    #[param(value_type = Option<String>, pattern = r"^(none|[!-/:-@\[-`{-~])?$")]
    #[serde(default, deserialize_with = "crate::error::typed")]
    pub comment: Option<Comment>,
    /// `utf-8` (default), `auto`, `windows-1252`, `latin1`, `utf-16` (`utf-16le`), `utf-16be`.
    #[param(value_type = Option<String>, pattern = r"^(auto|utf-?8|windows-1252|cp1252|latin-?1|iso-8859-1|utf-?16(le|be)?)?$")]
    #[serde(default, deserialize_with = "crate::error::typed")]
    pub encoding: Option<GivenEncoding>,
    /// Drop whitespace around fields, before opening quotes and after closing ones
    /// (`1, "Zoë" ,Köln`).
    pub trim: Option<bool>,
    /// Preamble lines before the header (within the first 64 KiB). Default: detected — up to
    /// 20 lines before a header that the rows' types confirm; `0` reads every line.
    #[param(maximum = 10_000)]
    pub skip_lines: Option<u64>,
    /// `false`: the first record is data; `columns=` names the fields.
    pub header: Option<bool>,
    /// A table column (or `-`: drop the field) per field of the file, comma-separated: renames
    /// the header's names, or names the fields with `header=false`.
    pub columns: Option<String>,
    /// `error` (default: a header name the table lacks is a 422) or `ignore` (the field is
    /// dropped).
    #[param(value_type = Option<String>, pattern = "^(error|ignore)?$")]
    #[serde(default, deserialize_with = "crate::error::typed")]
    pub extra_columns: Option<ExtraColumns>,
    /// `add_columns`: header names the (existing) table lacks become new nullable columns,
    /// typed from the first rows and added with the import (`read_as.added` says how).
    /// Default: such a name is a 422, or dropped with `extra_columns=ignore`.
    #[param(value_type = Option<String>, pattern = "^(add_columns)?$")]
    #[serde(default, deserialize_with = "crate::error::typed")]
    pub evolve: Option<Evolve>,
    /// `true`: when the table does not exist, create it from the header, with column types
    /// inferred from the first rows (up to 2000 in the first MiB).
    pub create: Option<bool>,
    /// With `create=true`: types for some of the new table's columns instead of the inferred
    /// ones, `name:type` comma-separated (`code:text,amount:numeric(12,2)`); a name is the
    /// header's or the created column's. A column given a type is not widened by a later
    /// value: a value it does not take is a rejected row. Not used when the table exists.
    pub types: Option<String>,
    /// The text that means SQL NULL (default: none; an empty field is an empty string or NULL
    /// as the column's type takes it).
    pub null: Option<String>,
    /// The column whose value is each row's message key (rows with one key keep their order).
    pub key: Option<String>,
    /// How dates that do not start with a four-digit year are written, for date and timestamp
    /// columns: `dmy` (`31/12/2024`), `mdy` (`12/31/2024`) or `ymd` (`24-12-31`). Default:
    /// decided from the first rows (a day or month over 12 settles it), else `mdy`, with a note.
    /// Such dates are rewritten to ISO, so Postgres' `DateStyle` never decides.
    #[param(value_type = Option<csvbus_shared::dates::DateOrder>, inline)]
    #[serde(default, deserialize_with = "crate::error::typed")]
    pub dateformat: Option<DateOrder>,
    /// The decimal mark of numbers for numeric columns: `,` (`1,5`, `1.234,56`) or `.`
    /// (`1.5`, `1,234.56`); thousands may be grouped by the other mark or a space. Default:
    /// decided from the first rows, else `.` — and a number either mark reads differently
    /// (`1,234`) is a rejected row, not a guess.
    #[param(value_type = Option<String>, pattern = "^[,.]?$")]
    #[serde(default, deserialize_with = "crate::error::typed")]
    pub decimal: Option<DecimalMark>,
    /// Rejected rows after which the upload fails (default 100; at most
    /// `CSVBUS_MAX_REJECTED_LIMIT`, 100000 unless configured).
    #[param(maximum = 100_000)]
    pub max_rejected: Option<u64>,
    /// append (default), atomic, replace, upsert or skip.
    #[param(value_type = Option<csvbus_shared::modes::ImportMode>, inline)]
    #[serde(default, deserialize_with = "crate::error::typed")]
    pub mode: Option<ImportMode>,
    /// upsert / skip: the conflict columns, comma-separated (default: the primary key).
    pub conflict: Option<String>,
    /// Where the rows come from, shown in the imports list: the file's name (the last path
    /// segment is kept; at most 255 characters). Default: the `Content-Disposition` filename.
    #[param(max_length = 255)]
    pub name: Option<String>,
    /// `true`: answer `200` with how the file would be read — `read_as`, the columns (or the
    /// table `create=true` would make), its first 20 rows as they would be written and the
    /// rejections among them — and store nothing (no import, no table, no rows; an
    /// `Idempotency-Key` is not looked at). Send the file's beginning: the rest is not read.
    pub dry_run: Option<bool>,
    /// A webhook URL told of this import's end instead of `CSVBUS_WEBHOOK_URL`; it must be
    /// under a prefix of the service's `CSVBUS_WEBHOOK_ALLOW` (else `400 notify_not_allowed`).
    pub notify: Option<String>,
}

/// The `202 Accepted` answer.
impl UploadQuery {
    /// The options a query string of `pairs` gives, read exactly as the service reads them;
    /// the error is the message its answer would carry.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        let pairs: Vec<(&str, &str)> = pairs.into_iter().collect();
        let query = serde_urlencoded::to_string(&pairs).map_err(|e| e.to_string())?;
        serde_urlencoded::from_str(&query).map_err(|e| e.to_string())
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Accepted {
    pub import_id: Uuid,
    pub table: String,
    pub status: ImportStatus,
    pub mode: ImportMode,
    pub rows_produced: u64,
    pub rows_rejected: u64,
    pub bytes_read: u64,
    /// Set when this upload resumed an earlier one under its Idempotency-Key: the records up
    /// to this line were skipped.
    pub resumed_from_line: Option<u64>,
    pub status_url: String,
    /// How the file was read: delimiter, encoding, column mapping.
    pub read_as: Option<ReadAs>,
    /// `true` when this answers a repeat under an Idempotency-Key from the earlier import
    /// (answered `200`): nothing was read into the table this time.
    #[serde(default)]
    pub replayed: bool,
}
