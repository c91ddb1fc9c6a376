#!/usr/bin/env bash
# The dependency checks of scripts/test.sh: advisories, licences, banned or duplicate crates and
# sources (cargo-deny, deny.toml).
#
# `cargo deny` runs `cargo metadata` over every target platform, so it reads crates a build on
# this platform never downloads (wasm, Android, Windows): `cargo fetch --locked` brings every
# platform's crates first. Only the advisory database stays offline (GitHub is out of reach): it
# is the RustSec snapshot in deny/advisory-db, made the git checkout cargo-deny reads.
#
# With CI=true (as .ci/run sets) or CSVBUS_FRESH_CARGO_HOME=1, the checks run with a new, empty
# CARGO_HOME, so nothing they read can come from a cargo cache that a fresh machine lacks; the log
# shows the crates fetched into it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"

# Installed into the usual cargo home, before it is swapped for an empty one.
command -v cargo-deny >/dev/null || cargo install cargo-deny --locked

if [ "${CI:-}" = true ] || [ "${CSVBUS_FRESH_CARGO_HOME:-}" = 1 ]; then
  CARGO_HOME="$(mktemp -d -t csvbus-cargo-home.XXXXXX)"
  export CARGO_HOME
  trap 'rm -rf "$CARGO_HOME"' EXIT
  echo "[deps] checking with an empty CARGO_HOME: $CARGO_HOME"
fi

cargo fetch --locked
if [ -n "${CARGO_HOME:-}" ] && [ -d "$CARGO_HOME/registry/cache" ]; then
  echo "[deps] crates in CARGO_HOME: $(find "$CARGO_HOME/registry/cache" -name '*.crate' | wc -l)"
fi
bash scripts/advisory-db.sh
cargo deny --offline check advisories licenses bans sources
