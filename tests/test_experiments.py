"""Experiments end to end against the real binary: create, assign (sticky
across a restart and an identity merge), convert through /v1/batch events,
results with the counts, holdouts, guardrails, the bandit, erasure, and
clear errors for bad input."""

import random
import time

import requests

from conftest import Kairos

EXPERIMENT = {
    "name": "hero-banner",
    "arms": [{"name": "control", "weight": 1}, {"name": "red", "weight": 1}],
    "control": "control",
    "metric": {"event": "Order Completed"},
    "guardrails": [{"event": "Support Contacted", "direction": "decrease"}],
}


def send(server: Kairos, key: str, events: list):
    r = requests.post(server.base_url + "/v1/batch", json={"batch": events}, headers=Kairos.basic(key), timeout=10)
    assert r.status_code == 200, r.text


def create(server: Kairos, definition=None, **changes) -> dict:
    r = server.admin("POST", "/v1/experiments", json={**(definition or EXPERIMENT), **changes})
    assert r.status_code == 201, r.text
    return r.json()


def assign(server: Kairos, experiment: str, profile: str) -> dict:
    r = server.admin("GET", f"/v1/experiments/{experiment}/assignment", params={"profile": profile})
    assert r.status_code == 200, r.text
    return r.json()


def results(server: Kairos, experiment: str) -> dict:
    r = server.admin("GET", f"/v1/experiments/{experiment}/results")
    assert r.status_code == 200, r.text
    return r.json()


def arm(answer: dict, name: str) -> dict:
    return next(a for a in answer["arms"] if a["name"] == name)


