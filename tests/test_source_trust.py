"""The trust model for sources (issue 12, item 4; docs/security.md): a
client source's write key is public, so it may send events and traits but
never overwrite an identity trait (email, phone) that a server source set
— the address journeys send to. It may link its anonymous id to a known
user (that is how log-in works on a website); what that link can reveal is
bounded by the in-app identity tokens (tests/test_in_app_security.py)."""

import time

from test_journeys import Receiver, destination, send, start_kairos, wait_for


def profile(server, identifier):
    r = server.admin("GET", f"/v1/profiles/{identifier}")
    assert r.status_code == 200, r.text
    return r.json()


def test_a_client_source_cannot_redirect_a_known_users_email(tmp_path):
    receiver = Receiver().start()
    server = start_kairos(tmp_path)
    try:
        backend = server.create_source("backend", trust="server")
        web = server.create_source("web")
        assert backend["trust"] == "server" and web["trust"] == "client"
        r = server.admin("POST", "/v1/admin/sources", json={"name": "x", "trust": "admin"})
        assert r.status_code == 400 and "trust" in r.text, r.text

        send(server, backend["write_key"], [{"type": "identify", "userId": "u1", "messageId": "b1",
                                             "traits": {"email": "real@corp.example", "phone": "+4915155500001", "plan": "pro"}}])
        assert wait_for(lambda: profile(server, "user_id:u1")["traits"].get("email") == "real@corp.example")
        # The attack: the public key claims u1 and changes where mail goes.
        send(server, web["write_key"], [{"type": "identify", "userId": "u1", "anonymousId": "attacker-device", "messageId": "w1",
                                         "traits": {"email": "attacker@evil.example", "phone": "+4915155509999", "plan": "free"}}])
        time.sleep(0.5)
        traits = profile(server, "user_id:u1")["traits"]
        assert traits["email"] == "real@corp.example" and traits["phone"] == "+4915155500001", traits
        assert traits["plan"] == "free", "other traits from a client source still apply"
        identities = {(i["type"], i["value"]) for i in profile(server, "user_id:u1")["identities"]}
        assert ("anonymous_id", "attacker-device") in identities, "a client source links its anonymous id (log-in)"

        # What the journeys send goes to the server-set address.
        destination(server, receiver)
        r = server.admin("POST", "/v1/journeys", json={"name": "receipt", "trigger": {"event": "Order Completed"},
                                                        "steps": [{"send": {"destination": "hooks", "message": {"to": "{{ traits.email }}"}}}]})
        assert r.status_code == 201, r.text
        send(server, web["write_key"], [{"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "o1"}])
        assert wait_for(lambda: len(receiver.verified) == 1, 10)
        assert receiver.verified[0][1]["data"]["content"]["to"] == "real@corp.example"

        # A client source sets identity traits nobody trusted set, and the
        # server source still changes its own.
        send(server, web["write_key"], [{"type": "identify", "userId": "u2", "messageId": "w2", "traits": {"email": "new@site.example"}}])
        send(server, backend["write_key"], [{"type": "identify", "userId": "u1", "messageId": "b2", "traits": {"email": "moved@corp.example"}}])
        assert wait_for(lambda: profile(server, "user_id:u2")["traits"].get("email") == "new@site.example")
        assert wait_for(lambda: profile(server, "user_id:u1")["traits"]["email"] == "moved@corp.example")

        # The same after a restart (replay applies the same rule).
        server.restart()
        assert profile(server, "user_id:u1")["traits"]["email"] == "moved@corp.example"
    finally:
        server.stop()
        receiver.stop()
