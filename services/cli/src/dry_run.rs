//! `csvbus import --dry-run`: how each file would be read, from the service itself (the same
//! code reads it as an import would), with nothing stored. The first [`PREVIEW_BYTES`] of the
//! file, decompressed, go with `dry_run=true`; the service reads its first 20 records.

use csvbus_upload::Preview;
use tokio::io::AsyncReadExt;

use crate::client::{Client, ClientError};
use crate::report::{human, refused, Verdict};
use crate::source::Source;
use crate::ImportArgs;

/// The most of a file a preview sends.
pub const PREVIEW_BYTES: u64 = 1 << 20;

/// Previews every file of `args`; prints each preview (or JSON); [`Verdict::Failed`] when one
/// was refused, [`Verdict::DatesGuessed`] when one's date order would be a guess.
pub async fn run(client: &Client, args: &ImportArgs) -> Verdict {
    let mut worst = Verdict::Imported;
    for file in &args.files {
        let source = Source::new(file);
        let previewed = preview(client, args, &source).await;
        if let Ok(p) = &previewed {
            if p.read_as.dateformat_guessed {
                worst = worst.max(Verdict::DatesGuessed);
            }
        }
        match previewed {
            Ok(p) if args.json => {
                let mut v = serde_json::to_value(&p).unwrap_or_default();
                v["file"] = source.name().into();
                println!("{v}");
            }
            Ok(p) => println!("{}", describe(&source.name(), &p)),

            Err(e) => {
                let r = refused(&source.name(), &e);
                match args.json {
                    true => println!("{}", serde_json::to_string(&r).unwrap_or_default()),
                    false => println!("{}", human(&r)),
                }
                worst = Verdict::Failed;
            }
        }
    }
    worst
}

async fn preview(
    client: &Client,
    args: &ImportArgs,
    source: &Source,
) -> Result<Preview, ClientError> {
    let mut head = Vec::new();
    source
        .decoded()
        .await?
        .take(PREVIEW_BYTES)
        .read_to_end(&mut head)
        .await?;
    let path = format!("/v1/imports?{}&dry_run=true", args.query());
    let req = client
        .request(reqwest::Method::POST, &path)
        .header(reqwest::header::CONTENT_TYPE, "text/csv")
        .body(head);
    client.send(req).await
}

/// The preview as text: where the rows would go and how the file is read, the first rows as
/// `column=value`, the rejections.
pub fn describe(file: &str, p: &Preview) -> String {
    let r = &p.read_as;
    let mut out = format!(
        "{file}: dry run, nothing stored: would {} into {} (delimiter {:?}, encoding {}",
        p.mode.as_str(),
        p.table,
        r.delimiter.to_string(),
        r.encoding,
    );
    if let Some(d) = &r.dateformat {
        out += &format!(", dates {}", d.as_str());
    }
    out.push(')');
    if let Some(ddl) = &r.created {
        out += &format!("\n  would create: {ddl}");
    }
    for note in &r.notes {
        out += &format!("\n  note: {note}");
    }
    out += &format!("\n  columns: {}", p.columns.join(", "));
    let mut lines: Vec<(u64, String)> = p
        .rows
        .iter()
        .map(|row| (row.line, values(&p.columns, &row.values)))
        .chain(
            p.rejected
                .iter()
                .map(|r| (r.line, format!("rejected: {}", r.reason))),
        )
        .collect();
    lines.sort_by_key(|(line, _)| *line);
    for (line, text) in lines {
        out += &format!("\n  line {line}: {text}");
    }
    out += &format!("\n  ({} records read)", p.records_read);
    out
}

/// `column=value, …` in the columns' order.
fn values(columns: &[String], v: &serde_json::Value) -> String {
    columns
        .iter()
        .map(|c| match v[c].as_str() {
            Some(s) => format!("{c}={s}"),
            None => format!("{c}=NULL"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