def wait_for(predicate, seconds=15.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def track(user_id=None, anonymous_id=None, event="Order Completed", n=0, **properties):
    who = {"userId": user_id} if user_id else {"anonymousId": anonymous_id}
    return {"type": "track", "event": event, **who, "messageId": f"{event}-{user_id or anonymous_id}-{n}",
            "properties": properties}


def test_assignment_is_sticky_and_conversions_count_once_after_exposure(kairos):
    key = kairos.create_source()["write_key"]
    experiment = create(kairos)
    assert experiment["id"].startswith("exp_") and experiment["status"] == "running"
    people = [f"u{i}" for i in range(60)]
    # u0 bought before being exposed: not an outcome.
    send(kairos, key, [track("u0", n=0)])
    arms = {}
    for person in people:
        answer = assign(kairos, experiment["id"], f"user_id:{person}")
        assert answer["new"] and answer["arm"] in ("control", "red")
        arms[person] = answer["arm"]
    assert set(arms.values()) == {"control", "red"}
    # Asked again: the same arm, not a new exposure.
    again = assign(kairos, experiment["id"], "user_id:u1")
    assert again["arm"] == arms["u1"] and not again["new"]
    # Every red buys twice, every third control once; reds contact support.
    buyers = [p for p in people if arms[p] == "red" or int(p[1:]) % 3 == 0]
    events = [track(p, n=n) for p in buyers for n in (1, 2) if arms[p] == "red" or n == 1]
    events += [track(p, event="Support Contacted", n=1) for p in people if arms[p] == "red"]
    send(kairos, key, events)
    expected = {name: sum(1 for p in buyers if arms[p] == name) for name in ("control", "red")}
    exposures = {name: sum(1 for p in people if arms[p] == name) for name in ("control", "red")}

    def counted():
        answer = results(kairos, experiment["id"])
        return all(arm(answer, name)["conversions"] == expected[name] for name in expected)

    assert wait_for(counted), results(kairos, experiment["id"])
    answer = results(kairos, experiment["id"])
    for name in ("control", "red"):
        got = arm(answer, name)
        assert got["exposures"] == exposures[name]
        assert got["rate"] == expected[name] / exposures[name]
        low, high = got["interval"]
        assert low <= got["rate"] <= high
    red = arm(answer, "red")
    assert red["rate"] == 1.0
    assert red["lift"] == red["rate"] / arm(answer, "control")["rate"] - 1
    assert red["lift_interval"][0] < red["lift"] < red["lift_interval"][1]
    assert 0 <= red["sequential"]["p_value"] <= 1
    assert answer["verdict"]["decision"] in ("keep_running", "treatment_better")
    # The guardrail: every red contacted support, no control did.
    guardrail = red["guardrails"][0]
    assert guardrail["event"] == "Support Contacted" and guardrail["count"] == exposures["red"]
    assert guardrail["degraded"] is True
    assert arm(answer, "control")["guardrails"][0]["count"] == 0
    # CUPED: u0's pre-exposure purchase is the covariate.
    assert "cuped" in red and red["cuped"]["theta"] is not None

    # A restart: the same arms, the same figures.
    before = results(kairos, experiment["id"])
    kairos.restart()
    for person in people[:10]:
        answer = assign(kairos, experiment["id"], f"user_id:{person}")
        assert answer["arm"] == arms[person] and not answer["new"]
    assert results(kairos, experiment["id"])["arms"] == before["arms"]


def test_a_merged_person_keeps_the_arm_of_the_identity_exposed_first(kairos):
    key = kairos.create_source()["write_key"]
    experiment = create(kairos)["id"]
    laptop = assign(kairos, experiment, "anonymous_id:laptop")["arm"]
    # A second device whose own arm differs.
    phone = next(f"phone-{i}" for i in range(100)
                 if assign(kairos, experiment, f"anonymous_id:phone-{i}")["arm"] != laptop)
    send(kairos, key, [
        {"type": "identify", "anonymousId": "laptop", "messageId": "m1", "traits": {"email": "grace@example.org"}},
        {"type": "identify", "anonymousId": phone, "messageId": "m2", "traits": {"email": "grace@example.org"}},
    ])
    assert wait_for(lambda: len(kairos.admin("GET", f"/v1/profiles/anonymous_id:{phone}").json()["identities"]) >= 3)
    for profile in (f"anonymous_id:{phone}", "anonymous_id:laptop", "email:grace@example.org"):
        assert assign(kairos, experiment, profile)["arm"] == laptop, profile
    # A purchase on the phone counts once, for the laptop's arm.
    send(kairos, key, [track(anonymous_id=phone, n=1), track(anonymous_id="laptop", n=2)])
    assert wait_for(lambda: arm(results(kairos, experiment), laptop)["conversions"] == 1)
    kairos.restart()
    assert assign(kairos, experiment, f"anonymous_id:{phone}")["arm"] == laptop
    answer = results(kairos, experiment)
    assert arm(answer, laptop)["conversions"] == 1
    assert sum(a["exposures"] for a in answer["arms"]) >= 2


def test_holdouts_are_excluded_and_reported(kairos):
    r = kairos.admin("PUT", "/v1/experiments/settings", json={"global_holdout": 0.2})
    assert r.status_code == 200 and r.json()["global_holdout"] == 0.2
    assert kairos.admin("GET", "/v1/experiments/settings").json()["global_holdout"] == 0.2
    first = create(kairos, holdout=0.25)["id"]
    second = create(kairos, name="other")["id"]
    groups = {}
    for i in range(400):
        answer = assign(kairos, first, f"user_id:h{i}")
        groups[answer["group"]] = groups.get(answer["group"], 0) + 1
        if answer["group"] in ("(holdout)", "(global holdout)"):
            assert answer["arm"] is None
        # The global holdout is the same people in every experiment.
        other = assign(kairos, second, f"user_id:h{i}")
        assert (other["group"] == "(global holdout)") == (answer["group"] == "(global holdout)")
    assert 40 <= groups["(global holdout)"] <= 120, groups
    assert 50 <= groups["(holdout)"] <= 110, groups
    answer = results(kairos, first)
    held = {h["group"]: h["exposures"] for h in answer["holdouts"]}
    assert held == {"(holdout)": groups["(holdout)"], "(global holdout)": groups["(global holdout)"]}
    assert sum(a["exposures"] for a in answer["arms"]) == 400 - sum(held.values())


def test_a_bandit_sends_more_people_to_the_better_arm(kairos):
    key = kairos.create_source()["write_key"]
    experiment = create(kairos, name="bandit", allocation="bandit",
                        arms=[{"name": "control"}, {"name": "good"}], guardrails=[])["id"]
    rng = random.Random(7)
    rates = {"control": 0.05, "good": 0.5}
    converted = {"control": 0, "good": 0}
    late = {"control": 0, "good": 0}
    for round_ in range(8):
        events = []
        for i in range(40):
            person = f"b{round_}-{i}"
            chosen = assign(kairos, experiment, f"user_id:{person}")["arm"]
            if round_ >= 5:
                late[chosen] += 1
            if rng.random() < rates[chosen]:
                converted[chosen] += 1
                events.append(track(person, n=round_))
        if events:
            send(kairos, key, events)
        assert wait_for(lambda: all(arm(results(kairos, experiment), name)["conversions"] == converted[name]
                                    for name in converted))
    assert late["good"] > 2 * late["control"], late
    answer = results(kairos, experiment)
    assert arm(answer, "good")["probability_best"] > 0.9


def test_erasure_forgets_exposures(kairos):
    key = kairos.create_source()["write_key"]
    experiment = create(kairos)["id"]
    send(kairos, key, [{"type": "identify", "userId": "gone", "messageId": "g1", "traits": {"plan": "x"}}])
    assert wait_for(lambda: kairos.admin("GET", "/v1/profiles/user_id:gone").status_code == 200)
    assign(kairos, experiment, "user_id:gone")
    assign(kairos, experiment, "user_id:stays")
    receipt = kairos.admin("DELETE", "/v1/profiles/user_id:gone")
    assert receipt.status_code == 200, receipt.text
    assert receipt.json()["outbox_erased"]["experiment_exposures"] == 1
    answer = results(kairos, experiment)
    assert sum(a["exposures"] for a in answer["arms"]) == 1


def test_stopping_and_deleting(kairos):
    experiment = create(kairos)["id"]
    before = assign(kairos, experiment, "user_id:early")["arm"]
    r = kairos.admin("POST", f"/v1/experiments/{experiment}/stop")
    assert r.status_code == 200 and r.json()["status"] == "stopped"
    assert assign(kairos, experiment, "user_id:early")["arm"] == before
    late = assign(kairos, experiment, "user_id:late")
    assert late["arm"] == "control" and late["exposed"] is False
    assert [e["id"] for e in kairos.admin("GET", "/v1/experiments").json()["experiments"]] == [experiment]
    assert kairos.admin("GET", f"/v1/experiments/hero-banner").json()["id"] == experiment
    assert kairos.admin("DELETE", f"/v1/experiments/{experiment}").status_code == 200
    assert kairos.admin("GET", f"/v1/experiments/{experiment}").status_code == 404


def test_bad_input_gets_clear_errors(kairos):
    def refused(body, status=400, *words):
        r = kairos.admin("POST", "/v1/experiments", json=body)
        assert r.status_code == status, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        for word in words:
            assert word in r.json()["detail"], r.json()
        return r.json()

    refused({**EXPERIMENT, "control": "blue"}, 400, "control", "not one of the arms")
    refused({**EXPERIMENT, "arms": [{"name": "only"}]}, 400, "arms", "2 to")
    refused({**EXPERIMENT, "arms": [{"name": "a"}, {"name": "b", "weight": -1}], "control": "a"}, 400, "weight")
    refused({**EXPERIMENT, "allocation": "greedy"}, 400, "allocation")
    refused({**EXPERIMENT, "holdout": 1.0}, 400, "holdout")
    refused({k: v for k, v in EXPERIMENT.items() if k != "metric"}, 400, "metric")
    create(kairos)
    assert refused(EXPERIMENT, 409)["code"] == "name_taken"
    r = kairos.admin("GET", "/v1/experiments/hero-banner/assignment")
    assert r.status_code == 400 and "profile" in r.json()["detail"]
    r = kairos.admin("GET", "/v1/experiments/hero-banner/assignment", params={"profile": "nocolon"})
    assert r.status_code == 400 and r.json()["code"] == "identifier_invalid"
    r = kairos.admin("GET", "/v1/experiments/exp_nope/results")
    assert r.status_code == 404 and "GET /v1/experiments" in r.json()["detail"]
    r = kairos.admin("GET", "/v1/experiments/hero-banner/results", params={"alpha": 2})
    assert r.status_code == 400 and "alpha" in r.json()["detail"]
    r = kairos.admin("PUT", "/v1/experiments/settings", json={"global_holdout": -0.1})
    assert r.status_code == 400 and "global_holdout" in r.json()["detail"]
    assert requests.get(kairos.base_url + "/v1/experiments", timeout=5).status_code == 401


def test_exposures_and_conversions_survive_kill_9_counted_once(kairos):
    key = kairos.create_source()["write_key"]
    experiment = create(kairos)["id"]
    arms = {f"k{i}": assign(kairos, experiment, f"user_id:k{i}")["arm"] for i in range(40)}
    # Acknowledged assignments are durable: a kill right after keeps them.
    kairos.kill9()
    kairos.start()
    for person, chosen in arms.items():
        answer = assign(kairos, experiment, f"user_id:{person}")
        assert answer["arm"] == chosen and not answer["new"], person
    buyers = [p for p in arms if int(p[1:]) % 2 == 0]
    send(kairos, key, [track(p, n=1) for p in buyers])
    kairos.kill9()  # maybe before the effects stage counted them
    kairos.start()
    expected = {name: sum(1 for p in buyers if arms[p] == name) for name in ("control", "red")}
    assert wait_for(lambda: {a["name"]: a["conversions"] for a in results(kairos, experiment)["arms"]} == expected)
    kairos.restart()
    time.sleep(0.5)
    assert {a["name"]: a["conversions"] for a in results(kairos, experiment)["arms"]} == expected


def test_a_continuous_metric_sums_the_value_per_exposed_person(kairos):
    key = kairos.create_source()["write_key"]
    experiment = create(kairos, name="revenue", metric={"event": "Order Completed", "value": "revenue"}, guardrails=[])["id"]
    arms = {f"r{i}": assign(kairos, experiment, f"user_id:r{i}")["arm"] for i in range(30)}
    spent = {p: (10.0 * (i % 4)) for i, p in enumerate(arms)}
    events = []
    for person, amount in spent.items():
        if amount:
            events += [track(person, n=1, revenue=amount), track(person, n=2, revenue=amount / 2)]
    send(kairos, key, events)
    totals = {name: sum(1.5 * spent[p] for p in arms if arms[p] == name) for name in ("control", "red")}
    sizes = {name: sum(1 for p in arms if arms[p] == name) for name in ("control", "red")}

    def summed():
        answer = results(kairos, experiment)
        return all(abs(arm(answer, name)["mean"] - totals[name] / sizes[name]) < 1e-9 for name in totals)

    assert wait_for(summed), results(kairos, experiment)
    red = arm(results(kairos, experiment), "red")
    assert red["conversions"] == sum(1 for p in arms if arms[p] == "red" and spent[p])
    low, high = red["mean_interval"]
    assert low <= red["mean"] <= high


def test_an_offer_s_content_tested_in_an_experiment_through_decide(kairos):
    """Experiments wired into decisions (issue 14 item 5): an offer names
    an experiment and a content variant per arm; `/v1/decide` exposes the
    person when it shows the offer (sticky, like the assignment API) and
    renders their arm's variant; results count their conversions."""
    r = kairos.admin("POST", "/v1/experiments", json={
        "name": "hero copy", "arms": [{"name": "plain"}, {"name": "bold"}], "control": "plain",
        "metric": {"event": "Order Completed"}})
    assert r.status_code == 201, r.text
    offer = {"name": "hero", "placements": ["home"], "content": {"web": {"title": "Spring sale"}},
             "experiment": {"name": "hero copy", "variants": {"bold": {"web": {"title": "SPRING SALE: 30% OFF"}}}}}
    r = kairos.admin("POST", "/v1/offers", json=offer)
    assert r.status_code == 201, r.text
    source = kairos.create_source("web")
    seen = {}
    for n in range(24):
        user = f"p{n}"
        body = {"profile": f"user_id:{user}", "placement": "home"}
        action = kairos.admin("POST", "/v1/decide", json=body).json()["actions"][0]
        group = action["experiment"]["group"]
        assert action["experiment"]["name"] == "hero copy"
        expected = "SPRING SALE: 30% OFF" if group == "bold" else "Spring sale"
        assert action["content"] == {"title": expected}, action
        # Sticky: the same arm at the next decision and on the assignment API.
        again = kairos.admin("POST", "/v1/decide", json=body).json()["actions"][0]
        assert again["experiment"]["group"] == group
        assignment = kairos.admin("GET", "/v1/experiments/hero copy/assignment", params={"profile": f"user_id:{user}"}).json()
        assert assignment["group"] == group and assignment["new"] is False
        seen[user] = group
    assert set(seen.values()) == {"plain", "bold"}, seen
    buyers = [user for user, group in seen.items() if group == "bold"][:3]
    r = requests.post(kairos.base_url + "/v1/batch", headers=Kairos.basic(source["write_key"]),
                      json={"batch": [track(user_id=user) for user in buyers]}, timeout=10)
    assert r.status_code == 200
    assert wait_for(lambda: arm(results(kairos, "hero copy"), "bold")["conversions"] == 3)
    assert arm(results(kairos, "hero copy"), "bold")["exposures"] == sum(1 for g in seen.values() if g == "bold")
    # Variants must name arms of an experiment that exists.
    bad = {**offer, "name": "hero 2", "experiment": {"name": "hero copy", "variants": {"italic": {"web": "x"}}}}
    r = kairos.admin("POST", "/v1/offers", json=bad)
    assert r.status_code == 400 and "not an arm" in r.json()["detail"], r.text
    bad["experiment"] = {"name": "nope", "variants": {"bold": {"web": "x"}}}
    r = kairos.admin("POST", "/v1/offers", json=bad)
    assert r.status_code == 400 and "no experiment" in r.json()["detail"], r.text


def test_a_journey_s_decide_step_exposes_the_person_and_sends_their_arm_s_content(kairos):
    """A journey's `decide` step showing an offer tested in an experiment
    exposes the person as `/v1/decide` does (one sticky assignment): each
    person's webhook carries their arm's content, the exposure is counted in
    the results, the arm is the assignment API's, and a person exposed
    first on a page keeps that arm when the journey reaches them."""
    from test_journeys import Receiver, destination

    r = kairos.admin("POST", "/v1/experiments", json={
        "name": "nudge copy", "arms": [{"name": "plain"}, {"name": "bold"}], "control": "plain",
        "metric": {"event": "Order Completed"}})
    assert r.status_code == 201, r.text
    r = kairos.admin("POST", "/v1/offers", json={
        "name": "free shipping", "placements": ["cart_nudge"], "content": {"web": {"title": "Free shipping"}},
        "experiment": {"name": "nudge copy", "variants": {"bold": {"web": {"title": "FREE SHIPPING TODAY"}}}}})
    assert r.status_code == 201, r.text
    receiver = Receiver().start()
    try:
        destination(kairos, receiver)
        r = kairos.admin("POST", "/v1/journeys", json={
            "name": "nudge", "trigger": {"event": "Cart Viewed"},
            "steps": [{"send": {"destination": "hooks", "decide": {"placement": "cart_nudge"}}}]})
        assert r.status_code == 201, r.text
        key = kairos.create_source("web")["write_key"]
        # One person is exposed first on a page, as an anonymous visitor.
        page = kairos.admin("POST", "/v1/decide", json={"profile": "anonymous_id:visitor", "placement": "cart_nudge"})
        first_group = page.json()["actions"][0]["experiment"]["group"]
        send(kairos, key, [{"type": "identify", "userId": "known", "anonymousId": "visitor", "messageId": "merge"}])
        users = [f"j{n}" for n in range(20)] + ["known"]
        send(kairos, key, [track(user_id=user, event="Cart Viewed") for user in users])
        assert wait_for(lambda: len(receiver.verified) == len(users)), \
            (len(receiver.verified), kairos.admin("GET", "/v1/profiles/user_id:j0/deliveries").json())
        groups = {}
        for _, payload in receiver.verified:
            user = payload["data"]["profile"]["identifier"]["value"]
            decision = payload["data"]["decision"]
            group = decision["experiment"]["group"]
            assert decision["experiment"]["name"] == "nudge copy"
            expected = "FREE SHIPPING TODAY" if group == "bold" else "Free shipping"
            assert decision["content"] == {"title": expected}, payload
            assignment = assign(kairos, "nudge copy", f"user_id:{user}")
            assert assignment["group"] == group and assignment["new"] is False, (user, assignment)
            groups[user] = group
        assert groups["known"] == first_group, "a merged person keeps the arm of their first exposure"
        assert set(groups.values()) == {"plain", "bold"}, groups
        counted = results(kairos, "nudge copy")
        for name in ("plain", "bold"):
            assert arm(counted, name)["exposures"] == sum(1 for g in groups.values() if g == name), counted
        # Conversions after the journey's exposure count for the arm.
        buyers = [user for user, group in groups.items() if group == "bold"][:2]
        send(kairos, key, [track(user_id=user) for user in buyers])
        assert wait_for(lambda: arm(results(kairos, "nudge copy"), "bold")["conversions"] == 2)
    finally:
        receiver.stop()


def test_a_decide_step_after_a_wait_exposes_when_it_runs_and_counts_only_later_outcomes(tmp_path):
    """A timed `decide` step (after a wait) exposes the person when it runs:
    a conversion logged before that moment is no outcome; one after is."""
    from test_journeys import Receiver, destination, set_clock, start_kairos

    receiver = Receiver().start()
    server = start_kairos(tmp_path, extra_args=["--clock", "manual"])
    try:
        set_clock(server, "2030-05-01T10:00:00Z")
        create(server, {**EXPERIMENT, "name": "later copy", "guardrails": []})
        r = server.admin("POST", "/v1/offers", json={
            "name": "come back", "placements": ["later"], "content": {"web": {"title": "Come back"}},
            "experiment": {"name": "later copy", "variants": {"red": {"web": {"title": "COME BACK"}}}}})
        assert r.status_code == 201, r.text
        destination(server, receiver)
        r = server.admin("POST", "/v1/journeys", json={
            "name": "later", "trigger": {"event": "Cart Viewed"},
            "steps": [{"wait": "1h"}, {"send": {"destination": "hooks", "decide": {"placement": "later"}}}]})
        assert r.status_code == 201, r.text
        key = server.create_source("web")["write_key"]
        send(server, key, [track(user_id="w1", event="Cart Viewed"), track(user_id="w1", n=1)])
        assert wait_for(lambda: server.admin("GET", "/v1/journeys/later").json()["counts"]["waiting"] == 1)
        assert exposures(server, "later copy") == 0, "nobody is exposed before the step runs"
        set_clock(server, "2030-05-01T11:00:01Z")
        assert wait_for(lambda: len(receiver.verified) == 1), receiver.verified
        decision = receiver.verified[0][1]["data"]["decision"]
        group = decision["experiment"]["group"]
        assert decision["content"] == {"title": "COME BACK" if group == "red" else "Come back"}
        assert assign(server, "later copy", "user_id:w1")["group"] == group
        assert arm(results(server, "later copy"), group)["exposures"] == 1
        time.sleep(0.5)
        assert arm(results(server, "later copy"), group)["conversions"] == 0, "a purchase before exposure"
        send(server, key, [track(user_id="w1", n=2)])
        assert wait_for(lambda: arm(results(server, "later copy"), group)["conversions"] == 1)
    finally:
        server.stop()
        receiver.stop()


def exposures(server: Kairos, experiment: str) -> int:
    """Everyone exposed so far, read without exposing anyone."""
    return sum(a["exposures"] for a in results(server, experiment)["arms"])
