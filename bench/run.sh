#!/usr/bin/env bash
# Runs the benchmark harness from a clean clone: starts Postgres and the tansu broker if needed
# (scripts/stack.sh; skipped for the broker when KAFKA_BROKERS is set), builds the release
# binaries, and runs csvbus-bench with the arguments given (see --help). Results go to
# bench/results/ (JSON + markdown). CSVBUS_* variables in the environment reach the services.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/stack.sh up
cargo build --release --locked -q --bin csvbus-upload --bin csvbus-sink --bin csvbus-bench
exec "$root/target/release/csvbus-bench" "$@"
