"""Offers and next-best-action decisions end to end against `kairos serve`:
the catalog (versions, validation with line and column), `/v1/decide`
reflecting the very last acknowledged event, personalised content,
arbitration with its explanation, caps, dismissal blackout, budgets,
exclusivity and diversity, responses with a decision id updating the
adaptive model, persistence across kill -9, and erasure.
(docs/decisions.md; every example there is exercised here.)"""

import subprocess
import time

import pytest
import requests

from conftest import ADMIN_TOKEN, Kairos, kairos_binary

CART_RESCUE = {
    "name": "cart rescue",
    "category": "retention",
    "placements": ["home_hero"],
    "value": 5,
    "eligibility": 'count "Product Added" within 1h >= 1',
    "content": {"web": {"title": "Still thinking about it, {{ traits.first_name | default('friend') }}?",
                        "cta": "Back to your cart"}},
    "conversion_event": "Order Completed",
}
WELCOME = {
    "name": "welcome",
    "category": "onboarding",
    "value": 1,
    "content": {"web": {"title": "Welcome{% if traits.first_name %}, {{ traits.first_name }}{% endif %}!"}},
}


def send(kairos, write_key, events):
    r = requests.post(kairos.base_url + "/v1/batch", json={"batch": events},
                      headers=Kairos.basic(write_key), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def decide(kairos, profile, placement="home_hero", **body):
    r = kairos.admin("POST", "/v1/decide", json={"profile": profile, "placement": placement, **body})
    assert r.status_code == 200, r.text
    return r.json()


def create_offer(kairos, offer):
    r = kairos.admin("POST", "/v1/offers", json=offer)
    assert r.status_code == 201, r.text
    return r.json()


def respond(kairos, write_key, user, name, decision_id, offer, **properties):
    send(kairos, write_key, [{"type": "track", "userId": user, "event": name,
                              "properties": {"decision_id": decision_id, "offer": offer, **properties}}])


def wait_for_stats(kairos, offer, placement, field, at_least, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline:
        stats = kairos.admin("GET", f"/v1/offers/{offer}").json()["stats"]
        if stats.get(placement, {}).get(field, 0) >= at_least:
            return stats[placement]
        time.sleep(0.05)
    raise AssertionError(f"{offer} {field} did not reach {at_least}: {stats}")


def test_the_very_next_decision_reflects_an_add_to_cart(kairos):
    source = kairos.create_source("web")
    create_offer(kairos, CART_RESCUE)
    create_offer(kairos, WELCOME)
    send(kairos, source["write_key"], [{"type": "identify", "userId": "u1", "traits": {"first_name": "Ada"}}])
    before = decide(kairos, "user_id:u1", explore=False, explain=True)
    assert [a["offer"] for a in before["actions"]] == ["welcome"]
    assert before["actions"][0]["content"] == {"title": "Welcome, Ada!"}
    dropped = {v["offer"]: v for v in before["explanation"]}["cart rescue"]
    assert dropped["stage"] == "eligibility" and "offer cart rescue" in dropped["reason"]
    send(kairos, source["write_key"], [{"type": "track", "userId": "u1", "event": "Product Added",
                                        "properties": {"sku": "B-1"}}])
    # No sleep: the decision waits for every acknowledged event.
    after = decide(kairos, "user_id:u1", explore=False)
    assert after["actions"][0]["offer"] == "cart rescue"
    assert after["actions"][0]["content"]["title"] == "Still thinking about it, Ada?"
    assert after["decision_id"].startswith("dec_") and after["decision_id"] != before["decision_id"]
    # The offer's own audience is exact but quiet: no Audience Entered event.
    announced = [e for e in kairos.events() if e.get("event") in ("Audience Entered", "Audience Exited")]
    assert not [e for e in announced if e["properties"]["audience"].startswith("offer ")], announced
    refused = kairos.admin("POST", "/v1/audiences", json={"name": "offer mine", "definition": "trait a = 1"})
    assert refused.status_code == 400 and "kept for the audiences offers own" in refused.text


def test_responses_with_the_decision_id_move_the_adaptive_model(kairos):
    source = kairos.create_source("web")
    for name in ("red banner", "blue banner"):
        create_offer(kairos, {"name": name, "content": {"web": {"title": name}}})
    first = decide(kairos, "user_id:x0", limit=2, explore=False)
    # Equal posteriors: catalog order.
    assert [a["offer"] for a in first["actions"]] == ["red banner", "blue banner"]
    for index in range(20):
        user = f"user{index}"
        decision = decide(kairos, f"user_id:{user}", limit=2)
        for action in decision["actions"]:
            respond(kairos, source["write_key"], user, "Offer Viewed", decision["decision_id"], action["offer"])
            if action["offer"] == "blue banner":
                respond(kairos, source["write_key"], user, "Offer Clicked", decision["decision_id"],
                        action["offer"])
        # A repeated response counts once.
        respond(kairos, source["write_key"], user, "Offer Viewed", decision["decision_id"], "red banner")
    blue = wait_for_stats(kairos, "blue banner", "home_hero", "clicks", 20)
    red = wait_for_stats(kairos, "red banner", "home_hero", "impressions", 20)
    assert blue["impressions"] == 20 and red["impressions"] == 20 and red["clicks"] == 0
    explained = decide(kairos, "user_id:new", limit=2, explore=False, explain=True)
    assert [a["offer"] for a in explained["actions"]] == ["blue banner", "red banner"]
    propensity = {v["offer"]: v["propensity"] for v in explained["explanation"]}
    assert propensity["blue banner"]["alpha"] == 21 and propensity["blue banner"]["beta"] == 1
    assert propensity["red banner"]["alpha"] == 1 and propensity["red banner"]["beta"] == 21
    # A response naming no decision is not counted.
    respond(kairos, source["write_key"], "u", "Offer Clicked", "dec_unknown", "red banner")
    # Counts survive kill -9.
    kairos.kill9()
    kairos.start()
    assert kairos.admin("GET", "/v1/offers/blue banner").json()["stats"]["home_hero"]["clicks"] == 20
    assert kairos.admin("GET", "/v1/offers/red banner").json()["stats"]["home_hero"]["clicks"] == 0


def test_caps_blackout_budget_exclusivity_and_diversity(kairos):
    source = kairos.create_source("web")
    key = source["write_key"]
    create_offer(kairos, {"name": "capped", "category": "a", "value": 10, "content": {"web": "capped"},
                          "limits": {"impressions": {"max": 2, "per": "1d"}, "after_dismissal": "3d"}})
    create_offer(kairos, {"name": "stock", "category": "b", "value": 9, "content": {"web": "stock"},
                          "limits": {"budget": 1}})
    create_offer(kairos, {"name": "gold", "category": "b", "value": 8, "exclusive_group": "tier",
                          "content": {"web": "gold"}})
    create_offer(kairos, {"name": "silver", "category": "c", "value": 7, "exclusive_group": "tier",
                          "content": {"web": "silver"}})
    create_offer(kairos, {"name": "plain", "category": "a", "value": 1, "content": {"web": "plain"}})

    d = decide(kairos, "user_id:p1", limit=5, explore=False, explain=True)
    assert [a["offer"] for a in d["actions"]] == ["capped", "stock", "gold", "plain"]
    reasons = {v["offer"]: v.get("reason", "") for v in d["explanation"]}
    assert "exclusive group" in reasons["silver"]
    diverse = decide(kairos, "user_id:p1", limit=5, explore=False, diversity={"max_per_category": 1})
    assert [a["offer"] for a in diverse["actions"]] == ["capped", "stock", "silver"]

    # Two impressions of "capped": the cap (2 a day) drops it for p1 only.
    for decision in (d, diverse):
        respond(kairos, key, "p1", "Offer Viewed", decision["decision_id"], "capped")
    respond(kairos, key, "p1", "Offer Viewed", d["decision_id"], "stock")  # the budget: 1
    wait_for_stats(kairos, "capped", "home_hero", "impressions", 2)
    wait_for_stats(kairos, "stock", "home_hero", "impressions", 1)
    again = decide(kairos, "user_id:p1", limit=5, explore=False, explain=True)
    reasons = {v["offer"]: (v["stage"], v.get("reason", "")) for v in again["explanation"]}
    assert reasons["capped"][0] == "suitability" and "the cap is 2" in reasons["capped"][1]
    assert reasons["stock"][0] == "applicability" and "budget" in reasons["stock"][1]
    other = decide(kairos, "user_id:p2", limit=5, explore=False)
    assert "capped" in [a["offer"] for a in other["actions"]]
    # A dismissal keeps it away for 3 days, even though p2 saw it once.
    respond(kairos, key, "p2", "Offer Dismissed", other["decision_id"], "capped")
    deadline = time.time() + 10
    while time.time() < deadline:
        later = decide(kairos, "user_id:p2", limit=5, explore=False, explain=True)
        if "capped" not in [a["offer"] for a in later["actions"]]:
            break
        time.sleep(0.05)
    reason = {v["offer"]: v.get("reason", "") for v in later["explanation"]}["capped"]
    assert reason.startswith("dismissed at"), reason


def test_offers_are_versioned_and_bad_definitions_say_where(kairos):
    created = create_offer(kairos, WELCOME)
    assert created["version"] == 1 and created["id"].startswith("off_")
    changed = kairos.admin("PUT", f"/v1/offers/{created['id']}", json={**WELCOME, "value": 3})
    assert changed.status_code == 200 and changed.json()["version"] == 2
    assert kairos.admin("POST", "/v1/offers", json=WELCOME).status_code == 409
    bad_template = kairos.admin("POST", "/v1/offers", json={
        "name": "broken", "content": {"web": {"title": "Hi\n{{ traits.first_name "}}})
    assert bad_template.status_code == 400
    problem = bad_template.json()
    assert problem["detail"].startswith("content.web.title: line 2, column"), problem
    assert problem["line"] == 2
    bad_condition = kairos.admin("POST", "/v1/offers", json={
        "name": "broken", "content": {"web": "x"}, "eligibility": "trait plan = "})
    assert bad_condition.status_code == 400 and "eligibility" in bad_condition.json()["detail"]
    assert bad_condition.json()["line"] == 1
    missing = kairos.admin("POST", "/v1/offers", json={
        "name": "broken", "content": {"web": "x"}, "eligibility": 'in audience "nobody"'})
    assert missing.status_code == 400 and "nobody" in missing.json()["detail"]
    for body, fragment in [
        ({"profile": "u1", "placement": "x"}, "type}:{value"),
        ({"profile": "user_id:u1", "placement": ""}, "placement"),
        ({"profile": "user_id:u1", "placement": "x", "limit": 0}, "limit"),
        ({"profile": "user_id:u1", "placement": "x", "context": [1]}, "context"),
        ({"profile": "user_id:u1", "placement": "x", "channel": "fax"}, "channel"),
        ({"profile": "user_id:u1", "placement": "x", "surprise": 1}, "surprise"),
    ]:
        r = kairos.admin("POST", "/v1/decide", json=body)
        assert r.status_code == 400 and fragment in r.text, (body, r.text)
    # A write key may send events, never read anyone's decisions.
    source = kairos.create_source("web")
    r = requests.post(kairos.base_url + "/v1/decide", json={"profile": "user_id:u1", "placement": "x"},
                      headers=Kairos.basic(source["write_key"]), timeout=10)
    assert r.status_code == 401
    deleted = kairos.admin("DELETE", f"/v1/offers/{created['id']}")
    assert deleted.status_code == 200
    assert kairos.admin("GET", "/v1/offers").json()["offers"] == []


def test_context_weights_and_an_unknown_visitor(kairos):
    create_offer(kairos, {"name": "shoes", "category": "shoes", "value": 1, "content": {"web": "shoes"}})
    create_offer(kairos, {"name": "hats", "category": "hats", "value": 1.5,
                          "content": {"web": "{{ context.page | default('home') }} hats"}})
    plain = decide(kairos, "anonymous_id:never-seen", explore=False, context={"page": "sale"})
    assert plain["actions"][0]["offer"] == "hats" and plain["actions"][0]["content"] == "sale hats"
    weighted = decide(kairos, "anonymous_id:never-seen", explore=False,
                      context={"weights": {"shoes": 2}})
    assert weighted["actions"][0]["offer"] == "shoes"


def test_erasure_removes_decisions_and_offer_history(kairos):
    source = kairos.create_source("web")
    create_offer(kairos, {"name": "once", "value": 1, "content": {"web": "x"},
                          "limits": {"impressions": {"max": 1, "per": "7d"}}})
    send(kairos, source["write_key"], [{"type": "identify", "userId": "gone", "traits": {"email": "g@x.org"}}])
    d = decide(kairos, "user_id:gone", explore=False)
    respond(kairos, source["write_key"], "gone", "Offer Viewed", d["decision_id"], "once")
    wait_for_stats(kairos, "once", "home_hero", "impressions", 1)
    assert decide(kairos, "user_id:gone", explore=False)["actions"] == []
    r = kairos.admin("DELETE", "/v1/profiles/user_id:gone")
    assert r.status_code == 200, r.text
    assert r.json()["outbox_erased"]["decisions"] >= 2, r.json()
    # The identifier names nobody now: no history, so the cap is fresh.
    assert [a["offer"] for a in decide(kairos, "user_id:gone", explore=False)["actions"]] == ["once"]


def test_a_journey_sends_the_offer_decided_for_the_person(kairos):
    """docs/decisions.md "In journeys": a `send` with `decide` sends the top
    action for the person in a placement, signed like every webhook; its
    decision id attributes the responses; no offer blocks the send."""
    from test_journeys import Receiver, destination, wait_for

    receiver = Receiver().start()
    try:
        destination(kairos, receiver)
        journey = {"name": "nudge", "trigger": {"event": "Cart Viewed"},
                   "steps": [{"send": {"destination": "hooks", "decide": {"placement": "cart_nudge"}}}]}
        bad = kairos.admin("POST", "/v1/journeys", json={**journey, "name": "bad", "steps": [
            {"send": {"destination": "hooks", "decide": {"placement": "x"}, "message": {"title": "x"}}}]})
        assert bad.status_code == 400 and "leave out" in bad.text, bad.text
        assert kairos.admin("POST", "/v1/journeys", json=journey).status_code == 201
        source = kairos.create_source("web")
        send(kairos, source["write_key"], [
            {"type": "identify", "userId": "j1", "traits": {"first_name": "Lin"}},
            {"type": "track", "userId": "j1", "event": "Cart Viewed", "messageId": "cv-1"}])
        # No offer for the placement yet: blocked, saying why.
        assert wait_for(lambda: kairos.admin("GET", "/v1/profiles/user_id:j1/deliveries").json()["deliveries"])
        blocked = kairos.admin("GET", "/v1/profiles/user_id:j1/deliveries").json()["deliveries"][0]
        assert blocked["status"] == "blocked" and "no offer" in blocked["last_error"], blocked
        create_offer(kairos, {"name": "free shipping", "placements": ["cart_nudge"],
                              "content": {"web": {"title": "Free shipping for you, {{ traits.first_name }}"}}})
        send(kairos, source["write_key"], [{"type": "track", "userId": "j1", "event": "Cart Viewed",
                                            "messageId": "cv-2"}])
        assert wait_for(lambda: receiver.verified), \
            kairos.admin("GET", "/v1/profiles/user_id:j1/deliveries").json()
        payload = receiver.verified[0][1]
        decision = payload["data"]["decision"]
        assert decision["offer"] == "free shipping" and decision["placement"] == "cart_nudge"
        assert decision["content"] == {"title": "Free shipping for you, Lin"}
        respond(kairos, source["write_key"], "j1", "Offer Clicked", decision["decision_id"], "free shipping")
        assert wait_for_stats(kairos, "free shipping", "cart_nudge", "clicks", 1)["clicks"] == 1
    finally:
        receiver.stop()


# --- the influence zone: a randomized incentive, an uplift model trained on
# its own log, a policy evaluated off-policy and then run ---------------------

# Simulated visitors with a known uplift rule: segment 0 is persuadable (the
# incentive adds 0.30 to a 0.05 chance of buying; they are the `engaged`
# ones), segment 1 buys anyway (0.45, no uplift: whom a propensity threshold
# targets), segment 2 never does (0.05). The log records `engaged` and
# `p_base`; the test alone knows the segments.
BASE = {0: 0.05, 1: 0.45, 2: 0.05}
UPLIFT = {0: 0.30, 1: 0.0, 2: 0.0}
INCENTIVE = {
    "name": "ten off", "value": 10, "conversion_event": "Order Completed",
    "content": {"web": {"title": "10 off your order"}},
    "incentive": {"holdout": 0.5, "cost": 1.5, "window": "1d", "features": ["trait.engaged", "trait.p_base"]},
}


def visit(kairos, key, rng, prefix, count):
    """Identifies `count` visitors, decides for each and sends their
    purchases as the rule says; returns (segment, given, bought) per visitor."""
    people = [(f"{prefix}{i}", rng.choice([0, 1, 2])) for i in range(count)]
    for start in range(0, count, 100):
        send(kairos, key, [{"type": "identify", "userId": user, "messageId": f"id-{user}",
                            "traits": {"segment": segment, "p_base": BASE[segment],
                                       "engaged": int(segment == 0)}}
                           for user, segment in people[start:start + 100]])
    outcomes, orders = [], []
    for user, segment in people:
        given = bool(decide(kairos, f"user_id:{user}")["actions"])
        bought = rng.random() < BASE[segment] + (UPLIFT[segment] if given else 0.0)
        outcomes.append((segment, given, bought))
        if bought:
            orders.append({"type": "track", "userId": user, "event": "Order Completed", "messageId": f"o-{user}"})
    for start in range(0, len(orders), 100):
        send(kairos, key, orders[start:start + 100])
    return outcomes


def test_the_influence_zone_closed_loop(tmp_path):
    import random

    from test_journeys import set_clock

    rng = random.Random(20261203)
    kairos = Kairos(tmp_path / "data", extra_args=["--clock", "manual"]).start()
    try:
        set_clock(kairos, "2030-03-01T09:00:00Z")
        key = kairos.create_source("web")["write_key"]
        create_offer(kairos, INCENTIVE)
        logged = visit(kairos, key, rng, "a", 900)
        given = [o for o in logged if o[1]]
        assert 0.4 < len(given) / len(logged) < 0.6, "the holdout randomizes half"
        too_early = kairos.admin("POST", "/v1/models/uplift_ten/train", json={"insight": "uplift", "offer": "ten off"})
        assert too_early.status_code == 422 and "window" in too_early.text, too_early.text
        set_clock(kairos, "2030-03-03T09:00:00Z")  # every conversion window has ended
        trained = kairos.admin("POST", "/v1/models/uplift_ten/train",
                               json={"insight": "uplift", "offer": "ten off", "mode": "active"})
        assert trained.status_code == 201, trained.text
        training = trained.json()["training"]
        assert training["rows"] == 900 and 0.05 < training["observed_uplift"] < 0.2, training

        # Off-policy evaluation of "give where uplift x 10 > 1.5" on the log.
        evaluated = kairos.admin("POST", "/v1/offers/ten off/evaluate", json={"uplift_score": "uplift_ten"})
        assert evaluated.status_code == 200, evaluated.text
        report = evaluated.json()
        policy = report["policy"]
        assert 0.2 < policy["give_rate"] < 0.5, policy  # about the persuadable third
        snipw = policy["estimates"]["snipw"]
        everyone = report["give_to_all"]["estimates"]["snipw"]
        assert snipw["net_value_per_decision"] > everyone["net_value_per_decision"], report
        # The same through the CLI, a line per estimator.
        cli = subprocess.run([str(kairos_binary()), "evaluate-offer", "ten off", "--uplift-score", "uplift_ten",
                              "--url", kairos.base_url, "--admin-token", ADMIN_TOKEN],
                             capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        lines = {dict(p.split("=") for p in line.split())["estimator"]: dict(p.split("=") for p in line.split())
                 for line in cli.stdout.splitlines()}
        assert {"ipw", "snipw", "dm", "dr"} <= set(lines), cli.stdout
        assert abs(float(lines["snipw"]["policy"]) - snipw["net_value_per_decision"]) < 1e-5, (lines["snipw"], snipw)
        assert float(lines["snipw"]["give_to_all"]) < float(lines["snipw"]["policy"])
        assert float(lines["snipw"]["low"]) <= float(lines["snipw"]["policy"]) <= float(lines["snipw"]["high"])

        # The policy goes live (a small holdout keeps learning).
        live = {**INCENTIVE, "incentive": {**INCENTIVE["incentive"], "holdout": 0.05, "uplift_score": "uplift_ten"}}
        assert kairos.admin("PUT", "/v1/offers/ten off", json=live).status_code == 200
        run = visit(kairos, key, rng, "b", 900)
        incentives = [o for o in run if o[1]]
        per_incentive = sum(UPLIFT[segment] for segment, _, _ in incentives) / len(incentives)
        # Giving to everyone above a propensity threshold targets segment 1:
        # no incremental conversion at all.
        threshold = [segment for segment, _, _ in run if BASE[segment] > 0.3]
        threshold_per_incentive = sum(UPLIFT[s] for s in threshold) / len(threshold)
        assert per_incentive > 0.2 > threshold_per_incentive, (per_incentive, threshold_per_incentive)
        # The estimate was within its interval of what the policy realized
        # (widened by the realized rate's own sampling error).
        realized = sum(bought for _, _, bought in run) / len(run)
        low, high = snipw["interval"]
        error = 2 * (realized * (1 - realized) / len(run)) ** 0.5
        assert low - error <= realized <= high + error, (realized, snipw)
    finally:
        kairos.stop()


def test_decisions_are_exported_and_expire_after_the_retention_window(tmp_path):
    """A write key may ask for decisions as fast as it sends events: each
    is kept for `[decisions] retention` (90 days by default), then deleted
    at the next sweep (at start and every minute). A person's export
    lists the decisions made about them."""
    server = Kairos(tmp_path / "data", extra_args=["--clock", "manual"],
                    env={"KAIROS_DECISIONS_RETENTION": "2d"}).start()
    try:
        r = server.admin("POST", "/v1/admin/clock", json={"now": "2030-01-01T00:00:00Z"})
        assert r.status_code == 200, r.text
        create_offer(server, WELCOME)
        source = server.create_source("web")
        send(server, source["write_key"], [{"type": "identify", "userId": "u1", "traits": {"first_name": "Ada"}}])
        first = decide(server, "user_id:u1")["decision_id"]
        server.admin("POST", "/v1/admin/clock", json={"now": "2030-01-02T12:00:00Z"})
        second = decide(server, "user_id:u1")["decision_id"]
        exported = server.admin("GET", "/v1/profiles/user_id:u1/export").json()
        assert [d["id"] for d in exported["decisions"]] == [first, second], exported["decisions"]
        assert exported["decisions"][0]["placement"] == "home_hero" and exported["decisions"][0]["actions"], exported["decisions"][0]
        # Two days after the first decision (but not the second): the
        # sweep at the next start deletes the first only.
        server.admin("POST", "/v1/admin/clock", json={"now": "2030-01-03T06:00:00Z"})
        server.restart()
        exported = server.admin("GET", "/v1/profiles/user_id:u1/export").json()
        assert [d["id"] for d in exported["decisions"]] == [second], exported["decisions"]
    finally:
        server.stop()
    bad = Kairos(tmp_path / "bad", env={"KAIROS_DECISIONS_RETENTION": "5m"})
    with pytest.raises(RuntimeError, match="decisions.retention"):
        bad.start()
