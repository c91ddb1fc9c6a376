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
    bench/sniff_compare.sh DIR...     # the same on the files of other folders (a category each),
                                      # e.g. DuckDB's own sniffer tests (its data/csv/auto)

csvbus' side is an upload of each file, as a user would send it
(`create=true&delimiter=auto&encoding=auto`) to a csvbus-upload this script starts on the
running stack (scripts/stack.sh): the dialect from the answer's `read_as`, the rows from its
counts (rows sent + rows rejected), the types from the table as it stands after the upload (a
later value that widened a column counts). DuckDB's side is `sniff_csv` (read_csv's sniffer)
and `read_csv` from the duckdb Python package.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
UPLOAD = ROOT / "target" / "release" / "csvbus-upload"
DATABASE_URL = os.environ.get("DATABASE_URL", "postgres://csvbus:csvbus@127.0.0.1:5432/csvbus")
# The tables the uploads create (in the schema csvbus writes by default), dropped at the end.
PREFIX = "sniff_compare_"
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
# What DuckDB's sniffer does not detect in a file and csvbus does with nothing given, told to
# DuckDB as its user would have to (the "told" columns: the file as DuckDB reads it once told
# what it means). The formats of numbers and dates — the decimal comma, thousands separators,
# day-first and other dates and timestamps, as each file's writer writes them
# (decimal_separator, thousands, dateformat, timestampformat) — and the layout: comment lines
# (comment), the lines before the header (skip, header). Files that mix formats on purpose
# (messy/dates-day-first.csv, decimal-comma.csv) have no one format to tell; files DuckDB
# cannot read whole however told (a short row, a footer, a second header, a row left open)
# are told nothing.
COMMA = {"decimal_separator": ","}
TOLD = {
    "statement-de.csv": COMMA, "statement-pipe.csv": COMMA, "statement-preamble.csv": COMMA,
    "municipalities-semicolon.csv": COMMA, "excel-de-semicolon.csv": COMMA,
    "statement-de-short-year.csv": {**COMMA, "dateformat": "%d.%m.%y"},
    "sparkasse-camt.csv": {**COMMA, "dateformat": "%d.%m.%y"},
    "erp-export.csv": {**COMMA, "timestampformat": "%d.%m.%Y %H:%M"},
    "dates-create.csv": {**COMMA, "thousands": ".", "dateformat": "%d/%m/%Y"},
    "data-gouv-fr.csv": {**COMMA, "dateformat": "%d/%m/%Y"},
    "paypal-activity.csv": {"thousands": ","},
    "excel-us-thousands.csv": {"thousands": ","},
    "jira-issues.csv": {"timestampformat": "%d/%b/%y %-I:%M %p"},
    "shopify-orders.csv": {"timestampformat": "%Y-%m-%d %H:%M:%S %z"},
    "excel-us-datetime.csv": {"timestampformat": "%-m/%-d/%Y %-H:%M"},
    "google-forms-responses.csv": {"timestampformat": "%-m/%-d/%Y %H:%M:%S"},
    "comment-lines.csv": {"comment": "#"},
    "sensor-log.csv": {"comment": "#"},
    "council-spend-title.csv": {"skip": 2},
    "worldbank-indicator.csv": {"skip": 4, "header": True},
    # DuckDB's own test files of these formats, told what DuckDB's tests tell it
    # (test/sql/copy/csv/test_dateformat.test, test_thousands_separator.test,
    # csv_decimal_separator.test at 044a04a): keyed by folder, their names are generic.
    "dateformat/working.csv": {"dateformat": "%d-%b-%Y"},
    "dateformat/not_working.csv": {"dateformat": "%d-%b-%Y"},
    "thousands_separator/simple.csv": {"thousands": ","},
    "thousands_separator/simple_quoted.csv": {"thousands": ","},
    "thousands_separator/multi_column.csv": {"thousands": ","},
    "thousands_separator/multi_column_quote.csv": {"thousands": ","},
    "thousands_separator/thousands_broken.csv": {"thousands": ","},
    "thousands_separator/integers.csv": {"thousands": ","},
    "decimal_separators/decimal_separators.csv": COMMA,
    "decimal_separators/mixed_format_fail.csv": COMMA,
}


def told(path: Path) -> dict | None:
    """What DuckDB is told of `path` (TOLD), if anything."""
    return TOLD.get(f"{path.parent.name}/{path.name}", TOLD.get(path.name))


def literal(v: object) -> str:
    """`v` as a DuckDB literal."""
    if isinstance(v, bool):
        return str(v).lower()
    return str(v) if isinstance(v, int) else f"'{v}'"
