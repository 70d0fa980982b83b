#!/usr/bin/env bash
# End-to-end ingest with one model active against none, in the same run:
# two `kairos serve` instances on the same machine, one with the 300-tree
# GBM of `kairos-loadgen models` registered active (scored on every event
# from session/profile features), one with no model; runs alternate. Per
# run: /v1/batch for N seconds (durable acknowledgement), then the time
# until the engine has applied every event (profiles, features, scores).
# Reports medians of ingest events/s and of processed events/s (ingested
# events / time until applied), and the ratios model / none.
#   bench/ingest-models.sh [runs=3] [seconds=10] [connections=16]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}; SECONDS_PER_RUN=${2:-10}; CONNECTIONS=${3:-16}
source bench/lib.sh
TOKEN=bench-admin-token
start() {  # name -> port
  local port; port=$(free_port)
  KAIROS_ADMIN_TOKEN=$TOKEN "$TARGET/kairos" serve --listen 127.0.0.1:$port --data-dir "$WORK/$1" --no-demo >"$WORK/$1.log" 2>&1 &
  for _ in $(seq 100); do curl -fs http://127.0.0.1:$port/readyz >/dev/null && break; sleep 0.1; done
  echo "$port"
}
key() { curl -fs -H "Authorization: Bearer $TOKEN" http://127.0.0.1:$1/v1/admin/sources -d '{"name":"bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["write_key"])'; }
gauge() { curl -fs -H "Authorization: Bearer $TOKEN" http://127.0.0.1:$1/metrics | awk -v name="$2" '$1 == name {print $2}'; }

NONE_PORT=$(start none); MODEL_PORT=$(start model)
"$TARGET/kairos-loadgen" model-spec > "$WORK/model.json"
curl -fs -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  http://127.0.0.1:$MODEL_PORT/v1/models --data-binary @"$WORK/model.json" >/dev/null
NONE_KEY=$(key $NONE_PORT); MODEL_KEY=$(key $MODEL_PORT)

for run in $(seq "$RUNS"); do
  for target in none model; do
    if [ $target = none ]; then PORT=$NONE_PORT; KEY=$NONE_KEY; else PORT=$MODEL_PORT; KEY=$MODEL_KEY; fi
    BEFORE=$(gauge $PORT kairos_engine_applied_seq)
    STARTED=$(date +%s.%N)
    RESULT=$("$TARGET/kairos-loadgen" ingest --url http://127.0.0.1:$PORT --write-key "$KEY" --connections "$CONNECTIONS" --seconds "$SECONDS_PER_RUN" --run-id $target$run)
    COMMITTED=$(gauge $PORT kairos_log_committed_seq)
    while [ "$(gauge $PORT kairos_engine_applied_seq)" -lt "$COMMITTED" ]; do sleep 0.05; done
    APPLIED_AFTER=$(python3 -c "import time; print(time.time() - $STARTED)")
    echo "{\"target\":\"$target\",\"run\":$run,\"applied\":$((COMMITTED - BEFORE)),\"seconds_until_applied\":$APPLIED_AFTER,\"result\":$RESULT}" | tee -a "$WORK/results.jsonl"
  done
done
# The model did score: a profile of the model server carries its score.
curl -fs -H "Authorization: Bearer $TOKEN" http://127.0.0.1:$MODEL_PORT/v1/profiles/user_id:user-00007919 \
  | python3 -c 'import json,sys; p=json.load(sys.stdin); assert "gbm_300" in p["scores"], p["scores"]; print("scored on the model server: gbm_300 =", p["scores"]["gbm_300"])'
python3 - "$WORK/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
def med(target, pick):
    return statistics.median(pick(r) for r in rows if r["target"] == target)
ingest = lambda r: r["result"]["events_per_second"]
processed = lambda r: r["applied"] / r["seconds_until_applied"]
for target in ["none", "model"]:
    print(f"{target:5}: ingest {med(target, ingest):,.0f} events/s  p99 {med(target, lambda r: r['result']['p99_ms']):.1f} ms  "
          f"processed {med(target, processed):,.0f} events/s (ingested and applied by the engine)")
print(f"ratio model/none: ingest {med('model', ingest) / med('none', ingest):.2f}, processed {med('model', processed) / med('none', processed):.2f}  (medians of {len(rows)//2} runs)")
PY
