"""Three decisions on what the audience language means (issue 12, item 12),
end to end against the real binary on the manual clock:

- a rolling window (`within D`) is (now - D, now]: an event dated after the
  clock counts once the clock reaches its time, by a timer, not before;
- `distinct` and `most frequent` read numbers by value: 12 and 12.0 are one;
- a profile's first_seen, last_seen and event_count are the person's own
  behaviour: Kairos' `Audience Entered`/`Exited` events (source
  kairos-audiences) are on the timeline but do not move them.

docs/audiences.md ("Time, numbers and Kairos' own events") states each."""

import time

import requests

from conftest import Kairos

NOW = "2030-01-31T00:00:00Z"


def send(server: Kairos, key: str, events: list):
    r = requests.post(server.base_url + "/v1/batch", json={"batch": events}, headers=Kairos.basic(key), timeout=10)
    assert r.status_code == 200, r.text


def set_clock(server: Kairos, now: str):
    r = server.admin("POST", "/v1/admin/clock", json={"now": now})
    assert r.status_code == 200, r.text


def profile(server: Kairos, identifier: str) -> dict:
    r = server.admin("GET", f"/v1/profiles/{identifier}")
    assert r.status_code == 200, r.text
    return r.json()


def track(user: str, event: str, timestamp: str, message_id: str, **properties) -> dict:
    return {"type": "track", "event": event, "userId": user, "messageId": message_id,
            "timestamp": timestamp, "properties": properties}


def manual_clock_server(tmp_path) -> Kairos:
    server = Kairos(tmp_path / "data", extra_args=["--clock", "manual"]).start()
    set_clock(server, NOW)
    return server


def test_an_event_dated_after_the_clock_enters_a_window_when_the_clock_reaches_it(tmp_path):
    server = manual_clock_server(tmp_path)
    try:
        key = server.create_source("web")["write_key"]
        for name, definition in [("active", 'performed "Login" within 1d'),
                                 ("busy", 'count "Login" within 1d >= 2')]:
            assert server.admin("POST", "/v1/audiences", json={"name": name, "definition": definition}).status_code == 201
        r = server.admin("POST", "/v1/computed-traits", json={"name": "logins_1d", "definition": 'count "Login" within 1d'})
        assert r.status_code == 201, r.text

        # One login yesterday evening, one dated 06:00 today: six hours
        # ahead of the clock (a client clock running fast).
        send(server, key, [track("u1", "Login", "2030-01-30T20:00:00Z", "l1"),
                           track("u1", "Login", "2030-01-31T06:00:00Z", "l2")])
        u1 = profile(server, "user_id:u1")
        assert u1["audiences"] == ["active"], "the future login is not in the last day yet"
        assert u1["computed"]["logins_1d"] == 1

        set_clock(server, "2030-01-31T05:59:59Z")
        assert profile(server, "user_id:u1")["audiences"] == ["active"]
        # At 06:00 the login has happened: a timer brings it into the window.
        set_clock(server, "2030-01-31T06:00:00Z")
        u1 = profile(server, "user_id:u1")
        assert u1["audiences"] == ["active", "busy"] and u1["computed"]["logins_1d"] == 2, u1

        # It leaves the window a day after its time, as any event.
        set_clock(server, "2030-01-31T20:00:00Z")
        assert profile(server, "user_id:u1")["computed"]["logins_1d"] == 1
        set_clock(server, "2030-02-01T06:00:00Z")
        u1 = profile(server, "user_id:u1")
        assert u1["audiences"] == [] and u1["computed"]["logins_1d"] == 0, u1

        # A new definition backfilled from the log obeys the same rule.
        send(server, key, [track("u2", "Login", "2030-02-02T00:00:00Z", "l3")])
        r = server.admin("POST", "/v1/audiences/preview", json={"definition": 'performed "Login" within 1d'})
        assert r.status_code == 200 and r.json()["size"] == 0, r.text
    finally:
        server.stop()


