"""One decoding of an event's `properties` serves every reader where the
event is applied (issue 13, item 3): the models' features, the audiences
and the replay's reading of announcements see the same values from one
event — a null `revenue` falls back to `total` for features, the audience
sums `total`, a preview of the same definition over stored history agrees,
and a restart (replay) announces nothing twice."""

import math

from conftest import Kairos
from test_journeys import send, set_clock, wait_for

NOW = "2030-03-01T12:00:00Z"
# Kairos' logistic format: score = sigmoid(-2 + 0.1 * revenue).
REVENUE_MODEL = {"means": [0.0], "scales": [1.0], "intercept": -2.0, "weights": [0.1]}
BIG_SPENDERS = 'sum total of "Order Completed" within 30d > 30'


def announcements(server):
    return [(e["event"], e["properties"]["audience"]) for e in server.events()
            if e.get("event") in ("Audience Entered", "Audience Exited")]


def test_features_audiences_previews_and_replay_read_the_same_properties(tmp_path):
    server = Kairos(tmp_path / "data", extra_args=["--clock", "manual"]).start()
    try:
        set_clock(server, NOW)
        r = server.admin("POST", "/v1/models", json={
            "name": "value", "format": "logistic", "model": REVENUE_MODEL, "mode": "active",
            "inputs": ["profile.revenue"]})
        assert r.status_code == 201, r.text
        r = server.admin("POST", "/v1/audiences", json={"name": "big spenders", "definition": BIG_SPENDERS})
        assert r.status_code == 201, r.text
        key = server.create_source("shop")["write_key"]
        send(server, key, [{"type": "track", "event": "Order Completed", "userId": "ann", "messageId": "o-1",
                            "timestamp": NOW, "properties": {"revenue": None, "total": 40, "product_id": "p1"}}])

        view = server.admin("GET", "/v1/profiles/user_id:ann").json()
        assert abs(view["scores"]["value"] - 1 / (1 + math.exp(-(-2.0 + 0.1 * 40)))) < 1e-12, view
        assert view["audiences"] == ["big spenders"], view
        assert wait_for(lambda: announcements(server) == [("Audience Entered", "big spenders")])
        preview = server.admin("POST", "/v1/audiences/preview", json={"definition": BIG_SPENDERS})
        assert preview.status_code == 200, preview.text
        assert preview.json()["size"] == 1, preview.text

        # The replay reads the announcement's properties to know what was
        # announced: nothing is announced again, the score is the same.
        server.kill9()
        server.start()
        set_clock(server, "2030-03-01T12:00:01Z")
        view = server.admin("GET", "/v1/profiles/user_id:ann").json()
        assert view["audiences"] == ["big spenders"], view
        assert abs(view["scores"]["value"] - 1 / (1 + math.exp(-2.0))) < 1e-12, view
        assert announcements(server) == [("Audience Entered", "big spenders")]
    finally:
        server.stop()
