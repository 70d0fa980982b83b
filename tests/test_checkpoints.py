"""Engine checkpoints through the real binary: a clean shutdown writes one
and the next start restores it (replaying only the log after it) with the
same profiles, memberships and computed values as before; a start after
`kill -9` restores the previous checkpoint and replays the tail, losing
nothing; an erasure replaces every checkpoint with one without the person,
so no checkpoint (and no checkpoint key) can bring them back."""

import re
from pathlib import Path

import requests

from conftest import Kairos


def send(server: Kairos, key: str, events: list):
    r = requests.post(server.base_url + "/v1/batch", json={"batch": events}, headers=Kairos.basic(key), timeout=10)
    assert r.status_code == 200, r.text


def metric(server: Kairos, name: str) -> float:
    text = server.admin("GET", "/metrics").text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} missing from /metrics"
    return float(found.group(1))


def checkpoint_files(data_dir: Path) -> list[str]:
    return sorted(path.name for path in (data_dir / "checkpoints").glob("*.kcp"))


def people(n: int, offset: int = 0) -> list:
    events = []
    for i in range(offset, offset + n):
        events.append({"type": "identify", "userId": f"u{i}", "anonymousId": f"a{i}", "messageId": f"i{i}",
                       "traits": {"email": f"p{i}@example.org", "plan": "pro" if i % 2 else "free"}})
        for j in range(i % 4):
            events.append({"type": "track", "event": "Order Completed", "userId": f"u{i}", "messageId": f"o{i}-{j}",
                           "properties": {"revenue": 10 * (j + 1)}})
    return events


def snapshot(server: Kairos, ids) -> dict:
    out = {}
    for i in ids:
        view = server.admin("GET", f"/v1/profiles/user_id:u{i}").json()
        out[i] = {key: view.get(key) for key in ("id", "traits", "computed", "audiences", "event_count", "merges", "scores")}
        out[i]["identities"] = sorted((x["type"], x["value"]) for x in view["identities"])
    return out


def test_a_clean_restart_restores_the_checkpoint_and_erasure_replaces_it(tmp_path):
    data_dir = tmp_path / "data"
    server = Kairos(data_dir).start()
    try:
        key = server.create_source()["write_key"]
        for name, definition in [("buyers", 'performed "Order Completed" within 30d'),
                                 ("pro", 'trait plan = "pro"')]:
            r = server.admin("POST", "/v1/audiences", json={"name": name, "definition": definition})
            assert r.status_code == 201, r.text
        r = server.admin("POST", "/v1/computed-traits",
                         json={"name": "revenue", "definition": 'sum revenue of "Order Completed"'})
        assert r.status_code == 201, r.text
        send(server, key, people(40))
        before = snapshot(server, range(40))
        assert before[3]["computed"]["revenue"] == 60 and "buyers" in before[3]["audiences"], before[3]
        assert metric(server, "kairos_engine_restored_seq") == 0

        # A clean shutdown writes a checkpoint; the start restores it.
        server.stop()
        assert len(checkpoint_files(data_dir)) == 1
        server.start()
        restored = metric(server, "kairos_engine_restored_seq")
        assert restored > 0
        assert snapshot(server, range(40)) == before

        # After kill -9: the checkpoint plus the log after it — nothing lost.
        send(server, key, people(10, offset=40))
        before = snapshot(server, range(50))
        server.kill9()
        server.start()
        assert metric(server, "kairos_engine_restored_seq") == restored
        assert snapshot(server, range(50)) == before

        # Erasure: the checkpoint (which held u7) is replaced by one without.
        old = checkpoint_files(data_dir)
        r = server.admin("DELETE", "/v1/profiles/user_id:u7")
        assert r.status_code == 200, r.text
        new = checkpoint_files(data_dir)
        assert len(new) == 1 and new != old, (old, new)
        server.kill9()
        server.start()
        assert metric(server, "kairos_engine_restored_seq") > 0
        assert server.admin("GET", "/v1/profiles/user_id:u7").status_code == 404
        del before[7]
        assert snapshot(server, [i for i in range(50) if i != 7]) == before
    finally:
        server.stop()
