//! `csvbus import`'s arguments and the query string they make.

use std::io::IsTerminal;

use clap::Args;
use csvbus_shared::dates::DateOrder;
use csvbus_shared::modes::ImportMode;
use csvbus_shared::read_as::Delimiter;

use crate::ServerArgs;

/// `--delimiter` is refused at once when the service would refuse it.
fn delimiter_arg(s: &str) -> Result<String, String> {
    Delimiter::parse(s).map(|_| s.to_owned())
}

/// `--decimal` is refused at once when the service would refuse it.
fn decimal_arg(s: &str) -> Result<String, String> {
    csvbus_shared::numbers::DecimalMark::parse(s)
        .map(|_| s.to_owned())
        .ok_or_else(|| format!("{s:?} is not , or ."))
}

/// `--dateformat` is refused at once when the service would refuse it.
fn dateformat_arg(s: &str) -> Result<String, String> {
    DateOrder::parse(s)
        .map(|_| s.to_owned())
        .ok_or_else(|| format!("{s:?} is not one of dmy, mdy, ymd"))
}

/// How to read a file: the options `csvbus import` sends and `csvbus infer` applies locally.
#[derive(Args, Clone, Default)]
pub struct ReadArgs {
    /// Field delimiter: one character, `tab`, or `auto` [service default: auto, detected
    /// among , ; tab |].
    #[arg(long, value_parser = delimiter_arg)]
    pub delimiter: Option<String>,
    /// Quote character, or `none` (quotes are text) [service default: ", or ' or none when
    /// detected with the delimiter].
    #[arg(long)]
    pub quote: Option<String>,
    /// The character that escapes a quote inside a quoted field (`\`), or `none` [service
    /// default: `\` when the first lines escape quotes with it, else none].
    #[arg(long)]
    pub escape: Option<String>,
    /// Text encoding: utf-8, auto, windows-1252, latin1, utf-16, utf-16be [service default:
    /// utf-8].
    #[arg(long)]
    pub encoding: Option<String>,
    /// Preamble lines before the header to skip [service default: detected; 0 skips none].
    #[arg(long)]
    pub skip_lines: Option<u64>,
    /// Drop whitespace around fields, before opening quotes and after closing ones.
    #[arg(long)]
    pub trim: bool,
    /// How dates that do not start with a four-digit year are written: dmy, mdy or ymd
    /// [service default: decided from the first rows, else mdy].
    #[arg(long, value_parser = dateformat_arg)]
    pub dateformat: Option<String>,
    /// The decimal mark of numbers for numeric columns: `,` (1.234,56) or `.` (1,234.56)
    /// [service default: decided from the first rows].
    #[arg(long, value_parser = decimal_arg)]
    pub decimal: Option<String>,
    /// The first record is data, not a header: name the fields with --columns.
    #[arg(long, requires = "columns")]
    pub no_header: bool,
    /// The first record is the header, even where it reads as data [service default, for a
    /// table --create makes: a first record with the types of the rows below it is data].
    #[arg(long, conflicts_with = "no_header")]
    pub header: bool,
    /// The character that starts a comment line, or `none` [service default: # when the
    /// first lines have such a line between the rows].
    #[arg(long)]
    pub comment: Option<String>,
    /// A table column (or `-` to drop the field) per field of the file, comma-separated.
    #[arg(long)]
    pub columns: Option<String>,
}

impl ReadArgs {
    /// The query parameters these options set (`None`: left to the service's default).
    pub fn pairs(&self) -> [(&'static str, Option<String>); 11] {
        [
            ("delimiter", self.delimiter.clone()),
            ("quote", self.quote.clone()),
            ("escape", self.escape.clone()),
            ("encoding", self.encoding.clone()),
            ("skip_lines", self.skip_lines.map(|n| n.to_string())),
            ("dateformat", self.dateformat.clone()),
            ("decimal", self.decimal.clone()),
            ("trim", self.trim.then(|| "true".to_owned())),
            (
                "header",
                (self.no_header || self.header).then(|| self.header.to_string()),
            ),
            ("comment", self.comment.clone()),
            ("columns", self.columns.clone()),
        ]
    }

    /// These options for `table`, read as the service reads them.
    pub fn to_query(&self, table: &str) -> anyhow::Result<csvbus_upload::UploadQuery> {
        let pairs = self.pairs();
        let given = pairs
            .iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)));
        csvbus_upload::UploadQuery::from_pairs(std::iter::once(("table", table)).chain(given))
            .map_err(anyhow::Error::msg)
    }
}

