"""What starts a journey (issue 12, item 10): live behaviour only. A
membership found while catching up — a definition computed over history,
a restart that replays the log under changed definitions — and an event
that was already history when it arrived start no journey, unless the
journey asks for it (`"entry": {"include_existing": true}` /
`"max_event_age"`). Live entries still do, and say what caused them."""

import time
from datetime import datetime, timedelta, timezone

import requests

from conftest import Kairos
from test_journeys import CONFIG, Receiver, destination, send, wait_for


def order(user: str, number: int, at=None) -> dict:
    event = {"type": "track", "event": "Order Completed", "userId": user, "messageId": f"o-{user}-{number}",
             "properties": {"total": 20}}
    if at:
        event["timestamp"] = at
    return event


def journey(server: Kairos, name: str, trigger: dict, entry=None):
    body = {"name": name, "trigger": trigger, "steps": [{"send": {"destination": "hooks"}}]}
    if entry is not None:
        body["entry"] = entry
    r = server.admin("POST", "/v1/journeys", json=body)
    assert r.status_code == 201, r.text


def journeys_of(receiver: Receiver) -> list:
    return sorted(payload["data"]["journey"]["name"] for _, payload in receiver.verified)


def start(tmp_path, definition: str) -> Kairos:
    config = tmp_path / "kairos.toml"
    config.write_text(CONFIG + f"\n[[audiences]]\nname = \"buyers\"\ndefinition = '{definition}'\n")
    return Kairos(tmp_path / "data", extra_args=["--config", str(config)]).start()


def test_catching_up_and_imported_history_start_no_journey_live_behaviour_does(tmp_path):
    receiver = Receiver().start()
    server = start(tmp_path, 'count "Order Completed" >= 3')
    try:
        destination(server, receiver)
        journey(server, "welcome buyers", {"audience_entered": "buyers"})
        journey(server, "every buyer", {"audience_entered": "buyers"}, entry={"include_existing": True})
        key = server.create_source("web")["write_key"]
        send(server, key, [order(f"h{n}", 1) for n in range(10)])  # one order each: not buyers yet
        time.sleep(1.0)
        assert receiver.verified == []

        # A changed definition computed over history: ten people are members
        # now. Only the journey that includes existing members starts.
        r = server.admin("PUT", "/v1/audiences/buyers", json={"definition": 'count "Order Completed" >= 1'})
        assert r.status_code == 200, r.text
        assert wait_for(lambda: len(receiver.verified) == 10, 10), journeys_of(receiver)
        time.sleep(1.0)
        assert journeys_of(receiver) == ["every buyer"] * 10
        announced = server.admin("GET", "/v1/profiles/user_id:h3/events").json()["events"]
        entered = [e for e in announced if e.get("event") == "Audience Entered"]
        assert entered and entered[-1]["properties"]["cause"] == "catch_up", entered

        # Live behaviour starts both, and the announcement names its cause.
        send(server, key, [order("live", 1)])
        assert wait_for(lambda: journeys_of(receiver).count("welcome buyers") == 1, 10), journeys_of(receiver)
        live = [payload for _, payload in receiver.verified if payload["data"]["journey"]["name"] == "welcome buyers"][0]
        assert live["data"]["event"]["properties"]["cause"] == "event"
        assert "cause_at" in live["data"]["event"]["properties"]

        # A restart under a wider definition (the config changed): everyone
        # who ever ordered is caught up — and welcomed by nobody again.
        send(server, key, [{"type": "track", "event": "Signed Up", "userId": f"s{n}", "messageId": f"su-s{n}"} for n in range(3)])
        time.sleep(0.5)
        before = len(receiver.verified)
        server.stop()
        server = start(tmp_path, 'performed "Order Completed" or performed "Signed Up"')
        send(server, key, [{"type": "track", "event": "Signed Up", "userId": "h-new", "messageId": "su-1"}])
        assert wait_for(lambda: len(receiver.verified) == before + 5, 10), receiver.verified[before:]
        time.sleep(1.0)
        new = sorted((p["data"]["journey"]["name"], p["data"]["profile"]["identifier"]["value"]) for _, p in receiver.verified[before:])
        assert new == [("every buyer", "h-new"), ("every buyer", "s0"), ("every buyer", "s1"), ("every buyer", "s2"),
                       ("welcome buyers", "h-new")], new
    finally:
        server.stop()
        receiver.stop()


def test_an_event_that_was_history_when_it_arrived_starts_no_journey(tmp_path):
    receiver = Receiver().start()
    config = tmp_path / "kairos.toml"
    config.write_text(CONFIG)
    server = Kairos(tmp_path / "data", extra_args=["--config", str(config)]).start()
    try:
        destination(server, receiver)
        journey(server, "thanks", {"event": "Order Completed"})
        journey(server, "thanks for last week too", {"event": "Order Completed"}, entry={"max_event_age": "7d"})
        r = server.admin("POST", "/v1/journeys", json={"name": "bad", "trigger": {"event": "X"}, "steps": [{"send": {"destination": "hooks"}}],
                                                       "entry": {"max_event_age": "soon"}})
        assert r.status_code == 400 and "entry.max_event_age" in r.text, r.text
        key = server.create_source("web")["write_key"]
        three_days_ago = (datetime.now(timezone.utc) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
        month_ago = (datetime.now(timezone.utc) - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
        r = requests.post(server.base_url + "/v1/import", json={"batch": [order("old", 1, month_ago), order("recent", 1, three_days_ago)]},
                          headers=Kairos.basic(key), timeout=10)
        assert r.status_code == 200, r.text
        send(server, key, [order("now", 1)])
        assert wait_for(lambda: len(receiver.verified) == 3, 10), journeys_of(receiver)
        time.sleep(1.0)
        people = sorted((payload["data"]["journey"]["name"], payload["data"]["profile"]["identifier"]["value"])
                        for _, payload in receiver.verified)
        assert people == [("thanks", "now"), ("thanks for last week too", "now"), ("thanks for last week too", "recent")], people
    finally:
        server.stop()
        receiver.stop()
