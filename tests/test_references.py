"""Dangling references (issue 12, item 13): what a journey, an audience
sync or a definition names — an audience, a computed trait, a model's
score — must exist when it is created (400 saying what is missing and how
to fix it), and cannot be deleted while something names it (409 listing
who). Templates are checked against the same names they render with, so a
template accepted at creation (reading `scores`) renders at send time."""

import requests

from conftest import Kairos
from test_email import Mailbox, wait_for

# A logistic "model" whose score is 0.5 for everyone with an event: the
# score's value is not the point here, its presence is.
FLAT = {"means": [0.0], "scales": [1.0], "intercept": 0.0, "weights": [0.0]}


def register_model(server: Kairos, name: str):
    r = server.admin("POST", "/v1/models", json={"name": name, "format": "logistic", "model": FLAT,
                                                  "mode": "active", "inputs": ["session.product_views"]})
    assert r.status_code == 201, r.text


def refused(response, status: int, code: str, *phrases: str):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    for phrase in phrases:
        assert phrase in body["detail"], (phrase, body["detail"])


def test_references_to_missing_things_are_refused_at_creation(kairos):
    r = kairos.admin("POST", "/v1/destinations", json={"type": "webhook", "name": "hooks", "url": "http://127.0.0.1:9/h"})
    assert r.status_code == 201, r.text
    send = {"send": {"destination": "hooks"}}

    r = kairos.admin("POST", "/v1/journeys", json={"name": "j", "trigger": {"audience_entered": "nope"}, "steps": [send]})
    refused(r, 400, "journey_invalid", 'no audience "nope"', "POST /v1/audiences")
    r = kairos.admin("POST", "/v1/journeys", json={"name": "j", "trigger": {"audience_exited": "nope"}, "steps": [send]})
    refused(r, 400, "journey_invalid", 'no audience "nope"')
    for condition, phrase in [('in audience "nope"', 'no audience "nope"'),
                              ("computed nope > 1", "`computed nope`: no such computed trait"),
                              ("score nope > 0.5", "`score nope`: no such model score (no model is registered)")]:
        r = kairos.admin("POST", "/v1/journeys", json={"name": "j", "trigger": {"event": "X"},
                                                       "steps": [{"branch": {"if": condition, "then": [send]}}]})
        refused(r, 400, "journey_invalid", phrase)

    # `score X` is refused like `computed nope`, in audiences, computed
    # traits and `when` triggers alike, naming the scores that exist.
    r = kairos.admin("POST", "/v1/audiences", json={"name": "at risk", "definition": "score churn > 0.8"})
    refused(r, 400, "definition_invalid", "`score churn`: no such model score", "POST /v1/models")
    r = kairos.admin("POST", "/v1/computed-traits", json={"name": "risk", "definition": 'case when score churn > 0.8 then "high" else "low" end'})
    refused(r, 400, "definition_invalid", "`score churn`")
    r = kairos.admin("POST", "/v1/journeys", json={"name": "j", "trigger": {"when": "score churn > 0.8"}, "steps": [send]})
    refused(r, 400, "definition_invalid", "`score churn`")
    assert kairos.admin("GET", "/v1/audiences").json()["audiences"] == [], "nothing half-created"
    register_model(kairos, "propensity")
    r = kairos.admin("POST", "/v1/audiences", json={"name": "at risk", "definition": "score churn > 0.8"})
    refused(r, 400, "definition_invalid", "registered models' scores: [\"propensity\"]")
    register_model(kairos, "churn")
    r = kairos.admin("POST", "/v1/audiences", json={"name": "at risk", "definition": "score churn > 0.8"})
    assert r.status_code == 201, r.text

    # Templates read traits, computed, audiences, scores, profile, event.
    r = kairos.admin("POST", "/v1/destinations", json={"type": "in_app", "name": "site", "url": ""})
    assert r.status_code == 201, r.text
    r = kairos.admin("POST", "/v1/journeys", json={"name": "j", "trigger": {"event": "X"},
                                                   "steps": [{"send": {"destination": "site", "message": {"title": "{{ score.churn }}"}}}]})
    refused(r, 400, "journey_invalid", '["score"], which no send provides', "scores")
    r = kairos.admin("POST", "/v1/journeys", json={"name": "j", "trigger": {"event": "X"},
                                                   "steps": [{"send": {"destination": "site", "message": {"title": "{{ scores.churn }}"}}}]})
    assert r.status_code == 201, r.text


