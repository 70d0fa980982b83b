"""Kairos' own events — audience announcements, a journey's `set_trait`,
consent updates and CRM imports — are written through one path (issue 13,
item 2): each is received at the engine's (here manual) clock, carries a
messageId and the id of the internal source it belongs to, and all are
bounded by the same internal limit (32 KB an event), whatever limit an
operator sets for clients."""

from conftest import Kairos
from test_journeys import CONFIG, set_clock, send, wait_for

NOW = "2030-06-01T10:00:00Z"
INTERNAL_EVENT_BYTES_MAX = 32 * 1024


def source_ids(server):
    r = server.admin("GET", "/v1/admin/sources")
    assert r.status_code == 200, r.text
    return {source["name"]: source["id"] for source in r.json()["sources"]}


def test_announcements_set_traits_consent_and_imports_share_one_shape_clock_and_limit(tmp_path):
    config = tmp_path / "kairos.toml"
    config.write_text(CONFIG)
    # Clients are held to 4 KB; Kairos' own events to the internal limit.
    server = Kairos(tmp_path / "data", extra_args=["--config", str(config), "--clock", "manual"],
                    env={"KAIROS_EVENT_BYTES_MAX": "4096"}).start()
    try:
        set_clock(server, NOW)
        r = server.admin("POST", "/v1/audiences", json={"name": "signed up", "definition": 'performed "Signed Up" within 1d'})
        assert r.status_code == 201, r.text
        r = server.admin("POST", "/v1/journeys", json={
            "name": "welcome", "trigger": {"event": "Signed Up"},
            "steps": [{"set_trait": {"name": "welcomed", "value": True}}]})
        assert r.status_code == 201, r.text
        key = server.create_source("shop")["write_key"]
        send(server, key, [{"type": "track", "event": "Signed Up", "userId": "ada", "messageId": "su-ada",
                            "timestamp": NOW}])
        assert wait_for(lambda: server.admin("GET", "/v1/profiles/user_id:ada").json()["traits"].get("welcomed") is True)
        r = server.admin("PUT", "/v1/profiles/user_id:ada/consent",
                         json={"categoryPreferences": {"Advertising": False}})
        assert r.status_code == 200, r.text
        # 10 KB of traits: over the clients' 4 KB, within the internal limit.
        r = server.admin("POST", "/v1/profiles/import", json={
            "identifier_type": "user_id", "source": "crm-import",
            "records": [{"user_id": "ada", "notes": "n" * 10_000}]})
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == 1, r.text

        ids = source_ids(server)
        authors = {ids[name]: name for name in ("kairos-audiences", "kairos-journeys", "kairos-consent-api", "crm-import")}
        assert wait_for(lambda: {e["sourceId"] for e in server.events()} >= set(authors))
        own = [event for event in server.events() if event["sourceId"] in authors]
        by_author = {}
        for event in own:
            by_author.setdefault(authors[event["sourceId"]], []).append(event)
        assert [e["event"] for e in by_author["kairos-audiences"]] == ["Audience Entered"]
        assert [e["type"] for e in by_author["kairos-journeys"]] == ["identify"]
        assert [e["event"] for e in by_author["kairos-consent-api"]] == ["Consent Updated"]
        assert [e["type"] for e in by_author["crm-import"]] == ["identify"]
        for event in own:
            # The engine's clock (manual), not the wall clock, for every author.
            assert event["receivedAt"] == NOW, event
            assert event["messageId"], event
            assert event["seq"] > 0

        # The same limit for every author: an event over 32 KB is refused,
        # by the import and by the consent API alike, naming the limit.
        r = server.admin("POST", "/v1/profiles/import", json={
            "identifier_type": "user_id", "source": "crm-import",
            "records": [{"user_id": "ada", "notes": "n" * INTERNAL_EVENT_BYTES_MAX}]})
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == 0 and len(r.json()["rejected"]) == 1, r.text
        assert str(INTERNAL_EVENT_BYTES_MAX) in str(r.json()["rejected"][0]["errors"]), r.text
        r = server.admin("PUT", "/v1/profiles/user_id:ada/consent",
                         json={"categoryPreferences": {"c" * INTERNAL_EVENT_BYTES_MAX: False}})
        assert r.status_code == 400, r.text
        assert str(INTERNAL_EVENT_BYTES_MAX) in r.text, r.text
    finally:
        server.stop()
