#!/usr/bin/env bash
# Decisions over HTTP while ingesting: 200 offers (bench/src/decide.rs:
# a quarter eligible on the model's score, a quarter on behaviour through
# audiences of their own, caps, exclusive groups, templates) and the
# 300-tree GBM active; `POST /v1/decide` (top 3) at 5,000 requests/s, open
# loop, while 10,000 events/s are ingested (durable acknowledgement on).
# Then the in-process cost of one decision. Prints one JSON line per run
# and the medians.   bench/decide.sh [runs=3] [seconds=10] [decides/s=5000] [events/s=10000]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}; SECONDS_PER_RUN=${2:-10}; DECIDES=${3:-5000}; EVENTS=${4:-10000}
source bench/lib.sh
TOKEN=bench-admin-token
PORT=$(free_port)
KAIROS_ADMIN_TOKEN=$TOKEN "$TARGET/kairos" serve --listen 127.0.0.1:$PORT --data-dir "$WORK/data" --no-demo >"$WORK/kairos.log" 2>&1 &
for _ in $(seq 100); do curl -fs http://127.0.0.1:$PORT/readyz >/dev/null && break; sleep 0.1; done
admin() { curl -fs -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' "http://127.0.0.1:$PORT$1" --data-binary "$2"; }
"$TARGET/kairos-loadgen" model-spec > "$WORK/model.json"
admin /v1/models @"$WORK/model.json" >/dev/null
"$TARGET/kairos-loadgen" decide-offers --offers 200 | while read -r offer; do admin /v1/offers "$offer" >/dev/null; done
KEY=$(admin /v1/admin/sources '{"name":"bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["write_key"])')
for run in $(seq "$RUNS"); do
  "$TARGET/kairos-loadgen" read-while-ingest --url http://127.0.0.1:$PORT --write-key "$KEY" --admin-token $TOKEN \
    --events-per-second "$EVENTS" --reads-per-second "$DECIDES" --seconds "$SECONDS_PER_RUN" --run-id d$run \
    --decide-placement home | tee -a "$WORK/results.jsonl"
done
python3 - "$WORK/results.jsonl" "$DECIDES" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
med = lambda key: statistics.median(r[key] for r in rows)
seconds = None
print(f"ingest {med('ingested_events_per_second'):,.0f} events/s; /v1/decide asked {int(sys.argv[2]):,}/s, "
      f"answered {med('reads'):,.0f} per run ({med('failed_reads'):,.0f} failed); "
      f"p50 {med('read_p50_ms'):.2f} ms, p99 {med('read_p99_ms'):.2f} ms (medians of {len(rows)} runs)")
PY
"$TARGET/kairos-loadgen" decide --offers 200 --decisions 20000 --runs 3