#[derive(Args)]
pub struct ImportArgs {
    /// CSV files to import; `-` reads stdin. The first record of each is its header.
    #[arg(required = true)]
    pub files: Vec<String>,
    /// Target table, `name` or `schema.name`.
    #[arg(long, short)]
    pub table: String,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Column whose value becomes the Kafka key (rows with one key keep their order).
    #[arg(long)]
    pub key: Option<String>,
    #[command(flatten)]
    pub read: ReadArgs,
    /// Drop header columns the table lacks instead of refusing the file.
    #[arg(long)]
    pub ignore_extra_columns: bool,
    /// Create the table from the file when it does not exist (types inferred from the first
    /// rows; see `csvbus infer`).
    #[arg(long)]
    pub create: bool,
    /// With --create: types for some columns instead of the inferred ones,
    /// `name:type` comma-separated (`code:text,amount:numeric(12,2)`); a value such a type does
    /// not take is a rejected row
    #[arg(long, requires = "create")]
    pub types: Option<String>,
    /// Text that means NULL [service default: an unquoted empty field].
    #[arg(long)]
    pub null: Option<String>,
    /// Bad rows tolerated before an import fails [service default: 100]. Giving it also
    /// allows rejected rows: the exit status is then 0 when files are accepted.
    #[arg(long)]
    pub max_rejected: Option<u64>,
    /// What the import does to the table: append (rows visible as written), atomic (all or
    /// nothing), replace (the table becomes the file), upsert (last row per key wins), skip
    /// (rows whose key exists are skipped) [service default: append].
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// upsert / skip: the conflict columns, comma-separated [service default: primary key].
    #[arg(long)]
    pub conflict: Option<String>,
    /// A prefix for the Idempotency-Key of each file: the n-th file named (from 1) is sent
    /// with `KEY-n` [default: derived from the table, the options and the file's bytes; random
    /// per run for stdin]. Retries reuse it, so they never write a row twice.
    #[arg(long, conflicts_with = "again")]
    pub idempotency_key: Option<String>,
    /// Import the files even when they were imported already (with these options, into this
    /// table): each gets a new key for this run.
    #[arg(long, conflicts_with = "idempotent")]
    pub again: bool,
    /// A file imported already is a success (exit 0) when its earlier import completed: the
    /// earlier import is followed until it ends, and its outcome is the file's.
    #[arg(long)]
    pub idempotent: bool,
    /// Compress the body with gzip as it is sent.
    #[arg(long)]
    pub gzip: bool,
    /// Follow each import until the sink has written it; print final counters and the first
    /// rejected rows.
    #[arg(long)]
    pub wait: bool,
    /// Retries for 429/503 answers and connection errors (with backoff).
    #[arg(long, default_value_t = 8)]
    pub retries: u32,
    /// Print one JSON object per file instead of text.
    #[arg(long)]
    pub json: bool,
    /// Show how each file would be read — the options detected, the table `--create` would
    /// make, the first 20 rows as they would be written and the rejections among them —
    /// without importing anything (the first MiB of each file is sent with `dry_run=true`).
    #[arg(long, conflicts_with_all = ["wait", "again", "idempotent", "idempotency_key"])]
    pub dry_run: bool,
    /// Progress bars: auto (on a terminal), always, never.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
}

/// `--mode`: the service's import modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Append,
    Atomic,
    Replace,
    Upsert,
    Skip,
}

impl From<Mode> for ImportMode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Append => Self::Append,
            Mode::Atomic => Self::Atomic,
            Mode::Replace => Self::Replace,
            Mode::Upsert => Self::Upsert,
            Mode::Skip => Self::Skip,
        }
    }
}

/// `--progress`: when to draw progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Progress {
    /// On a terminal, without `--json`.
    Auto,
    Always,
    Never,
}

impl ImportArgs {
    pub fn progress(&self) -> bool {
        match self.progress {
            Progress::Always => true,
            Progress::Never => false,
            Progress::Auto => !self.json && std::io::stderr().is_terminal(),
        }
    }

    /// The query string of the upload request.
    pub fn query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("table", &self.table);
        let options = self.options_query();
        if !options.is_empty() {
            q.extend_pairs(form_urlencoded::parse(options.as_bytes()));
        }
        q.finish()
    }

    /// The query string of every option but the table (what changes how a file lands).
    pub fn options_query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(k) = &self.key {
            q.append_pair("key", k);
        }
        let flags = self.read.pairs().into_iter().chain([
            (
                "extra_columns",
                self.ignore_extra_columns.then(|| "ignore".to_owned()),
            ),
            ("create", self.create.then(|| "true".to_owned())),
        ]);
        for (name, value) in flags {
            if let Some(v) = value {
                q.append_pair(name, &v);
            }
        }
        if let Some(t) = &self.types {
            q.append_pair("types", t);
        }
        if let Some(n) = &self.null {
            q.append_pair("null", n);
        }
        if let Some(m) = self.max_rejected {
            q.append_pair("max_rejected", &m.to_string());
        }
        if let Some(m) = self.mode {
            q.append_pair("mode", ImportMode::from(m).as_str());
        }
        if let Some(c) = &self.conflict {
            q.append_pair("conflict", c);
        }
        q.finish()
    }
}
