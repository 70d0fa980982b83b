#!/usr/bin/env bash
# Event acknowledged → its journey's signed webhook received, at a steady
# 1,000 triggering events/s over HTTP (durable acknowledgement on). Prints
# one JSON line per run and the medians.   bench/webhook-latency.sh [runs=3] [seconds=10]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}; SECONDS_PER_RUN=${2:-10}
cargo build --release -p kairos -p kairos-bench >&2
TARGET=${CARGO_TARGET_DIR:-target}/release
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RECEIVER=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The receiver is on loopback, which deliveries refuse unless allowed.
KAIROS_DELIVERY_ALLOW_PRIVATE_NETWORKS=true KAIROS_ADMIN_TOKEN=bench-admin-token "$TARGET/kairos" serve --listen 127.0.0.1:$PORT --data-dir "$WORK/data" --no-demo >"$WORK/kairos.log" 2>&1 &
for _ in $(seq 100); do curl -fs http://127.0.0.1:$PORT/readyz >/dev/null && break; sleep 0.1; done
KEY=$(curl -fs -H 'Authorization: Bearer bench-admin-token' http://127.0.0.1:$PORT/v1/admin/sources -d '{"name":"bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["write_key"])')
ARGS=(--url http://127.0.0.1:$PORT --write-key "$KEY" --admin-token bench-admin-token --listen 127.0.0.1:$RECEIVER --rate 1000)
for run in $(seq "$RUNS"); do
  SETUP=(); [ "$run" = 1 ] && SETUP=(--setup)
  "$TARGET/kairos-loadgen" webhook-latency "${ARGS[@]}" "${SETUP[@]}" --seconds "$SECONDS_PER_RUN" --run-id r$run | tee -a "$WORK/results.jsonl"
done
python3 - "$WORK/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
med = lambda key: statistics.median(r[key] for r in rows)
print(f"1,000 triggers/s: event ack → signed webhook received p50 {med('p50_ms'):.2f} ms, p99 {med('p99_ms'):.2f} ms "
      f"({sum(r['delivered'] for r in rows)} of {sum(r['acknowledged'] for r in rows)} delivered; medians of {len(rows)} runs)")
PY
