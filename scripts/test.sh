#!/usr/bin/env bash
# Runs every check and test of csvbus on this machine: brings up Postgres and the tansu broker
# (scripts/stack.sh: installs them if missing), then formatting, clippy and the whole test suite
# against them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"

# A full run writes about 6 GiB under target/ (release, debug and instrumented builds); a disk
# that fills up shows as a linker crash ("Bus error"), so say it plainly first.
free_kib=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ "$free_kib" -lt $((8 * 1024 * 1024)) ]; then
  echo "warning: $((free_kib / 1024)) MiB free here; the test run needs about 6 GiB under target/" >&2
fi

bash scripts/stack.sh up

# Test databases of earlier runs.
if [ "$(id -u)" = 0 ]; then
  runuser -u postgres -- psql -tAc "SELECT datname FROM pg_database WHERE datname LIKE 'csvbus_test_%'" |
    while read -r db; do runuser -u postgres -- dropdb --if-exists "$db" || true; done
fi

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Dependencies declared but not used (cargo-machete, installed once from the crates registry).
command -v cargo-machete >/dev/null || cargo install cargo-machete --locked
cargo machete
# Advisories, licences, banned or duplicate crates, sources (deny.toml): every platform's crates
# fetched first, the advisories offline from the RustSec snapshot in deny/advisory-db.
bash scripts/deps-check.sh
# The crash tests run the services as separate processes: the release binaries.
cargo build --release --bins --locked
# The whole suite, instrumented: cargo-llvm-cov prints line coverage per file and fails below
# the floor docs/development.md gives. rustup's llvm-tools cannot be fetched here; Debian's LLVM 19
# reads rustc's coverage data.
command -v cargo-llvm-cov >/dev/null || cargo install cargo-llvm-cov --locked
if [ ! -x /usr/lib/llvm-19/bin/llvm-cov ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq llvm-19 >/dev/null
fi
export LLVM_COV=/usr/lib/llvm-19/bin/llvm-cov LLVM_PROFDATA=/usr/lib/llvm-19/bin/llvm-profdata
cargo llvm-cov --workspace --locked --summary-only --fail-under-lines 80
# The web page in Chromium and the API against its OpenAPI document (Python, tests/web).
bash scripts/web-tests.sh
