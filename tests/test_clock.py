"""The manual clock (`kairos serve --clock manual`, `POST /v1/admin/clock`)
answers only once everything due at the new time has run: audience timers
fired and announced, journeys following the log up to then, their waits
and steps fired, messages decided. Two quick moves must behave as two
slow ones (issue 12, item 14: a `wait_until 09:00` slipped a day)."""

import time

from test_journeys import Receiver, deliveries, destination, send, set_clock, start_kairos, wait_for

TWICE_AT_NINE = {
    "name": "nine o'clock", "trigger": {"event": "Signed Up"},
    "steps": [{"wait_until": "09:00"}, {"send": {"destination": "hooks"}},
              {"wait_until": "09:00"}, {"send": {"destination": "hooks"}}],
}


def decided_at(server, identifier):
    """When each message of the person was decided (engine clock), in order."""
    return sorted(d["created_at"] for d in deliveries(server, identifier))


def test_two_quick_clock_moves_fire_each_wait_until_on_its_own_day(tmp_path):
    receiver = Receiver().start()
    server = start_kairos(tmp_path, extra_args=["--clock", "manual"])
    try:
        set_clock(server, "2030-07-01T07:00:00Z")
        destination(server, receiver)
        r = server.admin("POST", "/v1/journeys", json=TWICE_AT_NINE)
        assert r.status_code == 201, r.text
        key = server.create_source("shop")["write_key"]
        send(server, key, [{"type": "track", "event": "Signed Up", "userId": "early", "messageId": "su-1",
                            "timestamp": "2030-07-01T07:00:00Z"}])
        # No pause anywhere: each answer must mean "done".
        set_clock(server, "2030-07-01T08:00:00Z")   # the event is followed at the latest now
        set_clock(server, "2030-07-01T09:00:00Z")   # first send due, fired before the answer
        assert decided_at(server, "user_id:early") == ["2030-07-01T09:00:00Z"]
        set_clock(server, "2030-07-02T09:00:00Z")   # the second wait_until is today's 09:00
        assert decided_at(server, "user_id:early") == ["2030-07-01T09:00:00Z", "2030-07-02T09:00:00Z"]
        assert wait_for(lambda: len(receiver.accepted) == 2), receiver.verified
        sent = sorted(payload["timestamp"] for _, payload in receiver.verified)
        assert sent == ["2030-07-01T09:00:00Z", "2030-07-02T09:00:00Z"], sent
    finally:
        server.stop()
        receiver.stop()


def test_an_audience_timer_and_the_journey_it_starts_run_before_the_clock_answers(tmp_path):
    receiver = Receiver().start()
    server = start_kairos(tmp_path, extra_args=["--clock", "manual"])
    try:
        set_clock(server, "2030-07-01T08:30:00Z")
        destination(server, receiver)
        r = server.admin("POST", "/v1/audiences", json={"name": "trial", "definition": 'performed "Signed Up" within 1d'})
        assert r.status_code == 201, r.text
        r = server.admin("POST", "/v1/journeys", json={
            "name": "trial over", "trigger": {"audience_exited": "trial"},
            "steps": [{"wait_until": "09:00"}, {"send": {"destination": "hooks"}}]})
        assert r.status_code == 201, r.text
        key = server.create_source("shop")["write_key"]
        send(server, key, [{"type": "track", "event": "Signed Up", "userId": "t1", "messageId": "su-t1",
                            "timestamp": "2030-07-01T08:30:00Z"}])
        # The membership runs out at 08:30 the next day (a timer): the exit
        # is announced and followed at 08:45, so the run waits for 09:00
        # that same day, even though the next move comes at once.
        set_clock(server, "2030-07-02T08:45:00Z")
        assert deliveries(server, "user_id:t1") == []
        set_clock(server, "2030-07-02T09:15:00Z")
        assert decided_at(server, "user_id:t1") == ["2030-07-02T09:15:00Z"]
        assert wait_for(lambda: len(receiver.accepted) == 1), receiver.verified
        time.sleep(0.3)
        assert len(receiver.accepted) == 1
    finally:
        server.stop()
        receiver.stop()


