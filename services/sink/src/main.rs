//! `csvbus-sink`: reads its config from the environment and consumes until SIGINT/SIGTERM.

use csvbus_shared::config::Env;
use csvbus_sink::SinkConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    csvbus_shared::malloc::two_arenas();
    csvbus_shared::usage::handle(
        "csvbus-sink",
        "The csvbus sink: rows from the topic into their PostgreSQL tables, exactly once.",
        &[
            csvbus_sink::config::SOURCE,
            csvbus_shared::config::SOURCE,
            csvbus_shared::webhook::SOURCE,
        ],
    );
    let config = SinkConfig::from_env(&Env::from_process())?;
    csvbus_shared::telemetry::init_tracing(config.common.log_json);
    let shutdown = csvbus_shared::shutdown::on_signals();
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    csvbus_sink::run(config, listener, shutdown).await?;
    Ok(())
}
