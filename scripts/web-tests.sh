#!/usr/bin/env bash
# The browser tests (Playwright driving Debian's Chromium) and the API-contract tests
# (OpenAPI 3.1 validation, schemathesis) in tests/web. Installs what they need when missing:
# the `chromium` package, and a Python virtualenv with tests/web/requirements.txt in
# target/web-venv. Expects the stack up (scripts/stack.sh) and the release binaries built.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '[web-tests] %s\n' "$*"; }

if [ ! -x /usr/bin/chromium ]; then
  say "installing Chromium from Debian's packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

venv=target/web-venv
stamp="$venv/.requirements"
if ! cmp -s tests/web/requirements.txt "$stamp" 2>/dev/null; then
  say "installing the Python tools in $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/web/requirements.txt
  cp tests/web/requirements.txt "$stamp"
fi

cargo build --release --bins --locked
# Playwright's own browser download cannot reach the network: conftest.py launches
# /usr/bin/chromium through its executable path.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
exec "$venv/bin/pytest" -q -p no:cacheprovider tests/web "$@"
