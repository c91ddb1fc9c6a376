//! The default input: a generated CSV with mixed column types, and its target table.

use std::io::{BufWriter, Write};
use std::path::Path;

/// The table the generated CSV goes into.
pub const TABLE_DDL: &str = "CREATE TABLE {table} (
    id bigint PRIMARY KEY,
    amount numeric(12,2) NOT NULL,
    qty int,
    name text NOT NULL,
    note text,
    created timestamptz NOT NULL,
    active bool NOT NULL
)";

/// Writes `rows` rows (~100 bytes each) to `path`: integers, numerics, text with quotes and
/// commas, timestamps with zones, booleans, and NULLs (empty `qty`/`note` every few rows).
pub fn generate(path: &Path, rows: u64) -> std::io::Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(out, "id,amount,qty,name,note,created,active")?;
    for i in 1..=rows {
        let qty = if i % 11 == 0 {
            String::new()
        } else {
            (i % 977).to_string()
        };
        let note = if i % 5 == 0 {
            String::new()
        } else {
            format!("\"lorem ipsum, dolor {} sit amet\"", i % 1000)
        };
        writeln!(
            out,
            "{i},{}.{:02},{qty},\"Customer \"\"{}\"\", Ltd.\",{note},2024-{:02}-{:02} {:02}:{:02}:{:02}+00,{}",
            i % 100_000,
            i % 100,
            i % 5000,
            1 + i % 12,
            1 + i % 28,
            i % 24,
            i % 60,
            (i * 7) % 60,
            i % 2 == 0
        )?;
    }
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}
