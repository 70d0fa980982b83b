"""Decisions across `kill -9`, 20 rounds: events flow while journeys (an
event trigger, an abandoned-cart wait, a once-per-person journey), an
audience sync and engine
checkpoints (one every 300 events, so kills land during their writes) are
active; the server is killed at random moments and restarted on the same
data directory. Afterwards: no acknowledged event is lost or stored twice,
every decision was taken exactly once (one message per triggering event,
one per abandoned cart, none for a bought cart, one sync change per new
buyer, one welcome per visitor however often they came, and the welcome
journey's `entered` counter equal to the visitors), and no message was
delivered under two webhook ids."""

import os
import random
import threading
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import requests

from conftest import Kairos
from test_journeys import Receiver, destination, wait_for

ROUNDS = 20
CONFIG = """
[delivery]
retry_schedule = ["100ms"]
max_attempts = 20
timeout = "2s"
"""


class Load(threading.Thread):
    """Sends batches until stopped; remembers the batches answered 200."""

    def __init__(self, server: Kairos, key: str, round_number: int, rng: random.Random):
        super().__init__(daemon=True)
        self.server, self.key, self.round, self.rng = server, key, round_number, rng
        self.stopping = threading.Event()
        self.acknowledged = []

    def batch(self, number: int) -> list:
        # The order comes a second after the add (same-instant events are
        # not "followed by" each other).
        added = datetime.now(timezone.utc)
        bought = added + timedelta(seconds=1)
        events = []
        for i in range(5):
            person = f"r{self.round}-{number}-{i}"
            cart = f"cart-{person}"
            events.append({"type": "track", "event": "Product Added", "userId": person,
                           "messageId": f"add-{person}", "timestamp": added.isoformat(),
                           "properties": {"cart_id": cart}})
            if self.rng.random() < 0.5:  # bought in the same batch: never abandoned
                events.append({"type": "track", "event": "Order Completed", "userId": person,
                               "messageId": f"order-{person}", "timestamp": bought.isoformat(),
                               "properties": {"cart_id": cart, "revenue": 10}})
            # Two visits: the once-per-person journey welcomes them once.
            # Both are in one batch, so the follower decides them in one
            # step and must see the entry it recorded for the first.
            for visit in (1, 2):
                events.append({"type": "track", "event": "Session Started", "userId": person,
                               "messageId": f"visit-{person}-{visit}", "timestamp": added.isoformat()})
        return events

    def run(self):
        number = 0
        while not self.stopping.is_set():
            number += 1
            events = self.batch(number)
            try:
                r = requests.post(self.server.base_url + "/v1/batch", json={"batch": events},
                                  headers=Kairos.basic(self.key), timeout=5)
            except requests.RequestException:
                continue
            if r.status_code == 200:
                self.acknowledged.extend(event["messageId"] for event in events)


def setup(server: Kairos, receiver: Receiver) -> str:
    destination(server, receiver)
    for body in [
        {"name": "thanks", "trigger": {"event": "Order Completed"}, "steps": [{"send": {"destination": "hooks"}}]},
        {"name": "abandoned", "trigger": {"event": "Product Added", "not_followed_by": "Order Completed",
                                          "within": "2s", "key": "cart_id"},
         "steps": [{"send": {"destination": "hooks"}}]},
        {"name": "welcome", "trigger": {"event": "Session Started"}, "entry": "once",
         "steps": [{"send": {"destination": "hooks"}}]},
    ]:
        r = server.admin("POST", "/v1/journeys", json=body)
        assert r.status_code == 201, r.text
    r = server.admin("POST", "/v1/audiences", json={"name": "buyers", "definition": 'performed "Order Completed"'})
    assert r.status_code == 201, r.text
    r = server.admin("POST", "/v1/audience-syncs", json={
        "name": "crm", "audience": "buyers", "destination": "hooks", "batch_size": 20, "max_wait": "1s"})
    assert r.status_code == 201, r.text
    return server.create_source("shop")["write_key"]


