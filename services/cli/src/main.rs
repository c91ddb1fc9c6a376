//! `csvbus`: the command-line tool.

use clap::{Parser, Subcommand};
use csvbus_shared::config::{CommonConfig, Env};
use tokio_util::sync::CancellationToken;

/// csvbus: CSV over HTTP → Kafka → PostgreSQL.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Applies csvbus' migrations (schema `csvbus`) to DATABASE_URL
    /// (default postgres://csvbus:csvbus@127.0.0.1:5432/csvbus). Idempotent.
    Migrate,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = CommonConfig::from_env(&Env::from_process())?;
    match cli.command {
        Command::Migrate => {
            let pool = csvbus_shared::db::connect(
                config.database_url.expose(),
                2,
                &CancellationToken::new(),
            )
            .await?;
            csvbus_shared::db::migrate(&pool).await?;
            let n = csvbus_shared::db::MIGRATOR.iter().count();
            println!("csvbus schema up to date ({n} migration(s))");
        }
    }
    Ok(())
}
