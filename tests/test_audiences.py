"""Audiences end to end over HTTP against the real binary: definitions in
the audience language, membership per event, window expiry fired by timers
(manual clock and system clock), backfill of a new audience from stored
history, persistence across restarts, and clear errors."""

import os
import subprocess
import time

import requests

from conftest import ADMIN_TOKEN, Kairos, kairos_binary

NOW = "2030-01-31T00:00:00Z"


def send(server: Kairos, key: str, events: list) -> dict:
    r = requests.post(server.base_url + "/v1/batch", json={"batch": events}, headers=Kairos.basic(key), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def create(server: Kairos, name: str, definition: str) -> requests.Response:
    return server.admin("POST", "/v1/audiences", json={"name": name, "definition": definition})


def members(server: Kairos, audience: str) -> list:
    r = server.admin("GET", f"/v1/audiences/{audience}/members")
    assert r.status_code == 200, r.text
    return [m["id"] for m in r.json()["members"]]


def set_clock(server: Kairos, now: str):
    r = server.admin("POST", "/v1/admin/clock", json={"now": now})
    assert r.status_code == 200, r.text


def audiences_of(server: Kairos, identifier: str) -> list:
    return server.admin("GET", f"/v1/profiles/{identifier}").json()["audiences"]


def support(user: str, day: int, message_id: str) -> dict:
    return {"type": "track", "event": "Support Contacted", "userId": user, "messageId": message_id,
            "timestamp": f"2030-01-{day:02d}T12:00:00Z"}


def test_windowed_audiences_enter_and_exit_exactly_on_a_manual_clock(tmp_path):
    server = Kairos(tmp_path / "data", extra_args=["--clock", "manual"]).start()
    try:
        set_clock(server, NOW)
        key = server.create_source("web")["write_key"]
        r = create(server, "needs help",
                   'count "Support Contacted" more than 3 times within 30d\n'
                   'and sum revenue of "Order Completed" within 365d > 1000')
        assert r.status_code == 201, r.text
        audience = r.json()
        assert audience["size"] == 0 and audience["json"]["kind"] == "and"

        # u1: 4 contacts on Jan 5, 10, 20, 30 and orders worth 1,200 → member.
        send(server, key, [support("u1", day, f"s{day}") for day in (5, 10, 20, 30)] + [
            {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "o1",
             "timestamp": "2029-06-01T00:00:00Z", "properties": {"revenue": 700}},
            {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "o2",
             "timestamp": "2029-12-01T00:00:00Z", "properties": {"revenue": 500}},
            # u2: only 3 contacts → not a member.
            support("u2", 20, "t1"), support("u2", 21, "t2"), support("u2", 22, "t3"),
        ])
        assert audiences_of(server, "user_id:u1") == ["needs help"]
        assert audiences_of(server, "user_id:u2") == []
        member_list = server.admin("GET", f"/v1/audiences/{audience['id']}/members").json()["members"]
        assert [[i["value"] for i in m["identities"]] for m in member_list] == [["u1"]]

        # The Jan 5 contact leaves the 30-day window at Feb 4, 12:00 — exactly.
        set_clock(server, "2030-02-04T11:59:59Z")
        assert audiences_of(server, "user_id:u1") == ["needs help"]
        set_clock(server, "2030-02-04T12:00:00Z")
        assert audiences_of(server, "user_id:u1") == [], "out the instant the window runs out"
        assert members(server, "needs help") == []

        # A late event lands in its own window: a contact dated Feb 3 brings u1 back.
        send(server, key, [support("u1", 3, "late").copy() | {"timestamp": "2030-02-03T09:00:00Z"}])
        assert audiences_of(server, "user_id:u1") == ["needs help"]

        # The size history has a point for each clock move.
        history = server.admin("GET", "/v1/audiences/needs help/sizes").json()["sizes"]
        points = {p["at"]: p["size"] for p in history}
        assert points["2030-02-04T11:59:59Z"] == 1 and points["2030-02-04T12:00:00Z"] == 0, history

        # A draft is previewed from the stored history without being saved.
        draft = server.admin("POST", "/v1/audiences/preview", json={"definition": 'last "Order Completed" more than 30d ago'})
        assert draft.status_code == 200, draft.text
        assert draft.json()["size"] == 1 and [i["value"] for i in draft.json()["sample"][0]["identities"]] == ["u1"]
        bad = server.admin("POST", "/v1/audiences/preview", json={"definition": "last"})
        assert bad.status_code == 400 and bad.json()["line"] == 1
        assert [a["name"] for a in server.admin("GET", "/v1/audiences").json()["audiences"]] == ["needs help"]

        # Recency and sequences, backfilled from the stored history.
        r = create(server, "lapsed buyers", 'last "Order Completed" more than 30d ago')
        assert r.status_code == 201 and r.json()["backfill"]["events"] >= 9, r.text
        assert r.json()["size"] == 1
        r = create(server, "helped then bought",
                   '"Support Contacted" then "Order Completed" within 10d or in audience "lapsed buyers"')
        assert r.status_code == 201, r.text
        assert audiences_of(server, "user_id:u1") == ["helped then bought", "lapsed buyers", "needs help"]

        # Definitions and memberships survive a restart (the manual clock restarts at the epoch).
        server.kill9()
        server.start()
        set_clock(server, "2030-02-04T12:30:00Z")
        names = [a["name"] for a in server.admin("GET", "/v1/audiences").json()["audiences"]]
        assert names == ["needs help", "lapsed buyers", "helped then bought"]
        assert audiences_of(server, "user_id:u1") == ["helped then bought", "lapsed buyers", "needs help"]

        # Changing a definition recomputes its members from the log.
        lapsed_id = server.admin("GET", "/v1/audiences/lapsed buyers").json()["id"]
        changed = server.admin("PUT", f"/v1/audiences/{lapsed_id}", json={"definition": 'last "Order Completed" more than 400d ago'})
        assert changed.status_code == 200 and changed.json()["size"] == 0, changed.text
        # "helped then bought" held only through `in audience "lapsed buyers"`.
        assert audiences_of(server, "user_id:u1") == ["needs help"]
        assert server.admin("PUT", f"/v1/audiences/{lapsed_id}", json={"definition": 'last "Order Completed" more than 30d ago'}).json()["size"] == 1
        assert server.admin("PUT", f"/v1/audiences/{lapsed_id}", json={"definition": "count"}).status_code == 400

        # Deleting an audience another one uses is refused; then allowed.
        lapsed = server.admin("GET", "/v1/audiences/lapsed buyers").json()["id"]
        assert server.admin("DELETE", f"/v1/audiences/{lapsed}").status_code == 409
        helped = server.admin("GET", "/v1/audiences/helped then bought").json()["id"]
        assert server.admin("DELETE", f"/v1/audiences/{helped}").status_code == 200
        assert server.admin("DELETE", f"/v1/audiences/{lapsed}").status_code == 200
        assert audiences_of(server, "user_id:u1") == ["needs help"]
        # The clock never goes back.
        back = server.admin("POST", "/v1/admin/clock", json={"now": "2030-01-01T00:00:00Z"})
        assert back.status_code == 400 and back.json()["code"] == "clock_backwards"
    finally:
        server.stop()


def test_bad_definitions_name_line_and_column(kairos):
    r = create(kairos, "broken", 'trait plan = "pro"\nand count "Order Completed" within 30 > 3')
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "definition_invalid" and (body["line"], body["column"]) == (2, 36)
    assert "duration" in body["detail"]
    r = create(kairos, "unknown ref", 'in audience "nope"')
    assert r.status_code == 400 and "no such audience" in r.json()["detail"]
    assert create(kairos, "ok", 'performed "A"').status_code == 201
    assert create(kairos, "ok", 'performed "B"').status_code == 409
    assert kairos.admin("GET", "/v1/audiences/aud_missing/members").status_code == 404
    assert kairos.admin("POST", "/v1/admin/clock", json={"now": "2030-01-01T00:00:00Z"}).json()["code"] == "clock_not_manual"
    assert requests.post(kairos.base_url + "/v1/audiences", json={}, timeout=5).status_code == 401


def test_a_window_ends_on_time_with_the_system_clock(kairos):
    key = kairos.create_source("web")["write_key"]
    assert create(kairos, "pinged", 'performed "Ping" within 3s').status_code == 201
    sent = time.time()
    send(kairos, key, [{"type": "track", "event": "Ping", "userId": "p1", "messageId": "ping-1",
                        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sent)) + f".{int(sent % 1 * 1000):03d}Z"}])
    assert audiences_of(kairos, "user_id:p1") == ["pinged"]
    # Must have ended by T + 1 s, T = event time + 3 s; no periodic recompute.
    time.sleep(max(0.0, sent + 4.0 - time.time()))
    assert audiences_of(kairos, "user_id:p1") == []


