//! `csvbus infer FILE`: what `--create` would make of a file — the dialect and encoding the
//! service would detect, and the `CREATE TABLE` it would run — read locally, with the
//! service's own code, without sending anything.

use std::process::ExitCode;

use clap::Args;
use csvbus_shared::catalog::{TableName, DEFAULT_SCHEMA};

use crate::import_args::ReadArgs;

#[derive(Args)]
pub struct InferArgs {
    /// The CSV file; `-` reads stdin (then give --table).
    pub file: String,
    /// The table name the statement creates, `name` or `schema.name` [default: the file's
    /// name].
    #[arg(long, short)]
    pub table: Option<String>,
    /// How to read the file, as for `csvbus import`.
    #[command(flatten)]
    pub read: ReadArgs,
    /// Print JSON: how the file would be read, the statement, the columns.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(a: InferArgs) -> anyhow::Result<ExitCode> {
    let stem = (a.file != "-")
        .then(|| std::path::Path::new(&a.file).file_stem())
        .flatten()
        .map(|s| csvbus_shared::infer::normalize(&s.to_string_lossy()))
        .unwrap_or_else(|| "stdin".to_owned());
    let name = a.table.clone().unwrap_or(stem);
    let table = TableName::parse(&name, DEFAULT_SCHEMA)
        .ok_or_else(|| anyhow::anyhow!("{name:?} is not a table name"))?;
    let q = a.read.to_query(&name)?;
    let new = if a.file == "-" {
        csvbus_upload::infer(tokio::io::stdin(), &table, &q).await
    } else {
        csvbus_upload::infer(tokio::fs::File::open(&a.file).await?, &table, &q).await
    }
    .map_err(|e| anyhow::anyhow!(e))?;
    if a.json {
        let columns: Vec<serde_json::Value> = new
            .columns
            .iter()
            .map(|c| serde_json::json!({"name": c.name, "type": c.type_name}))
            .collect();
        let out = serde_json::json!({
            "read_as": new.read_as, "ddl": new.ddl, "columns": columns, "rows_sampled": new.rows_sampled,
        });
        println!("{out}");
    } else {
        let r = &new.read_as;
        let how = |detected: bool, given: bool| match (detected, given) {
            (true, _) => "detected",
            (false, true) => "given",
            (false, false) => "default",
        };
        println!(
            "-- delimiter {} ({}), encoding {} ({}), types from {} rows",
            r.delimiter,
            how(r.delimiter_detected, a.read.delimiter.is_some()),
            r.encoding,
            how(r.encoding_detected, a.read.encoding.is_some()),
            new.rows_sampled
        );
        for n in &r.notes {
            println!("-- {n}");
        }
        println!("{};", new.ddl);
    }
    Ok(ExitCode::SUCCESS)
}
