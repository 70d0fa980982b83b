#!/usr/bin/env bash
# Runs every test of Kairos: the Rust unit and integration tests, then the
# end-to-end suite against the real binary with the real SDKs (PyPI, npm),
# headless Chromium and the captured SDK requests. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK="$ROOT/.work"
mkdir -p "$WORK"

step() { printf '\n== %s\n' "$*"; }

step "system packages (chromium for the browser SDK tests)"
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi

step "python test environment"
if [ ! -x "$WORK/venv/bin/python" ]; then python3 -m venv "$WORK/venv"; fi
"$WORK/venv/bin/pip" install -q --disable-pip-version-check -r tests/requirements.txt -c tests/constraints.txt

step "node test packages"
# `npm install`, not `npm ci`: the lock cannot list the optional macOS/Windows
# builds this registry lacks, and `npm ci` would reject it as out of sync.
(cd tests/node && npm install --no-audit --no-fund --loglevel=error)

step "browser SDK (web/sdk: esbuild + typescript from its lock; fails over 12 KB gzipped)"
(cd web/sdk && npm ci --no-audit --no-fund --loglevel=error && npm run build)

step "console and demo store (web/console: esbuild + typescript from its lock)"
(cd web/console && npm ci --no-audit --no-fund --loglevel=error && npm run build)

step "build"
cargo build --workspace --locked
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
export KAIROS_BIN="$TARGET_DIR/debug/kairos"

step "rust tests"
cargo test --workspace --locked

step "end-to-end tests"
"$WORK/venv/bin/python" -m pytest tests -q -p no:cacheprovider "$@"
