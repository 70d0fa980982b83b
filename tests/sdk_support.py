"""Shared helpers for the real-SDK end-to-end tests (test_sdk_*.py, test_browser_sdks.py).

One scenario (identify, track, page, screen, group, alias, anonymous track) is
described once here as Segment-spec JSON; every driver (Python in-process, the
legacy Python SDK in its own venv, the Node scripts, the browser page) turns it
into calls of its SDK, and `assert_stored_exactly_once` checks what Kairos
stored against it.
"""

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
NODE_DIR = TESTS / "node"
DRIVERS = TESTS / "sdk_drivers"
CHROMIUM = os.environ.get("KAIROS_CHROMIUM", "/usr/bin/chromium")

# analytics-python 1.4.post1 pins backoff==1.10.0, rudder-sdk-python 2.x needs
# backoff>=2.2.1: the legacy SDK gets a venv of its own (gitignored /.work).
LEGACY_PY_REQUIREMENTS = TESTS / "requirements-legacy-python.txt"
LEGACY_PY_VENV = Path(os.environ.get("KAIROS_LEGACY_PY_VENV", REPO / ".work" / "venv-analytics-python-1.4"))


def new_run_id():
    return uuid.uuid4().hex[:12]


# --------------------------------------------------------------------------
# The scenario
# --------------------------------------------------------------------------

def scenario(rid, prefix, *, screen=True, message_ids=True, anonymous_track=True):
    """The events every SDK sends, as Segment-spec dicts.

    Every event carries a unique marker `n` (in `properties` or `traits`; alias
    is recognised by its previousId) so stored events can be matched even when
    the SDK picks the messageId itself (browser SDKs).
    """
    user = f"user-{prefix}-{rid}"
    anon = f"anon-{prefix}-{rid}"
    rich = {
        "run": rid,
        "revenue": 42.5,
        "currency": "EUR",
        "big": 9007199254740991,
        "ok": True,
        "nothing": None,
        "tags": ["a", "b", 3],
        "nested": {"deep": {"er": "ünïcødé ✓ \"quoted\" \\ /"}},
    }
    events = [
        {"type": "identify", "userId": user,
         "traits": {"n": 1, "run": rid, "name": "Ada Lovelace", "email": f"ada.{rid}@example.com", "plan": "pro"}},
        {"type": "track", "userId": user, "event": "Order Completed", "properties": {"n": 2, **rich}},
        {"type": "page", "userId": user, "category": "Docs", "name": "Pricing",
         "properties": {"n": 3, "run": rid, "variant": "b"}},
        {"type": "screen", "userId": user, "name": "Home", "properties": {"n": 4, "run": rid}},
        {"type": "group", "userId": user, "groupId": f"group-{prefix}-{rid}",
         "traits": {"n": 5, "run": rid, "name": "Acme Inc", "employees": 12}},
        {"type": "alias", "userId": user, "previousId": anon},
        {"type": "track", "anonymousId": anon, "event": "Signed Up", "properties": {"n": 7, "run": rid, "step": 1}},
    ]
    if not screen:
        events = [e for e in events if e["type"] != "screen"]
    if not anonymous_track:
        events = [e for e in events if e.get("userId")]
    if message_ids:
        for i, e in enumerate(events):
            e["messageId"] = f"{prefix}-{rid}-{i}"
    return events


def marker(ev):
    """The key that identifies one scenario event among the stored ones."""
    t = ev.get("type")
    if t == "alias":
        return (t, ev.get("previousId"))
    for field in ("properties", "traits"):
        value = ev.get(field)
        if isinstance(value, dict) and "n" in value:
            return (t, value["n"])
    ctx_traits = (ev.get("context") or {}).get("traits")
    if t == "identify" and isinstance(ctx_traits, dict) and "n" in ctx_traits:
        # found only through context.traits: the identify is matched, the
        # missing top-level traits are reported by the field check.
        return (t, ctx_traits["n"])
    return (t, None)


def _subset_diff(expected, actual, path):
    """Differences where `actual` lacks or changes something `expected` has."""
    out = []
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object {json.dumps(expected)[:200]}, got {json.dumps(actual)[:200]}"]
        for k, v in expected.items():
            if k not in actual:
                out.append(f"{path}.{k}: missing (expected {json.dumps(v)[:120]})")
            else:
                out.extend(_subset_diff(v, actual[k], f"{path}.{k}"))
        return out
    if isinstance(expected, bool) or isinstance(actual, bool):
        same = type(expected) is type(actual) and expected == actual
    elif isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        same = expected == actual
    else:
        same = type(expected) is type(actual) and expected == actual
    if not same:
        out.append(f"{path}: expected {json.dumps(expected)[:200]}, got {json.dumps(actual)[:200]}")
    return out


