#!/usr/bin/env python3
"""csvbus' detection against DuckDB's CSV sniffer, on the same files.

For each file of tests/data/messy (and a generated file with a column of every type
create=true infers), prints the delimiter, the quote, the preamble lines skipped and the
column types each chose, and
marks where they differ; docs/api.md's "Messy files" section says which is right and why.

    bench/sniff_compare.sh            # installs duckdb in target/bench-venv, builds, runs this

csvbus' side is `csvbus infer --json` (the service's own detection and inference, run
locally); DuckDB's is `sniff_csv` (read_csv's sniffer) from the duckdb Python package.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
CSVBUS = ROOT / "target" / "release" / "csvbus"
MESSY = ROOT / "tests" / "data" / "messy"

# Options neither tool can guess for a file (both are given them): the encoding of the
# non-UTF-8 files is left to detection on csvbus' side (encoding=auto); DuckDB has no
# detection of encodings and is told.
DUCKDB_OPTS = {
    "windows-1252.csv": {"encoding": "latin-1"},
    "utf-16le.csv": {"encoding": "utf-16"},
    "utf-16le-broken.csv": {"encoding": "utf-16"},
}
CSVBUS_OPTS = {
    "no-header.csv": ["--no-header", "--columns", "id,name,note"],
}

PG = {
    "BIGINT": "bigint", "INTEGER": "bigint", "SMALLINT": "bigint", "TINYINT": "bigint",
    "HUGEINT": "numeric", "DOUBLE": "double precision", "FLOAT": "double precision",
    "VARCHAR": "text", "BOOLEAN": "boolean", "DATE": "date", "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz", "UUID": "uuid", "TIME": "time",
}


def pg_type(duck: str) -> str:
    return "numeric" if duck.startswith("DECIMAL") else PG.get(duck, duck.lower())


def every_type(dir: Path) -> Path:
    """The create=true test's file: a column of each type (2,100 rows; the last column breaks
    its type at row 2,001)."""
    import datetime
    lines = ["ID,Price,Ratio,OK,Day,At,At TZ,UID,Note,Empty,Breaks"]
    for i in range(1, 2101):
        day = datetime.date(2026, 1, 1) + datetime.timedelta(days=i)
        breaks = "oops" if i == 2001 else str(i * 7)
        lines.append(
            f"{i},{i}.{i % 100:02},{i}e-3,{str(i % 2 == 0).lower()},{day},{day} 10:{i % 60:02}:00,"
            f"{day}T10:00:00+01:00,00000000-0000-4000-8000-{i:012},n{i},,{breaks}"
        )
    p = dir / "every-type.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


def duck(path: Path) -> tuple[str, list[str]]:
    opts = DUCKDB_OPTS.get(path.name, {})
    args = "".join(f", {k} = '{v}'" for k, v in opts.items())
    (row,) = duckdb.sql(
        f"SELECT Delimiter, Quote, SkipRows, Columns FROM sniff_csv('{path}'{args})"
    ).fetchall()
    delim, quote, skip, columns = row
    # DuckDB says "(empty)" when the file quotes nothing: any quote character reads it alike,
    # so it counts as csvbus' default ".
    quote = '"' if quote in ("", "(empty)", None) else quote
    dialect = ("tab" if delim == "\t" else delim) + " " + quote + f" skip {skip}"
    return dialect, [pg_type(c["type"]) for c in columns]


def ours(path: Path) -> tuple[str, list[str]]:
    args = [str(CSVBUS), "infer", str(path), "--json", "--encoding", "auto",
            *CSVBUS_OPTS.get(path.name, [])]
    out = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
    r = out["read_as"]
    dialect = r["delimiter"] + " " + r["quote"] + f" skip {r['skip_lines']}"
    return dialect, [c["type"] for c in out["columns"]]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        files = sorted(MESSY.glob("*.csv")) + sorted(MESSY.glob("*.tsv")) + [every_type(Path(tmp))]
        print(f"{'file':22} {'delimiter quote skip: duckdb / csvbus':40} types")
        for f in files:
            try:
                dd, dt = duck(f)
            except duckdb.Error as e:
                dd, dt = "error", [str(e).splitlines()[0][:60]]
            cd, ct = ours(f)
            same = "same" if (dd, dt) == (cd, ct) else "DIFFERENT"
            print(f"{f.name:22} {dd + ' / ' + cd:40} {same}")
            if dt != ct:
                print(f"{'':22}   duckdb: {', '.join(dt)}")
                print(f"{'':22}   csvbus: {', '.join(ct)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
