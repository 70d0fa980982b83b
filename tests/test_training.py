"""Training on Kairos' own data (issue 6): the features declared once give
training rows from stored history (`POST /v1/training-rows`), computed by
the very code that serves, so a row equals what the live profile scored;
`POST /v1/models/{name}/train` trains Kairos' propensity model on them,
registers the version and scores live events with it at once; restart
keeps it. Bad requests are named."""

import io
import random

import pandas as pd
import requests

from conftest import Kairos
from test_journeys import send, set_clock, start_kairos, wait_for

FEATURES = ["session.product_views", "session.cart_adds", "session.duration_seconds", "context.hour"]
SPEC = {"features": FEATURES, "label": {"event": "Order Completed", "within": "30m"}, "at": ["Product Viewed"]}


def at(minute: int) -> str:
    """A time on 2030-01-01 (minute 0 = 00:00), ISO 8601."""
    return pd.Timestamp("2030-01-01T00:00:00Z") + pd.Timedelta(minutes=minute)


def iso(ts) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def session(user: str, start: int, views: int, buys: bool, delay: int = 5) -> list:
    events = [{"type": "track", "event": "Product Viewed", "userId": user, "messageId": f"{user}-v{i}",
               "timestamp": iso(at(start + i)), "properties": {"product_id": f"p{i}"}} for i in range(views)]
    if buys:
        events.append({"type": "track", "event": "Order Completed", "userId": user, "messageId": f"{user}-o",
                       "timestamp": iso(at(start + views + delay)), "properties": {"revenue": 20}})
    return events


def rows_csv(server: Kairos, spec=SPEC):
    r = server.admin("POST", "/v1/training-rows", json=spec)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    return pd.read_csv(io.StringIO(r.text)), r.headers


def test_rows_from_history_train_a_model_that_scores_live(tmp_path):
    server = start_kairos(tmp_path, extra_args=["--clock", "manual"])
    try:
        set_clock(server, "2030-01-01T00:00:00Z")
        key = server.create_source("shop")["write_key"]
        # Nothing stored yet: training says what is missing.
        r = server.admin("POST", "/v1/models/propensity/train", json=SPEC)
        assert r.status_code == 422 and "training needs at least 50 rows" in r.json()["detail"], r.text
        # Bad requests are named.
        r = server.admin("POST", "/v1/training-rows", json={**SPEC, "features": ["trait.plan"]})
        assert r.status_code == 400 and "leak the future" in r.json()["detail"], r.text
        r = server.admin("POST", "/v1/training-rows", json={**SPEC, "label": {"event": "Order Completed", "within": "soon"}})
        assert r.status_code == 400 and "not a duration" in r.json()["detail"], r.text
        r = server.admin("POST", "/v1/training-rows", json={**SPEC, "sample": 3})
        assert r.status_code == 400 and "sample" in r.json()["detail"], r.text

        # 300 shoppers, one session each: the more products viewed, the
        # likelier an order 5 minutes after the last view. One buys too late
        # (45 minutes after), which is no positive within 30m.
        chance = random.Random(7)
        events, expected = [], {}
        for n in range(300):
            views = 1 + n % 8
            buys = chance.random() < views / 9
            events += session(f"s{n}", start=n * 60, views=views, buys=buys)
            expected[f"s{n}"] = (views, buys)
        events += session("late", start=0, views=3, buys=True, delay=45)
        for chunk in range(0, len(events), 200):
            send(server, key, events[chunk:chunk + 200])
        set_clock(server, "2030-01-20T00:00:00Z")

        rows, headers = rows_csv(server)
        assert list(rows.columns) == ["profile", "at", *FEATURES, "label"]
        assert len(rows) == sum(views for views, _ in expected.values()) + 3 == int(headers["kairos-rows"])
        assert int(headers["kairos-censored-rows"]) == 0
        late_id = server.admin("GET", "/v1/profiles/user_id:late").json()["id"]
        late = rows[rows.profile == late_id]
        assert list(late["session.product_views"]) == [1, 2, 3] and late["label"].sum() == 0, late
        # Per person: one row per view, counting up; label = bought within 30m.
        by_views = rows.groupby("profile")["session.product_views"].max()
        assert sorted(by_views.value_counts().index) == list(range(1, 9))
        assert rows["label"].sum() == sum(views for views, buys in expected.values() if buys)
        assert (rows["session.duration_seconds"] == (rows["session.product_views"] - 1) * 60).all()

        # Train: rows built the same way, a model registered and serving.
        r = server.admin("POST", "/v1/models/propensity/train", json={**SPEC, "mode": "active"})
        assert r.status_code == 201, r.text
        trained = r.json()
        assert trained["version"] == 1 and trained["format"] == "propensity" and trained["inputs"] == FEATURES
        assert trained["training"]["rows"] == len(rows) and trained["training"]["cv_auc"] > 0.6, trained

        # Live: a new shopper's score is the model on exactly the row the
        # history export gives for that moment (training = serving).
        set_clock(server, "2030-01-21T00:00:00Z")
        live = session("zed", start=20 * 24 * 60, views=6, buys=False)
        send(server, key, live)
        def zed_score():
            r = server.admin("GET", "/v1/profiles/user_id:zed")
            return r.status_code == 200 and r.json().get("scores", {}).get("propensity")
        assert wait_for(lambda: zed_score() is not None and zed_score() is not False)
        score = zed_score()
        set_clock(server, "2030-01-22T00:00:00Z")
        rows, _ = rows_csv(server)
        zed_row = rows[rows["session.product_views"] == 6].iloc[-1]
        r = server.admin("POST", "/v1/models/propensity/score", json={"rows": [[float(zed_row[f]) for f in FEATURES]]})
        assert r.status_code == 200, r.text
        assert abs(r.json()["scores"][0]["propensity"] - score) < 1e-9, (r.json(), score)

        # More views, higher propensity; and it all survives a restart.
        send(server, key, session("amy", start=20 * 24 * 60 + 100, views=1, buys=False))
        assert wait_for(lambda: server.admin("GET", "/v1/profiles/user_id:amy").json().get("scores", {}).get("propensity") is not None)
        amy = server.admin("GET", "/v1/profiles/user_id:amy").json()["scores"]["propensity"]
        assert amy < score
        server.restart()
        assert server.admin("GET", "/v1/profiles/user_id:zed").json()["scores"]["propensity"] == score
        models = server.admin("GET", "/v1/models").json()["models"]
        assert [(m["name"], m["version"], m["mode"]) for m in models] == [("propensity", 1, "active")]
    finally:
        server.stop()


