"""Outbound requests reach only public addresses by default (SSRF, issue 12
item 3; docs/journeys.md, "Addresses"). A server started WITHOUT
`allow_private_networks` refuses loopback, private, link-local, metadata
and other special-purpose addresses in every form when a destination is
created, and again at connect time (after resolution) for destinations
that were stored while private networks were allowed. `last_error` says a
category, never the raw error of whatever answered on that port."""

import socket
import threading

from conftest import Kairos, free_port
from test_email import Mailbox
from test_journeys import Receiver, deliveries, send, wait_for

STRICT = {"KAIROS_DELIVERY_ALLOW_PRIVATE_NETWORKS": "false"}
CONFIG = """
[delivery]
retry_schedule = ["200ms"]
max_attempts = 3
timeout = "2s"
"""

PRIVATE_WEBHOOKS = [
    "http://127.0.0.1:{port}/hook",
    "http://[::1]:{port}/hook",
    "http://0.0.0.0:{port}/",
    "http://[::]/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0x7f.0.0.1/",
    "http://0177.0.0.1/",
    "http://127.1/",
    "https://127.0.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://0xa9fea9fe/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:127.0.0.1]/",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://[fd00:ec2::254]/",
    "http://[fe80::1]/",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
    "http://localhost:{port}/",
    "http://LocalHost./",
    "http://api.localhost/",
]
PRIVATE_SMTP = [
    "smtp://127.0.0.1:{port}",
    "smtp://2130706433:25",
    "smtp://localhost:25?tls=starttls",
    "smtps://[::1]",
    "smtps://169.254.169.254",
]


def assert_refused(response, url):
    assert response.status_code == 400, (url, response.text)
    problem = response.json()
    assert problem["code"] == "address_not_allowed", (url, problem)
    # It says what is wrong and how to allow it.
    assert "allow_private_networks" in problem["detail"], problem
    assert "KAIROS_DELIVERY_ALLOW_PRIVATE_NETWORKS=true" in problem["detail"], problem


def hostname_resolving_privately():
    """This machine's own name, when it resolves to a private address (it
    does on Debian-style /etc/hosts); a name that is not written as one."""
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, 80)}
    except OSError:
        return None
    private = all(a.startswith(("127.", "10.", "192.168.", "::1", "fe80")) for a in addresses)
    return name if addresses and private else None


def test_private_addresses_are_refused_at_creation_in_every_form(tmp_path):
    server = Kairos(tmp_path / "data", env=STRICT).start()
    try:
        port = free_port()
        for url in PRIVATE_WEBHOOKS:
            url = url.format(port=port)
            r = server.admin("POST", "/v1/destinations", json={"type": "webhook", "name": "w", "url": url})
            assert_refused(r, url)
        for url in PRIVATE_SMTP:
            url = url.format(port=port)
            r = server.admin("POST", "/v1/destinations", json={
                "type": "email", "name": "m", "url": url, "from": "Shop <hello@shop.example>"})
            assert_refused(r, url)
        name = hostname_resolving_privately()
        if name:  # resolved through the system's resolver, like any name
            r = server.admin("POST", "/v1/destinations", json={"type": "webhook", "name": "w", "url": f"http://{name}:{port}/"})
            assert_refused(r, name)
            # Where an internal name points is not told back.
            assert "resolves to a" in r.json()["detail"] and "127." not in r.json()["detail"], r.json()
        assert server.admin("GET", "/v1/destinations").json()["destinations"] == []
        # A public address is accepted (never contacted: nothing sends to it).
        r = server.admin("POST", "/v1/destinations", json={"type": "webhook", "name": "public", "url": "https://1.1.1.1/hook"})
        assert r.status_code == 201, r.text
        assert server.admin("DELETE", "/v1/destinations/public").status_code in (200, 204)
    finally:
        server.stop()


def start(tmp_path, env=None) -> Kairos:
    config = tmp_path / "kairos.toml"
    config.write_text(CONFIG)
    return Kairos(tmp_path / "data", extra_args=["--config", str(config)], env=env).start()


