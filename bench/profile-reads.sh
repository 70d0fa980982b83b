#!/usr/bin/env bash
# Profile read latency while ingesting 20,000 events/s over HTTP (durable
# acknowledgement on, the engine building profiles). Prints one JSON line
# per run and the medians.   bench/profile-reads.sh [runs=3] [seconds=10]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}; SECONDS_PER_RUN=${2:-10}
cargo build --release -p kairos -p kairos-bench >&2
TARGET=${CARGO_TARGET_DIR:-target}/release
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
KAIROS_ADMIN_TOKEN=bench-admin-token "$TARGET/kairos" serve --listen 127.0.0.1:$PORT --data-dir "$WORK/data" --no-demo >"$WORK/kairos.log" 2>&1 &
for _ in $(seq 100); do curl -fs http://127.0.0.1:$PORT/readyz >/dev/null && break; sleep 0.1; done
KEY=$(curl -fs -H 'Authorization: Bearer bench-admin-token' http://127.0.0.1:$PORT/v1/admin/sources -d '{"name":"bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["write_key"])')
for run in $(seq "$RUNS"); do
  "$TARGET/kairos-loadgen" read-while-ingest --url http://127.0.0.1:$PORT --write-key "$KEY" --admin-token bench-admin-token \
    --events-per-second 20000 --reads-per-second 200 --seconds "$SECONDS_PER_RUN" --run-id r$run | tee -a "$WORK/results.jsonl"
done
python3 - "$WORK/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
med = lambda key: statistics.median(r[key] for r in rows)
print(f"ingest {med('ingested_events_per_second'):,.0f} events/s; profile reads p50 {med('read_p50_ms'):.2f} ms, p99 {med('read_p99_ms'):.2f} ms (medians of {len(rows)} runs)")
PY
