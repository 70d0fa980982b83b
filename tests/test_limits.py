"""Memory and size limits on every path (issue 12, item 6), end to end
against the real binary: one rendered in-app message is capped at 256 KB
and its templates share one fuel budget; in-app streams that end leave
nothing behind; events nested deeper than 32 levels are refused naming the
field; audience definitions nested 3,000 deep get a 400 instead of killing
the process. After each, the server still answers."""

import json
import re
import time

import requests

from conftest import Kairos
from test_journeys import deliveries, send, start_kairos, wait_for

MESSAGE_BYTES_MAX = 256 * 1024
NESTING_DEPTH_MAX = 32


def alive(server: Kairos):
    assert requests.get(server.base_url + "/healthz", timeout=5).status_code == 200
    assert server.proc.poll() is None, "the server process died"


def metric(server: Kairos, name: str) -> float:
    text = server.admin("GET", "/metrics").text
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def in_app_journey(server: Kairos, name: str, event: str, message: dict):
    r = server.admin("POST", "/v1/journeys", json={"name": name, "trigger": {"event": event},
                                                    "steps": [{"send": {"destination": "site", "message": message}}]})
    assert r.status_code == 201, r.text


def test_an_in_app_message_is_capped_and_its_templates_share_one_fuel_budget(tmp_path):
    server = start_kairos(tmp_path)
    try:
        assert server.admin("POST", "/v1/destinations", json={"type": "in_app", "name": "site", "url": ""}).status_code == 201
        ten_blobs = "{% for i in range(10) %}{{ event.properties.blob }}{% endfor %}"   # 200 KB per value
        in_app_journey(server, "huge", "Huge", {"a": ten_blobs, "b": ten_blobs})        # 400 KB together
        in_app_journey(server, "fits", "Fits", {"a": ten_blobs, "n": 1})                # 200 KB
        loop = "{% for i in range(20000) %}{% endfor %}"                                # ~60,000 steps
        in_app_journey(server, "busy", "Busy", {"a": loop, "b": loop, "c": loop})
        key = server.create_source("web")["write_key"]
        blob = "x" * 20_000
        send(server, key, [{"type": "track", "event": name, "userId": name.lower(), "messageId": name,
                            "properties": {"blob": blob}} for name in ("Huge", "Fits", "Busy")])
        assert wait_for(lambda: all(deliveries(server, f"user_id:{user}") for user in ("huge", "fits", "busy")))
        huge = deliveries(server, "user_id:huge")[0]
        assert huge["status"] == "blocked" and f"larger than {MESSAGE_BYTES_MAX} bytes" in huge["last_error"], huge
        busy = deliveries(server, "user_id:busy")[0]
        assert busy["status"] == "blocked" and "ran out of fuel" in busy["last_error"], busy
        fits = deliveries(server, "user_id:fits")[0]
        assert fits["status"] != "blocked", fits  # waits for the person's page
        alive(server)
    finally:
        server.stop()


def open_in_app_stream(server: Kairos, identifier: str, key: str) -> requests.Response:
    response = requests.get(server.base_url + "/v1/in-app/stream", params={"identifier": identifier, "writeKey": key},
                            stream=True, timeout=30)
    assert response.status_code == 200, response.text
    return response


def test_in_app_streams_that_end_leave_nothing_behind(tmp_path):
    server = start_kairos(tmp_path)
    try:
        key = server.create_source("web")["write_key"]
        streams = [open_in_app_stream(server, f"anonymous_id:visitor-{n}", key) for n in range(50)]
        assert metric(server, "kairos_in_app_pages") == 50
        for stream in streams:
            stream.close()
        # Each stream's page is forgotten when the stream ends (it used to
        # stay in the hub's map, ~33 KB each, under ids nobody publishes to).
        assert wait_for(lambda: metric(server, "kairos_in_app_pages") == 0, 30), \
            metric(server, "kairos_in_app_pages")
        alive(server)
    finally:
        server.stop()


def nested(levels: int) -> dict:
    value = 1
    for _ in range(levels - 1):
        value = [value]
    return {"a": value}


def test_events_nested_too_deeply_are_refused_naming_the_field(kairos):
    key = kairos.create_source("web")["write_key"]
    # json.dumps recurses too; build the 10,000-level text directly.
    deep = '{"a":' + "[" * 9_999 + "1" + "]" * 9_999 + "}"
    body = '{"userId":"u1","event":"Deep","messageId":"deep-1","properties":%s}' % deep
    r = requests.post(kairos.base_url + "/v1/track", data=body, headers={**Kairos.basic(key), "Content-Type": "application/json"},
                      timeout=10)
    assert r.status_code == 400, r.text
    errors = r.json()["errors"]
    assert [e["field"] for e in errors] == ["properties"], errors
    assert f"the limit is {NESTING_DEPTH_MAX} levels" in errors[0]["message"], errors
    # In a batch: the deep event is quarantined, its neighbour accepted.
    batch = {"batch": [{"type": "track", "userId": "u1", "event": "Ok", "messageId": "ok-1", "properties": nested(NESTING_DEPTH_MAX)},
                       {"type": "identify", "userId": "u1", "messageId": "deep-2", "traits": nested(NESTING_DEPTH_MAX + 1)}]}
    r = requests.post(kairos.base_url + "/v1/batch", json=batch, headers=Kairos.basic(key), timeout=10)
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    quarantined = r.json()["quarantined"]
    assert quarantined[0]["index"] == 1 and quarantined[0]["errors"][0]["field"] == "traits", quarantined
    assert "33 levels deep" in quarantined[0]["errors"][0]["message"]
    assert [e["messageId"] for e in kairos.events()] == ["ok-1"]
    alive(kairos)


def test_definitions_nested_thousands_deep_are_a_400_not_a_crash(kairos):
    deep = "(" * 3_000 + 'trait plan = "pro"' + ")" * 3_000
    deep_not = "not " * 3_000 + 'trait plan = "pro"'
    for path, body in (("/v1/audiences/preview", {"definition": deep}),
                       ("/v1/audiences", {"name": "deep", "definition": deep}),
                       ("/v1/audiences", {"name": "deep", "definition": deep_not}),
                       ("/v1/computed-traits", {"name": "deep", "definition": f"case when {deep} then 1 end"})):
        r = kairos.admin("POST", path, json=body)
        assert r.status_code == 400, (path, r.status_code, r.text[:300])
        detail = r.json()["detail"]
        assert f"more than {NESTING_DEPTH_MAX} levels" in detail and "line 1, column" in detail, detail
        alive(kairos)
    # The limit itself is fine.
    ok = "(" * NESTING_DEPTH_MAX + 'trait plan = "pro"' + ")" * NESTING_DEPTH_MAX
    assert kairos.admin("POST", "/v1/audiences", json={"name": "nested", "definition": ok}).status_code == 201
    r = kairos.admin("GET", "/v1/audiences/nested")
    assert r.status_code == 200 and r.json()["json"], r.text[:300]
    # A JSON body nested beyond serde_json's recursion limit is a 400 too.
    body = '{"name": "x", "definition": ' + "[" * 5_000 + "]" * 5_000 + "}"
    r = requests.post(kairos.base_url + "/v1/audiences", data=body, timeout=10,
                      headers={**kairos.admin_headers(), "Content-Type": "application/json"})
    assert r.status_code == 400, r.text[:300]
    alive(kairos)
