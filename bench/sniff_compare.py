#!/usr/bin/env python3
"""csvbus' detection against DuckDB's CSV sniffer, on the same files.

For each file of tests/data/messy (and a generated file with a column of every type
create=true infers) and of bench/sniff/<category>/ (files written for this comparison in the
shapes real exports have: spreadsheets, banks, government open data, reporting tools), prints
the delimiter, the quote, the preamble lines skipped, the rows and columns read and the column
types each chose, marks where they differ, and sums up per category: the files both read with
the same rows and columns, and with the same type family per column (integer, decimal, text,
boolean, date, timestamp; uuid counts as text). docs/api.md's "Messy files" section says which
is right where they differ, and why.

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
SNIFF = ROOT / "bench" / "sniff"

# Options neither tool can guess for a file (both are given them): the encoding of the
# non-UTF-8 files is left to detection on csvbus' side (encoding=auto); DuckDB has no
# detection of encodings and is told.
DUCKDB_OPTS = {
    "windows-1252.csv": {"encoding": "latin-1"},
    "excel-1252.csv": {"encoding": "latin-1"},
    "municipalities-semicolon.csv": {"encoding": "latin-1"},
    "utf-16le.csv": {"encoding": "utf-16"},
    "utf-16le-broken.csv": {"encoding": "utf-16"},
}
# Files that write a decimal comma. DuckDB's sniffer does not detect one (csvbus does); the
# second types column tells it (decimal_separator=','), as its user would have to.
DECIMAL_COMMA = {
    "statement-de.csv", "statement-pipe.csv", "statement-preamble.csv",
    "municipalities-semicolon.csv", "erp-export.csv", "excel-de-semicolon.csv",
    "dates-create.csv", "decimal-comma.csv",
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


FAMILY = {
    "bigint": "integer", "numeric": "decimal", "double precision": "decimal", "text": "text",
    "uuid": "text", "boolean": "boolean", "date": "date", "timestamp": "timestamp",
    "timestamptz": "timestamp", "time": "time",
}


def families(types: list[str]) -> list[str]:
    return [FAMILY.get(t, t) for t in types]


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


def duck(path: Path, told: bool = False) -> tuple[str, list[str], int]:
    opts = dict(DUCKDB_OPTS.get(path.name, {}))
    if told and path.name in DECIMAL_COMMA:
        opts["decimal_separator"] = ","
    args = "".join(f", {k} = '{v}'" for k, v in opts.items())
    (row,) = duckdb.sql(
        f"SELECT Delimiter, Quote, SkipRows, Columns FROM sniff_csv('{path}'{args})"
    ).fetchall()
    delim, quote, skip, columns = row
    # DuckDB says "(empty)" when the file quotes nothing: any quote character reads it alike,
    # so it counts as csvbus' default ".
    quote = '"' if quote in ("", "(empty)", None) else quote
    dialect = ("tab" if delim == "\t" else delim) + " " + quote + f" skip {skip}"
    ((rows,),) = duckdb.sql(f"SELECT count(*) FROM read_csv('{path}'{args})").fetchall()
    return dialect, [pg_type(c["type"]) for c in columns], rows


def ours(path: Path) -> tuple[str, list[str], int]:
    args = [str(CSVBUS), "infer", str(path), "--json", "--encoding", "auto",
            *CSVBUS_OPTS.get(path.name, [])]
    out = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
    r = out["read_as"]
    dialect = r["delimiter"] + " " + r["quote"] + f" skip {r['skip_lines']}"
    rows = out["rows_sampled"]
    if rows >= SAMPLE_ROWS:
        rows = count_records(path, r)
    return dialect, [c["type"] for c in out["columns"]], rows


# `csvbus infer` types columns from the first 2,000 rows; an upload reads them all.
SAMPLE_ROWS = 2000


def count_records(path: Path, read_as: dict) -> int:
    """The rows an upload of `path` reads with the dialect csvbus detected (UTF-8 files)."""
    import csv
    delimiter = "\t" if read_as["delimiter"] == "tab" else read_as["delimiter"]
    with path.open(newline="", encoding="utf-8-sig") as f:
        for _ in range(read_as["skip_lines"]):
            f.readline()
        records = sum(1 for _ in csv.reader(f, delimiter=delimiter, quotechar=read_as["quote"]))
    return records - (1 if read_as["header"] else 0)


def compare(files: list[tuple[str, Path]]) -> dict[str, list[int]]:
    """Prints each file's comparison; returns per category [files both read, same rows and
    columns, same type families, same type families once DuckDB is told the decimal comma]."""
    summary: dict[str, list[int]] = {}
    print(f"{'file':32} {'delimiter quote skip: duckdb / csvbus':40} rows×cols  types")
    for category, f in files:
        s = summary.setdefault(category, [0, 0, 0, 0])
        name = f"{category}/{f.name}"
        try:
            dd, dt, dr = duck(f)
        except duckdb.Error as e:
            print(f"{name:32} duckdb error: {str(e).splitlines()[0][:70]}")
            continue
        cd, ct, cr = ours(f)
        shape = (dr, len(dt)) == (cr, len(ct))
        kinds = families(dt) == families(ct)
        told = kinds or families(duck(f, told=True)[1]) == families(ct)
        s[0] += 1
        s[1] += shape
        s[2] += kinds
        s[3] += told
        marks = f"{'same' if shape else f'{dr}x{len(dt)} / {cr}x{len(ct)}':10} {'same' if kinds else 'DIFFERENT'}"
        print(f"{name:32} {dd + ' / ' + cd:40} {marks}")
        if not kinds:
            print(f"{'':32}   duckdb: {', '.join(dt)}")
            print(f"{'':32}   csvbus: {', '.join(ct)}")
    return summary


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        files = [("messy", f) for f in sorted(MESSY.glob("*.csv")) + sorted(MESSY.glob("*.tsv"))]
        files.append(("messy", every_type(Path(tmp))))
        files += [(d.name, f) for d in sorted(SNIFF.iterdir()) if d.is_dir()
                  for f in sorted(d.iterdir())]
        summary = compare(files)
    print()
    print(f"{'category':14} {'files':>5} {'both read':>9} {'rows+cols':>9} {'types':>6} {'types, DuckDB told decimal=,':>29}")
    totals = [0, 0, 0, 0, 0]
    for category, counts in summary.items():
        n = sum(1 for c, _ in files if c == category)
        print(f"{category:14} {n:5} {counts[0]:9} {counts[1]:9} {counts[2]:6} {counts[3]:29}")
        for i, v in enumerate((n, *counts)):
            totals[i] += v
    print(f"{'all':14} {totals[0]:5} {totals[1]:9} {totals[2]:9} {totals[3]:6} {totals[4]:29}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
