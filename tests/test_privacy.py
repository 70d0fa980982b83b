"""Right of access, right to erasure, suppression and consent, end to end over
HTTP against the real binary — and checked on disk: after an erasure and a
restart, no identifier or trait value of the person is left in plaintext
anywhere in the data directory."""

import time
from pathlib import Path

import requests

from conftest import Kairos

# Distinctive values, so a byte scan of the data directory can look for them.
USER = "user-x-5e1c"
ANON = "anon-x-5e1c"
EMAIL = "forget.me.5e1c@example.org"
PHONE = "+4915155501234"
COLOUR = "ultramarine5e1c"
SECRET_PROPERTY = "sku-secret-5e1c"
SOURCE_NAME = "web-source-5e1c"


def send(server: Kairos, key: str, events: list) -> dict:
    r = requests.post(server.base_url + "/v1/batch", json={"batch": events}, headers=Kairos.basic(key), timeout=10)
    assert r.status_code in (200, 400), r.text
    return r.json()


def person_events():
    return [
        {"type": "track", "event": "Product Viewed", "anonymousId": ANON, "messageId": "x1",
         "timestamp": "2024-05-01T10:00:00Z", "properties": {"sku": SECRET_PROPERTY}},
        {"type": "identify", "userId": USER, "anonymousId": ANON, "messageId": "x2", "timestamp": "2024-05-01T10:01:00Z",
         "traits": {"email": EMAIL, "phone": PHONE, "colour": COLOUR}},
        {"type": "track", "event": "Order Completed", "userId": USER, "messageId": "x3", "timestamp": "2024-05-01T10:02:00Z",
         "properties": {"total": 42}},
    ]


def other_person_events():
    return [
        {"type": "identify", "userId": "keep-me", "anonymousId": "keep-dev", "messageId": "k1", "traits": {"colour": "green"}},
        {"type": "track", "event": "Product Viewed", "userId": "keep-me", "messageId": "k2"},
    ]


def files_containing(data_dir: Path, needles: list[str]) -> dict:
    found = {}
    for path in data_dir.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            for needle in needles:
                if needle.encode() in content:
                    found.setdefault(needle, []).append(str(path.relative_to(data_dir)))
    return found


