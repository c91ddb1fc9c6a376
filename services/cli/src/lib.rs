//! The `csvbus` command: batch imports with progress, import status and rejected rows,
//! migrations, and an all-in-one dev mode.
//!
//! - [`client`]: the upload service's HTTP API.
//! - [`source`]: files and stdin as request bodies (counted, gzip, replay for retries;
//!   compressed files sent as they are).
//! - [`key`]: the Idempotency-Key of each file (derived, `--again`, a given prefix).
//! - [`send`]: one upload request, retried with backoff.
//! - [`import`]: `csvbus import`: each file to its verdict.
//! - [`replay`]: `csvbus replay`: an import's rows from the topic into a table.
//! - [`report`]: what is printed per file, and the verdicts behind the exit status.
//! - [`dev`]: `csvbus dev`.

pub mod client;
pub mod dev;
pub mod dry_run;
pub mod import;
pub mod import_args;
pub mod infer;
pub mod key;
pub mod replay;
pub mod report;
pub mod send;
pub mod show;
pub mod source;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use csvbus_shared::config::{CommonConfig, Env};
use tokio_util::sync::CancellationToken;

use crate::client::Client;
pub use crate::import_args::{ImportArgs, Mode, Progress};
use crate::report::Verdict;

/// Exit status: every file imported (and completed, with `--wait`), with no more rejected rows
/// than `--max-rejected` allows (0 when not given).
pub const EXIT_OK: u8 = 0;
/// A file was refused or its import failed with nothing of it written, or the service could
/// not be reached.
pub const EXIT_FAILED: u8 = 1;
/// The command line is wrong (clap); nothing was sent.
pub const EXIT_USAGE: u8 = 2;
/// Imported, but more rows were rejected than `--max-rejected` allows (0 when not given).
pub const EXIT_REJECTED: u8 = 3;
/// A file was imported already (same table, options and bytes, or the same key): nothing was
/// imported again. `--again` imports anew; `--idempotent` makes a completed one a success.
pub const EXIT_ALREADY_IMPORTED: u8 = 4;
/// An import failed after some of its rows were written: they stay in the table.
pub const EXIT_PARTLY_WRITTEN: u8 = 5;
/// Imported, but nothing in a file's first rows settled the order of its dates: dates such as
/// `01/02/2024` were read in a default order, a guess. `--dateformat` says the order.
pub const EXIT_DATES_GUESSED: u8 = 6;

/// csvbus: CSV over HTTP → Kafka → PostgreSQL.
///
/// Exit status (`import`, the worst of its files): 0 imported; 1 refused or failed with
/// nothing written, or the service unreachable; 2 usage error; 3 more rows rejected than
/// --max-rejected allows; 4 imported already, nothing imported again; 5 failed after some
/// rows were written; 6 imported, but the order of the dates was a guess (give --dateformat).
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
    /// Prints what `import --create` would make of a file: the dialect and encoding detected
    /// and the CREATE TABLE statement (read locally; nothing is sent).
    Infer(crate::infer::InferArgs),
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
    /// Replays an import: its rows, read back from the topic, into a table (a new import).
    /// Exit status as for `import`; 4 when it was replayed there in that mode already.
    Replay(crate::replay::ReplayArgs),
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

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Import(args) => {
            let client = args.server.client();
            let verdict = if args.dry_run {
                dry_run::run(&client, &args).await
            } else {
                import::run(&client, &args).await
            };
            Ok(ExitCode::from(match verdict {
                Verdict::Imported => EXIT_OK,
                Verdict::DatesGuessed => EXIT_DATES_GUESSED,
                Verdict::RowsRejected => EXIT_REJECTED,
                Verdict::AlreadyImported => EXIT_ALREADY_IMPORTED,
                Verdict::Failed => EXIT_FAILED,
                Verdict::PartlyWritten => EXIT_PARTLY_WRITTEN,
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
        Command::Replay(args) => replay::run(&args).await,
        Command::Infer(args) => infer::run(args).await,
    }
}
