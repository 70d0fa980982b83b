"""Journeys and webhook destinations end to end: real receivers verify every
delivery with the official `standardwebhooks` library (PyPI, unmodified);
triggers on events (with property filters) and on audience entry; retries
with the same webhook-id, Retry-After, 410, dead letters and their replay,
kill -9 before delivery, one hanging destination beside a healthy one; the
contact policy (consent, frequency caps under a burst, quiet hours)."""

import hashlib
import re
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from standardwebhooks.webhooks import Webhook

from conftest import Kairos, free_port

CONFIG = """
[delivery]
retry_schedule = ["200ms"]
max_attempts = 4
timeout = "1s"

[policy]
messages_per_day = 3
messages_per_channel_per_hour = 2
quiet_hours = "21:00-08:00"
"""


class Receiver:
    """A webhook endpoint: verifies each request with standardwebhooks and
    answers as scripted (`script` is a list of statuses or (status,
    headers) for the next requests; then 200)."""

    def __init__(self, port=None, ssl_context=None):
        self.port = port or free_port()
        self.ssl_context = ssl_context  # HTTPS (tests/test_tls.py)
        self.secret = None
        self.script = []
        self.hang_seconds = 0.0
        self.verified = []      # (webhook-id, payload) of every verified request
        self.accepted = []      # webhook-ids answered 2xx
        self.times = []         # arrival times
        self.failures = []
        self.server = None

    def start(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.times.append(time.monotonic())
                try:
                    payload = Webhook(receiver.secret).verify(body, dict(self.headers))
                except Exception as error:  # noqa: BLE001 - recorded and asserted on
                    receiver.failures.append(repr(error))
                    self.send_response(400)
                    self.end_headers()
                    return
                receiver.verified.append((self.headers["webhook-id"], payload))
                if receiver.hang_seconds:
                    time.sleep(receiver.hang_seconds)
                status, headers = 200, {}
                if receiver.script:
                    step = receiver.script.pop(0)
                    status, headers = step if isinstance(step, tuple) else (step, {})
                if 200 <= status < 300:
                    receiver.accepted.append(self.headers["webhook-id"])
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if self.ssl_context:
            self.server.socket = self.ssl_context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self):
        if self.ssl_context:  # the test certificate names localhost
            return f"https://localhost:{self.port}/hook"
        return f"http://127.0.0.1:{self.port}/hook"


def start_kairos(tmp_path, extra_args=()) -> Kairos:
    config = tmp_path / "kairos.toml"
    config.write_text(CONFIG)
    return Kairos(tmp_path / "data", extra_args=["--config", str(config), *extra_args]).start()


def destination(server: Kairos, receiver: Receiver, name="hooks") -> dict:
    r = server.admin("POST", "/v1/destinations", json={"type": "webhook", "name": name, "url": receiver.url})
    assert r.status_code == 201, r.text
    receiver.secret = r.json()["secret"]
    return r.json()


def journey(server: Kairos, name: str, trigger: dict, destination_name="hooks", purpose=None) -> dict:
    send_step = {"destination": destination_name, **({"purpose": purpose} if purpose else {})}
    r = server.admin("POST", "/v1/journeys", json={"name": name, "trigger": trigger, "steps": [{"send": send_step}]})
    assert r.status_code == 201, r.text
    return r.json()


def send(server: Kairos, key: str, events: list):
    r = requests.post(server.base_url + "/v1/batch", json={"batch": events}, headers=Kairos.basic(key), timeout=10)
    assert r.status_code == 200, r.text


def deliveries(server: Kairos, identifier: str) -> list:
    r = server.admin("GET", f"/v1/profiles/{identifier}/deliveries")
    assert r.status_code == 200, r.text
    return r.json()["deliveries"]