def check_event_fields(exp, got, *, check_anonymous_absent=True):
    """Field-level problems of one stored event against its scenario event."""
    problems = []
    if got.get("type") != exp["type"]:
        problems.append(f"type: expected {exp['type']!r}, got {got.get('type')!r}")
    for key in ("userId", "event", "groupId", "previousId", "name", "category"):
        if key in exp and got.get(key) != exp[key]:
            problems.append(f"{key}: expected {exp[key]!r}, got {got.get(key)!r}")
    if "anonymousId" in exp:
        if got.get("anonymousId") != exp["anonymousId"]:
            problems.append(f"anonymousId: expected {exp['anonymousId']!r}, got {got.get('anonymousId')!r}")
    elif check_anonymous_absent and got.get("anonymousId") is not None:
        problems.append(f"anonymousId: the SDK sent none (or null), stored {got.get('anonymousId')!r}")
    if "messageId" in exp and got.get("messageId") != exp["messageId"]:
        problems.append(f"messageId: expected {exp['messageId']!r}, got {got.get('messageId')!r}")
    if "properties" in exp:
        problems.extend(_subset_diff(exp["properties"], got.get("properties"), "properties"))
    if "traits" in exp:
        if not isinstance(got.get("traits"), dict):
            where = " (they are only in context.traits)" if isinstance((got.get("context") or {}).get("traits"), dict) else ""
            problems.append(f"traits: missing from the stored event{where}")
        else:
            problems.extend(_subset_diff(exp["traits"], got["traits"], "traits"))
    for key in ("timestamp", "receivedAt"):
        if not got.get(key):
            problems.append(f"{key}: missing")
    if not got.get("messageId"):
        problems.append("messageId: missing")
    return problems


def assert_stored_exactly_once(stored, expected, *, check_anonymous_absent=True, context=""):
    """Every scenario event stored exactly once, nothing else, fields intact."""
    problems = []
    by_key = {}
    for ev in stored:
        by_key.setdefault(marker(ev), []).append(ev)
    exp_keys = Counter(marker(e) for e in expected)
    assert all(c == 1 for c in exp_keys.values()), exp_keys
    for e in expected:
        k = marker(e)
        got = by_key.get(k, [])
        if len(got) != 1:
            problems.append(f"{k}: stored {len(got)} times (expected exactly once)"
                            + (f"; messageIds {[g.get('messageId') for g in got]}" if got else ""))
        if got:
            for p in check_event_fields(e, got[0], check_anonymous_absent=check_anonymous_absent):
                problems.append(f"{k}: {p}")
    extra = [k for k in by_key if k not in exp_keys]
    for k in extra:
        problems.append(f"unexpected stored event {k}: {json.dumps(by_key[k][0])[:300]}")
    ids = [ev.get("messageId") for ev in stored]
    dup_ids = [i for i, c in Counter(ids).items() if c > 1]
    if dup_ids:
        problems.append(f"messageIds stored more than once: {dup_ids}")
    if problems:
        raise AssertionError(
            (context + "\n" if context else "") + f"{len(stored)} stored, {len(expected)} expected:\n  "
            + "\n  ".join(problems))


# --------------------------------------------------------------------------
# Server helpers
# --------------------------------------------------------------------------

def wait_for_events(kairos, source_id, count, timeout=30.0, settle=1.5):
    """Poll until `count` events are stored for the source, then wait `settle`
    seconds more so a late duplicate (a retry) would show up too."""
    deadline = time.time() + timeout
    events = []
    while time.time() < deadline:
        events = kairos.events(source_id)
        if len(events) >= count:
            break
        time.sleep(0.2)
    time.sleep(settle)
    return kairos.events(source_id)


def set_fault(kairos, status, *, fail_next=1, retry_after_seconds=1, after_commit=True):
    body = {"fail_next": fail_next, "status": status,
            "retry_after_seconds": retry_after_seconds, "after_commit": after_commit}
    r = kairos.admin("POST", "/v1/admin/test/faults", json=body)
    assert r.status_code in (200, 201, 204), f"POST /v1/admin/test/faults {body} -> {r.status_code} {r.text}"
    return r


def server_log_tail(kairos, chars=3000):
    try:
        return kairos.log_path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


# --------------------------------------------------------------------------
# Node and the legacy Python venv
# --------------------------------------------------------------------------

def ensure_node_modules():
    """tests/node/node_modules from the committed package-lock.json.

    `npm install`, not `npm ci`: the registry reached here lacks the darwin and
    win32 builds of @msgpackr-extract/* (optional deps of bull, which
    rudder-sdk-node pulls in), so the lock cannot list them and `npm ci`
    refuses it as "out of sync"; `npm install` installs exactly the locked
    versions and leaves the lock unchanged."""
    marker_file = NODE_DIR / "node_modules" / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if marker_file.exists() and marker_file.stat().st_mtime >= lock.stat().st_mtime - 1:
        return
    r = subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"npm install in {NODE_DIR} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"


def run_node(script, args, *, timeout=60, env=None):
    """Runs tests/node/<script>; returns (returncode, parsed JSON of the last stdout line, stderr)."""
    proc = subprocess.run(["node", str(NODE_DIR / script), *args], cwd=NODE_DIR, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, **(env or {})))
    result = None
    for line in reversed(proc.stdout.strip().splitlines()):
        try:
            result = json.loads(line)
            break
        except ValueError:
            continue
    return proc.returncode, result, proc.stdout, proc.stderr


def legacy_python():
    """Python of a venv holding analytics-python==1.4.post1: the one at
    $KAIROS_LEGACY_PY_VENV if it already has it (scripts/test.sh may create it),
    else created here once."""
    py = LEGACY_PY_VENV / "bin" / "python"
    probe = "import analytics, sys; sys.exit(analytics.VERSION != '1.4.post1')"
    if py.exists() and subprocess.run([str(py), "-c", probe], capture_output=True, timeout=60).returncode == 0:
        return py
    LEGACY_PY_VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(LEGACY_PY_VENV)], check=True, timeout=300)
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "-r", str(LEGACY_PY_REQUIREMENTS)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"installing {LEGACY_PY_REQUIREMENTS} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return py
