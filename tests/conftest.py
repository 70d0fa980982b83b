"""Shared fixtures for the end-to-end suite: a real `kairos serve` process.

Every test talks to Kairos the way a user does: over HTTP, against the real
binary, with a data directory of its own. Servers are stopped by PID.

Tests are hermetic with respect to the wall clock: anything that depends on
the hour, the date or the weekday (quiet hours, `wait_until`, windows over
fixed dates, re-scoring as days pass) runs on `--clock manual` with the
time set by POST /v1/admin/clock; tests on the system clock use only
timestamps relative to now. Checked by running the suite under libfaketime
(`LD_PRELOAD=.../libfaketimeMT.so.1 FAKETIME=+<seconds>`: a relative offset,
so the test process and every server share one fake clock) at 23:30, 07:45
and in 2031.
"""

import base64
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
ADMIN_TOKEN = "test-admin-token"


def kairos_binary() -> Path:
    if os.environ.get("KAIROS_BIN"):
        return Path(os.environ["KAIROS_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    for profile in ("release", "debug"):
        candidate = target / profile / "kairos"
        if candidate.exists():
            return candidate
    raise RuntimeError("kairos binary not built: run `cargo build` first or set KAIROS_BIN")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shared_data(relative: str) -> Path:
    path = SHARED / "data" / relative
    if not path.exists():
        raise RuntimeError(f"shared data set missing: {path} (tests need ../shared/data)")
    return path


class Kairos:
    """One `kairos serve` process; restartable on the same data directory."""

    def __init__(self, data_dir: Path, extra_args=(), env=None, demo=False):
        self.data_dir = data_dir
        # `demo=True`: the README's first command (demo source, events and
        # the demo store's journey); the suite starts empty otherwise.
        self.demo = demo
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.extra_args = list(extra_args)
        # Every receiver of the suite listens on 127.0.0.1, which the
        # address policy refuses by default: tests allow private networks
        # unless they pass env (tests/test_ssrf.py checks the default).
        self.env = {**os.environ, "KAIROS_ADMIN_TOKEN": ADMIN_TOKEN,
                    "KAIROS_DELIVERY_ALLOW_PRIVATE_NETWORKS": "true", **(env or {})}
        self.proc = None
        self.log_path = data_dir.parent / f"{data_dir.name}.log"

    def start(self):
        args = [str(kairos_binary()), "serve", "--listen", f"127.0.0.1:{self.port}",
                "--data-dir", str(self.data_dir), *([] if self.demo else ["--no-demo"]), *self.extra_args]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kairos exited with {self.proc.returncode}: {self.log_path.read_text()[-4000:]}")
            try:
                if requests.get(self.base_url + "/readyz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError("kairos did not become ready in 30 s")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    # --- admin helpers -------------------------------------------------
    def admin_headers(self):
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def admin(self, method, path, **kwargs):
        return requests.request(method, self.base_url + path, headers=self.admin_headers(), timeout=30, **kwargs)

    def create_source(self, name="web", **body):
        r = self.admin("POST", "/v1/admin/sources", json={"name": name, **body})
        assert r.status_code == 201, r.text
        return r.json()

    def events(self, source_id=None):
        """Every accepted event, in log order (follows the cursor to the end)."""
        out, after = [], None
        while True:
            params = {"limit": 1000}
            if after:
                params["after"] = after
            if source_id:
                params["source"] = source_id
            page = self.admin("GET", "/v1/admin/events", params=params).json()
            out.extend(page["events"])
            after = page.get("next")
            if not after or not page["events"]:
                return out

    @staticmethod
    def basic(write_key):
        return {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}


@pytest.fixture
def kairos(tmp_path):
    server = Kairos(tmp_path / "data", extra_args=["--test-faults"]).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shared_kairos(tmp_path_factory):
    """One server for a whole module, for tests that only add data."""
    server = Kairos(tmp_path_factory.mktemp("kairos") / "data", extra_args=["--test-faults"]).start()
    yield server
    server.stop()
