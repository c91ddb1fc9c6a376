//! The Idempotency-Key each file of `csvbus import` is sent with: every file gets its own, so
//! that a retry resumes that file's import and a repeat is recognized as one.
//!
//! - **Derived** (the default for files): `csvbus-file-` and the xxh3-128 digest of the canonical
//!   target table (`t` and `public.t` are one table), the options that change what lands (the
//!   query string without the table), and the file's bytes as decoded (a `.gz` copy of a file
//!   derives the file's key). Running the same import again names the same import: it is
//!   reported as already imported, and nothing is sent.
//! - **`--again`**: the derived key of this run, made new with a random part: the file is
//!   imported anew, and retries within the run still resume.
//! - **`--idempotency-key K`**: a prefix; the n-th file named (from 1) is sent with `K-n`.
//! - **stdin** without a given key: random per run (its bytes are not known beforehand).

use tokio::io::AsyncReadExt;
use xxhash_rust::xxh3::Xxh3;

use crate::source::Source;
use crate::ImportArgs;

/// A file's key, and whether it names the file's content (so that an import already under it
/// is this file, imported with these options).
#[derive(Debug, Clone)]
pub struct FileKey {
    pub key: String,
    pub derived: bool,
}

/// The key of the `index`-th file (from 0) of `args`; `run` is this run's random part
/// (`--again`).
pub async fn for_file(
    args: &ImportArgs,
    source: &Source,
    index: usize,
    run: &str,
) -> std::io::Result<FileKey> {
    if let Some(prefix) = &args.idempotency_key {
        return Ok(FileKey {
            key: format!("{prefix}-{}", index + 1),
            derived: false,
        });
    }
    let key = match source {
        Source::Stdin(_) => format!("csvbus-stdin-{run}"),
        Source::File(_) if args.again => {
            format!("csvbus-file-{}-{run}", digest(args, source).await?)
        }
        Source::File(_) => {
            return Ok(FileKey {
                key: format!("csvbus-file-{}", digest(args, source).await?),
                derived: true,
            })
        }
    };
    Ok(FileKey {
        key,
        derived: false,
    })
}

/// The target table as the service names it: `schema.table` (`public` when none is given).
pub fn canonical_table(table: &str) -> String {
    use csvbus_shared::catalog::{TableName, DEFAULT_SCHEMA};
    TableName::parse(table, DEFAULT_SCHEMA).map_or_else(|| table.to_owned(), |t| t.to_string())
}

/// The digest of what the import of `source` would do: table, options, decoded bytes.
async fn digest(args: &ImportArgs, source: &Source) -> std::io::Result<String> {
    let mut h = Xxh3::new();
    for part in [canonical_table(&args.table), args.options_query()] {
        h.update(part.as_bytes());
        h.update(b"\0");
    }
    let mut decoded = source.decoded().await?;
    let mut buf = vec![0; 1 << 20];
    loop {
        match decoded.read(&mut buf).await? {
            0 => break,
            n => h.update(&buf[..n]),
        }
    }
    Ok(format!("{:032x}", h.digest128()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_without_schema_is_in_public() {
        assert_eq!(canonical_table("t"), "public.t");
        assert_eq!(canonical_table("public.t"), "public.t");
        assert_eq!(canonical_table("s.t"), "s.t");
    }
}
