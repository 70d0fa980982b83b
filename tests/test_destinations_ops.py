"""Operating destinations and journeys (issue 12, item 15): edit a
destination's URL and headers, rotate its secret with an overlap during
which both secrets verify (the official `standardwebhooks` library, as a
receiver holding either would), re-enable it after a 410, replay its dead
letters to the edited address; a journey's per-step counts."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from conftest import free_port
from test_journeys import deliveries, send, set_clock, start_kairos, wait_for
from test_references import register_model


class RawReceiver:
    """A webhook endpoint keeping each request's headers and body (verified
    by the test, with whichever secret it wants), answering as scripted."""

    def __init__(self):
        self.port = free_port()
        self.requests = []   # (headers, body)
        self.script = []     # statuses for the next requests; then 200
        self.server = None

    def start(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.requests.append(({name.lower(): value for name, value in self.headers.items()}, body))
                self.send_response(receiver.script.pop(0) if receiver.script else 200)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/hook"


def verifies(secret: str, request) -> bool:
    headers, body = request
    try:
        Webhook(secret).verify(body, headers)
        return True
    except WebhookVerificationError:
        return False


def ping(server, key, n):
    send(server, key, [{"type": "track", "event": "Ping", "userId": "u1", "messageId": f"ping-{n}"}])


def test_edit_rotate_reenable_and_replay_a_destination(tmp_path):
    first, second, third = RawReceiver().start(), RawReceiver().start(), RawReceiver().start()
    server = start_kairos(tmp_path)
    try:
        r = server.admin("POST", "/v1/destinations", json={"type": "webhook", "name": "hooks", "url": first.url})
        assert r.status_code == 201, r.text
        hook, old_secret = r.json()["id"], r.json()["secret"]
        r = server.admin("POST", "/v1/journeys", json={"name": "ping", "trigger": {"event": "Ping"},
                                                        "steps": [{"send": {"destination": "hooks"}}]})
        assert r.status_code == 201, r.text
        key = server.create_source("app")["write_key"]

        # A new URL and an extra header; the address is checked as at creation.
        r = server.admin("PATCH", f"/v1/destinations/{hook}", json={"url": "ftp://nowhere"})
        assert r.status_code == 400 and r.json()["code"] == "url_invalid", r.text
        r = server.admin("PATCH", f"/v1/destinations/{hook}", json={"headers": {"webhook-signature": "forged"}})
        assert r.status_code == 400 and r.json()["code"] == "headers_invalid", r.text
        r = server.admin("PATCH", "/v1/destinations/hooks", json={"url": second.url, "headers": {"X-Api-Key": "k1"}})
        assert r.status_code == 200, r.text
        assert r.json()["url"] == second.url and "secret" not in r.json()
        detail = server.admin("GET", "/v1/destinations/hooks").json()
        assert detail["headers"] == ["X-Api-Key"] and detail["previous_secret_valid_until"] is None, detail
        ping(server, key, 1)
        assert wait_for(lambda: len(second.requests) == 1)
        assert first.requests == [] and second.requests[0][0]["x-api-key"] == "k1"
        assert verifies(old_secret, second.requests[0])

        # Rotation with a 2 s overlap: both secrets verify, then only the new.
        r = server.admin("PATCH", f"/v1/destinations/{hook}", json={"rotate_secret": True, "secret_overlap": "2s"})
        assert r.status_code == 200, r.text
        new_secret = r.json()["secret"]
        assert new_secret.startswith("whsec_") and new_secret != old_secret
        assert r.json()["previous_secret_valid_until"] is not None
        assert "secret" not in server.admin("GET", f"/v1/destinations/{hook}").json()
        rotated_at = time.monotonic()
        ping(server, key, 2)
        assert wait_for(lambda: len(second.requests) == 2)
        during = second.requests[1]
        assert time.monotonic() - rotated_at < 2.0, "the overlap test ran too slowly to mean anything"
        assert len(during[0]["webhook-signature"].split(" ")) == 2
        assert verifies(old_secret, during) and verifies(new_secret, during)
        time.sleep(max(0.0, 2.2 - (time.monotonic() - rotated_at)))
        ping(server, key, 3)
        assert wait_for(lambda: len(second.requests) == 3)
        after = second.requests[2]
        assert verifies(new_secret, after) and not verifies(old_secret, after)

        # A 410 disables it; its messages become dead letters.
        second.script = [410]
        ping(server, key, 4)
        assert wait_for(lambda: server.admin("GET", f"/v1/destinations/{hook}").json()["disabled"])
        reason = server.admin("GET", f"/v1/destinations/{hook}").json()["disabled"]
        assert f'PATCH /v1/destinations/{hook} {{"enabled": true}}' in reason, reason
        ping(server, key, 5)
        assert wait_for(lambda: server.admin("GET", f"/v1/destinations/{hook}").json()["dead_letters"] == 2)
        dead_ids = sorted(m["id"] for m in server.admin("GET", "/v1/admin/dead-letters").json()["dead_letters"])
        r = server.admin("POST", f"/v1/destinations/{hook}/dead-letters/replay")
        assert r.status_code == 409 and r.json()["code"] == "destination_disabled", r.text
        assert '"enabled": true' in r.json()["detail"]

        # Moved and re-enabled: the replay goes to the new address, same ids.
        r = server.admin("PATCH", f"/v1/destinations/{hook}", json={"url": third.url, "enabled": True})
        assert r.status_code == 200 and r.json()["disabled"] is None, r.text
        r = server.admin("POST", f"/v1/destinations/{hook}/dead-letters/replay")
        assert r.status_code == 200, r.text
        assert r.json()["replayed"] == 2 and sorted(r.json()["ids"]) == dead_ids and r.json()["more"] is False
        assert wait_for(lambda: len(third.requests) == 2), third.requests
        assert sorted(headers["webhook-id"] for headers, _ in third.requests) == dead_ids
        assert all(verifies(new_secret, request) for request in third.requests)
        assert all(d["status"] == "delivered" for d in deliveries(server, "user_id:u1"))
        assert server.admin("GET", f"/v1/destinations/{hook}").json()["dead_letters"] == 0
        r = server.admin("POST", "/v1/destinations/nope/dead-letters/replay")
        assert r.status_code == 404
    finally:
        server.stop()
        for receiver in (first, second, third):
            receiver.stop()


def consent(user, granted):
    return {"type": "identify", "userId": user, "messageId": f"consent-{user}",
            "context": {"consent": {"categoryPreferences": {"marketing": granted}}}}


def test_a_journey_reports_entries_goals_exits_and_each_steps_counts(tmp_path):
    receiver = RawReceiver().start()
    server = start_kairos(tmp_path, extra_args=["--clock", "manual"])
    try:
        set_clock(server, "2030-08-01T12:00:00Z")
        r = server.admin("POST", "/v1/destinations", json={"type": "webhook", "name": "hooks", "url": receiver.url})
        assert r.status_code == 201, r.text
        r = server.admin("POST", "/v1/journeys", json={
            "name": "promo", "trigger": {"event": "Go"}, "goal": "Done",
            "steps": [{"wait": "1h"}, {"send": {"destination": "hooks", "purpose": "marketing"}}]})
        assert r.status_code == 201, r.text
        journey_id = r.json()["id"]
        key = server.create_source("app")["write_key"]
        people = ["yes1", "yes2", "no", "buyer"]
        send(server, key, [consent(user, user != "no") for user in people])
        send(server, key, [{"type": "track", "event": "Go", "userId": user, "messageId": f"go-{user}",
                            "timestamp": "2030-08-01T12:00:00Z"} for user in people])
        send(server, key, [{"type": "track", "event": "Done", "userId": "buyer", "messageId": "done-buyer",
                            "timestamp": "2030-08-01T12:30:00Z"}])
        set_clock(server, "2030-08-01T12:30:00Z")   # answers once the events are followed
        report = server.admin("GET", f"/v1/journeys/{journey_id}").json()
        assert report["counts"] == {"entered": 4, "goal_reached": 1, "exited": 0, "waiting": 3,
                                    "messages": {}, "blocked": {}}, report["counts"]
        assert [(s["path"], s["kind"], s["waiting"]) for s in report["steps"]] == [
            ("steps[0]", "wait", 3), ("steps[1]", "send", 0)], report["steps"]

        set_clock(server, "2030-08-01T13:00:00Z")
        report = server.admin("GET", "/v1/journeys/promo").json()
        counts = report["counts"]
        assert (counts["entered"], counts["goal_reached"], counts["exited"], counts["waiting"]) == (4, 1, 3, 0), counts
        assert sum(counts["messages"].values()) == 3 and counts["messages"].get("blocked") == 1, counts
        assert counts["blocked"] == {"no consent": 1}, counts
        send_step = report["steps"][1]
        assert send_step["blocked"] == {"no consent": 1} and sum(send_step["messages"].values()) == 3
        assert wait_for(lambda: len(receiver.requests) == 2)
        assert wait_for(lambda: server.admin("GET", "/v1/journeys/promo").json()["counts"]["messages"].get("delivered") == 2)
        assert server.admin("GET", "/v1/journeys/nope").status_code == 404
    finally:
        server.stop()
        receiver.stop()


def scrape(server) -> dict:
    """`/metrics` as {sample name with labels: value} (the admin token is
    sent: /metrics may require it)."""
    r = server.admin("GET", "/metrics")
    assert r.status_code == 200, r.text
    samples = {}
    for line in r.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_cover_every_stage_and_move(tmp_path):
    receiver = RawReceiver().start()
    server = start_kairos(tmp_path)
    try:
        r = server.admin("POST", "/v1/destinations", json={"type": "webhook", "name": "hooks", "url": receiver.url})
        assert r.status_code == 201, r.text
        assert server.admin("POST", "/v1/audiences", json={"name": "pingers", "definition": 'performed "Ping"'}).status_code == 201
        r = server.admin("POST", "/v1/journeys", json={"name": "ping", "trigger": {"event": "Ping"},
                                                        "steps": [{"send": {"destination": "hooks"}}]})
        assert r.status_code == 201, r.text
        register_model(server, "churn")
        key = server.create_source("app")["write_key"]
        before = scrape(server)
        receiver.script = [500]  # one retry, then delivered
        for n in range(3):
            ping(server, key, n)
        assert wait_for(lambda: len(receiver.requests) == 4)
        assert wait_for(lambda: scrape(server).get('kairos_deliveries_total{destination="hooks",status="delivered"}') == 3)
        after = scrape(server)

        def moved(sample):
            return after.get(sample, 0) - before.get(sample, 0)

        assert after["kairos_log_committed_seq"] >= after["kairos_engine_applied_seq"] > before["kairos_engine_applied_seq"]
        assert moved("kairos_audience_evaluations_total") >= 3
        assert moved('kairos_audience_membership_changes_total{change="entered"}') == 1
        assert moved('kairos_journey_entries_total{journey="ping"}') == 3
        assert moved('kairos_journey_messages_total{journey="ping",status="pending"}') == 3
        assert moved('kairos_deliveries_total{destination="hooks",status="retry"}') == 1
        assert moved('kairos_delivery_duration_seconds_count{destination="hooks"}') == 4
        assert after['kairos_delivery_duration_seconds_bucket{le="+Inf",destination="hooks"}'] == 4
        assert moved("kairos_model_scorings_total") >= 3 and moved("kairos_model_scoring_seconds_total") > 0
    finally:
        server.stop()
        receiver.stop()


def test_one_delivery_loop_keeps_each_kind_of_destination_at_its_own_pace(tmp_path):
    """Issue 13: webhooks and in-app pages go through the one worker loop
    (kairos-deliver's `Destination`). A failing webhook is retried on the
    schedule, counted and dead-lettered; a healthy one beside it is not
    held up; an in-app message whose person is away is no attempt (not
    counted, no retry) and goes when their page opens."""
    from test_journeys import identity_token, open_stream

    down, up = RawReceiver().start(), RawReceiver().start()
    down.script = [500] * 10  # more than max_attempts (4)
    server = start_kairos(tmp_path)
    try:
        ids = {}
        for kind, name, url in [("webhook", "down", down.url), ("webhook", "up", up.url), ("in_app", "site", "")]:
            r = server.admin("POST", "/v1/destinations", json={"type": kind, "name": name, "url": url})
            assert r.status_code == 201, r.text
            ids[r.json()["id"]] = name
        steps = [{"send": {"destination": "down"}}, {"send": {"destination": "up"}},
                 {"send": {"destination": "site", "message": {"title": "Still thinking?"}}}]
        r = server.admin("POST", "/v1/journeys", json={"name": "fan out", "trigger": {"event": "Cart Viewed"}, "steps": steps})
        assert r.status_code == 201, r.text
        source = server.create_source("web")
        key, secret = source["write_key"], source["identity_secret"]
        before = scrape(server)
        send(server, key, [{"type": "track", "event": "Cart Viewed", "userId": "u1", "messageId": "cv1"}])

        def by_destination():
            return {ids[d["destination"]]: d for d in deliveries(server, "user_id:u1")}

        assert wait_for(lambda: by_destination().get("down", {}).get("status") == "dead", 15), by_destination()
        messages = by_destination()
        assert messages["down"]["attempts"] == 4 and "answered 500" in messages["down"]["last_error"], messages
        assert len(down.requests) == 4
        assert messages["up"]["status"] == "delivered" and messages["up"]["attempts"] == 1, messages
        assert len(up.requests) == 1
        # Away: still waiting, never attempted, over all of down's retries.
        assert messages["site"]["status"] == "pending" and messages["site"]["attempts"] == 0, messages
        after = scrape(server)

        def moved(sample):
            return after.get(sample, 0) - before.get(sample, 0)

        assert moved('kairos_deliveries_total{destination="down",status="retry"}') == 3
        assert moved('kairos_deliveries_total{destination="down",status="dead"}') == 1
        assert moved('kairos_deliveries_total{destination="up",status="delivered"}') == 1
        assert not [sample for sample in after if 'destination="site"' in sample], "waiting is not an attempt"

        page = []
        stream = open_stream(server, "user_id:u1", key, page, token=identity_token(secret, "user_id:u1"))
        assert wait_for(lambda: len(page) == 1, 5), page
        assert page[0]["data"]["content"] == {"title": "Still thinking?"}, page
        assert wait_for(lambda: by_destination()["site"]["status"] == "delivered")
        assert by_destination()["site"]["attempts"] == 1
        stream.close()
    finally:
        server.stop()
        down.stop()
        up.stop()
