#!/usr/bin/env bash
# Brings csvbus up on this machine and ingests a sample CSV end to end:
# Postgres + tansu (scripts/stack.sh), the upload service and the sink as separate processes,
# a sample table, an import with the csvbus CLI (--wait), then the import's final status and
# the row count from Postgres.
# Safe to run again: services are restarted, the sample table is recreated.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/stack.sh up
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }

echo "[demo] building (release)"
cargo build --release --locked -q -p csvbus-upload -p csvbus-sink -p csvbus-cli
bin="$root/target/release"
state="$root/.stack"
export DATABASE_URL="${DATABASE_URL:-postgres://csvbus:csvbus@127.0.0.1:5432/csvbus}"
export KAFKA_BROKERS="${KAFKA_BROKERS:-127.0.0.1:9092}"
export CSVBUS_UPLOAD_ADDR=127.0.0.1:8080 CSVBUS_SINK_ADDR=127.0.0.1:8081
# A topic of its own per run: the sink's positions live in Postgres per (group, topic,
# partition), and tansu's memory storage forgets its topics when it restarts — a recreated
# topic under an old name would start below the stored positions (see docs/operations.md, Sink).
export CSVBUS_TOPIC="csvbus.demo.$(date +%s)"

for svc in upload sink; do
  if [ -f "$state/$svc.pid" ]; then kill "$(cat "$state/$svc.pid")" 2>/dev/null || true; sleep 0.5; fi
done
"$bin/csvbus" migrate
psql "$DATABASE_URL" -q -c "DROP TABLE IF EXISTS public.demo_people; CREATE TABLE public.demo_people (id int PRIMARY KEY, name text NOT NULL, city text, born date)"
nohup "$bin/csvbus-upload" >"$state/upload.log" 2>&1 & echo $! >"$state/upload.pid"
nohup "$bin/csvbus-sink" >"$state/sink.log" 2>&1 & echo $! >"$state/sink.pid"
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:8080/readyz >/dev/null && break; sleep 0.2; done
curl -sf http://127.0.0.1:8080/readyz >/dev/null || { tail -20 "$state/upload.log"; exit 1; }

sample="$state/sample.csv"
{
  echo "id,name,city,born"
  for i in $(seq 1 10000); do echo "$i,\"Person $i\",\"City, $((i % 97))\",19$((50 + i % 50))-0$((1 + i % 9))-1$((i % 9))"; done
} >"$sample"
echo "[demo] importing $sample ($(wc -l <"$sample") lines) with the csvbus CLI"
# --again: the table was just made anew, so the same sample is imported anew on every run
# (without it a rerun is reported as already imported, exit 4).
"$bin/csvbus" import "$sample" --table demo_people --server http://127.0.0.1:8080 --wait --progress never --again
echo "[demo] rows in demo_people: $(psql "$DATABASE_URL" -tAc 'SELECT count(*) FROM demo_people')"
echo "[demo] services keep running (pids in $state); logs in $state/{upload,sink}.log"
