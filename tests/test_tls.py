"""TLS end to end (issue 12 item 16): HTTPS webhooks and audience syncs,
SMTP with STARTTLS and with implicit TLS, each against a local TLS server
whose certificate comes from a test CA (trustme) that Kairos trusts through
`[delivery] ca_file`. Webhook signatures are verified with the official
`standardwebhooks` library. Without the CA the same endpoints fail with
"TLS handshake failed": certificates are verified, not merely encrypted."""

import ssl

import trustme
from aiosmtpd.controller import Controller

from conftest import Kairos
from test_email import Mailbox
from test_journeys import Receiver, deliveries, send, wait_for

CONFIG = """
[delivery]
retry_schedule = ["200ms"]
max_attempts = 3
timeout = "5s"
"""


class TlsMailbox(Mailbox):
    """The suite's SMTP server, with STARTTLS required or implicit TLS."""

    def __init__(self, context, implicit):
        super().__init__()
        self.context = context
        self.implicit = implicit
        self.secured = []  # per mail: did the session run over TLS

    async def handle_DATA(self, server, session, envelope):
        self.secured.append(session.ssl is not None)
        return await super().handle_DATA(server, session, envelope)

    def start(self):
        if self.implicit:
            self.controller = Controller(self, hostname="127.0.0.1", port=self.port, ssl_context=self.context)
        else:
            self.controller = Controller(self, hostname="127.0.0.1", port=self.port,
                                         tls_context=self.context, require_starttls=True)
        self.controller.start()
        return self


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


def start(tmp_path, ca_file=None) -> Kairos:
    config = tmp_path / "kairos.toml"
    text = CONFIG + (f'ca_file = "{ca_file}"\n' if ca_file else "")
    config.write_text(text)
    return Kairos(tmp_path / "data", extra_args=["--config", str(config)]).start()


def test_https_webhooks_syncs_and_smtp_tls_with_a_test_ca(tmp_path):
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = server_context(ca)
    receiver = Receiver(ssl_context=context).start()
    starttls = TlsMailbox(context, implicit=False).start()
    implicit = TlsMailbox(context, implicit=True).start()
    server = start(tmp_path, ca_file)
    try:
        assert receiver.url.startswith("https://localhost:")
        r = server.admin("POST", "/v1/destinations", json={"type": "webhook", "name": "hooks", "url": receiver.url})
        assert r.status_code == 201, r.text
        receiver.secret = r.json()["secret"]
        for name, url in [("starttls", f"smtp://localhost:{starttls.port}?tls=starttls"),
                          ("implicit", f"smtps://localhost:{implicit.port}")]:
            r = server.admin("POST", "/v1/destinations", json={
                "type": "email", "name": name, "url": url, "from": "Shop <hello@shop.example>"})
            assert r.status_code == 201, r.text
        template = {"subject": "Hi {{ traits.first_name }}", "text": "Over TLS."}
        steps = [{"send": {"destination": "hooks"}},
                 {"send": {"destination": "starttls", "template": template}},
                 {"send": {"destination": "implicit", "template": template}}]
        assert server.admin("POST", "/v1/journeys", json={"name": "tls", "trigger": {"event": "Ping"}, "steps": steps}).status_code == 201
        assert server.admin("POST", "/v1/audiences", json={"name": "pingers", "definition": 'performed "Ping"'}).status_code == 201
        r = server.admin("POST", "/v1/audience-syncs", json={
            "name": "crm", "audience": "pingers", "destination": "hooks", "batch_size": 1, "max_wait": "1s"})
        assert r.status_code == 201, r.text
        key = server.create_source("app")["write_key"]
        send(server, key, [
            {"type": "identify", "userId": "ada", "messageId": "id-ada", "traits": {"email": "ada@example.org", "first_name": "Ada"}},
            {"type": "track", "event": "Ping", "userId": "ada", "messageId": "ping-1"},
        ])
        # The journey's webhook and the sync's batch, both verified signatures.
        assert wait_for(lambda: len(receiver.accepted) == 2, 20), (receiver.verified, receiver.failures,
                                                                   deliveries(server, "user_id:ada"))
        kinds = sorted(payload["type"] for _, payload in receiver.verified)
        assert kinds[0] == "audience.sync" and len(kinds) == 2, kinds
        assert receiver.failures == []
        assert wait_for(lambda: len(starttls.mails) == 1 and len(implicit.mails) == 1, 20), deliveries(server, "user_id:ada")
        assert starttls.secured == [True], "the mail went after STARTTLS"  # implicit: TLS from the first byte
        for mailbox in (starttls, implicit):
            recipients, mail = mailbox.mails[0]
            assert recipients == ["ada@example.org"] and mail["Subject"] == "Hi Ada"
        # Recorded once the receivers answered (a moment after they have the mail).
        assert wait_for(lambda: [d["status"] for d in deliveries(server, "user_id:ada")] == ["delivered"] * 3, 10), \
            deliveries(server, "user_id:ada")
    finally:
        server.stop()
        receiver.stop()
        starttls.stop()
        implicit.stop()


