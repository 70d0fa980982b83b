"""In-app streams (issue 12, items 1 and 9), end to end against the real
binary: a write key alone never opens another person's stream; identity
tokens minted by the site's backend do; rotating a source's keys and
erasing the person close open streams; and a visitor who is on the site
gets their message at once, however many wait for people who are away."""

import json
import threading
import time

import requests

from conftest import Kairos
from test_journeys import identity_token, send, start_kairos, wait_for

STREAM = "/v1/in-app/stream"


class Page:
    """An open in-app stream read on a thread; `ended` once the server closes it."""

    def __init__(self, server: Kairos, identifier: str, key: str, token=None):
        params = {"identifier": identifier, "writeKey": key, **({"token": token} if token else {})}
        self.response = requests.get(server.base_url + STREAM, params=params, stream=True, timeout=30)
        assert self.response.status_code == 200, self.response.text
        self.messages, self.ended = [], False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for line in self.response.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    self.messages.append(json.loads(line[5:].strip()))
        except Exception:  # noqa: BLE001 - closed
            pass
        self.ended = True

    def close(self):
        self.response.close()


def in_app_journey(server: Kairos, event="Cart Viewed"):
    r = server.admin("POST", "/v1/destinations", json={"type": "in_app", "name": "site", "url": ""})
    assert r.status_code == 201, r.text
    message = {"title": "Hello {{ traits.first_name | default(\"there\") }}", "body": "{{ event.properties.item }}"}
    r = server.admin("POST", "/v1/journeys", json={"name": "nudge", "trigger": {"event": event},
                                                    "steps": [{"send": {"destination": "site", "message": message}}]})
    assert r.status_code == 201, r.text


def stream_status(server: Kairos, params: dict) -> requests.Response:
    r = requests.get(server.base_url + STREAM, params=params, stream=True, timeout=5)
    if r.status_code != 200:
        r.content  # a problem document: read it whole
    r.close()
    return r


