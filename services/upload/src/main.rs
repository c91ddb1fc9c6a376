//! `csvbus-upload`: reads its config from the environment and serves until SIGINT/SIGTERM.

use csvbus_shared::config::Env;
use csvbus_upload::UploadConfig;

/// Every row allocates a few small buffers that another thread frees (the producer's); glibc's
/// allocator spent about a quarter of the service's CPU on that (measured with perf). With
/// mimalloc's `override` feature librdkafka's C allocations (each message, its headers) use it
/// too; `.cargo/config.toml` builds it to commit memory as used (docs/development.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    csvbus_shared::usage::handle(
        "csvbus-upload",
        "The csvbus upload service: CSV over HTTP in, rows out to Kafka (packed, docs/api.md).",
        &[
            csvbus_upload::config::SOURCE,
            csvbus_shared::config::SOURCE,
            csvbus_shared::webhook::SOURCE,
        ],
    );
    let config = UploadConfig::from_env(&Env::from_process())?;
    csvbus_shared::telemetry::init_tracing(config.common.log_json);
    let shutdown = csvbus_shared::shutdown::on_signals();
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    csvbus_upload::run(config, listener, shutdown).await?;
    Ok(())
}