def test_export_then_erase_leaves_nothing_readable_and_suppresses_the_person(tmp_path):
    data_dir = tmp_path / "data"
    server = Kairos(data_dir).start()
    try:
        key = server.create_source(SOURCE_NAME)["write_key"]
        send(server, key, person_events() + other_person_events())
        # An invalid event naming the person lands in quarantine, in plaintext.
        bad = send(server, key, [{"type": "track", "event": "Broken", "userId": USER, "timestamp": "not a time",
                                  "properties": {"colour": COLOUR}}])
        assert bad["code"] == "events_invalid"

        # Right of access: the profile and every event, in one document.
        export = server.admin("GET", f"/v1/profiles/email:{EMAIL}/export")
        assert export.status_code == 200, export.text
        assert "attachment" in export.headers["content-disposition"]
        document = export.json()
        assert document["profile"]["traits"]["colour"] == COLOUR
        assert [e["messageId"] for e in document["events"]] == ["x1", "x2", "x3"]
        assert document["events"][0]["properties"]["sku"] == SECRET_PROPERTY

        # Positive control for the scan below: it sees plaintext that is on
        # disk (the source's name). Personal data never is: log events and
        # quarantined events are sealed under the person's key.
        server.stop()
        assert SOURCE_NAME in files_containing(data_dir, [SOURCE_NAME]), "the scan must see plaintext"
        assert files_containing(data_dir, [USER, EMAIL, COLOUR, SECRET_PROPERTY]) == {}, "sealed"
        server.start()
        quarantined = server.admin("GET", "/v1/admin/quarantine").json()["items"]
        assert [item["event"]["userId"] for item in quarantined] == [USER], "readable through the API"

        receipt = server.admin("DELETE", f"/v1/profiles/user_id:{USER}")
        assert receipt.status_code == 200, receipt.text
        receipt = receipt.json()
        assert receipt["id"].startswith("era_")
        assert receipt["identities"] == {"user_id": 1, "anonymous_id": 1, "email": 1, "phone": 1}
        assert receipt["events_erased"] == 3
        assert receipt["quarantine_purged"] == 1
        assert receipt["keys_destroyed"] >= 1

        for identifier in [f"user_id:{USER}", f"anonymous_id:{ANON}", f"email:{EMAIL}"]:
            assert server.admin("GET", f"/v1/profiles/{identifier}").status_code == 404, identifier
            assert server.admin("GET", f"/v1/profiles/{identifier}/export").status_code == 404, identifier
        assert server.admin("DELETE", f"/v1/profiles/user_id:{USER}").status_code == 404
        audit = server.admin("GET", "/v1/admin/audit").json()["erasures"]
        assert [entry["id"] for entry in audit] == [receipt["id"]]
        assert USER not in str(audit) and EMAIL not in str(audit)

        # Suppressed: later events carrying any of the identifiers are dropped and counted.
        later = send(server, key, [
            {"type": "track", "event": "Back Again", "userId": USER, "messageId": "s1"},
            {"type": "track", "event": "Back Again", "anonymousId": ANON, "messageId": "s2"},
            {"type": "identify", "anonymousId": "fresh-device", "messageId": "s3", "traits": {"email": EMAIL.upper()}},
            {"type": "track", "event": "Unrelated", "userId": "someone-else", "messageId": "s4"},
        ])
        assert later["accepted"] == 1 and later["suppressed"] == 3, later
        assert server.admin("GET", f"/v1/profiles/user_id:{USER}").status_code == 404
        assert server.admin("GET", "/v1/profiles/anonymous_id:fresh-device").status_code == 404
        metrics = server.admin("GET", "/metrics").text
        assert "kairos_ingest_events_suppressed_total 3" in metrics

        # The events API no longer returns the person's events; others' remain.
        ids = [e["messageId"] for e in server.events()]
        assert ids == ["k1", "k2", "s4"], ids
        kept = server.admin("GET", "/v1/profiles/user_id:keep-me").json()
        assert kept["event_count"] == 2 and kept["traits"] == {"colour": "green"}

        # After a crash and restart: still gone, still suppressed, others intact.
        server.kill9()
        server.start()
        assert server.admin("GET", f"/v1/profiles/user_id:{USER}").status_code == 404
        assert server.admin("GET", f"/v1/profiles/email:{EMAIL}/export").status_code == 404
        assert server.admin("GET", "/v1/profiles/user_id:keep-me").json()["event_count"] == 2
        again = send(server, key, [{"type": "identify", "userId": USER, "messageId": "s5", "traits": {"colour": COLOUR}}])
        assert again["suppressed"] == 1
        assert server.admin("GET", f"/v1/profiles/user_id:{USER}").status_code == 404
        assert [e["messageId"] for e in server.events()] == ["k1", "k2", "s4"]
        assert server.admin("GET", "/v1/admin/quarantine").json()["items"] == []
    finally:
        server.stop()
    leftovers = files_containing(data_dir, [USER, ANON, EMAIL, PHONE, COLOUR, SECRET_PROPERTY])
    assert leftovers == {}, f"plaintext of the erased person remains: {leftovers}"


def test_erasing_an_unknown_or_malformed_identifier(kairos):
    assert kairos.admin("DELETE", "/v1/profiles/user_id:nobody").status_code == 404
    r = kairos.admin("DELETE", "/v1/profiles/nocolon")
    assert r.status_code == 400 and r.json()["code"] == "identifier_invalid"
    r = requests.delete(kairos.base_url + "/v1/profiles/user_id:nobody", timeout=5)
    assert r.status_code == 401


def test_consent_from_the_api_is_durable(tmp_path):
    server = Kairos(tmp_path / "data").start()
    try:
        key = server.create_source("web")["write_key"]
        send(server, key, [{"type": "track", "event": "A", "userId": "cora", "messageId": "c1",
                            "context": {"consent": {"categoryPreferences": {"Analytics": True, "Advertising": True}}}},
                           {"type": "identify", "userId": "cora", "messageId": "c2", "traits": {"email": "cora@example.org"}}])
        r = server.admin("PUT", "/v1/profiles/email:cora@example.org/consent",
                         json={"categoryPreferences": {"Advertising": False}})
        assert r.status_code == 200, r.text
        assert r.json()["consent"] == {"Analytics": True, "Advertising": False}
        bad = server.admin("PUT", "/v1/profiles/email:cora@example.org/consent", json={"categoryPreferences": {"Advertising": "no"}})
        assert bad.status_code == 400 and "categoryPreferences" in bad.json()["detail"]
        assert server.admin("PUT", "/v1/profiles/user_id:nobody/consent",
                            json={"categoryPreferences": {"Advertising": False}}).status_code == 404
        server.kill9()
        server.start()
        assert server.admin("GET", "/v1/profiles/user_id:cora").json()["consent"] == {"Analytics": True, "Advertising": False}
    finally:
        server.stop()


