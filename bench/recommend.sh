#!/usr/bin/env bash
# Session recommendations (issue 16), in release, without the kairos binary:
# 1. next-item accuracy and latency of the shipped recommender and its peers
#    (VMIS-kNN, V-SKNN, S-kNN, item-kNN, popularity) on the YOOCHOOSE sample,
#    train_full → test, latency the median of RUNS runs;
# 2. the synthetic scale benchmark (1 M items, 10 M clicks) RUNS times;
# 3. the whole live recommender at that scale (catalog, people, carts,
#    orders, popularity) RUNS times.
# The shipped defaults were tuned on train_tr → train_valid only
# (`--tune` reruns that search).
#   bench/recommend.sh [runs=3] [--tune]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
DATA=${DATA:-../shared/data/yoochoose_sample}
cargo build --release -p kairos-recommend --examples >&2
BIN=${CARGO_TARGET_DIR:-target}/release/examples
if [ "${2:-}" = "--tune" ]; then
  "$BIN/tune_session"
fi
"$BIN/next_item_peers" --train "$DATA/yoochoose-clicks-100k_train_full.txt" \
  --test "$DATA/yoochoose-clicks-100k_test.txt" --runs "$RUNS"
for run in $(seq "$RUNS"); do
  echo "scale run $run:"
  "$BIN/session_scale" --clicks 10000000 --items 1000000
done
for run in $(seq "$RUNS"); do
  echo "live recommender run $run:"
  "$BIN/live_scale" --clicks 10000000 --items 1000000 --people 500000
done
