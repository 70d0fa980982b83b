"""Real, unmodified Node analytics SDKs against `kairos serve`.

@segment/analytics-node and @rudderstack/rudder-sdk-node (gzip by default, on
a body labelled application/x-www-form-urlencoded) are driven by
tests/node/server-sdk.cjs with only the host and the write key set; every event
must be stored exactly once, also when the first attempt fails after commit.
"""

import json

import pytest

from sdk_support import (
    assert_stored_exactly_once, ensure_node_modules, new_run_id, run_node, scenario, server_log_tail, set_fault,
    wait_for_events,
)


@pytest.fixture(scope="module", autouse=True)
def node_modules():
    ensure_node_modules()


def summary(result):
    if not result:
        return "  (driver printed no result)"
    return "\n".join(f"  {r['method']} {r['url']} enc={r.get('content_encoding')} -> {r['status']}"
                     for r in result.get("requests", [])) or "  (no request seen)"


def drive(kairos, sdk, source, events, tmp_path, *extra):
    events_file = tmp_path / f"events-{new_run_id()}.json"
    events_file.write_text(json.dumps(events))
    rc, result, stdout, stderr = run_node("server-sdk.cjs", [sdk, kairos.base_url, source["write_key"],
                                                             str(events_file), *extra], timeout=90)
    context = (f"{sdk} {' '.join(extra)}: driver exit {rc}\nrequests the SDK made:\n{summary(result)}\n"
               f"SDK errors: {result and result.get('errors')}\nstderr:\n{stderr[-2000:]}\n"
               f"server log tail:\n{server_log_tail(kairos, 1500)}")
    assert rc == 0 and result is not None, context
    assert not result["errors"], context
    return result, context


CASES = [
    pytest.param("segment", (), id="segment-analytics-node"),
    pytest.param("rudder", (), id="rudder-sdk-node-gzip"),
    pytest.param("rudder", ("--no-gzip",), id="rudder-sdk-node-plain"),
]


@pytest.mark.parametrize("sdk,extra", CASES)
def test_node_sdk_every_call_stored_once(shared_kairos, tmp_path, sdk, extra):
    kairos = shared_kairos
    source = kairos.create_source(f"node-{sdk}")
    events = scenario(new_run_id(), f"node-{sdk}")
    result, context = drive(kairos, sdk, source, events, tmp_path, *extra)
    stored = wait_for_events(kairos, source["id"], len(events))
    assert_stored_exactly_once(stored, events, context=context)

    posts = [r for r in result["requests"] if r["method"] == "POST"]
    assert posts, context
    assert all(r["url"] == kairos.base_url + "/v1/batch" for r in posts), context
    assert all(r["status"] == 200 for r in posts), context
    if sdk == "rudder" and not extra:
        assert all(r.get("content_encoding") == "gzip" for r in posts), context


RETRY_CASES = [
    pytest.param("segment", 503, id="segment-analytics-node-503"),
    pytest.param("segment", 429, id="segment-analytics-node-429"),
    pytest.param("rudder", 503, id="rudder-sdk-node-503"),
    pytest.param("rudder", 429, id="rudder-sdk-node-429"),
]


@pytest.mark.parametrize("sdk,status", RETRY_CASES)
def test_node_sdk_retry_after_commit_is_stored_once(kairos, tmp_path, sdk, status):
    source = kairos.create_source(f"node-retry-{sdk}")
    events = scenario(new_run_id(), f"node-retry-{sdk}")
    set_fault(kairos, status, fail_next=1, retry_after_seconds=1, after_commit=True)
    result, context = drive(kairos, sdk, source, events, tmp_path, "--max-retries", "5")
    stored = wait_for_events(kairos, source["id"], len(events))
    assert_stored_exactly_once(stored, events, context=f"first attempt answered {status} after commit\n{context}")
    statuses = [r["status"] for r in result["requests"] if r["method"] == "POST"]
    assert statuses and statuses[0] == status, f"the fault switch did not answer the first batch with {status}\n{context}"
    assert 200 in statuses[1:], f"the SDK did not retry to a 200\n{context}"