def test_audiences_from_the_config_file(tmp_path):
    config = tmp_path / "kairos.toml"
    config.write_text('[[audiences]]\nname = "pingers"\ndefinition = \'count "Ping" within 1d >= 2\'\n')
    server = Kairos(tmp_path / "data", extra_args=["--config", str(config), "--clock", "manual"]).start()
    try:
        set_clock(server, NOW)
        key = server.create_source("web")["write_key"]
        send(server, key, [{"type": "track", "event": "Ping", "userId": "c1", "messageId": f"c{i}",
                            "timestamp": "2030-01-30T12:00:00Z"} for i in range(2)])
        assert audiences_of(server, "user_id:c1") == ["pingers"]
        # A changed definition in the file replaces the stored one at the next start.
        config.write_text('[[audiences]]\nname = "pingers"\ndefinition = \'count "Ping" within 1d >= 3\'\n')
        server.restart()
        set_clock(server, NOW)
        assert audiences_of(server, "user_id:c1") == []
        assert server.admin("GET", "/v1/audiences/pingers").json()["definition"] == 'count "Ping" within 1d >= 3'
    finally:
        server.stop()
    config.write_text('[[audiences]]\nname = "broken"\ndefinition = \'count "Ping" within 1 >= 2\'\n')
    result = subprocess.run([str(kairos_binary()), "serve", "--config", str(config), "--data-dir", str(tmp_path / "other")],
                            capture_output=True, text=True, timeout=30, env={**os.environ, "KAIROS_ADMIN_TOKEN": ADMIN_TOKEN})
    assert result.returncode == 2, result.stderr
    assert 'audiences "broken": line 1, column 21' in result.stderr, result.stderr


