"""The real-time profile API, end to end over HTTP against the real binary:
identity resolution, last-write-wins traits, timelines, merges, and
rebuilding every profile from the log after a restart."""

import requests

from conftest import Kairos


def send(server: Kairos, key: str, events: list) -> dict:
    r = requests.post(server.base_url + "/v1/batch", json={"batch": events}, headers=Kairos.basic(key), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def profile(server: Kairos, identifier: str) -> requests.Response:
    return server.admin("GET", f"/v1/profiles/{identifier}")


def test_identify_links_devices_and_reads_reflect_the_last_write(kairos):
    key = kairos.create_source("web")["write_key"]
    send(kairos, key, [{"type": "track", "event": "Product Viewed", "anonymousId": "dev-1", "messageId": "p1",
                        "timestamp": "2024-05-01T10:00:00Z", "properties": {"sku": "s1"}}])
    # Read-your-writes: the very next request sees the event.
    assert profile(kairos, "anonymous_id:dev-1").json()["event_count"] == 1
    send(kairos, key, [
        {"type": "identify", "userId": "ada", "anonymousId": "dev-1", "messageId": "p2", "timestamp": "2024-05-01T10:05:00Z",
         "traits": {"email": "Ada@Example.org", "plan": "pro"}},
        # An older identify arriving later must not overwrite the newer plan.
        {"type": "identify", "userId": "ada", "messageId": "p3", "timestamp": "2024-04-01T00:00:00Z", "traits": {"plan": "free", "name": "Ada"}},
        {"type": "track", "event": "Order Completed", "anonymousId": "dev-2", "userId": "ada", "messageId": "p4",
         "timestamp": "2024-05-01T11:00:00Z", "context": {"consent": {"categoryPreferences": {"Advertising": False}}}},
    ])
    by_user = profile(kairos, "user_id:ada")
    assert by_user.status_code == 200, by_user.text
    body = by_user.json()
    for identifier in ["anonymous_id:dev-1", "anonymous_id:dev-2", "email:ADA@example.org"]:
        assert profile(kairos, identifier).json()["id"] == body["id"], identifier
    assert body["traits"] == {"email": "ada@example.org", "plan": "pro", "name": "Ada"}
    assert body["consent"] == {"Advertising": False}
    assert {(i["type"], i["value"]) for i in body["identities"]} == {
        ("user_id", "ada"), ("anonymous_id", "dev-1"), ("anonymous_id", "dev-2"), ("email", "ada@example.org")}
    assert body["first_seen"].startswith("2024-04-01") and body["last_seen"].startswith("2024-05-01T11:00")

    events = kairos.admin("GET", "/v1/profiles/user_id:ada/events", params={"limit": 3}).json()
    assert [e["messageId"] for e in events["events"]] == ["p4", "p2", "p1"], "newest first by event time"
    older = kairos.admin("GET", "/v1/profiles/user_id:ada/events", params={"limit": 3, "before": events["next"]}).json()
    assert [e["messageId"] for e in older["events"]] == ["p3"]
    orders = kairos.admin("GET", "/v1/profiles/user_id:ada/events", params={"event": "Order Completed"}).json()
    assert [e["messageId"] for e in orders["events"]] == ["p4"]


def test_merges_are_recorded_with_the_linking_identifier(kairos):
    key = kairos.create_source("web")["write_key"]
    send(kairos, key, [
        {"type": "track", "event": "A", "anonymousId": "phone", "messageId": "m1", "traits": {}},
        {"type": "identify", "anonymousId": "laptop", "messageId": "m2", "traits": {"email": "grace@example.org"}},
        {"type": "identify", "anonymousId": "phone", "messageId": "m3", "traits": {"email": "grace@example.org"}},
    ])
    merges = kairos.admin("GET", "/v1/profiles/email:grace@example.org/merges").json()
    assert len(merges["merges"]) == 1
    assert merges["merges"][0]["via"] == {"type": "anonymous_id", "value": "phone"}


def test_a_shared_browser_never_makes_two_people_one(kairos):
    key = kairos.create_source("web")["write_key"]
    send(kairos, key, [
        {"type": "identify", "userId": "u1", "anonymousId": "kiosk", "messageId": "k1"},
        {"type": "identify", "userId": "u2", "anonymousId": "kiosk", "messageId": "k2"},
        {"type": "track", "event": "Order Completed", "userId": "u2", "anonymousId": "kiosk", "messageId": "k3"},
    ])
    first, second = profile(kairos, "user_id:u1").json(), profile(kairos, "user_id:u2").json()
    assert first["id"] != second["id"]
    assert second["event_count"] == 2


def test_profiles_are_rebuilt_from_the_log_after_a_restart(kairos):
    key = kairos.create_source("web")["write_key"]
    send(kairos, key, [{"type": "identify", "userId": f"user-{i}", "anonymousId": f"anon-{i}", "messageId": f"r{i}",
                        "traits": {"n": i}} for i in range(200)])
    before = profile(kairos, "anonymous_id:anon-123").json()
    kairos.kill9()
    kairos.start()
    after = profile(kairos, "anonymous_id:anon-123").json()
    assert after == before


def test_profile_api_errors(kairos):
    assert profile(kairos, "user_id:nobody").status_code == 404
    bad = profile(kairos, "no-colon")
    assert bad.status_code == 400 and "{type}:{value}" in bad.json()["detail"]
    assert requests.get(kairos.base_url + "/v1/profiles/user_id:x", timeout=5).status_code == 401
    assert kairos.admin("GET", "/v1/profiles/user_id:x/events", params={"limit": 0}).status_code == 400


def test_search_by_trait_value(kairos):
    key = kairos.create_source("web")["write_key"]
    send(kairos, key, [
        {"type": "identify", "userId": "a", "messageId": "s1", "traits": {"plan": "pro", "seats": 5}},
        {"type": "identify", "userId": "b", "messageId": "s2", "traits": {"plan": "free"}},
        {"type": "identify", "userId": "c", "messageId": "s3", "traits": {"plan": "pro"}},
    ])
    found = kairos.admin("GET", "/v1/profiles", params={"trait": "plan", "value": "pro"}).json()["profiles"]
    assert sorted(i["value"] for p in found for i in p["identities"]) == ["a", "c"]
    assert len(kairos.admin("GET", "/v1/profiles", params={"trait": "seats", "value": "5"}).json()["profiles"]) == 1
    assert kairos.admin("GET", "/v1/profiles", params={"trait": "plan"}).status_code == 400
