#!/usr/bin/env bash
# Runs bench/sniff_compare.py: csvbus' delimiter and type detection against DuckDB's sniffer
# on the same files, each uploaded to a csvbus-upload on the local stack (brought up by
# scripts/stack.sh). Installs the duckdb Python package in target/bench-venv when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv=target/bench-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import duckdb' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'duckdb==2.0.1'
fi
bash scripts/stack.sh up
cargo build --release --bin csvbus-upload --locked
exec "$venv/bin/python" bench/sniff_compare.py "$@"
