#!/usr/bin/env bash
# Brings up what csvbus needs on this machine, without Docker. Idempotent: run it as often as you
# like; it only does what is missing.
#
#   - PostgreSQL from Debian's packages (installed if missing), started, with role and database
#     `csvbus` (password `csvbus`, CREATEDB so tests can make a fresh database each), and the
#     least-privilege roles `csvbus_migrate` and `csvbus_app` (deploy/postgres/roles.sql);
#   - the tansu broker (Kafka API, memory storage) on 127.0.0.1:9092, installed with
#     `cargo install` if missing (~10 minutes, once) — with its SQLite storage too, whose
#     retention one test needs (it starts a tansu of its own). Not started when KAFKA_BROKERS is
#     set: then that Kafka is used.
#
# Logs and the broker's pid go to .stack/ in the repository.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="$root/.stack"
mkdir -p "$state"
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '[stack] %s\n' "$*"; }

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}

ensure_postgres() {
  if ! command -v pg_lsclusters >/dev/null 2>&1; then
    say "installing PostgreSQL from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  local ver cluster status
  read -r ver cluster _ status _ < <(pg_lsclusters -h | head -n 1)
  if [ -z "${ver:-}" ]; then
    ver="$(ls /usr/lib/postgresql | sort -n | tail -n 1)"
    cluster=main
    say "creating cluster $ver/$cluster"
    pg_createcluster "$ver" "$cluster" >/dev/null
    status=down
  fi
  if [ "$status" != online ]; then
    say "starting PostgreSQL $ver/$cluster"
    pg_ctlcluster "$ver" "$cluster" start
  fi
  for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 0.5
  done
  pg_isready -h 127.0.0.1 -p 5432 >/dev/null || { say "PostgreSQL did not come up"; exit 1; }
  as_postgres psql -q -v ON_ERROR_STOP=1 -d postgres <<'SQL'
SET client_min_messages = warning;
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'csvbus') THEN
    CREATE ROLE csvbus LOGIN CREATEDB PASSWORD 'csvbus';
  END IF;
END $$;
-- The least-privilege roles of deploy/postgres/roles.sql (compose runs them as its services);
-- the test admin is a member of both, so that a test can set up their grants in its database.
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'csvbus_migrate') THEN
    CREATE ROLE csvbus_migrate LOGIN PASSWORD 'csvbus_migrate';
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'csvbus_app') THEN
    CREATE ROLE csvbus_app LOGIN PASSWORD 'csvbus_app';
  END IF;
END $$;
GRANT csvbus_migrate, csvbus_app TO csvbus;
-- The default search_path starts with "$user", which for this role is csvbus' own schema:
-- unqualified CREATE TABLE would land there, out of the upload service's reach.
ALTER ROLE csvbus SET search_path = public;
SQL
  if ! as_postgres psql -tAc "SELECT 1 FROM pg_database WHERE datname = 'csvbus'" | grep -q 1; then
    as_postgres createdb -O csvbus csvbus
  fi
  say "PostgreSQL ready: postgres://csvbus:csvbus@127.0.0.1:5432/csvbus"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ensure_tansu() {
  # The SQLite storage (libsql) is what a test of replays after retention runs on; an older
  # install without it is replaced.
  if ! tansu --help 2>/dev/null | grep -q "Storage engines:.*libsql"; then
    say "installing the tansu broker: cargo install tansu --version 0.6.0 --locked --features dynostore,libsql"
    say "(about 10 minutes, once; output in $state/tansu-install.log)"
    cargo install tansu --version 0.6.0 --locked --force --features dynostore,libsql \
      >"$state/tansu-install.log" 2>&1 \
      || { tail -n 30 "$state/tansu-install.log"; exit 1; }
  fi
  if [ -n "${KAFKA_BROKERS:-}" ]; then
    say "KAFKA_BROKERS=$KAFKA_BROKERS: using that broker, not starting tansu"
    return
  fi
  if port_open 9092; then
    say "a broker already listens on 127.0.0.1:9092"
    return
  fi
  say "starting tansu (memory storage) on 127.0.0.1:9092, log in $state/tansu.log"
  nohup tansu broker \
    --storage-engine memory://tansu/ \
    --listener-url tcp://127.0.0.1:9092 \
    --advertised-listener-url tcp://127.0.0.1:9092 \
    >"$state/tansu.log" 2>&1 &
  echo $! >"$state/tansu.pid"
  for _ in $(seq 1 100); do
    port_open 9092 && break
    sleep 0.2
  done
  port_open 9092 || { tail -n 30 "$state/tansu.log"; say "tansu did not start"; exit 1; }
  say "tansu ready: KAFKA_BROKERS=127.0.0.1:9092"
}

ensure_build_deps() {
  # rdkafka builds librdkafka from source: a C compiler, make, and (for its configure) perl.
  local missing=()
  for c in cc make perl; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    say "installing build tools (${missing[*]})"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential perl >/dev/null
  fi
}

case "${1:-up}" in
  up)
    ensure_build_deps
    ensure_postgres
    ensure_tansu
    ;;
  stop-broker)
    if [ -f "$state/tansu.pid" ]; then kill "$(cat "$state/tansu.pid")" 2>/dev/null || true; rm -f "$state/tansu.pid"; fi
    # A tansu started from another checkout (its own .stack/) on the same port: stop it too.
    pkill -f "tansu broker .*tcp://127.0.0.1:9092" 2>/dev/null || true
    for _ in $(seq 1 50); do port_open 9092 || break; sleep 0.1; done
    ;;
  *)
    echo "usage: $0 [up|stop-broker]" >&2
    exit 2
    ;;
esac