def test_destinations_stored_while_allowed_are_refused_at_connect_time(tmp_path):
    """The connect-time check: destinations created while private networks
    were allowed (as an on-premise install might have), then the server
    restarted with the default policy. Nothing reaches the receivers, for
    an IP literal, a name (checked after resolution) and SMTP alike."""
    receiver = Receiver().start()
    mailbox = Mailbox().start()
    server = start(tmp_path)  # allowed: the suite's default
    try:
        receiver.secret = server.admin("POST", "/v1/destinations", json={
            "type": "webhook", "name": "literal", "url": receiver.url}).json()["secret"]
        r = server.admin("POST", "/v1/destinations", json={
            "type": "webhook", "name": "named", "url": f"http://localhost:{receiver.port}/hook"})
        assert r.status_code == 201, r.text
        r = server.admin("POST", "/v1/destinations", json={
            "type": "email", "name": "mail", "url": f"smtp://localhost:{mailbox.port}", "from": "Shop <hello@shop.example>"})
        assert r.status_code == 201, r.text
        steps = [{"send": {"destination": "literal"}}, {"send": {"destination": "named"}},
                 {"send": {"destination": "mail", "template": {"subject": "Hi", "text": "Hello"}}}]
        r = server.admin("POST", "/v1/journeys", json={"name": "ping", "trigger": {"event": "Ping"}, "steps": steps})
        assert r.status_code == 201, r.text
        assert server.admin("POST", "/v1/audiences", json={"name": "pingers", "definition": 'performed "Ping"'}).status_code == 201
        server.stop()

        server = start(tmp_path, env=STRICT)
        # A sync to a stored private destination is refused, saying why.
        r = server.admin("POST", "/v1/audience-syncs", json={"name": "crm", "audience": "pingers", "destination": "literal"})
        assert_refused(r, "sync")
        key = server.create_source("app")["write_key"]
        send(server, key, [
            {"type": "identify", "userId": "ada", "messageId": "id-ada", "traits": {"email": "ada@example.org"}},
            {"type": "track", "event": "Ping", "userId": "ada", "messageId": "ping-1"},
        ])

        def settled():
            found = deliveries(server, "user_id:ada")
            return len(found) == 3 and all(d["status"] == "dead" for d in found)

        assert wait_for(settled, 20), deliveries(server, "user_id:ada")
        for delivery in deliveries(server, "user_id:ada"):
            assert "address not allowed" in delivery["last_error"], delivery
        assert receiver.verified == [] and receiver.failures == [] and receiver.times == []
        assert mailbox.mails == []
        dead = server.admin("GET", "/v1/admin/dead-letters").json()
        assert all("address not allowed" in d["last_error"] for d in dead["dead_letters"]), dead
    finally:
        server.stop()
        receiver.stop()
        mailbox.stop()


class Banner:
    """A TCP service that is not HTTP nor SMTP: it says something secret and
    closes, as a database or SSH server on an internal port would."""

    SECRET = "redis_version:7.2.4 secret-banner"

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                connection.sendall(f"-ERR {self.SECRET}\r\n".encode())

    def stop(self):
        self.listener.close()


def test_last_error_names_a_category_never_what_answered(tmp_path):
    """Even where private networks are allowed, an API caller learns a
    category (connection refused, not an SMTP answer...), not the banner
    or the raw error of whatever listens on that port."""
    banner = Banner()
    closed = free_port()
    server = start(tmp_path)
    try:
        for name, url in [("closed", f"http://127.0.0.1:{closed}/"), ("banner", f"http://127.0.0.1:{banner.port}/")]:
            assert server.admin("POST", "/v1/destinations", json={"type": "webhook", "name": name, "url": url}).status_code == 201
        r = server.admin("POST", "/v1/destinations", json={
            "type": "email", "name": "mail", "url": f"smtp://127.0.0.1:{banner.port}", "from": "Shop <hello@shop.example>"})
        assert r.status_code == 201, r.text
        steps = [{"send": {"destination": "closed"}}, {"send": {"destination": "banner"}},
                 {"send": {"destination": "mail", "template": {"subject": "Hi", "text": "Hello"}}}]
        assert server.admin("POST", "/v1/journeys", json={"name": "ping", "trigger": {"event": "Ping"}, "steps": steps}).status_code == 201
        key = server.create_source("app")["write_key"]
        send(server, key, [
            {"type": "identify", "userId": "ada", "messageId": "id-ada", "traits": {"email": "ada@example.org"}},
            {"type": "track", "event": "Ping", "userId": "ada", "messageId": "ping-1"},
        ])
        def all_failed():  # one read: the list grows between two
            found = deliveries(server, "user_id:ada")
            return len(found) == 3 and all(d["last_error"] for d in found)

        assert wait_for(all_failed, 20), deliveries(server, "user_id:ada")
        errors = {d["destination"]: d["last_error"] for d in deliveries(server, "user_id:ada")}
        ids = {d["name"]: d["id"] for d in server.admin("GET", "/v1/destinations").json()["destinations"]}
        assert errors[ids["closed"]] == "could not reach the endpoint: connection refused", errors
        assert errors[ids["mail"]] == "the SMTP conversation failed (not an SMTP answer)", errors
        assert errors[ids["banner"]].startswith("could not reach the endpoint: "), errors
        assert all(Banner.SECRET not in error and "redis" not in error for error in errors.values()), errors
        # The detail is in the operator's log.
        assert "Connection refused" in server.log_path.read_text() or "connection refused" in server.log_path.read_text()
    finally:
        server.stop()
        banner.stop()
