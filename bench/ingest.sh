#!/usr/bin/env bash
# Ingest benchmark: Kairos /v1/batch (durable acknowledgement on) against the
# bare-axum ceiling, in the same run, on this machine. Prints one JSON line
# per run and a summary with medians and the ratio.
#   bench/ingest.sh [runs=3] [seconds=10] [connections=16]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}; SECONDS_PER_RUN=${2:-10}; CONNECTIONS=${3:-16}
source bench/lib.sh

BARE_PORT=$(free_port)
"$TARGET/kairos-loadgen" bare --listen 127.0.0.1:$BARE_PORT >/dev/null & BARE_PID=$!
KAIROS_PORT=$(free_port)
KAIROS_ADMIN_TOKEN=bench-admin-token "$TARGET/kairos" serve --listen 127.0.0.1:$KAIROS_PORT --data-dir "$WORK/data" --no-demo >"$WORK/kairos.log" 2>&1 & KAIROS_PID=$!
for _ in $(seq 100); do curl -fs http://127.0.0.1:$KAIROS_PORT/readyz >/dev/null && break; sleep 0.1; done
KEY=$(curl -fs -H 'Authorization: Bearer bench-admin-token' http://127.0.0.1:$KAIROS_PORT/v1/admin/sources -d '{"name":"bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["write_key"])')

for run in $(seq "$RUNS"); do
  echo "{\"target\":\"bare\",\"run\":$run,\"result\":$("$TARGET/kairos-loadgen" ingest --url http://127.0.0.1:$BARE_PORT --connections "$CONNECTIONS" --seconds "$SECONDS_PER_RUN" --run-id bare$run)}" | tee -a "$WORK/results.jsonl"
  echo "{\"target\":\"kairos\",\"run\":$run,\"result\":$("$TARGET/kairos-loadgen" ingest --url http://127.0.0.1:$KAIROS_PORT --write-key "$KEY" --connections "$CONNECTIONS" --seconds "$SECONDS_PER_RUN" --run-id k$run)}" | tee -a "$WORK/results.jsonl"
done
STORED=$(curl -fs -H 'Authorization: Bearer bench-admin-token' http://127.0.0.1:$KAIROS_PORT/metrics | awk '/^kairos_ingest_events_accepted_total/ {print $2}')
python3 - "$WORK/results.jsonl" "$(peak_kb $KAIROS_PID)" "$(peak_kb $BARE_PID)" "$STORED" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
def med(target, key):
    return statistics.median(r["result"][key] for r in rows if r["target"] == target)
k, b = med("kairos", "events_per_second"), med("bare", "events_per_second")
print(f"kairos: {k:,.0f} events/s  p50 {med('kairos','p50_ms'):.1f} ms  p99 {med('kairos','p99_ms'):.1f} ms  peak RSS {int(sys.argv[2])/1024:.0f} MiB  events stored {sys.argv[4]}")
print(f"bare:   {b:,.0f} events/s  p50 {med('bare','p50_ms'):.1f} ms  p99 {med('bare','p99_ms'):.1f} ms  peak RSS {int(sys.argv[3])/1024:.0f} MiB")
print(f"ratio kairos/bare: {k/b:.2f}  (medians of {len(rows)//2} runs)")
PY
