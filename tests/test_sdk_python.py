"""Real, unmodified Python analytics SDKs against `kairos serve`.

Each SDK gets only Kairos' URL as its host and a Kairos write key; every event
it sends must be stored exactly once with its type, ids, names, properties and
traits intact, also when the first attempt fails after the server stored it.

segment-analytics-python and rudder-sdk-python run in this process;
analytics-python 1.4.post1 runs in a venv of its own (its backoff==1.10.0 pin
conflicts with rudder-sdk-python 2.x), via sdk_drivers/python_sdk.py.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "sdk_drivers"))

import python_sdk  # noqa: E402  (tests/sdk_drivers/python_sdk.py)
from sdk_support import (  # noqa: E402
    DRIVERS, assert_stored_exactly_once, legacy_python, new_run_id, scenario, server_log_tail,
    set_fault, wait_for_events,
)


def summary(seen):
    return "\n".join(f"  {c['method']} {c['url']} enc={c['content_encoding']} -> {c['status']} {c['body'][:200]}"
                     for c in seen) or "  (no request seen)"


def run_sdk(kairos, sdk, write_key, events, tmp_path, *, gzip=None, max_retries=None):
    """Runs one SDK through `events`; returns (requests the SDK saw, errors it reported)."""
    if sdk in ("segment", "rudder"):
        return python_sdk.run(sdk, kairos.base_url, write_key, events, gzip=gzip, max_retries=max_retries)
    events_file = tmp_path / f"events-{new_run_id()}.json"
    events_file.write_text(json.dumps(events))
    args = [str(legacy_python()), str(DRIVERS / "python_sdk.py"), "--sdk", "legacy", "--host", kairos.base_url,
            "--write-key", write_key, "--events-json", str(events_file)]
    if gzip:
        args.append("--gzip")
    if max_retries is not None:
        args += ["--max-retries", str(max_retries)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, f"legacy analytics-python driver failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out["requests"], out["errors"]


def check(kairos, source, events, seen, errors, what):
    stored = wait_for_events(kairos, source["id"], len(events))
    context = (f"{what}\nrequests the SDK made:\n{summary(seen)}\nSDK errors: {errors}\n"
               f"server log tail:\n{server_log_tail(kairos, 1500)}")
    assert not errors, context
    assert seen, context
    assert_stored_exactly_once(stored, events, context=context)
    return stored


SDKS = [
    # (name, gzip) — rudder-sdk-python gzips by default
    pytest.param("segment", None, id="segment-analytics-python"),
    pytest.param("segment", True, id="segment-analytics-python-gzip"),
    pytest.param("rudder", None, id="rudder-sdk-python-gzip-default"),
    pytest.param("legacy", None, id="analytics-python-1.4"),
    pytest.param("legacy", True, id="analytics-python-1.4-gzip"),
]


@pytest.mark.parametrize("sdk,gzip", SDKS)
def test_python_sdk_every_call_stored_once(shared_kairos, tmp_path, sdk, gzip):
    kairos = shared_kairos
    source = kairos.create_source(f"py-{sdk}")
    events = scenario(new_run_id(), f"py-{sdk}")
    seen, errors = run_sdk(kairos, sdk, source["write_key"], events, tmp_path, gzip=gzip)
    stored = check(kairos, source, events, seen, errors, f"{sdk} gzip={gzip}")

    statuses = [c["status"] for c in seen]
    assert all(s == 200 for s in statuses), f"every batch must be answered 200:\n{summary(seen)}"
    encodings = {c["content_encoding"] for c in seen}
    if sdk == "rudder" or gzip:
        assert encodings == {"gzip"}, f"the SDK was expected to gzip its batches:\n{summary(seen)}"
    assert all(c["url"] == kairos.base_url + "/v1/batch" for c in seen), summary(seen)

    identify = next(e for e in stored if e["type"] == "identify")
    assert identify["traits"]["email"] == events[0]["traits"]["email"]
    if sdk == "rudder":
        # RudderStack Python puts identify traits only in context.traits; Kairos copies them.
        assert identify["traits"]["name"] == "Ada Lovelace"


RETRY_CASES = [
    pytest.param("segment", 503, id="segment-analytics-python-503"),
    pytest.param("segment", 429, id="segment-analytics-python-429"),
    pytest.param("rudder", 503, id="rudder-sdk-python-503"),
    pytest.param("rudder", 429, id="rudder-sdk-python-429"),
    pytest.param("legacy", 503, id="analytics-python-1.4-503"),
    pytest.param("legacy", 429, id="analytics-python-1.4-429"),
]


@pytest.mark.parametrize("sdk,status", RETRY_CASES)
def test_python_sdk_retry_after_commit_is_stored_once(kairos, tmp_path, sdk, status):
    """The first batch is stored, then answered `status`: the SDK re-sends the
    same messageIds and Kairos acknowledges them as duplicates."""
    source = kairos.create_source(f"py-retry-{sdk}")
    events = scenario(new_run_id(), f"py-retry-{sdk}")
    set_fault(kairos, status, fail_next=1, retry_after_seconds=1, after_commit=True)
    seen, errors = run_sdk(kairos, sdk, source["write_key"], events, tmp_path, max_retries=5)
    check(kairos, source, events, seen, errors, f"{sdk} first attempt answered {status} after commit")
    statuses = [c["status"] for c in seen]
    assert statuses[0] == status, f"the fault switch did not answer the first batch with {status}:\n{summary(seen)}"
    assert 200 in statuses[1:], f"the SDK did not retry to a 200:\n{summary(seen)}"
    if status in (429, 503):
        first = seen[0]
        assert first["retry_after"] == "1", f"{status} must carry Retry-After: 1 (got {first['retry_after']!r})"
