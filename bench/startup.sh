#!/usr/bin/env bash
# Start-up time with a long log: from process start until a profile is
# answered (reads wait until the engine has applied every durable event),
# restoring the checkpoint written at the last clean shutdown, against a
# full replay of the same log (checkpoints moved aside), in the same run.
#   bench/startup.sh [events=10000000] [runs=3]
# The log is filled by `kairos-loadgen ingest` (100-event batches of the
# 600-byte "Product Viewed" event, 100 distinct people).
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-10000000}; RUNS=${2:-3}
source bench/lib.sh
PORT=$(free_port); TOKEN=bench-admin-token; URL=http://127.0.0.1:$PORT
start() { KAIROS_ADMIN_TOKEN=$TOKEN "$TARGET/kairos" serve --listen 127.0.0.1:$PORT --data-dir "$WORK/data" --no-demo >>"$WORK/kairos.log" 2>&1 & PID=$!; }
metric() { curl -fs -H "Authorization: Bearer $TOKEN" $URL/metrics | awk "/^$1 / {print \$2}"; }
# Starts the server; TAKEN = seconds until a profile read answers 200.
time_to_profile() {
  local started=$(date +%s.%N)
  start
  until curl -fs -o /dev/null -H "Authorization: Bearer $TOKEN" "$URL/v1/profiles/user_id:user-00000000" 2>/dev/null; do sleep 0.02; done
  TAKEN=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$started" "$(date +%s.%N)")
}

start
until curl -fs $URL/readyz >/dev/null 2>&1; do sleep 0.1; done
KEY=$(curl -fs -H "Authorization: Bearer $TOKEN" $URL/v1/admin/sources -d '{"name":"bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["write_key"])')
round=0
while [ "$(metric kairos_log_committed_seq)" -lt "$EVENTS" ]; do
  round=$((round + 1))
  "$TARGET/kairos-loadgen" ingest --url $URL --write-key "$KEY" --connections 16 --seconds 20 --run-id s$round >/dev/null
done
COMMITTED=$(metric kairos_log_committed_seq)
until [ "$(metric kairos_engine_applied_seq)" -ge "$COMMITTED" ]; do sleep 1; done
kill -TERM $PID; wait $PID || true   # a clean shutdown writes the checkpoint
echo "log: $COMMITTED events; data directory $(du -sh "$WORK/data" | cut -f1); checkpoint $(du -sh "$WORK/data/checkpoints" | cut -f1)"

for run in $(seq "$RUNS"); do
  time_to_profile; seconds=$TAKEN
  restored=$(metric kairos_engine_restored_seq)
  kill -TERM $PID; wait $PID || true
  echo "{\"start\":\"checkpoint\",\"run\":$run,\"seconds\":$seconds,\"restored_seq\":$restored}" | tee -a "$WORK/results.jsonl"
  mv "$WORK/data/checkpoints" "$WORK/checkpoints.aside"; mkdir -m 700 "$WORK/data/checkpoints"
  KAIROS_CHECKPOINT_EVERY_EVENTS=0 time_to_profile; seconds=$TAKEN
  kill -9 $PID; wait $PID 2>/dev/null || true   # no checkpoint from this run
  rm -rf "$WORK/data/checkpoints"; mv "$WORK/checkpoints.aside" "$WORK/data/checkpoints"
  echo "{\"start\":\"full replay\",\"run\":$run,\"seconds\":$seconds}" | tee -a "$WORK/results.jsonl"
done
python3 - "$WORK/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
med = lambda kind: statistics.median(r["seconds"] for r in rows if r["start"] == kind)
c, f = med("checkpoint"), med("full replay")
print(f"ready from checkpoint: {c:.2f} s   full replay: {f:.2f} s   ratio {f/c:.1f}x  (medians of {len(rows)//2} runs)")
PY
