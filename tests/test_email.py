"""Email journeys end to end with a real SMTP server (aiosmtpd): templates in
minijinja rendered per person (defaults, loops, computed traits), text and
HTML parts, the recipient from the profile, the SMTP server down then up,
a person without an address, and template errors named at creation."""

import email
import email.policy
import time

import requests
from aiosmtpd.controller import Controller

from conftest import Kairos, free_port

CONFIG = """
[delivery]
retry_schedule = ["200ms"]
max_attempts = 20
timeout = "2s"
"""


class Mailbox:
    """A real SMTP server on loopback keeping what it receives."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.mails = []
        self.controller = None

    async def handle_DATA(self, server, session, envelope):
        self.mails.append((envelope.rcpt_tos, email.message_from_bytes(envelope.content, policy=email.policy.default)))
        return "250 OK"

    def start(self):
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self):
        if self.controller:
            self.controller.stop()
            self.controller = None


def wait_for(predicate, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


TEMPLATE = {
    "subject": "Thanks, {{ traits.first_name | default(\"there\") }}!",
    "text": "You bought {% for p in event.properties.products %}{{ p.name }}{% if not loop.last %}, {% endif %}{% endfor %}. "
            "Orders in 90 days: {{ computed.orders_90d }}.",
    "html": "<p>Hi {{ traits.first_name | default(\"there\") | upper }}</p>",
}


def test_email_journeys_render_per_person_and_survive_an_smtp_outage(tmp_path):
    mailbox = Mailbox()  # down at first
    config = tmp_path / "kairos.toml"
    config.write_text(CONFIG)
    server = Kairos(tmp_path / "data", extra_args=["--config", str(config)]).start()
    try:
        r = server.admin("POST", "/v1/destinations", json={"type": "email", "name": "mailer",
                                                            "url": f"smtp://127.0.0.1:{mailbox.port}", "from": "Shop <hello@shop.example>"})
        assert r.status_code == 201 and "secret" not in r.json(), r.text
        assert server.admin("POST", "/v1/computed-traits", json={"name": "orders_90d", "definition": 'count "Order Completed" within 90d'}).status_code == 201
        r = server.admin("POST", "/v1/journeys", json={"name": "thanks", "trigger": {"event": "Order Completed"},
                                                        "steps": [{"send": {"destination": "mailer", "template": TEMPLATE}}]})
        assert r.status_code == 201, r.text
        key = server.create_source("shop")["write_key"]
        products = [{"name": "Trail Shoes"}, {"name": "Wool Socks"}]
        events = [
            {"type": "identify", "userId": "ada", "messageId": "id-ada", "traits": {"email": "ada@example.org", "first_name": "Ada"}},
            {"type": "identify", "userId": "bob", "messageId": "id-bob", "traits": {"email": "bob@example.org"}},
            {"type": "track", "event": "Order Completed", "userId": "ada", "messageId": "o-ada", "properties": {"products": products}},
            {"type": "track", "event": "Order Completed", "userId": "bob", "messageId": "o-bob", "properties": {"products": products[:1]}},
            {"type": "track", "event": "Order Completed", "userId": "nomail", "messageId": "o-nomail", "properties": {"products": []}},
        ]
        r = requests.post(server.base_url + "/v1/batch", json={"batch": events}, headers=Kairos.basic(key), timeout=10)
        assert r.status_code == 200, r.text
        # The SMTP server is down: attempts fail and are retried.
        assert wait_for(lambda: (d := server.admin("GET", "/v1/profiles/user_id:ada/deliveries").json()["deliveries"])
                        and d[0]["attempts"] >= 2)
        assert "SMTP" in server.admin("GET", "/v1/profiles/user_id:ada/deliveries").json()["deliveries"][0]["last_error"]
        mailbox.start()
        assert wait_for(lambda: len(mailbox.mails) == 2), mailbox.mails
        by_recipient = {tuple(rcpt)[0]: mail for rcpt, mail in mailbox.mails}
        ada = by_recipient["ada@example.org"]
        assert ada["Subject"] == "Thanks, Ada!" and ada["From"] == "Shop <hello@shop.example>" and ada["To"] == "ada@example.org"
        assert ada.get_body(preferencelist=("plain",)).get_content().strip() == "You bought Trail Shoes, Wool Socks. Orders in 90 days: 1."
        assert ada.get_body(preferencelist=("html",)).get_content().strip() == "<p>Hi ADA</p>"
        bob = by_recipient["bob@example.org"]
        assert bob["Subject"] == "Thanks, there!"
        assert bob["Message-ID"].startswith("<msg_") and bob["Message-ID"].endswith("@kairos>")
        for user in ("ada", "bob"):
            assert [d["status"] for d in server.admin("GET", f"/v1/profiles/user_id:{user}/deliveries").json()["deliveries"]] == ["delivered"]
        nomail = server.admin("GET", "/v1/profiles/user_id:nomail/deliveries").json()["deliveries"]
        assert nomail[0]["status"] == "blocked" and "no email address" in nomail[0]["last_error"], nomail
        time.sleep(0.5)
        assert len(mailbox.mails) == 2, "each mail sent once"
    finally:
        server.stop()
        mailbox.stop()


def test_email_template_errors_are_named_at_creation(kairos):
    assert kairos.admin("POST", "/v1/destinations", json={"type": "email", "name": "m", "url": "smtp://127.0.0.1:2525",
                                                          "from": "a@b.example"}).status_code == 201
    r = kairos.admin("POST", "/v1/destinations", json={"type": "email", "name": "m2", "url": "smtp://127.0.0.1:2525"})
    assert r.status_code == 400 and r.json()["code"] == "from_invalid"
    r = kairos.admin("POST", "/v1/journeys", json={"name": "j", "trigger": {"event": "A"}, "steps": [{"send": {"destination": "m"}}]})
    assert r.status_code == 400 and "template" in r.json()["detail"], r.text
    r = kairos.admin("POST", "/v1/journeys", json={"name": "j", "trigger": {"event": "A"},
                                                    "steps": [{"send": {"destination": "m", "template": {"subject": "{{ oops", "text": "x"}}}]})
    assert r.status_code == 400 and "template subject" in r.json()["detail"], r.text
