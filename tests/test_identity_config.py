"""Workspace identity rules, timeline retention and trait precedence from the
config file, and bulk CRM trait imports (API and `kairos import --traits`),
end to end against the real binary."""

import json
import os
import subprocess

import requests

from conftest import ADMIN_TOKEN, Kairos, kairos_binary

CONFIG = """
[identity]
custom_types = ["loyalty_id"]
limits = { loyalty_id = 1, email = 2 }
priority = ["user_id", "loyalty_id", "email", "phone", "anonymous_id"]
blocked_values = ["", "null", "guest@example.org"]
default_calling_code = "49"

[profiles]
timeline_events_max = 3
source_precedence = ["crm-import"]
"""


def send(server: Kairos, key: str, events: list) -> dict:
    r = requests.post(server.base_url + "/v1/batch", json={"batch": events}, headers=Kairos.basic(key), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def profile(server, identifier):
    return server.admin("GET", f"/v1/profiles/{identifier}")


def start_with_config(tmp_path) -> Kairos:
    config = tmp_path / "kairos.toml"
    config.write_text(CONFIG)
    return Kairos(tmp_path / "data", extra_args=["--config", str(config)]).start()


def test_rules_retention_and_precedence_from_the_config_file(tmp_path):
    server = start_with_config(tmp_path)
    try:
        key = server.create_source("web")["write_key"]
        send(server, key, [
            # A custom type from context.externalIds links two devices.
            {"type": "track", "event": "A", "anonymousId": "d1", "messageId": "m1",
             "context": {"externalIds": [{"id": "L-77", "type": "loyalty_id", "collection": "users", "encoding": "none"}]}},
            {"type": "identify", "anonymousId": "d2", "messageId": "m2",
             "traits": {"loyalty_id": "L-77", "phone": "0151 5550 1234", "email": "guest@example.org"}},
        ])
        body = profile(server, "loyalty_id:L-77").json()
        identities = {(i["type"], i["value"]) for i in body["identities"]}
        assert identities == {("loyalty_id", "L-77"), ("anonymous_id", "d1"), ("anonymous_id", "d2"),
                              ("phone", "+4915155501234")}, "blocked email left out; phone in E.164 with +49"
        # Limit loyalty_id = 1: a second loyalty id on the same device stays apart.
        send(server, key, [{"type": "identify", "anonymousId": "d1", "messageId": "m3", "traits": {"loyalty_id": "L-88"}}])
        assert profile(server, "loyalty_id:L-88").json()["id"] != body["id"]

        # Retention: the timeline keeps the newest 3 events.
        send(server, key, [{"type": "track", "event": f"E{i}", "anonymousId": "d9", "messageId": f"r{i}",
                            "timestamp": f"2024-05-01T10:0{i}:00Z"} for i in range(6)])
        events = server.admin("GET", "/v1/profiles/anonymous_id:d9/events").json()["events"]
        assert [e["messageId"] for e in events] == ["r5", "r4", "r3"]

        # Precedence: CRM traits win over the web source's, however new.
        r = server.admin("POST", "/v1/profiles/import", json={"identifier_type": "loyalty_id", "records": [
            {"loyalty_id": "L-77", "tier": "gold", "timestamp": "2024-01-01T00:00:00Z"}]})
        assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
        send(server, key, [{"type": "identify", "anonymousId": "d1", "messageId": "m4",
                            "timestamp": "2025-01-01T00:00:00Z", "traits": {"tier": "bronze", "city": "Berlin"}}])
        traits = profile(server, "anonymous_id:d1").json()["traits"]
        assert traits["tier"] == "gold" and traits["city"] == "Berlin", traits
        server.restart()
        assert profile(server, "anonymous_id:d1").json()["traits"]["tier"] == "gold"
    finally:
        server.stop()


def test_bad_identity_config_is_reported_at_once(tmp_path):
    config = tmp_path / "kairos.toml"
    config.write_text('[identity]\ncustom_types = ["Bad-Name", "email"]\nlimits = { shoe_size = 2, user_id = 0 }\n'
                      'priority = ["user_id", "user_id"]\ndefault_calling_code = "abc"\n'
                      '[profiles]\ntimeline_max_age = "whenever"\n')
    result = subprocess.run([str(kairos_binary()), "serve", "--config", str(config), "--data-dir", str(tmp_path / "d")],
                            capture_output=True, text=True, timeout=30, env={**os.environ, "KAIROS_ADMIN_TOKEN": ADMIN_TOKEN})
    assert result.returncode == 2, result.stderr
    for expected in ['"Bad-Name"', '"email" is built in', 'unknown type "shoe_size"', "identity.limits.user_id",
                     'listed twice', 'default_calling_code', 'timeline_max_age']:
        assert expected in result.stderr, (expected, result.stderr)


def test_crm_import_through_the_cli_and_the_api(tmp_path):
    server = Kairos(tmp_path / "data").start()
    try:
        key = server.create_source("web")["write_key"]
        send(server, key, [{"type": "identify", "userId": "u-ada", "messageId": "w1",
                            "traits": {"email": "ada@example.org", "plan": "free"}}])
        csv_path = tmp_path / "crm.csv"
        csv_path.write_text("email,first_name,zip,phone\n"
                            "ADA@example.org,Ada,01234,+4915155500001\n"
                            ",NoEmail,99999,\n"
                            "grace@example.org,Grace,20095,\n"
                            "null,Blocked,1,\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAIROS_")}
        env.update(KAIROS_URL=server.base_url, KAIROS_ADMIN_TOKEN=ADMIN_TOKEN, NO_COLOR="1")
        report = tmp_path / "report.json"
        run = subprocess.run([str(kairos_binary()), "import", "--traits", "email", str(csv_path), "--report", str(report)],
                             capture_output=True, text=True, env=env, timeout=60)
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip().splitlines()[-1] == "rows=4 accepted=2 duplicates=0 suppressed=0 rejected=2", run.stdout
        rejected = json.loads(report.read_text())["rejected"]
        assert [row["line"] for row in rejected] == [3, 5], rejected
        assert "no \"email\" value" in str(rejected[0]["errors"]) and "blocked" in str(rejected[1]["errors"])

        ada = profile(server, "user_id:u-ada").json()
        assert ada["traits"]["first_name"] == "Ada" and ada["traits"]["zip"] == "01234" and ada["traits"]["plan"] == "free"
        assert ("phone", "+4915155500001") in {(i["type"], i["value"]) for i in ada["identities"]}
        assert profile(server, "email:grace@example.org").json()["traits"]["first_name"] == "Grace"

        again = subprocess.run([str(kairos_binary()), "import", "--traits", "email", str(csv_path)],
                               capture_output=True, text=True, env=env, timeout=60)
        assert "accepted=0 duplicates=2" in again.stdout, again.stdout + again.stderr

        unknown = server.admin("POST", "/v1/profiles/import", json={"identifier_type": "shoe_size", "records": [{"shoe_size": 9}]})
        assert unknown.status_code == 400 and unknown.json()["code"] == "identifier_type_unknown"
        empty = server.admin("POST", "/v1/profiles/import", json={"identifier_type": "email", "records": []})
        assert empty.status_code == 400
        assert requests.post(server.base_url + "/v1/profiles/import", json={}, timeout=5).status_code == 401
        server.kill9()
        server.start()
        assert profile(server, "email:grace@example.org").json()["traits"]["zip"] == "20095"
    finally:
        server.stop()
