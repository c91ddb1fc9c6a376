//! `csvbus dev`: the upload service and the sink in one process, with a tansu broker as a
//! child process unless `KAFKA_BROKERS` is given. Everything else comes from the same
//! environment variables the services read.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use csvbus_shared::config::Env;
use tokio::process::{Child, Command};

#[derive(Args)]
pub struct DevArgs {
    /// Where the upload API listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub upload_addr: SocketAddr,
    /// Where the sink's health and metrics listen.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub sink_addr: SocketAddr,
    /// Port of the tansu broker started when KAFKA_BROKERS is not set.
    #[arg(long, default_value_t = 9092)]
    pub broker_port: u16,
    /// The tansu executable.
    #[arg(long, env = "CSVBUS_TANSU", default_value = "tansu")]
    pub tansu: String,
}

const INSTALL_HINT: &str = "tansu (a Kafka-API broker) is not installed. Install it with \
    `cargo install tansu --locked --features dynostore` (about 10 minutes), or run \
    scripts/stack.sh, or point csvbus at a broker with KAFKA_BROKERS=host:port";

pub async fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
    let mut env = Env::from_process();
    let json = env.raw("CSVBUS_LOG_FORMAT") == Some("json");
    csvbus_shared::telemetry::init_tracing(json);
    let shutdown = csvbus_shared::shutdown::on_signals();

    let mut broker: Option<Child> = None;
    if env.raw("KAFKA_BROKERS").is_none_or(str::is_empty) {
        let addr = format!("127.0.0.1:{}", args.broker_port);
        broker = Some(start_tansu(&args.tansu, &addr).await?);
        env.set("KAFKA_BROKERS", addr);
    }
    env.set("CSVBUS_UPLOAD_ADDR", args.upload_addr.to_string());
    env.set("CSVBUS_SINK_ADDR", args.sink_addr.to_string());
    let upload_config = csvbus_upload::UploadConfig::from_env(&env)?;
    let sink_config = csvbus_sink::SinkConfig::from_env(&env)?;
    let upload_listener = tokio::net::TcpListener::bind(args.upload_addr)
        .await
        .with_context(|| format!("binding {}", args.upload_addr))?;
    let sink_listener = tokio::net::TcpListener::bind(args.sink_addr)
        .await
        .with_context(|| format!("binding {}", args.sink_addr))?;
    tracing::info!(
        upload = %args.upload_addr,
        sink = %args.sink_addr,
        brokers = %upload_config.common.kafka_brokers,
        "csvbus dev: try `csvbus import FILE --table T --wait`; Ctrl-C stops everything"
    );
    let upload = tokio::spawn(csvbus_upload::run(
        upload_config,
        upload_listener,
        shutdown.clone(),
    ));
    let sink = tokio::spawn(csvbus_sink::run(
        sink_config,
        sink_listener,
        shutdown.clone(),
    ));
    // If one service ends on its own (an error), stop the other one too.
    let (u, s) = tokio::join!(
        async {
            let r = upload.await;
            shutdown.cancel();
            r
        },
        async {
            let r = sink.await;
            shutdown.cancel();
            r
        }
    );
    if let Some(mut child) = broker {
        let _ = child.kill().await;
    }
    u??;
    s??;
    Ok(ExitCode::SUCCESS)
}

/// Starts tansu with memory storage on `addr` and waits until it accepts connections.
async fn start_tansu(tansu: &str, addr: &str) -> anyhow::Result<Child> {
    let url = format!("tcp://{addr}");
    let mut child = Command::new(tansu)
        .args(["broker", "--storage-engine", "memory://tansu/"])
        .args(["--listener-url", &url, "--advertised-listener-url", &url])
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow::anyhow!("{INSTALL_HINT}"),
            _ => anyhow::Error::new(e).context(format!("starting {tansu}")),
        })?;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            tracing::info!(%addr, pid = child.id(), "tansu broker started (memory storage)");
            return Ok(child);
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("tansu exited at start ({status}); is {addr} already in use?");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("tansu did not listen on {addr} within 10 s")
}
