# Shared by the HTTP benchmark scripts (sourced after `cd` to the repo):
# builds the release binaries (not with BENCH_NO_BUILD=1: measure what is
# built), gives a scratch directory removed (with any
# server started in the background) on exit, and small helpers.
[ -n "${BENCH_NO_BUILD:-}" ] || cargo build --release -p kairos -p kairos-bench >&2
TARGET=${CARGO_TARGET_DIR:-target}/release
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
peak_kb() { grep VmHWM /proc/$1/status | awk '{print $2}'; }