def test_churn_trained_on_cdnow_events_reproduces_the_published_fit(tmp_path):
    """The CDNOW sample's calibration-period orders sent as events over HTTP;
    BG/NBD fitted through the API from stored history (the stream features'
    repeat days, recency and age as of the clock) reproduces Fader, Hardie &
    Lee's parameters within 1%, and scores every buyer."""
    from conftest import shared_data
    orders = []
    with open(shared_data("cdnow/CDNOW_sample.txt")) as file:
        for n, line in enumerate(file):
            _, customer, date, cds, dollars = line.split()
            if date <= "19970930":
                orders.append({"type": "track", "event": "Order Completed", "userId": f"c{int(customer)}",
                               "messageId": f"cdnow-{n}", "timestamp": f"{date[:4]}-{date[4:6]}-{date[6:]}T12:00:00Z",
                               "properties": {"revenue": float(dollars), "quantity": int(cds)}})
    server = start_kairos(tmp_path, extra_args=["--clock", "manual"])
    try:
        set_clock(server, "1997-09-30T12:00:00Z")
        key = server.create_source("cdnow")["write_key"]
        r = server.admin("POST", "/v1/models/churn/train", json={"insight": "churn"})
        assert r.status_code == 422, r.text
        r = server.admin("POST", "/v1/models/churn/train", json={"insight": "churn", "features": ["session.events"]})
        assert r.status_code == 400 and "takes no" in r.json()["detail"], r.text
        for chunk in range(0, len(orders), 250):
            send(server, key, orders[chunk:chunk + 250])
        r = server.admin("POST", "/v1/models/churn/train", json={"insight": "churn", "mode": "active"})
        assert r.status_code == 201, r.text
        trained = r.json()
        fit = trained["training"]
        assert fit["customers"] == 2357, fit
        for name, published in [("r", 0.2426), ("alpha", 4.4135), ("a", 0.7929), ("b", 2.4258)]:
            assert abs(fit[name] - published) / published < 0.01, (name, fit[name], published)
        assert trained["format"] == "bgnbd" and trained["outputs"] == ["churn", "churn_expected"]

        # Served from the next event on; after a restart (replay) every buyer
        # has them, as of the clock's day: P(alive) is the closed form with
        # the fitted parameters (c1 bought on 1997-01-01, 01-18 and 08-02).
        r = server.admin("POST", "/v1/audiences", json={"name": "lapsing", "definition": "score churn < 0.5"})
        assert r.status_code == 201, r.text
        server.restart()
        for customer in ["c1", "c2", "c1000"]:
            scores = server.admin("GET", f"/v1/profiles/user_id:{customer}").json()["scores"]
            assert 0 < scores["churn"] <= 1 and scores["churn_expected"] > 0, scores

        def p_alive(x, t_x, age):
            return 1 / (1 + fit["a"] / (fit["b"] + x - 1) * ((fit["alpha"] + age) / (fit["alpha"] + t_x)) ** (fit["r"] + x))
        def c1():
            return server.admin("GET", "/v1/profiles/user_id:c1").json()["scores"]["churn"]
        assert abs(c1() - p_alive(2, 213 / 7, 272 / 7)) < 1e-9, c1()
        lapsing = server.admin("GET", "/v1/audiences/lapsing").json()["size"]

        # Nine months without an order: time alone lowers P(alive), exactly,
        # and the audience on it grows — no event involved.
        set_clock(server, "1998-06-30T12:00:00Z")
        assert abs(c1() - p_alive(2, 213 / 7, 545 / 7)) < 1e-9, c1()
        assert server.admin("GET", "/v1/audiences/lapsing").json()["size"] > lapsing
    finally:
        server.stop()