def test_twenty_kills_lose_no_event_and_take_no_decision_twice(tmp_path):
    seed = int(os.environ.get("KAIROS_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    config = tmp_path / "kairos.toml"
    config.write_text(CONFIG)
    receiver = Receiver().start()
    server = Kairos(tmp_path / "data", extra_args=["--config", str(config)],
                    env={"KAIROS_CHECKPOINT_EVERY_EVENTS": "300"})
    server.start()
    acknowledged = []
    try:
        key = setup(server, receiver)
        for round_number in range(ROUNDS):
            load = Load(server, key, round_number, rng)
            load.start()
            time.sleep(rng.uniform(0.3, 1.5))
            server.kill9()
            load.stopping.set()
            load.join()
            acknowledged.extend(load.acknowledged)
            server.start()
        # Every wait has run out and every delivery is made.
        time.sleep(2.5)
        stored = [event["messageId"] for event in server.events()]
        assert wait_for(lambda: settled(receiver), 60), f"seed {seed}"
        welcome_counts = server.admin("GET", "/v1/journeys/welcome").json()["counts"]
    finally:
        server.stop()
        receiver.stop()

    ours = [message_id for message_id in stored if message_id.startswith(("add-", "order-", "visit-"))]
    assert len(ours) == len(set(ours)), f"seed {seed}: an event stored twice"
    missing = set(acknowledged) - set(ours)
    assert not missing, f"seed {seed}: acknowledged events lost: {sorted(missing)[:5]}"
    assert receiver.failures == [], receiver.failures

    # One webhook id per decision, one decision per webhook id.
    decisions_by_id = defaultdict(set)
    for webhook_id, payload in receiver.verified:
        data = payload["data"]
        if payload["type"] == "audience.sync":
            for change in data["changes"]:
                decisions_by_id[webhook_id].add(("sync", change["identifier"]["value"], change["action"]))
        else:
            decisions_by_id[webhook_id].add((data["journey"]["name"], data["event"]["messageId"]))
    ids_by_decision = defaultdict(set)
    for webhook_id, decisions in decisions_by_id.items():
        for decision in decisions:
            ids_by_decision[decision].add(webhook_id)
    twice = {decision: ids for decision, ids in ids_by_decision.items() if len(ids) > 1}
    assert not twice, f"seed {seed}: decided or delivered under two ids: {list(twice.items())[:3]}"

    orders = {m for m in ours if m.startswith("order-")}
    thanked = {d[1] for d in ids_by_decision if d[0] == "thanks"}
    assert thanked == orders, f"seed {seed}: {len(orders - thanked)} orders without, {len(thanked - orders)} extra"
    bought = {m.removeprefix("order-") for m in orders}
    adds = {m.removeprefix("add-") for m in ours if m.startswith("add-")}
    abandoned = {d[1].removeprefix("add-") for d in ids_by_decision if d[0] == "abandoned"}
    assert abandoned == adds - bought, \
        f"seed {seed}: abandoned-cart messages differ: {len(adds - bought - abandoned)} missing " \
        f"(e.g. {sorted(adds - bought - abandoned)[:3]}), {len(abandoned - (adds - bought))} extra " \
        f"(e.g. {sorted(abandoned - (adds - bought))[:3]})"
    synced = {d[1] for d in ids_by_decision if d[0] == "sync" and d[2] == "entered"}
    assert synced == bought, f"seed {seed}: {len(bought - synced)} buyers not synced, {len(synced - bought)} extra"
    assert len(orders) > 50, "the rounds must carry load"

    # `"entry": "once"`: exactly one welcome per person who visited (none
    # lost to an entry recorded before a crash, none twice), and the
    # counter counted each entry once.
    visitors = {m.removeprefix("visit-").rsplit("-", 1)[0] for m in ours if m.startswith("visit-")}
    welcomes = defaultdict(set)
    for webhook_id, payload in receiver.verified:
        data = payload["data"]
        if payload["type"] != "audience.sync" and data["journey"]["name"] == "welcome":
            welcomes[data["profile"]["identifier"]["value"]].add(webhook_id)
    lost = visitors - set(welcomes)
    assert not lost, f"seed {seed}: {len(lost)} visitors never welcomed, e.g. {sorted(lost)[:3]}"
    assert set(welcomes) == visitors, f"seed {seed}: welcomes for people who never visited"
    twice = {person: ids for person, ids in welcomes.items() if len(ids) > 1}
    assert not twice, f"seed {seed}: welcomed more than once: {list(twice.items())[:3]}"
    assert welcome_counts["entered"] == len(visitors), \
        f"seed {seed}: entered {welcome_counts['entered']}, visitors {len(visitors)}"


def settled(receiver: Receiver) -> bool:
    """No new request for a second."""
    count = len(receiver.verified)
    time.sleep(1.0)
    return count == len(receiver.verified) and count > 0
