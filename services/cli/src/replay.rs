//! `csvbus replay ID --table T`: an import's rows read back from the topic into a table (see
//! `POST /v1/imports/{id}/replay`), retried like an upload under one Idempotency-Key, and
//! reported like one: what was produced, and with `--wait` what the sink made of it.

use std::process::ExitCode;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use clap::Args;
use csvbus_shared::modes::ImportMode;
use csvbus_upload::Accepted;

use crate::import_args::Mode;
use crate::{
    ServerArgs, EXIT_ALREADY_IMPORTED, EXIT_FAILED, EXIT_OK, EXIT_PARTLY_WRITTEN, EXIT_REJECTED,
};

#[derive(Args)]
pub struct ReplayArgs {
    /// The import whose rows are replayed.
    pub id: String,
    /// The table the rows go to (`table` or `schema.table`).
    #[arg(long, short)]
    pub table: String,
    /// What the replay does to the table (as for `import`).
    #[arg(long, value_enum, default_value_t = Mode::Append)]
    pub mode: Mode,
    /// upsert / skip: the conflict columns, comma-separated.
    #[arg(long)]
    pub conflict: Option<String>,
    /// Create the table from the original's columns when it does not exist.
    #[arg(long)]
    pub create: bool,
    /// Rejected rows after which the replay fails (the service's default, 100, when not given).
    #[arg(long)]
    pub max_rejected: Option<u64>,
    /// Replay again although this import was replayed into this table in this mode already
    /// (by default the earlier replay is reported, with exit status 4).
    #[arg(long)]
    pub again: bool,
    /// Follow the replay until the sink has written it.
    #[arg(long)]
    pub wait: bool,
    /// Print the answer (and with `--wait` the record) as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

impl ReplayArgs {
    fn query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("table", &self.table)
            .append_pair("mode", ImportMode::from(self.mode).as_str());
        if let Some(c) = &self.conflict {
            q.append_pair("conflict", c);
        }
        if self.create {
            q.append_pair("create", "true");
        }
        if let Some(m) = self.max_rejected {
            q.append_pair("max_rejected", &m.to_string());
        }
        q.finish()
    }

    /// One replay per import, table and mode unless `--again`: a rerun of the command (or a
    /// retry) is answered from the first.
    fn key(&self) -> String {
        let base = format!(
            "replay:{}:{}:{}",
            self.id,
            self.table,
            ImportMode::from(self.mode).as_str()
        );
        if self.again {
            format!("{base}:{}", uuid::Uuid::now_v7())
        } else {
            base
        }
    }
}

/// Runs `csvbus replay`.
pub async fn run(args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let client = args.server.client();
    let (path, key) = (
        format!("/v1/imports/{}/replay?{}", args.id, args.query()),
        args.key(),
    );
    let once = || async {
        let req = client
            .request(reqwest::Method::POST, &path)
            .header("idempotency-key", &key);
        client.send::<Accepted>(req).await
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .with_max_times(5);
    let accepted = once
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|e| e.retryable())
        .adjust(|e, wait| wait.map(|w| e.retry_after().unwrap_or(w)))
        .await;
    let accepted = match accepted {
        Ok(a) => a,
        Err(e) => {
            eprintln!("csvbus replay: {e}");
            return Ok(ExitCode::from(EXIT_FAILED));
        }
    };
    let id = accepted.import_id.to_string();
    if args.json {
        println!("{}", serde_json::to_string(&accepted)?);
    } else if accepted.replayed {
        println!(
            "import {} was replayed into {} already: import {id} (nothing replayed again; \
             --again replays anew)",
            args.id, accepted.table
        );
    } else {
        println!(
            "replaying import {} into {}: import {id}, {} rows produced",
            args.id, accepted.table, accepted.rows_produced
        );
    }
    if !args.wait {
        return Ok(ExitCode::from(if accepted.replayed {
            EXIT_ALREADY_IMPORTED
        } else {
            EXIT_OK
        }));
    }
    let rec = match client.wait(&id, |_| {}).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("csvbus replay: {e}");
            return Ok(ExitCode::from(EXIT_FAILED));
        }
    };
    let rejected = rec.rows_rejected + rec.rows_write_rejected;
    if args.json {
        println!("{}", serde_json::to_string(&rec)?);
    } else {
        println!(
            "import {id}: {}, {} rows written, {rejected} rejected{}",
            rec.status,
            rec.rows_written,
            rec.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    let allowed = args.max_rejected.unwrap_or(0) as i64;
    Ok(ExitCode::from(match () {
        () if rec.status.upload_failed() && rec.rows_written > 0 => EXIT_PARTLY_WRITTEN,
        () if rec.status.upload_failed() => EXIT_FAILED,
        () if accepted.replayed => EXIT_ALREADY_IMPORTED,
        () if rejected > allowed => EXIT_REJECTED,
        () => EXIT_OK,
    }))
}