def wait_for(predicate, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def signed_up(user: str, plan: str, number: int) -> dict:
    return {"type": "track", "event": "Signed Up", "userId": user, "messageId": f"su-{user}-{number}",
            "properties": {"plan": plan}}


def test_event_and_audience_triggers_send_signed_webhooks_logged_per_profile(tmp_path):
    receiver = Receiver().start()
    server = start_kairos(tmp_path)
    try:
        created = destination(server, receiver)
        assert created["secret"].startswith("whsec_")
        listed = server.admin("GET", "/v1/destinations").json()["destinations"]
        assert listed[0]["id"] == created["id"] and "secret" not in listed[0], "the secret is shown once"
        key = server.create_source("web")["write_key"]
        send(server, key, [signed_up("u0", "pro", 0)])  # before the journey: starts nothing
        journey(server, "welcome pros", {"event": "Signed Up", "where": 'plan = "pro"'})
        send(server, key, [signed_up("u1", "pro", 1), signed_up("u2", "free", 1)])
        assert wait_for(lambda: len(receiver.accepted) == 1), (receiver.verified, receiver.failures)
        webhook_id, payload = receiver.verified[0]
        assert payload["type"] == "journey.message"
        assert payload["data"]["journey"]["name"] == "welcome pros"
        assert payload["data"]["profile"]["identifier"] == {"type": "user_id", "value": "u1"}
        assert payload["data"]["event"]["properties"] == {"plan": "pro"}
        assert wait_for(lambda: [d["status"] for d in deliveries(server, "user_id:u1")] == ["delivered"])
        log = deliveries(server, "user_id:u1")
        assert log[0]["id"] == webhook_id and log[0]["attempts"] == 1 and log[0]["destination"] == created["id"]
        assert deliveries(server, "user_id:u2") == [] and deliveries(server, "user_id:u0") == []

        # Entering an audience starts a journey too.
        r = server.admin("POST", "/v1/audiences", json={"name": "power users", "definition": 'count "Report Run" >= 2'})
        assert r.status_code == 201, r.text
        journey(server, "power welcome", {"audience_entered": "power users"})
        send(server, key, [{"type": "track", "event": "Report Run", "userId": "u2", "messageId": f"rr-{n}"} for n in range(2)])
        assert wait_for(lambda: len(receiver.accepted) == 2), receiver.verified
        assert receiver.verified[-1][1]["data"]["event"]["name"] == "Audience Entered"
        assert receiver.verified[-1][1]["data"]["event"]["properties"]["audience"] == "power users"
        assert [d["status"] for d in deliveries(server, "user_id:u2")] == ["delivered"]
        assert receiver.failures == []

        # Restart: nothing is sent again.
        server.restart()
        time.sleep(1.0)
        assert len(receiver.verified) == 2
    finally:
        server.stop()
        receiver.stop()


def test_retries_keep_the_webhook_id_honour_retry_after_and_dead_letters_replay(tmp_path):
    receiver = Receiver().start()
    server = start_kairos(tmp_path)
    try:
        destination(server, receiver)
        journey(server, "signups", {"event": "Signed Up"})
        key = server.create_source("web")["write_key"]

        # Two failures, then 429 with Retry-After: 1, then success.
        receiver.script = [500, 503, (429, {"Retry-After": "1"})]
        send(server, key, [signed_up("r1", "pro", 1)])
        assert wait_for(lambda: len(receiver.accepted) == 1, 15), receiver.verified
        ids = {webhook_id for webhook_id, _ in receiver.verified}
        assert len(receiver.verified) == 4 and len(ids) == 1, "one webhook-id for every attempt"
        assert receiver.times[3] - receiver.times[2] >= 0.95, "Retry-After honoured"
        log = deliveries(server, "user_id:r1")
        assert log[0]["status"] == "delivered" and log[0]["attempts"] == 4

        # Attempts run out (max_attempts = 4): a dead letter, replayable.
        receiver.script = [500] * 4
        send(server, key, [signed_up("r2", "pro", 1)])
        assert wait_for(lambda: [d["status"] for d in deliveries(server, "user_id:r2")] == ["dead"], 15)
        dead = server.admin("GET", "/v1/admin/dead-letters").json()["dead_letters"]
        assert len(dead) == 1 and dead[0]["last_error"] == "the endpoint answered 500", dead
        r = server.admin("POST", f"/v1/admin/dead-letters/{dead[0]['id']}/replay")
        assert r.status_code == 200, r.text
        assert wait_for(lambda: [d["status"] for d in deliveries(server, "user_id:r2")] == ["delivered"])
        assert receiver.accepted[-1] == dead[0]["id"], "replayed under the same id"
        assert server.admin("GET", "/v1/admin/dead-letters").json()["dead_letters"] == []

        # 410 Gone disables the destination: its messages become dead letters.
        receiver.script = [410]
        send(server, key, [signed_up("r3", "pro", 1), signed_up("r4", "pro", 1)])
        assert wait_for(lambda: server.admin("GET", "/v1/destinations").json()["destinations"][0]["disabled"])
        assert wait_for(lambda: len(server.admin("GET", "/v1/admin/dead-letters").json()["dead_letters"]) == 2)
        gone = server.admin("GET", "/v1/admin/dead-letters").json()["dead_letters"][0]
        assert server.admin("POST", f"/v1/admin/dead-letters/{gone['id']}/replay").status_code == 409
        assert receiver.failures == []
    finally:
        server.stop()
        receiver.stop()


def test_messages_survive_kill_9_and_a_receiver_that_was_down(tmp_path):
    receiver = Receiver()  # not listening yet
    server = start_kairos(tmp_path)
    try:
        destination(server, receiver)
        journey(server, "signups", {"event": "Signed Up"})
        key = server.create_source("web")["write_key"]
        send(server, key, [signed_up(f"k{n}", "pro", n) for n in range(5)])
        assert wait_for(lambda: all(deliveries(server, f"user_id:k{n}") and deliveries(server, f"user_id:k{n}")[0]["attempts"] >= 1
                                    for n in range(5)))
        server.kill9()
        receiver.start()
        server.start()
        assert wait_for(lambda: len(set(receiver.accepted)) == 5, 15), receiver.verified
        assert len(receiver.accepted) == 5, "each message accepted once"
        assert all(deliveries(server, f"user_id:k{n}")[0]["status"] == "delivered" for n in range(5))
    finally:
        server.stop()
        receiver.stop()


def test_a_hanging_destination_does_not_delay_another(tmp_path):
    slow, fast = Receiver().start(), Receiver().start()
    slow.hang_seconds = 3.0
    server = start_kairos(tmp_path)
    try:
        destination(server, slow, "slow")
        destination(server, fast, "fast")
        journey(server, "to slow", {"event": "Signed Up"}, "slow")
        journey(server, "to fast", {"event": "Signed Up"}, "fast")
        key = server.create_source("web")["write_key"]
        started = time.monotonic()
        send(server, key, [signed_up(f"h{n}", "pro", n) for n in range(5)])
        assert wait_for(lambda: len(fast.accepted) == 5, 10)
        elapsed = time.monotonic() - started
        assert elapsed < 1.5, f"the healthy destination took {elapsed:.2f} s behind a hanging one"
        assert len(slow.accepted) == 0
    finally:
        server.stop()
        slow.stop()
        fast.stop()


def test_bad_destinations_and_journeys_say_what_is_wrong(kairos):
    r = kairos.admin("POST", "/v1/destinations", json={"type": "carrier-pigeon", "name": "x", "url": "http://x"})
    assert r.status_code == 400 and "webhook" in r.json()["detail"]
    r = kairos.admin("POST", "/v1/destinations", json={"type": "webhook", "name": "x", "url": "ftp://x"})
    assert r.status_code == 400 and r.json()["code"] == "url_invalid"
    r = kairos.admin("POST", "/v1/journeys", json={"name": "j", "trigger": {"event": "A"}, "steps": [{"send": {"destination": "nope"}}]})
    assert r.status_code == 400 and "POST /v1/destinations" in r.json()["detail"], r.text
    assert kairos.admin("POST", "/v1/destinations", json={"type": "webhook", "name": "d", "url": "http://127.0.0.1:9/h"}).status_code == 201
    r = kairos.admin("POST", "/v1/journeys", json={"name": "j", "trigger": {"event": "A", "where": "plan = "}, "steps": [{"send": {"destination": "d"}}]})
    assert r.status_code == 400 and "trigger.where" in r.json()["detail"], r.text
    r = kairos.admin("POST", "/v1/journeys", json={"name": "j", "trigger": {"evnt": "A"}, "steps": [{"send": {"destination": "d"}}]})
    assert r.status_code == 400 and "audience_entered" in r.json()["detail"], r.text
    assert kairos.admin("POST", "/v1/journeys", json={"name": "j", "trigger": {"event": "A"}, "steps": [{"send": {"destination": "d"}}]}).status_code == 201
    r = kairos.admin("DELETE", "/v1/destinations/d")
    assert r.status_code == 409 and "j" in r.json()["detail"]
    assert kairos.admin("GET", "/v1/profiles/user_id:nobody/deliveries").status_code == 404


# The contact-policy test runs on the manual clock: quiet hours are judged on
# the engine's clock, so a fixed "now" makes it independent of the hour the
# suite runs at (it once failed every night with zone UTC inside 21:00-08:00).
POLICY_NOW = "2030-05-01T14:00:00Z"   # 14:00 in UTC: daytime, outside quiet hours
POLICY_EVENT_TIME = "2030-05-01T13:59:00Z"
NIGHT_ZONE = "Asia/Tokyo"             # 23:00 there at POLICY_NOW: inside quiet hours
NIGHT_ENDS = "2030-05-01T23:00:00Z"   # 08:00 in Tokyo


def consent_event(user: str, marketing, zone="UTC"):
    preferences = {} if marketing is None else {"marketing": marketing}
    return {"type": "identify", "userId": user, "messageId": f"consent-{user}", "traits": {"timezone": zone},
            "timestamp": POLICY_EVENT_TIME, "context": {"consent": {"categoryPreferences": preferences}}}


def test_contact_policy_consent_caps_under_a_burst_and_quiet_hours(tmp_path):
    receiver = Receiver().start()
    server = start_kairos(tmp_path, extra_args=["--clock", "manual"])
    try:
        set_clock(server, POLICY_NOW)
        destination(server, receiver)
        journey(server, "promo", {"event": "Cart Viewed"}, purpose="marketing")
        key = server.create_source("web")["write_key"]
        send(server, key, [consent_event("yes", True), consent_event("no", False), consent_event("silent", None),
                           consent_event("sleeper", True, zone=NIGHT_ZONE)])
        # A burst from the consenting person: 10 events at once.
        viewed = lambda user, n: {"type": "track", "event": "Cart Viewed", "userId": user, "messageId": f"cv-{user}-{n}",
                                  "timestamp": POLICY_EVENT_TIME}
        send(server, key, [viewed(user, n) for user in ("yes", "no", "silent") for n in range(10 if user == "yes" else 1)])
        send(server, key, [viewed("sleeper", 0)])
        assert wait_for(lambda: len(deliveries(server, "user_id:yes")) == 10 and len(deliveries(server, "user_id:sleeper")) == 1)
        assert wait_for(lambda: len(receiver.accepted) == 2), receiver.verified
        time.sleep(0.5)
        assert len(receiver.accepted) == 2, "the cap of 2 per channel per hour holds under a burst"
        statuses = sorted(d["status"] for d in deliveries(server, "user_id:yes"))
        assert statuses == ["blocked"] * 8 + ["delivered"] * 2, statuses
        blocked = [d for d in deliveries(server, "user_id:yes") if d["status"] == "blocked"]
        assert all("frequency cap" in d["last_error"] for d in blocked), blocked
        assert [d["status"] for d in deliveries(server, "user_id:no")] == ["blocked"]
        assert "declined" in deliveries(server, "user_id:no")[0]["last_error"]
        assert "never agreed" in deliveries(server, "user_id:silent")[0]["last_error"]
        sleeper = deliveries(server, "user_id:sleeper")[0]
        assert sleeper["status"] == "pending", sleeper
        assert sleeper["last_error"] == f"deferred: quiet hours in the person's time zone until {NIGHT_ENDS}", sleeper
        assert all(payload["data"]["profile"]["identifier"]["value"] == "yes" for _, payload in receiver.verified)
    finally:
        server.stop()
        receiver.stop()


ABANDONED = {"event": "Product Added", "not_followed_by": "Order Completed", "within": "30m", "key": "cart_id"}


def cart_event(name: str, user: str, cart: str, at: str, number: int) -> dict:
    return {"type": "track", "event": name, "userId": user, "messageId": f"{name}-{cart}-{number}",
            "timestamp": at, "properties": {"cart_id": cart}}


def set_clock(server: Kairos, now: str):
    r = server.admin("POST", "/v1/admin/clock", json={"now": now})
    assert r.status_code == 200, r.text


def test_abandoned_cart_keyed_by_cart_fires_exactly_on_time_on_a_manual_clock(tmp_path):
    receiver = Receiver().start()
    server = start_kairos(tmp_path, extra_args=["--clock", "manual"])
    try:
        set_clock(server, "2030-05-01T10:00:00Z")
        destination(server, receiver)
        journey(server, "abandoned cart", ABANDONED)
        key = server.create_source("shop")["write_key"]
        send(server, key, [
            # c1 is bought 10 minutes later: no message.
            cart_event("Product Added", "u1", "c1", "2030-05-01T10:00:00Z", 1),
            cart_event("Order Completed", "u1", "c1", "2030-05-01T10:10:00Z", 1),
            # c2 (same person) is abandoned; its second add restarts the wait.
            cart_event("Product Added", "u1", "c2", "2030-05-01T09:55:00Z", 1),
            cart_event("Product Added", "u1", "c2", "2030-05-01T10:00:00Z", 2),
            # c3: an order of another cart does not count.
            cart_event("Product Added", "u2", "c3", "2030-05-01T10:00:00Z", 1),
            cart_event("Order Completed", "u2", "c9", "2030-05-01T10:05:00Z", 1),
        ])
        set_clock(server, "2030-05-01T10:29:59Z")
        time.sleep(0.6)
        assert receiver.verified == [], "nothing before the 30 minutes are up"
        set_clock(server, "2030-05-01T10:30:00Z")
        assert wait_for(lambda: len(receiver.accepted) == 2), receiver.verified
        carts = sorted(payload["data"]["event"]["properties"]["cart_id"] for _, payload in receiver.verified)
        assert carts == ["c2", "c3"], carts
        payload = receiver.verified[0][1]
        assert payload["data"]["not_followed_by"] == {"event": "Order Completed", "within_seconds": 1800, "key": "cart_id"}

        # kill -9 during a wait: it survives and fires once.
        send(server, key, [cart_event("Product Added", "u3", "c4", "2030-05-01T10:40:00Z", 1)])
        time.sleep(0.5)
        server.kill9()
        server.start()
        set_clock(server, "2030-05-01T11:10:00Z")
        assert wait_for(lambda: len(receiver.accepted) == 3), receiver.verified
        time.sleep(0.5)
        assert len(receiver.accepted) == 3 and receiver.verified[-1][1]["data"]["event"]["properties"]["cart_id"] == "c4"
        assert [d["status"] for d in deliveries(server, "user_id:u3")] == ["delivered"]
    finally:
        server.stop()
        receiver.stop()


def test_abandoned_cart_on_the_real_clock(tmp_path):
    """Slow: the wait runs out on the system clock."""
    receiver = Receiver().start()
    server = start_kairos(tmp_path)
    try:
        destination(server, receiver)
        journey(server, "abandoned soon", {**ABANDONED, "within": "2s"})
        key = server.create_source("shop")["write_key"]
        sent_at = time.monotonic()
        send(server, key, [{"type": "track", "event": "Product Added", "userId": "rt", "messageId": "rt-1",
                            "properties": {"cart_id": "live"}}])
        assert wait_for(lambda: len(receiver.accepted) == 1, 10), receiver.verified
        elapsed = receiver.times[0] - sent_at
        assert 1.9 <= elapsed < 3.0, f"sent {elapsed:.2f} s after the event (due at 2 s)"
    finally:
        server.stop()
        receiver.stop()


def identity_token(secret: str, identifier: str) -> str:
    """What a site's backend mints for its logged-in user (docs/security.md)."""
    return hmac.new(secret.encode(), identifier.encode(), hashlib.sha256).hexdigest()


def open_stream(server: Kairos, identifier: str, key: str, out: list, token=None):
    """Reads in-app messages (Server-Sent Events) into `out` on a thread."""
    params = {"identifier": identifier, "writeKey": key, **({"token": token} if token else {})}
    response = requests.get(server.base_url + "/v1/in-app/stream", params=params, stream=True, timeout=30)
    assert response.status_code == 200, response.text

    def read():
        try:
            for line in response.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    out.append(json.loads(line[5:].strip()))
        except Exception:  # noqa: BLE001 - the server stopped
            pass

    threading.Thread(target=read, daemon=True).start()
    return response


def test_in_app_messages_reach_the_open_page_of_the_person(tmp_path):
    server = start_kairos(tmp_path)
    try:
        r = server.admin("POST", "/v1/destinations", json={"type": "in_app", "name": "site", "url": ""})
        assert r.status_code == 201, r.text
        message = {"title": "Still thinking, {{ traits.first_name | default(\"friend\") }}?", "body": "{{ event.properties.item }}"}
        r = server.admin("POST", "/v1/journeys", json={"name": "nudge", "trigger": {"event": "Cart Viewed"},
                                                        "steps": [{"send": {"destination": "site", "message": message}}]})
        assert r.status_code == 201, r.text
        source = server.create_source("web")
        key, secret = source["write_key"], source["identity_secret"]
        send(server, key, [{"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "id1", "traits": {"first_name": "Ada"}}])
        page = []
        stream = open_stream(server, "user_id:u1", key, page, token=identity_token(secret, "user_id:u1"))
        time.sleep(0.3)
        send(server, key, [{"type": "track", "event": "Cart Viewed", "userId": "u1", "messageId": "cv1", "properties": {"item": "shoes"}}])
        assert wait_for(lambda: len(page) == 1, 5), page
        assert page[0]["data"]["content"] == {"title": "Still thinking, Ada?", "body": "shoes"}, page
        assert [d["status"] for d in deliveries(server, "user_id:u1")] == ["delivered"]

        # Nobody on the site: the message waits (no attempt counted: being
        # away is no failure) and arrives when they come.
        send(server, key, [{"type": "track", "event": "Cart Viewed", "userId": "u2", "messageId": "cv2", "properties": {"item": "hat"}}])
        assert wait_for(lambda: deliveries(server, "user_id:u2"))
        time.sleep(0.5)
        waiting = deliveries(server, "user_id:u2")[0]
        assert waiting["status"] == "pending" and waiting["attempts"] == 0 and waiting["last_error"] is None, waiting
        later = []
        connected = time.monotonic()
        stream2 = open_stream(server, "user_id:u2", key, later, token=identity_token(secret, "user_id:u2"))
        assert wait_for(lambda: len(later) == 1, 5), later
        assert time.monotonic() - connected < 2.0
        assert later[0]["data"]["content"]["title"] == "Still thinking, friend?"
        r = requests.get(server.base_url + "/v1/in-app/stream", params={"identifier": "user_id:u2", "writeKey": "wrong"}, timeout=5)
        assert r.status_code == 401
        stream.close()
        stream2.close()
    finally:
        server.stop()


def test_an_in_app_message_deferred_by_quiet_hours_shows_when_they_end_not_at_once(tmp_path):
    """Issue 13's defect: an in-app send the contact policy defers for
    quiet hours waited for nothing — an open page got it at once, and so did
    a page opening during the night. It appears when the quiet hours end on
    the engine's clock (manual here: moved through the admin endpoint)."""
    server = start_kairos(tmp_path, extra_args=["--clock", "manual"])
    try:
        set_clock(server, POLICY_NOW)  # 23:00 in Tokyo: quiet hours
        r = server.admin("POST", "/v1/destinations", json={"type": "in_app", "name": "site", "url": ""})
        assert r.status_code == 201, r.text
        r = server.admin("POST", "/v1/journeys", json={
            "name": "night nudge", "trigger": {"event": "Cart Viewed"},
            "steps": [{"send": {"destination": "site", "purpose": "marketing", "message": {"title": "Good morning"}}}]})
        assert r.status_code == 201, r.text
        source = server.create_source("web")
        key, token = source["write_key"], identity_token(source["identity_secret"], "user_id:sleeper")
        send(server, key, [consent_event("sleeper", True, zone=NIGHT_ZONE)])
        page = []
        stream = open_stream(server, "user_id:sleeper", key, page, token=token)
        time.sleep(0.3)
        send(server, key, [{"type": "track", "event": "Cart Viewed", "userId": "sleeper", "messageId": "cv-night",
                            "timestamp": POLICY_EVENT_TIME}])
        assert wait_for(lambda: deliveries(server, "user_id:sleeper"))
        deferred = deliveries(server, "user_id:sleeper")[0]
        assert deferred["status"] == "pending", deferred
        assert deferred["last_error"] == f"deferred: quiet hours in the person's time zone until {NIGHT_ENDS}"
        assert deferred["deferred_until"] == NIGHT_ENDS, deferred
        time.sleep(1.5)  # several looks of the in-app worker
        assert page == [], "shown during quiet hours to the open page"
        # A page opening during the night does not get it either.
        second = []
        stream2 = open_stream(server, "user_id:sleeper", key, second, token=token)
        time.sleep(1.0)
        assert second == [] and page == [], (second, page)
        # An hour before the end: still waiting.
        set_clock(server, "2030-05-01T22:00:00Z")
        time.sleep(1.0)
        assert page == [] and second == []
        # Quiet hours end: the open pages get it at once.
        set_clock(server, NIGHT_ENDS)
        assert wait_for(lambda: len(page) == 1 and len(second) == 1, 5), (page, second)
        assert page[0]["data"]["content"] == {"title": "Good morning"}
        assert wait_for(lambda: deliveries(server, "user_id:sleeper")[0]["status"] == "delivered")
        stream.close()
        stream2.close()
    finally:
        server.stop()


def test_journey_steps_wait_branch_set_traits_wait_for_events_and_leave_at_the_goal(tmp_path):
    receiver = Receiver().start()
    server = start_kairos(tmp_path, extra_args=["--clock", "manual"])
    try:
        set_clock(server, "2030-06-01T10:00:00Z")
        destination(server, receiver)
        r = server.admin("POST", "/v1/journeys", json={
            "name": "win back", "trigger": {"event": "Cart Viewed"}, "entry": "once", "goal": "Order Completed",
            "steps": [
                {"wait": "1h"},
                {"branch": {"if": "trait vip = true", "then": [{"send": {"destination": "hooks"}}],
                            "else": [{"set_trait": {"name": "nudged", "value": True}}]}},
                {"wait_for": {"event": "Coupon Opened", "timeout": "1d"}},
                {"send": {"destination": "hooks"}},
            ]})
        assert r.status_code == 201, r.text
        key = server.create_source("shop")["write_key"]

        def track(user, name, at, n):
            return {"type": "track", "event": name, "userId": user, "messageId": f"{user}-{name}-{n}", "timestamp": at}

        send(server, key, [
            {"type": "identify", "userId": "vip", "messageId": "id-vip", "traits": {"vip": True}},
            {"type": "identify", "userId": "reg", "messageId": "id-reg", "traits": {"vip": False}},
            track("vip", "Cart Viewed", "2030-06-01T10:00:00Z", 1),
            track("reg", "Cart Viewed", "2030-06-01T10:00:00Z", 1),
            track("buyer", "Cart Viewed", "2030-06-01T10:00:00Z", 1),
            track("buyer", "Order Completed", "2030-06-01T10:30:00Z", 1),  # the goal: buyer leaves
        ])
        time.sleep(0.5)
        # The runs are durable: kill -9 while everyone waits.
        server.kill9()
        server.start()
        set_clock(server, "2030-06-01T10:59:59Z")
        time.sleep(0.5)
        assert receiver.verified == []
        set_clock(server, "2030-06-01T11:00:00Z")
        assert wait_for(lambda: len(receiver.accepted) == 1), receiver.verified
        assert receiver.verified[0][1]["data"]["profile"]["identifier"]["value"] == "vip"
        assert wait_for(lambda: server.admin("GET", "/v1/profiles/user_id:reg").json()["traits"].get("nudged") is True)
        assert server.admin("GET", "/v1/profiles/user_id:vip").json()["traits"].get("nudged") is None

        # The awaited event moves vip on at once; entry "once": a second
        # Cart Viewed starts nothing.
        send(server, key, [track("vip", "Coupon Opened", "2030-06-01T11:05:00Z", 1),
                           track("vip", "Cart Viewed", "2030-06-01T11:06:00Z", 2)])
        assert wait_for(lambda: len(receiver.accepted) == 2), receiver.verified
        assert receiver.verified[1][1]["data"]["profile"]["identifier"]["value"] == "vip"

        # reg never opens the coupon: the timeout sends after a day.
        set_clock(server, "2030-06-02T10:59:59Z")
        time.sleep(0.5)
        assert len(receiver.accepted) == 2
        set_clock(server, "2030-06-02T11:00:00Z")
        assert wait_for(lambda: len(receiver.accepted) == 3), receiver.verified
        assert receiver.verified[2][1]["data"]["profile"]["identifier"]["value"] == "reg"
        set_clock(server, "2030-06-05T00:00:00Z")
        time.sleep(0.5)
        assert len(receiver.accepted) == 3, "nothing more: buyer left at the goal, vip entered once"
        assert deliveries(server, "user_id:buyer") == []
    finally:
        server.stop()
        receiver.stop()


def test_a_paused_journey_admits_nobody_and_holds_its_runs_until_resumed(tmp_path):
    """POST /v1/journeys/{id}/pause and /resume (the console's Pause button):
    while paused nobody enters and nothing is sent, a run that comes due
    holds at its step; on resume it goes on at once."""
    receiver = Receiver().start()
    server = start_kairos(tmp_path, extra_args=["--clock", "manual"])
    try:
        set_clock(server, "2030-05-01T10:00:00Z")
        destination(server, receiver)
        r = server.admin("POST", "/v1/journeys", json={
            "name": "welcome", "trigger": {"event": "Signed Up"},
            "steps": [{"send": {"destination": "hooks"}}, {"wait": "1h"}, {"send": {"destination": "hooks"}}]})
        assert r.status_code == 201, r.text
        key = server.create_source("web")["write_key"]
        send(server, key, [signed_up("p1", "pro", 1)])
        assert wait_for(lambda: len(deliveries(server, "user_id:p1")) == 1)
        metrics = server.admin("GET", "/metrics").text
        assert re.search(r"^kairos_trigger_duration_seconds_count [1-9]", metrics, re.M), "trigger latency counted"
        paused = server.admin("POST", "/v1/journeys/welcome/pause")
        assert paused.status_code == 200 and paused.json()["paused"] is True, paused.text
        send(server, key, [signed_up("p2", "pro", 2)])
        set_clock(server, "2030-05-01T12:00:00Z")  # p1's wait is over: held
        assert len(deliveries(server, "user_id:p1")) == 1
        assert server.admin("GET", "/v1/profiles/user_id:p2/deliveries").json().get("deliveries", []) == []
        resumed = server.admin("POST", "/v1/journeys/welcome/resume")
        assert resumed.status_code == 200 and resumed.json()["resumed_runs"] == 1, resumed.text
        assert wait_for(lambda: len(deliveries(server, "user_id:p1")) == 2)
        assert server.admin("GET", "/v1/profiles/user_id:p2/deliveries").json().get("deliveries", []) == []
        assert server.admin("POST", "/v1/journeys/nope/pause").status_code == 404
    finally:
        server.stop()
        receiver.stop()


def test_a_test_send_reaches_the_endpoint_signed_and_says_why_when_it_does_not(tmp_path):
    """POST /v1/destinations/{id}/test (the console's Test send button): one
    message now, verified by the official standardwebhooks library at the
    receiver, not stored; an unreachable endpoint is reported by category."""
    receiver = Receiver().start()
    server = start_kairos(tmp_path)
    try:
        created = destination(server, receiver)
        r = server.admin("POST", f"/v1/destinations/{created['id']}/test", json={})
        assert r.status_code == 200 and r.json()["delivered"] is True, r.text
        assert wait_for(lambda: receiver.verified)
        webhook_id, payload = receiver.verified[0]
        assert payload["type"] == "kairos.test" and payload["data"]["destination"] == "hooks"
        assert server.admin("GET", "/v1/admin/dead-letters").json()["dead_letters"] == []
        receiver.stop()
        r = server.admin("POST", f"/v1/destinations/{created['id']}/test", json={})
        assert r.status_code == 200 and r.json()["delivered"] is False, r.text
        assert "could not reach the endpoint" in r.json()["error"], r.text
        inbox = server.admin("POST", "/v1/destinations", json={"type": "in_app", "name": "site", "url": ""}).json()
        r = server.admin("POST", f"/v1/destinations/{inbox['id']}/test", json={})
        assert r.status_code == 400 and "in-app" in r.text
        assert server.admin("POST", "/v1/destinations/nope/test", json={}).status_code == 404
    finally:
        server.stop()
        receiver.stop()