CSVBUS_OPTS = {
    "no-header.csv": {"header": "false", "columns": "id,name,note"},
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


def duck(path: Path, tell: bool = False) -> tuple[str, list[str], int]:
    opts = dict(DUCKDB_OPTS.get(path.name, {}))
    if tell:
        opts.update(told(path) or {})
    args = "".join(f", {k} = {literal(v)}" for k, v in opts.items())
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


def psql(sql: str) -> str:
    out = subprocess.run(["psql", "-XtAq", DATABASE_URL, "-c", sql], check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


class Upload:
    """A csvbus-upload on a free port, on a topic of its own (no sink: the rows are not
    written, the table is created and widened by the upload itself)."""

    def __init__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = dict(os.environ, DATABASE_URL=DATABASE_URL, CSVBUS_UPLOAD_ADDR=f"127.0.0.1:{self.port}",
                   CSVBUS_TOPIC=f"sniff-{uuid.uuid4().hex[:12]}", RUST_LOG="warn")
        self.proc = subprocess.Popen([str(UPLOAD)], env=env)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise SystemExit("csvbus-upload did not become ready (is the stack up?)")
                time.sleep(0.1)
        self.drop_tables()
        self.n = 0

    @staticmethod
    def drop_tables():
        psql("DO $$ DECLARE t text; BEGIN FOR t IN SELECT tablename FROM pg_tables "
             f"WHERE schemaname = 'public' AND tablename LIKE '{PREFIX}%' LOOP "
             "EXECUTE format('DROP TABLE public.%I', t); END LOOP; END $$")

    def close(self):
        self.proc.terminate()
        self.proc.wait()
        self.drop_tables()

    def ours(self, path: Path) -> tuple[str, list[str], int]:
        self.n += 1
        table = f"{PREFIX}{self.n}"
        query = {"table": table, "create": "true", "delimiter": "auto",
                 "encoding": "auto", **CSVBUS_OPTS.get(path.name, {})}
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v1/imports?{urllib.parse.urlencode(query)}",
            data=path.read_bytes(), headers={"content-type": "text/csv"}, method="POST")
        with urllib.request.urlopen(req, timeout=120) as resp:
            answer = json.load(resp)
        r = answer["read_as"]
        dialect = r["delimiter"] + " " + r["quote"] + f" skip {r['skip_lines']}"
        rows = answer["rows_produced"] + answer["rows_rejected"]
        types = psql(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            f"WHERE attrelid = 'public.{table}'::regclass AND attnum > 0 "
            "AND NOT attisdropped ORDER BY attnum")
        short = {"timestamp without time zone": "timestamp",
                 "timestamp with time zone": "timestamptz", "time without time zone": "time"}
        return dialect, [short.get(t, t) for t in types.splitlines()], rows


def compare(files: list[tuple[str, Path]], upload: Upload) -> dict[str, list[int]]:
    """Prints each file's comparison; returns per category [files both read, same rows and
    columns, same type families, and the same two once DuckDB is told what it does not detect]."""
    summary: dict[str, list[int]] = {}
    print(f"{'file':32} {'delimiter quote skip: duckdb / csvbus':40} rows×cols  types")
    for category, f in files:
        s = summary.setdefault(category, [0, 0, 0, 0, 0])
        name = f"{category}/{f.name}"
        try:
            dd, dt, dr = duck(f)
        except duckdb.Error as e:
            print(f"{name:32} duckdb error: {str(e).splitlines()[0][:70]}")
            continue
        try:
            cd, ct, cr = upload.ours(f)
        except urllib.error.HTTPError as e:
            s[0] += 1  # DuckDB reads it, csvbus does not: counts as a difference
            print(f"{name:32} csvbus refused: {e.code} {e.read()[:300].decode(errors='replace')}")
            continue
        shape = (dr, len(dt)) == (cr, len(ct))
        kinds = families(dt) == families(ct)
        try:
            _, tt, tr = duck(f, tell=True) if told(f) else (dd, dt, dr)
        except duckdb.Error as e:  # told, DuckDB cannot read it: a difference
            tt, tr = [f"error: {str(e).splitlines()[0][:60]}"], -1
        told_shape = (tr, len(tt)) == (cr, len(ct))
        told_kinds = families(tt) == families(ct)
        s[0] += 1
        s[1] += shape
        s[2] += kinds
        s[3] += told_shape
        s[4] += told_kinds
        marks = f"{'same' if shape else f'{dr}x{len(dt)} / {cr}x{len(ct)}':10} {'same' if kinds else 'DIFFERENT'}"
        print(f"{name:32} {dd + ' / ' + cd:40} {marks}")
        if not kinds or not told_kinds or not shape:
            print(f"{'':32}   duckdb: {', '.join(dt)}")
            if told(f):
                opts = ", ".join(f"{k}={v}" for k, v in told(f).items())
                same = "" if told_shape and told_kinds else " (DIFFERENT)"
                print(f"{'':32}   duckdb told {opts}: {tr}x{len(tt)}, {', '.join(tt)}{same}")
            print(f"{'':32}   csvbus: {', '.join(ct)}")
    return summary


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        if len(sys.argv) > 1:
            files = [(Path(d).name, f) for d in sys.argv[1:] for f in sorted(Path(d).iterdir())
                     if f.is_file()]
        else:
            files = [("messy", f) for f in sorted(MESSY.glob("*.csv")) + sorted(MESSY.glob("*.tsv"))]
            files.append(("messy", every_type(Path(tmp))))
            files += [(d.name, f) for d in sorted(SNIFF.iterdir()) if d.is_dir()
                      for f in sorted(d.iterdir())]
        upload = Upload()
        try:
            summary = compare(files, upload)
        finally:
            upload.close()
    print()
    print(f"{'category':14} {'files':>5} {'both read':>9} {'rows+cols':>9} {'types':>6}"
          f" {'DuckDB told: rows+cols':>22} {'types':>6}")
    totals = [0, 0, 0, 0, 0, 0]
    for category, counts in summary.items():
        n = sum(1 for c, _ in files if c == category)
        print(f"{category:14} {n:5} {counts[0]:9} {counts[1]:9} {counts[2]:6} {counts[3]:22} {counts[4]:6}")
        for i, v in enumerate((n, *counts)):
            totals[i] += v
    print(f"{'all':14} {totals[0]:5} {totals[1]:9} {totals[2]:9} {totals[3]:6} {totals[4]:22} {totals[5]:6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
