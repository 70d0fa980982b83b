#!/usr/bin/env bash
# Event acknowledged → its `Audience Entered` visible on the live stream, with
# 1,000 audiences and 20 computed traits active, while ingesting 20,000
# events/s over HTTP (durable acknowledgement on). Prints one JSON line per
# run and the medians (after one warm-up run).
#   bench/membership-latency.sh [runs=3] [seconds=10]
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
ARGS=(--url http://127.0.0.1:$PORT --write-key "$KEY" --admin-token bench-admin-token --definitions 1000 --computed 20)
"$TARGET/kairos-loadgen" membership-latency "${ARGS[@]}" --setup >&2
# Warm-up (three runs long), not counted: it meets the 100,000 people for the first
# time (profiles created, first memberships announced).
"$TARGET/kairos-loadgen" membership-latency "${ARGS[@]}" --events-per-second 20000 --seconds "$((3 * SECONDS_PER_RUN))" --run-id warmup >&2
for run in $(seq "$RUNS"); do
  "$TARGET/kairos-loadgen" membership-latency "${ARGS[@]}" --events-per-second 20000 --probes-per-second 50 \
    --seconds "$SECONDS_PER_RUN" --run-id r$run | tee -a "$WORK/results.jsonl"
done
python3 - "$WORK/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
med = lambda key: statistics.median(r[key] for r in rows)
print(f"ingest {med('ingested_events_per_second'):,.0f} events/s with 1,000 audiences + 20 computed traits; "
      f"ack → Audience Entered on the live stream p50 {med('p50_ms'):.2f} ms, p99 {med('p99_ms'):.2f} ms "
      f"({sum(r['announced'] for r in rows)} of {sum(r['probes'] for r in rows)} probes announced; medians of {len(rows)} runs)")
PY
