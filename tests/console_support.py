"""Driving the console (/) and the demo store (/demo/) in headless Chromium
(tests/node/console-page.cjs) for tests/test_console.py and
tests/test_demo_store.py: pages are Kairos' own, so the console's session
cookie is the one the browser really keeps."""

import json
import os
import queue
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import ADMIN_TOKEN, REPO
from sdk_support import CHROMIUM, NODE_DIR, ensure_node_modules

# Screenshots of every page, kept as test artifacts (gitignored).
ARTIFACTS = REPO / ".work" / "artifacts"
CONSOLE_DIR = REPO / "web" / "console"
# axe-core impacts that fail a page (issue 15: no serious or critical violations).
BLOCKING_IMPACTS = {"serious", "critical"}


def ensure_browser_tools():
    ensure_node_modules()
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: `apt-get install -y chromium`"


class ConsoleBrowser:
    """One tests/node/console-page.cjs process (one browser context, named tabs)."""

    def __init__(self, kairos):
        self.kairos = kairos
        self.base = kairos.base_url
        built = requests.get(self.base + "/", timeout=10)
        if built.status_code != 200:  # a binary built without Node.js: say so, not a timeout
            pytest.fail(f"GET / answered {built.status_code}: {built.text[:500]}")
        self.replies = queue.Queue()
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(["node", str(NODE_DIR / "console-page.cjs")], cwd=NODE_DIR,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
                                     env=dict(os.environ, KAIROS_CHROMIUM=CHROMIUM))
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.replies.put(json.loads(line))
            except ValueError:
                continue
        self.replies.put(None)

    def do(self, op, tab="main", timeout=60, **args):
        self.next_id += 1
        self.proc.stdin.write(json.dumps({"id": self.next_id, "op": op, "tab": tab, **args}) + "\n")
        self.proc.stdin.flush()
        reply = self.replies.get(timeout=timeout)
        assert reply is not None, f"driver exited during {op}\n{self.diagnostics()}"
        assert reply["ok"], f"{op} {args}: {reply['error'][:3000]}\n{self.diagnostics()}"
        return reply["value"]

    def goto(self, path, tab="main"):
        return self.do("goto", tab=tab, url=self.base + path)

    def js(self, expression, tab="main"):
        return self.do("eval", tab=tab, js=expression)

    def wait_js(self, expression, timeout=10.0, tab="main"):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.js(expression, tab=tab):
                return True
            time.sleep(0.05)
        return False

    def login(self, tab="main"):
        self.goto("/", tab=tab)
        self.do("wait", tab=tab, selector="#token")
        self.do("fill", tab=tab, selector="#token", value=ADMIN_TOKEN)
        self.do("press", tab=tab, key="Enter")
        self.do("wait", tab=tab, selector="nav[aria-label=Console]")

    def check_page(self, name, tab="main"):
        """axe-core on the page as shown (no serious or critical violation),
        and a screenshot kept in .work/artifacts/."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.do("screenshot", tab=tab, path=str(ARTIFACTS / f"{name}.png"))
        violations = self.do("axe", tab=tab)
        blocking = [v for v in violations if v["impact"] in BLOCKING_IMPACTS]
        assert not blocking, f"axe on {name}: {json.dumps(blocking, indent=1)}"
        return violations

    def diagnostics(self):
        try:
            log = self.do("log", timeout=10) if self.proc.poll() is None else {}
        except (AssertionError, queue.Empty):
            log = {}
        self.stderr.seek(0)
        return ("console:\n  " + "\n  ".join(log.get("console", [])[-20:]) + "\npage errors:\n  "
                + "\n  ".join(log.get("pageErrors", [])) + "\nstderr:\n" + self.stderr.read()[-2000:])

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"op": "close"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
