//! The `csvbus` command: batch imports with progress, import status and rejected rows,
//! migrations, and an all-in-one dev mode.
//!
//! - [`client`]: the upload service's HTTP API.
//! - [`source`]: files and stdin as request bodies (counted, gzip, replay for retries).
//! - [`import`]: `csvbus import`.
//! - [`dev`]: `csvbus dev`.

pub mod client;
pub mod dev;
pub mod import;
pub mod report;
pub mod show;
pub mod source;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use csvbus_shared::config::{CommonConfig, Env};
use csvbus_shared::modes::ImportMode;
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::import::Verdict;

/// Exit status: every file accepted (and completed, with `--wait`), no rows rejected unless
/// `--max-rejected` allowed them.
pub const EXIT_OK: u8 = 0;
/// A file was refused, an import failed or was aborted, or the service could not be reached.
pub const EXIT_FAILED: u8 = 1;
/// (clap) The command line is wrong.
pub const EXIT_USAGE: u8 = 2;
/// Every file was accepted but some rows were rejected (and `--max-rejected` was not given).
pub const EXIT_REJECTED: u8 = 3;

/// csvbus: CSV over HTTP → Kafka → PostgreSQL.
///
/// Exit status: 0 success; 1 a file was refused, an import failed, or the service was
/// unreachable; 2 usage error; 3 accepted, but rows were rejected.
#[derive(Parser)]
#[command(version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Streams CSV files (or `-` for stdin) to the upload service, one after the other.
    Import(ImportArgs),
    /// Shows an import's record (status and counters).
    Status {
        /// The import id (from `csvbus import` or the 202 answer).
        id: String,
        #[command(flatten)]
        server: ServerArgs,
        /// Follow the import until it is completed, failed or aborted.
        #[arg(long)]
        wait: bool,
        /// Print the record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lists an import's rejected rows: line, reason, stage, raw text or values.
    Rejected {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
        /// How many rows at most.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print one JSON object per row.
        #[arg(long)]
        json: bool,
    },
    /// Applies csvbus' migrations (schema `csvbus`) to DATABASE_URL
    /// (default postgres://csvbus:csvbus@127.0.0.1:5432/csvbus). Idempotent.
    Migrate,
    /// Runs the upload service and the sink in this one process against DATABASE_URL, with a
    /// tansu broker started as a child process unless KAFKA_BROKERS is set. The quickest way to
    /// try csvbus. Stops (and stops tansu) on Ctrl-C.
    Dev(dev::DevArgs),
}

/// Where the upload service is.
#[derive(Args, Clone)]
pub struct ServerArgs {
    /// The upload service's base URL.
    #[arg(long, env = "CSVBUS_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// API key (sent as `Authorization: Bearer`), when the service requires one.
    #[arg(long, env = "CSVBUS_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

impl ServerArgs {
    pub fn client(&self) -> Client {
        Client::new(&self.server, self.api_key.clone())
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
    /// Field delimiter [service default: ,].
    #[arg(long)]
    pub delimiter: Option<char>,
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
    /// The Idempotency-Key sent with each file [default: derived from the file's bytes and the
    /// options; random per run for stdin]. Retries reuse it, so they never write a row twice.
    #[arg(long)]
    pub idempotency_key: Option<String>,
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
        if let Some(k) = &self.key {
            q.append_pair("key", k);
        }
        if let Some(d) = self.delimiter {
            q.append_pair("delimiter", &d.to_string());
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

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Import(args) => {
            let verdict = import::run(&args.server.client(), &args).await;
            Ok(ExitCode::from(match verdict {
                Verdict::Ok => EXIT_OK,
                Verdict::Rejected => EXIT_REJECTED,
                Verdict::Failed => EXIT_FAILED,
            }))
        }
        Command::Status {
            id,
            server,
            wait,
            json,
        } => show::status(&server.client(), &id, wait, json).await,
        Command::Rejected {
            id,
            server,
            limit,
            json,
        } => show::rejected(&server.client(), &id, limit, json).await,
        Command::Migrate => {
            let config = CommonConfig::from_env(&Env::from_process())?;
            let pool = csvbus_shared::db::connect(
                config.database_url.expose(),
                2,
                &CancellationToken::new(),
            )
            .await?;
            csvbus_shared::db::migrate(&pool).await?;
            let n = csvbus_shared::db::MIGRATOR.iter().count();
            println!("csvbus schema up to date ({n} migration(s))");
            Ok(ExitCode::from(EXIT_OK))
        }
        Command::Dev(args) => dev::run(args).await,
    }
}