def announcements(server: Kairos) -> list:
    """(event, audience, userId) of every membership event in the log."""
    sources = server.admin("GET", "/v1/admin/sources").json()["sources"]
    source = next(s for s in sources if s["name"] == "kairos-audiences")
    return [(e["event"], e["properties"]["audience"], e.get("userId"))
            for e in server.events(source["id"])]


def wait_for(predicate, seconds=5.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_membership_changes_are_events_on_the_timeline_and_the_log_exactly_once(tmp_path):
    server = Kairos(tmp_path / "data", extra_args=["--clock", "manual"]).start()
    try:
        set_clock(server, NOW)
        key = server.create_source("web")["write_key"]
        assert create(server, "new signups", 'performed "Signed Up" within 1d').status_code == 201
        send(server, key, [{"type": "track", "event": "Signed Up", "userId": "u1", "messageId": "m1",
                            "timestamp": "2030-01-30T12:00:00Z"}])
        assert wait_for(lambda: announcements(server) == [("Audience Entered", "new signups", "u1")]), announcements(server)
        # On the profile's timeline, with the audience's id.
        timeline = server.admin("GET", "/v1/profiles/user_id:u1/events", params={"event": "Audience Entered"}).json()
        assert [e["properties"]["audience"] for e in timeline["events"]] == ["new signups"], timeline
        assert timeline["events"][0]["properties"]["audience_id"].startswith("aud_")
        # The window runs out at Jan 31, 12:00: the exit is announced by the
        # time the clock call answers.
        set_clock(server, "2030-01-31T12:00:00Z")
        assert announcements(server) == [("Audience Entered", "new signups", "u1"),
                                         ("Audience Exited", "new signups", "u1")]
        # kill -9 and restart: the replay announces nothing again.
        server.kill9()
        server.start()
        set_clock(server, "2030-01-31T12:00:01Z")
        assert server.admin("GET", "/v1/profiles/user_id:u1").json()["audiences"] == []
        assert len(announcements(server)) == 2, announcements(server)
        # A new audience announces its backfilled members before answering.
        assert create(server, "ever signed up", 'performed "Signed Up"').status_code == 201
        assert announcements(server)[2:] == [("Audience Entered", "ever signed up", "u1")]
        # Deleting an audience does not tell its members they left.
        assert server.admin("DELETE", "/v1/audiences/ever signed up").status_code == 200
        assert len(announcements(server)) == 3
    finally:
        server.stop()


def test_a_membership_that_ends_while_kairos_is_down_is_announced_on_restart(tmp_path):
    server = Kairos(tmp_path / "data").start()
    try:
        key = server.create_source("web")["write_key"]
        assert create(server, "pinged", 'performed "Ping" within 3s').status_code == 201
        send(server, key, [{"type": "track", "event": "Ping", "userId": "u9", "messageId": "p1"}])
        assert wait_for(lambda: announcements(server) == [("Audience Entered", "pinged", "u9")])
        server.stop()
        time.sleep(3.5)
        server.start()
        assert wait_for(lambda: announcements(server) == [("Audience Entered", "pinged", "u9"),
                                                          ("Audience Exited", "pinged", "u9")]), announcements(server)
        # Announced once: another restart adds nothing.
        server.restart()
        time.sleep(0.5)
        assert len(announcements(server)) == 2
    finally:
        server.stop()
