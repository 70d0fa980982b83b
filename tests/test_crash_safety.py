"""Crash safety: an event acknowledged with 200 survives `kill -9`, exactly once.

Several threads load the server with /v1/batch requests (unique messageIds,
50-100 events each) and remember every batch answered 200. The server is
killed with SIGKILL at a random moment, restarted on the same data directory,
and every acknowledged messageId must be in the log exactly once; events
in flight at the kill may be stored or not, but never twice. Acknowledged
batches sent again after a restart must come back as duplicates
(deduplication survives restarts).
"""

import json
import os
import random
import threading
import time
import uuid
from collections import Counter

import requests

from conftest import Kairos

THREADS = 4
CYCLES = 8
EVENT_TYPES = ("track", "identify", "page")


def make_event(message_id, n):
    event_type = EVENT_TYPES[n % len(EVENT_TYPES)]
    event = {"type": event_type, "messageId": message_id, "userId": f"user-{n % 97}",
             "timestamp": "2024-05-01T12:00:00.000Z", "context": {"library": {"name": "crash-test"}}}
    if event_type == "track":
        event.update(event="Order Completed", properties={"revenue": n, "pad": "x" * (n % 100)})
    elif event_type == "identify":
        event["traits"] = {"email": f"u{n}@example.com"}
    else:
        event["name"] = "Home"
    return event


class Load:
    """Threads posting batches until stopped; keeps what was acknowledged."""

    def __init__(self, server, write_key, cycle, rng_seed):
        self.server = server
        self.headers = {**Kairos.basic(write_key), "Content-Type": "application/json"}
        self.cycle = cycle
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked = []        # batches (lists of events) answered 200
        self.in_flight = []    # batches whose request died with the server (an SDK retries these)
        self.unexpected = []   # answers that are neither 200 nor a retryable 503
        self.requests_sent = 0
        self.threads = [threading.Thread(target=self.run, args=(i, rng_seed + i), daemon=True)
                        for i in range(THREADS)]

    def start(self):
        for thread in self.threads:
            thread.start()

    def join(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)
            assert not thread.is_alive(), "a load thread hung"

    def run(self, index, seed):
        rng = random.Random(seed)
        session = requests.Session()
        url = self.server.base_url + "/v1/batch"
        counter = 0
        while not self.stop.is_set():
            events = []
            for _ in range(rng.randint(50, 100)):
                counter += 1
                events.append(make_event(f"c{self.cycle}-t{index}-{counter}-{uuid.uuid4().hex[:8]}", counter))
            body = json.dumps({"batch": events, "sentAt": "2024-05-01T12:00:01.000Z"})
            try:
                response = session.post(url, data=body, headers=self.headers, timeout=30)
            except requests.RequestException:
                with self.lock:
                    self.in_flight.append(events)
                if self.stop.is_set():
                    break
                time.sleep(0.01)  # killed under us; the main thread stops us shortly
                continue
            with self.lock:
                self.requests_sent += 1
                if response.status_code == 200:
                    answer = response.json()
                    if answer.get("accepted") != len(events) or answer.get("quarantined"):
                        self.unexpected.append(f"200 with {answer} for {len(events)} new events")
                    self.acked.append(events)
                elif response.status_code != 503:
                    self.unexpected.append(f"{response.status_code} {response.text[:300]}")
        session.close()


def stored_counts(server, source_id):
    """messageId -> times stored, and the last sequence number (reads the whole log)."""
    events = server.events(source_id)
    return Counter(event["messageId"] for event in events), max((e["seq"] for e in events), default=0)


def events_after(server, source_id, seq):
    page = server.admin("GET", "/v1/admin/events", params={"source": source_id, "after": str(seq), "limit": 1000})
    assert page.status_code == 200, page.text
    return page.json()["events"]


def test_kill9_never_loses_or_duplicates_acknowledged_events(tmp_path):
    seed = int(os.environ.get("KAIROS_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    server = Kairos(tmp_path / "data").start()
    try:
        source = server.create_source("crash")
        key = source["write_key"]
        all_acked = []
        history = []
        for cycle in range(CYCLES):
            load = Load(server, key, cycle, rng.randrange(1 << 30))
            load.start()
            delay = rng.uniform(0.3, 2.0)
            time.sleep(delay)
            server.kill9()
            load.join()
            assert not load.unexpected, f"seed {seed} cycle {cycle}: unexpected answers: {load.unexpected[:5]}"
            all_acked.extend(load.acked)
            history.append((cycle, round(delay, 2), load.requests_sent, sum(map(len, load.acked))))

            server.start()
            counts, last_seq = stored_counts(server, source["id"])
            acked_ids = [event["messageId"] for batch in all_acked for event in batch]
            missing = [m for m in acked_ids if counts[m] == 0]
            twice = {m: n for m, n in counts.items() if n > 1}
            context = f"seed {seed}, cycles (cycle, kill after s, requests, acked events): {history}"
            assert not missing, f"{len(missing)} acknowledged events lost after kill -9, e.g. {missing[:5]}; {context}"
            assert not twice, f"events stored more than once after kill -9: {list(twice.items())[:5]}; {context}"

            with requests.Session() as session:
                # Resend some acknowledged batches, from this and earlier cycles: all duplicates.
                for batch in rng.sample(all_acked, min(4, len(all_acked))):
                    r = session.post(server.base_url + "/v1/batch", json={"batch": batch}, headers=Kairos.basic(key),
                                     timeout=30)
                    assert r.status_code == 200, r.text
                    answer = r.json()
                    assert answer["accepted"] == 0 and answer["duplicates"] == len(batch), \
                        f"resent acknowledged batch after restart: {answer}; {context}"
                # Retry the batches that were in flight at the kill, as an SDK would: stored or not,
                # each event ends up stored once.
                for batch in load.in_flight:
                    r = session.post(server.base_url + "/v1/batch", json={"batch": batch}, headers=Kairos.basic(key),
                                     timeout=30)
                    assert r.status_code == 200, r.text
                    answer = r.json()
                    assert answer["accepted"] + answer["duplicates"] == len(batch), answer
                    all_acked.append(batch)
            retried = {event["messageId"] for batch in load.in_flight for event in batch}
            added = [e["messageId"] for e in events_after(server, source["id"], last_seq)]
            assert set(added) <= retried, f"resending acknowledged batches added events: {added[:3]}; {context}"
            assert len(added) == len(set(added)) and not set(added) & set(counts), \
                f"retried in-flight events stored twice: {context}"
            assert set(added) | {m for m in retried if counts[m]} == retried

        cycles_with_acks = sum(1 for _, _, _, acked in history if acked)
        assert cycles_with_acks >= CYCLES // 2, f"too little load got through to test anything: {history}"
        # A clean restart at the end changes nothing.
        server.restart()
        final, _ = stored_counts(server, source["id"])
        acked_ids = {event["messageId"] for batch in all_acked for event in batch}
        assert acked_ids <= set(final)
        assert max(final.values()) == 1
        # Only events this test sent are in the log.
        assert all(m.startswith("c") and "-t" in m for m in final)
        # The stored events are intact, not just present.
        by_id = {e["messageId"]: e for e in server.events(source["id"])}
        for batch in rng.sample(all_acked, min(5, len(all_acked))):
            for sent in batch:
                got = by_id[sent["messageId"]]
                assert got["type"] == sent["type"] and got["userId"] == sent["userId"], got
                if sent["type"] == "track":
                    assert got["properties"] == sent["properties"] and got["event"] == sent["event"], got
    finally:
        server.stop()