# --- one clock (issue 13, item 6) -------------------------------------------

# Far from any day the suite runs on: a date read from the wall clock
# anywhere would show.
MANUAL_NOW = "2031-05-01T12:00:00Z"
LATER = "2031-05-02T06:30:00Z"


def test_manual_clock_dates_what_the_api_receives_and_creates(tmp_path):
    server = start_kairos(tmp_path, extra_args=["--clock", "manual"])
    try:
        set_clock(server, MANUAL_NOW)
        source = server.create_source("shop")
        key = source["write_key"]
        # No timestamp: the event happened when it was received, on the manual clock.
        send(server, key, [{"type": "track", "event": "Signed Up", "userId": "clocked", "messageId": "c-1"},
                           {"type": "identify", "userId": "clocked", "messageId": "c-2",
                            "traits": {"email": "clocked@example.com"}}])
        received = server.events(source["id"])
        assert [(e["receivedAt"], e["timestamp"]) for e in received] == [(MANUAL_NOW, MANUAL_NOW)] * 2, received

        r = server.admin("POST", "/v1/audiences", json={"name": "new", "definition": 'performed "Signed Up" within 30d'})
        assert r.status_code == 201, r.text
        assert r.json()["created_at"] == MANUAL_NOW
        r = server.admin("POST", "/v1/computed-traits", json={"name": "signups", "definition": 'count "Signed Up" within 30d'})
        assert r.status_code == 201, r.text
        assert r.json()["created_at"] == MANUAL_NOW

        # The membership is announced on the same clock.
        def entered():
            return [e for e in server.events() if e.get("event") == "Audience Entered"]
        assert wait_for(lambda: entered()), "no Audience Entered"
        assert [e["receivedAt"] for e in entered()] == [MANUAL_NOW]

        # Later: everything created now carries the new time.
        set_clock(server, LATER)
        r = server.admin("POST", "/v1/destinations", json={"type": "webhook", "name": "hooks", "url": "http://127.0.0.1:9/hook"})
        assert r.status_code == 201, r.text
        assert r.json()["created_at"] == LATER
        r = server.admin("POST", "/v1/journeys", json={"name": "welcome", "trigger": {"event": "Signed Up"},
                                                       "steps": [{"send": {"destination": "hooks"}}]})
        assert r.status_code == 201, r.text
        assert r.json()["created_at"] == LATER
        r = server.admin("POST", "/v1/audience-syncs", json={"name": "crm", "audience": "new", "destination": "hooks"})
        assert r.status_code == 201, r.text
        assert r.json()["created_at"] == LATER
        r = server.admin("POST", "/v1/models", json={
            "name": "propensity", "format": "logistic", "mode": "shadow",
            "model": {"means": [0.0], "scales": [1.0], "intercept": -3.0, "weights": [0.8]},
            "inputs": ["session.product_views"]})
        assert r.status_code == 201, r.text
        assert r.json()["created_at"] == LATER

        export = server.admin("GET", "/v1/profiles/user_id:clocked/export")
        assert export.status_code == 200, export.text
        assert export.json()["exported_at"] == LATER
        receipt = server.admin("DELETE", "/v1/profiles/user_id:clocked")
        assert receipt.status_code == 200, receipt.text
        assert (receipt.json()["requested_at"], receipt.json()["completed_at"]) == (LATER, LATER)

        # A restart resumes the manual clock before the config file's
        # definitions are created: they are dated on it too.
        server.stop()
        config = tmp_path / "kairos.toml"
        config.write_text(config.read_text() + '\n[[audiences]]\nname = "configured"\ndefinition = \'performed "Signed Up" within 7d\'\n')
        server.start()
        listed = server.admin("GET", "/v1/audiences").json()
        audiences = {a["name"]: a for a in listed.get("audiences", listed if isinstance(listed, list) else [])}
        assert audiences["configured"]["created_at"] == LATER, audiences
        assert audiences["new"]["created_at"] == MANUAL_NOW
    finally:
        server.stop()