def test_distinct_and_most_frequent_count_12_and_12_0_as_one_value(tmp_path):
    server = manual_clock_server(tmp_path)
    try:
        key = server.create_source("web")["write_key"]
        for name, definition in [("sizes", 'distinct size of "Viewed"'),
                                 ("usual_size", 'most frequent size of "Viewed"')]:
            r = server.admin("POST", "/v1/computed-traits", json={"name": name, "definition": definition})
            assert r.status_code == 201, r.text
        r = server.admin("POST", "/v1/audiences", json={"name": "browsers", "definition": 'distinct size of "Viewed" >= 3'})
        assert r.status_code == 201, r.text
        # 12 sent as 12 and as 12.0 (JSON keeps the difference), then 13.5 twice.
        send(server, key, [track("u1", "Viewed", "2030-01-30T10:00:00Z", "v1", size=12),
                           track("u1", "Viewed", "2030-01-30T10:01:00Z", "v2", size=12.0),
                           track("u1", "Viewed", "2030-01-30T10:02:00Z", "v3", size=12.0),
                           track("u1", "Viewed", "2030-01-30T10:03:00Z", "v4", size=13.5),
                           track("u1", "Viewed", "2030-01-30T10:04:00Z", "v5", size=13.5)])
        u1 = profile(server, "user_id:u1")
        assert u1["computed"]["sizes"] == 2, u1["computed"]
        # 12 was seen three times (as 12 once, as 12.0 twice): it is the usual
        # size, returned in one form.
        assert u1["computed"]["usual_size"] == 12 and isinstance(u1["computed"]["usual_size"], int), u1["computed"]
        assert u1["audiences"] == []
        # Text is not a number: "12" is a third value.
        send(server, key, [track("u1", "Viewed", "2030-01-30T10:05:00Z", "v6", size="12")])
        u1 = profile(server, "user_id:u1")
        assert u1["computed"]["sizes"] == 3 and u1["audiences"] == ["browsers"], u1
    finally:
        server.stop()


def announcements(server: Kairos) -> list:
    sources = server.admin("GET", "/v1/admin/sources").json()["sources"]
    source = next((s for s in sources if s["name"] == "kairos-audiences"), None)
    return [] if source is None else [e["event"] for e in server.events(source["id"])]


def wait_for(predicate, seconds=5.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.02)
    return predicate()


def test_audience_announcements_do_not_move_last_seen_or_the_event_count(tmp_path):
    server = manual_clock_server(tmp_path)
    try:
        key = server.create_source("web")["write_key"]
        assert server.admin("POST", "/v1/audiences", json={"name": "new signups", "definition": 'performed "Signed Up" within 1d'}).status_code == 201
        send(server, key, [track("u1", "Signed Up", "2030-01-30T12:00:00Z", "s1")])
        assert wait_for(lambda: announcements(server) == ["Audience Entered"])
        # The window runs out at Jan 31 12:00: a timer, and an announcement
        # dated then — which is not u1 being seen.
        set_clock(server, "2030-01-31T12:00:00Z")
        assert wait_for(lambda: announcements(server) == ["Audience Entered", "Audience Exited"])

        def check():
            u1 = profile(server, "user_id:u1")
            assert (u1["first_seen"], u1["last_seen"], u1["event_count"]) == \
                ("2030-01-30T12:00:00Z", "2030-01-30T12:00:00Z", 1), u1
            # The announcements are still on the timeline.
            timeline = server.admin("GET", "/v1/profiles/user_id:u1/events").json()["events"]
            assert sorted(e["event"] for e in timeline) == ["Audience Entered", "Audience Exited", "Signed Up"]

        check()
        # The same after a restart, when the log is replayed.
        server.kill9()
        server.start()
        set_clock(server, "2030-01-31T12:00:01Z")
        check()
        # A real event still moves them.
        send(server, key, [track("u1", "Login", "2030-01-31T12:00:01Z", "l1")])
        u1 = profile(server, "user_id:u1")
        assert (u1["last_seen"], u1["event_count"]) == ("2030-01-31T12:00:01Z", 2), u1
    finally:
        server.stop()
