//! `csvbus`: the command-line tool (see the library for the commands).

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = csvbus_cli::Cli::parse();
    match csvbus_cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("csvbus: {e:#}");
            ExitCode::from(csvbus_cli::EXIT_FAILED)
        }
    }
}