def test_what_is_in_use_cannot_be_deleted(kairos):
    r = kairos.admin("POST", "/v1/destinations", json={"type": "webhook", "name": "hooks", "url": "http://127.0.0.1:9/h"})
    assert r.status_code == 201, r.text
    register_model(kairos, "churn")
    for name, definition in [("vip", 'trait plan = "pro"'), ("lapsing", "score churn > 0.5")]:
        assert kairos.admin("POST", "/v1/audiences", json={"name": name, "definition": definition}).status_code == 201
    r = kairos.admin("POST", "/v1/computed-traits", json={"name": "orders_90d", "definition": 'count "Order Completed" within 90d'})
    assert r.status_code == 201, r.text
    journey = kairos.admin("POST", "/v1/journeys", json={
        "name": "welcome vip", "trigger": {"audience_entered": "vip"},
        "steps": [{"branch": {"if": "computed orders_90d > 2", "then": [{"send": {"destination": "hooks"}}]}}]}).json()
    sync = kairos.admin("POST", "/v1/audience-syncs", json={"name": "vip to crm", "audience": "vip", "destination": "hooks"})
    assert sync.status_code == 201, sync.text

    r = kairos.admin("DELETE", "/v1/audiences/vip")
    refused(r, 409, "definition_in_use", 'the audience "vip" is used by', 'journey "welcome vip"', 'audience sync "vip to crm"')
    r = kairos.admin("DELETE", "/v1/computed-traits/orders_90d")
    refused(r, 409, "definition_in_use", 'journey "welcome vip"')
    r = kairos.admin("DELETE", "/v1/models/churn")
    refused(r, 409, "model_in_use", 'audience "lapsing"')
    assert [m["name"] for m in kairos.admin("GET", "/v1/models").json()["models"]] == ["churn"]

    # Once nothing names them, they go.
    assert kairos.admin("DELETE", f"/v1/journeys/{journey['id']}").status_code == 200
    r = kairos.admin("DELETE", "/v1/audiences/vip")
    refused(r, 409, "definition_in_use", 'audience sync "vip to crm"')
    assert kairos.admin("DELETE", f"/v1/audience-syncs/{sync.json()['id']}").status_code == 200
    for path in ["/v1/audiences/vip", "/v1/computed-traits/orders_90d", "/v1/audiences/lapsing", "/v1/models/churn"]:
        r = kairos.admin("DELETE", path)
        assert r.status_code == 200, (path, r.text)


def test_a_template_reading_scores_renders_at_send_time(tmp_path):
    mailbox = Mailbox().start()
    server = Kairos(tmp_path / "data").start()
    try:
        register_model(server, "churn")
        r = server.admin("POST", "/v1/destinations", json={"type": "email", "name": "mailer", "url": f"smtp://127.0.0.1:{mailbox.port}",
                                                            "from": "Shop <hello@shop.example>"})
        assert r.status_code == 201, r.text
        template = {"subject": "Hello {{ traits.first_name | default(\"there\") }}",
                    "text": "churn={{ scores.churn }} audiences={{ audiences | length }} missing={{ scores.nope | default(\"none\") }}"}
        r = server.admin("POST", "/v1/journeys", json={"name": "scored", "trigger": {"event": "Cart Viewed"},
                                                        "steps": [{"send": {"destination": "mailer", "template": template}}]})
        assert r.status_code == 201, r.text
        key = server.create_source("shop")["write_key"]
        r = requests.post(server.base_url + "/v1/batch", headers=Kairos.basic(key), timeout=10, json={"batch": [
            {"type": "identify", "userId": "ada", "messageId": "id-ada", "traits": {"email": "ada@example.org", "first_name": "Ada"}},
            {"type": "track", "event": "Cart Viewed", "userId": "ada", "messageId": "cv-ada"},
        ]})
        assert r.status_code == 200, r.text
        assert wait_for(lambda: len(mailbox.mails) == 1), server.admin("GET", "/v1/profiles/user_id:ada/deliveries").text
        mail = mailbox.mails[0][1]
        assert mail["subject"] == "Hello Ada"
        assert mail.get_content().strip() == "churn=0.5 audiences=0 missing=none", mail.get_content()
    finally:
        server.stop()
        mailbox.stop()