def test_erasure_reaches_journeys_in_flight_messages_dead_letters_syncs_and_journals(tmp_path):
    """Issue 12, item 2: a run waiting to send the person's traits an hour
    later never sends; messages (delivered, dead), waits, entry counts,
    audience-sync changes and list memberships are gone from every keyspace
    and from fjall's journals, after a kill -9 too."""
    from conftest import free_port
    from test_journeys import Receiver, destination, set_clock, start_kairos, wait_for

    receiver = Receiver().start()
    server = start_kairos(tmp_path, extra_args=["--clock", "manual"])
    data_dir = server.data_dir
    try:
        set_clock(server, "2030-03-01T12:00:00Z")
        destination(server, receiver)
        r = server.admin("POST", "/v1/destinations", json={"type": "webhook", "name": "gone", "url": f"http://127.0.0.1:{free_port()}/nobody-listens"})
        assert r.status_code == 201, r.text
        steps_later = [{"send": {"destination": "hooks", "message": {"colour": "{{ traits.colour }}"}}}, {"wait": "1h"},
                       {"send": {"destination": "hooks", "message": {"colour": "{{ traits.colour }}", "email": "{{ traits.email }}"}}}]
        for name, steps in [("later", steps_later), ("to the void", [{"send": {"destination": "gone"}}])]:
            r = server.admin("POST", "/v1/journeys", json={"name": name, "trigger": {"event": "Order Completed"}, "steps": steps})
            assert r.status_code == 201, r.text
        r = server.admin("POST", "/v1/journeys", json={"name": "abandoned", "trigger": {"event": "Cart Viewed", "not_followed_by": "Refund Requested", "within": "2h"}, "steps": [{"send": {"destination": "hooks"}}]})
        assert r.status_code == 201, r.text
        r = server.admin("POST", "/v1/audiences", json={"name": "buyers", "definition": 'performed "Order Completed"'})
        assert r.status_code == 201, r.text
        r = server.admin("POST", "/v1/audience-syncs", json={"name": "crm", "audience": "buyers", "destination": "hooks", "batch_size": 100, "max_wait": "1h"})
        assert r.status_code == 201, r.text
        assert server.admin("POST", "/v1/lists/vip/members", json={"identifiers": [f"email:{EMAIL}"]}).status_code in (200, 201)

        # Nobody listens at "gone": its message becomes a dead letter.
        key = server.create_source(SOURCE_NAME)["write_key"]
        send(server, key, [
            {"type": "identify", "userId": USER, "anonymousId": ANON, "messageId": "j1", "traits": {"email": EMAIL, "phone": PHONE, "colour": COLOUR}},
            # Dated on the engine's (manual) clock, so its 2-hour wait is pending at the erasure.
            {"type": "track", "event": "Cart Viewed", "userId": USER, "messageId": "j2", "timestamp": "2030-03-01T12:00:00Z",
             "properties": {"sku": SECRET_PROPERTY}},
            {"type": "track", "event": "Order Completed", "userId": USER, "messageId": "j3", "properties": {"sku": SECRET_PROPERTY}},
        ])
        assert wait_for(lambda: len(receiver.accepted) >= 1, 10), (receiver.verified, receiver.failures)
        assert wait_for(lambda: any(m["identifier"] == f"user_id:{USER}" for m in server.admin("GET", "/v1/admin/dead-letters").json()["dead_letters"]), 15)
        log = server.admin("GET", f"/v1/profiles/user_id:{USER}/deliveries").json()["deliveries"]
        assert len(log) >= 2, log

        receipt = server.admin("DELETE", f"/v1/profiles/user_id:{USER}")
        assert receipt.status_code == 200, receipt.text
        erased = receipt.json()["outbox_erased"]
        # The run waiting an hour and the cart's wait; the first send, the dead letter; the sync's change.
        assert erased["messages"] >= 2 and erased["runs_and_waits"] == 2 and erased["sync_changes"] >= 1, erased
        delivered_before = len(receiver.verified)

        # The hour passes, the cart window runs out, the sync's batch is due:
        # nothing about the person is sent.
        set_clock(server, "2030-03-01T15:00:00Z")
        time.sleep(1.5)
        assert len(receiver.verified) == delivered_before, receiver.verified[delivered_before:]
        after = server.admin("GET", f"/v1/profiles/user_id:{USER}/deliveries")
        assert after.status_code == 404 or after.json()["deliveries"] == [], after.text
        dead = server.admin("GET", "/v1/admin/dead-letters").json()["dead_letters"]
        assert all(message["identifier"] != f"user_id:{USER}" for message in dead), dead
        server.kill9()
        server.start()
        time.sleep(1.0)
        assert len(receiver.verified) == delivered_before
    finally:
        server.stop()
        receiver.stop()
    leftovers = files_containing(data_dir, [USER, ANON, EMAIL, PHONE, COLOUR, SECRET_PROPERTY])
    assert leftovers == {}, f"plaintext of the erased person remains: {leftovers}"