def test_a_write_key_alone_never_opens_another_persons_stream(tmp_path):
    server = start_kairos(tmp_path)
    try:
        in_app_journey(server)
        web = server.create_source("web")
        other = server.create_source("other-site")
        key, secret = web["write_key"], web["identity_secret"]
        assert secret.startswith("ivs_") and web["trust"] == "client"
        send(server, key, [{"type": "identify", "userId": "victim", "anonymousId": "victim-device", "messageId": "i1",
                            "traits": {"first_name": "Vic", "email": "vic@corp.example"}}])

        # The attack of the issue: any source's write key, someone else's identifier.
        for identifier in ["email:vic@corp.example", "user_id:victim"]:
            for write_key in [key, other["write_key"]]:
                r = stream_status(server, {"identifier": identifier, "writeKey": write_key})
                assert r.status_code == 403, (identifier, r.status_code)
                assert r.json()["code"] == "identity_token_invalid" and "HMAC-SHA256" in r.json()["detail"]
        # Wrong tokens: another person's, another source's secret, garbage.
        for token in [identity_token(secret, "user_id:someone-else"), identity_token(other["identity_secret"], "user_id:victim"), "00" * 32, "x"]:
            assert stream_status(server, {"identifier": "user_id:victim", "writeKey": key, "token": token}).status_code == 403

        # An attacker's browser claims the victim's userId (a client source may
        # link its anonymous id: that is how log-in works) and listens
        # anonymously: it gets nothing addressed to the victim.
        send(server, key, [{"type": "identify", "userId": "victim", "anonymousId": "attacker-device", "messageId": "i2"}])
        attacker = Page(server, "anonymous_id:attacker-device", key)
        victim = Page(server, "user_id:victim", key, token=identity_token(secret, "user_id:victim"))
        time.sleep(0.3)
        send(server, key, [{"type": "track", "event": "Cart Viewed", "userId": "victim", "messageId": "c1", "properties": {"item": "ring"}}])
        assert wait_for(lambda: len(victim.messages) == 1, 5), victim.messages
        assert victim.messages[0]["data"]["content"]["body"] == "ring"
        time.sleep(0.5)
        assert attacker.messages == []

        # An anonymous visitor does get what is addressed to their own id.
        visitor = Page(server, "anonymous_id:just-browsing", key)
        time.sleep(0.2)
        send(server, key, [{"type": "track", "event": "Cart Viewed", "anonymousId": "just-browsing", "messageId": "c2", "properties": {"item": "hat"}}])
        assert wait_for(lambda: len(visitor.messages) == 1, 5), visitor.messages
        # ... but cannot present a token it made up for it either.
        assert stream_status(server, {"identifier": "anonymous_id:just-browsing", "writeKey": key, "token": "00" * 32}).status_code == 403

        # Rotating the write key closes streams opened with the source.
        server.admin("POST", f"/v1/admin/sources/{web['id']}/rotate", json={"grace_seconds": 60})
        assert wait_for(lambda: victim.ended and visitor.ended and attacker.ended, 5)

        # Rotating the identity secret closes streams and retires old tokens.
        fresh = Page(server, "user_id:victim", key, token=identity_token(secret, "user_id:victim"))  # old key still in grace
        rotated = server.admin("POST", f"/v1/admin/sources/{web['id']}/identity-secret/rotate").json()
        assert rotated["identity_secret"] != secret
        assert wait_for(lambda: fresh.ended, 5)
        assert stream_status(server, {"identifier": "user_id:victim", "writeKey": key, "token": identity_token(secret, "user_id:victim")}).status_code == 403
        new_token = identity_token(rotated["identity_secret"], "user_id:victim")

        # Erasure closes the person's streams, and a restart keeps secrets.
        server.restart()
        page = Page(server, "user_id:victim", key, token=new_token)
        assert server.admin("DELETE", "/v1/profiles/user_id:victim").status_code == 200
        assert wait_for(lambda: page.ended, 5)
    finally:
        server.stop()


def test_a_connected_visitor_never_waits_behind_people_who_are_away(tmp_path):
    server = start_kairos(tmp_path)
    try:
        in_app_journey(server)
        source = server.create_source("web")
        key, secret = source["write_key"], source["identity_secret"]
        away = [{"type": "track", "event": "Cart Viewed", "userId": f"away-{n}", "messageId": f"a-{n}", "properties": {"item": "x"}}
                for n in range(1500)]
        for chunk in range(0, len(away), 500):
            send(server, key, away[chunk:chunk + 500])
        assert wait_for(lambda: len(server.admin("GET", "/v1/profiles/user_id:away-1499/deliveries").json()["deliveries"]) == 1, 30)
        time.sleep(2)  # let the worker look at (and leave waiting) every one of them
        away_log = server.admin("GET", "/v1/profiles/user_id:away-7/deliveries").json()["deliveries"]
        assert away_log[0]["status"] == "pending" and away_log[0]["attempts"] == 0

        page = Page(server, "user_id:here", key, token=identity_token(secret, "user_id:here"))
        time.sleep(0.2)
        sent = time.monotonic()
        send(server, key, [{"type": "track", "event": "Cart Viewed", "userId": "here", "messageId": "h1", "properties": {"item": "now"}}])
        assert wait_for(lambda: len(page.messages) == 1, 10), page.messages
        assert time.monotonic() - sent < 2.0, "the present visitor's message waited"
        page.close()

        # Someone who was away arrives: their waiting message comes at once.
        back = Page(server, "user_id:away-42", key, token=identity_token(secret, "user_id:away-42"))
        assert wait_for(lambda: len(back.messages) == 1, 3), back.messages
        assert server.admin("GET", "/v1/profiles/user_id:away-42/deliveries").json()["deliveries"][0]["status"] == "delivered"
        back.close()
    finally:
        server.stop()
