//! `csvbus status` and `csvbus rejected`: an import's record and its rejected rows, for people
//! or as JSON.

use std::process::ExitCode;

use crate::client::{describe_rejected, Client};
use crate::{EXIT_FAILED, EXIT_OK};

/// `csvbus status`: the import's record (after waiting for it to be final with `wait`).
pub async fn status(client: &Client, id: &str, wait: bool, json: bool) -> anyhow::Result<ExitCode> {
    let rec = if wait {
        client.wait(id, |_| {}).await
    } else {
        client.status(id).await
    };
    let rec = match rec {
        Ok(r) => r,
        Err(e) => {
            eprintln!("csvbus status: {e}");
            return Ok(ExitCode::from(EXIT_FAILED));
        }
    };
    let value = serde_json::to_value(&rec)?;
    if json {
        println!("{value}");
    } else {
        for (k, v) in value.as_object().into_iter().flatten() {
            println!(
                "{k:>20}: {}",
                v.as_str().map_or_else(|| v.to_string(), str::to_owned)
            );
        }
    }
    Ok(ExitCode::from(if rec.status.upload_failed() {
        EXIT_FAILED
    } else {
        EXIT_OK
    }))
}

/// `csvbus rejected`: up to `limit` rejected rows of the import, page by page.
pub async fn rejected(
    client: &Client,
    id: &str,
    limit: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (mut after, mut left) = (0, limit);
    while left > 0 {
        let page = match client.rejected(id, after, left.min(1000)).await {
            Ok(page) => page,
            Err(e) => {
                eprintln!("csvbus rejected: {e}");
                return Ok(ExitCode::from(EXIT_FAILED));
            }
        };
        left = left.saturating_sub(page.rows.len());
        for r in &page.rows {
            if json {
                println!("{}", serde_json::to_string(r)?);
            } else {
                println!("{}", describe_rejected(r));
                let fields = || r.fields.as_ref().map(|f| f.to_string());
                println!("    {}", r.raw.clone().or_else(fields).unwrap_or_default());
            }
        }
        match page.next_after {
            Some(n) => after = n,
            None => break,
        }
    }
    Ok(ExitCode::from(EXIT_OK))
}