def test_without_the_ca_certificates_are_refused_and_plain_smtp_does_not_pass_starttls(tmp_path):
    ca = trustme.CA()
    context = server_context(ca)
    receiver = Receiver(ssl_context=context).start()
    starttls = TlsMailbox(context, implicit=False).start()
    implicit = TlsMailbox(context, implicit=True).start()
    server = start(tmp_path)  # the platform's roots only: the test CA is unknown
    try:
        r = server.admin("POST", "/v1/destinations", json={"type": "webhook", "name": "hooks", "url": receiver.url})
        receiver.secret = r.json()["secret"]
        for name, url in [("implicit", f"smtps://localhost:{implicit.port}"),
                          ("starttls", f"smtp://localhost:{starttls.port}?tls=starttls"),
                          ("plain", f"smtp://localhost:{starttls.port}")]:
            r = server.admin("POST", "/v1/destinations", json={
                "type": "email", "name": name, "url": url, "from": "Shop <hello@shop.example>"})
            assert r.status_code == 201, r.text
        template = {"subject": "Hi", "text": "Hello"}
        steps = [{"send": {"destination": "hooks"}}] + [
            {"send": {"destination": name, "template": template}} for name in ("implicit", "starttls", "plain")]
        assert server.admin("POST", "/v1/journeys", json={"name": "tls", "trigger": {"event": "Ping"}, "steps": steps}).status_code == 201
        key = server.create_source("app")["write_key"]
        send(server, key, [
            {"type": "identify", "userId": "ada", "messageId": "id-ada", "traits": {"email": "ada@example.org"}},
            {"type": "track", "event": "Ping", "userId": "ada", "messageId": "ping-1"},
        ])
        ids = {d["name"]: d["id"] for d in server.admin("GET", "/v1/destinations").json()["destinations"]}

        def errors():
            return {d["destination"]: (d["status"], d["last_error"]) for d in deliveries(server, "user_id:ada")}

        def all_dead():  # one read: the list grows between two
            found = errors()
            return len(found) == 4 and all(s == "dead" for s, _ in found.values())

        assert wait_for(all_dead, 20), errors()
        found = errors()
        assert found[ids["hooks"]][1] == "could not reach the endpoint: TLS handshake failed", found
        assert found[ids["implicit"]][1] == "could not reach the SMTP server: TLS handshake failed", found
        assert found[ids["starttls"]][1] == "could not reach the SMTP server: TLS handshake failed", found
        # Plain smtp:// never upgrades by itself: this server demands STARTTLS (530).
        assert found[ids["plain"]][1] == "the SMTP server refused the mail (530)", found
        assert receiver.verified == [] and starttls.mails == [] and implicit.mails == []
    finally:
        server.stop()
        receiver.stop()
        starttls.stop()
        implicit.stop()


def test_a_bad_ca_file_stops_the_start_with_a_clear_message(tmp_path):
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    config = tmp_path / "kairos.toml"
    config.write_text(f'[delivery]\nca_file = "{bad}"\n')
    server = Kairos(tmp_path / "data", extra_args=["--config", str(config)])
    try:
        server.start()
        raise AssertionError("kairos started with a bad ca_file")
    except RuntimeError as error:
        assert "delivery.ca_file" in str(error) and "PEM" in str(error), error
    finally:
        server.stop()
