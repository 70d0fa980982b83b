"""Computed traits end to end over HTTP against the real binary: values
defined in the audience language, kept per event and per timer, shown on
the profile under "computed", read by audiences, backfilled when created,
previewed, listed, persisted across restarts, with clear errors."""

import requests

from conftest import Kairos

NOW = "2030-03-01T00:00:00Z"


def send(server: Kairos, key: str, events: list):
    r = requests.post(server.base_url + "/v1/batch", json={"batch": events}, headers=Kairos.basic(key), timeout=10)
    assert r.status_code == 200 and r.json()["accepted"] == len(events), r.text


def order(user: str, date: str, revenue: float, category: str, number: int) -> dict:
    return {"type": "track", "event": "Order Completed", "userId": user, "messageId": f"{user}-o{number}",
            "timestamp": f"{date}T10:00:00Z", "properties": {"revenue": revenue, "category": category}}


def computed(server: Kairos, identifier: str) -> dict:
    r = server.admin("GET", f"/v1/profiles/{identifier}")
    assert r.status_code == 200, r.text
    return r.json()["computed"]


def set_clock(server: Kairos, now: str):
    r = server.admin("POST", "/v1/admin/clock", json={"now": now})
    assert r.status_code == 200, r.text


TRAITS = {
    "orders_90d": 'count "Order Completed" within 90d',
    "spend_365d": 'sum revenue of "Order Completed" within 365d',
    "last_order_at": 'last "Order Completed"',
    "favourite_category": 'most frequent category of "Order Completed" within 365d',
    "recency_score": 'case\n  when last "Order Completed" less than 30d ago then 5\n'
                     '  when last "Order Completed" less than 90d ago then 3\n  else 1\nend',
}


def test_computed_traits_are_kept_current_shown_on_profiles_and_read_by_audiences(tmp_path):
    server = Kairos(tmp_path / "data", extra_args=["--clock", "manual"]).start()
    try:
        set_clock(server, NOW)
        key = server.create_source("shop")["write_key"]
        # Two orders exist before the traits: creating them backfills.
        send(server, key, [order("u1", "2030-01-10", 120.0, "books", 1), order("u1", "2030-02-20", 80.5, "music", 2)])
        for name, definition in TRAITS.items():
            r = server.admin("POST", "/v1/computed-traits", json={"name": name, "definition": definition})
            assert r.status_code == 201, r.text
            assert r.json()["id"].startswith("ct_") and r.json()["backfill"]["events"] == 2
        values = computed(server, "user_id:u1")
        assert values == {"orders_90d": 2, "spend_365d": 200.5, "last_order_at": "2030-02-20T10:00:00Z",
                          "favourite_category": "books", "recency_score": 5}, values

        # Per event: a third order changes the values at once.
        send(server, key, [order("u1", "2030-02-28", 19.5, "music", 3)])
        values = computed(server, "user_id:u1")
        assert values["orders_90d"] == 3 and values["spend_365d"] == 220 and values["favourite_category"] == "music"

        # An audience reads computed traits.
        r = server.admin("POST", "/v1/audiences", json={"name": "loyal", "definition": "computed orders_90d >= 3 and computed recency_score = 5"})
        assert r.status_code == 201, r.text
        assert server.admin("GET", "/v1/profiles/user_id:u1").json()["audiences"] == ["loyal"]

        # Timers: the Jan 10 order leaves the 90-day window at Apr 10, 10:00;
        # the recency score drops to 3 thirty days after the last order.
        set_clock(server, "2030-03-30T10:00:00Z")
        assert computed(server, "user_id:u1")["recency_score"] == 3
        assert server.admin("GET", "/v1/profiles/user_id:u1").json()["audiences"] == []
        set_clock(server, "2030-04-10T09:59:59Z")
        assert computed(server, "user_id:u1")["orders_90d"] == 3
        set_clock(server, "2030-04-10T10:00:00Z")
        assert computed(server, "user_id:u1")["orders_90d"] == 2

        # Someone who never ordered: counts of nothing are 0, the rest absent.
        send(server, key, [{"type": "identify", "userId": "u2", "messageId": "u2-id", "traits": {"plan": "pro"}}])
        assert computed(server, "user_id:u2") == {"orders_90d": 0, "spend_365d": 0, "recency_score": 1}

        # Listing every profile's value, paged.
        page = server.admin("GET", "/v1/computed-traits/orders_90d/values", params={"limit": 1}).json()
        assert len(page["values"]) == 1 and page["next"]
        rest = server.admin("GET", "/v1/computed-traits/orders_90d/values", params={"after": page["next"]}).json()
        found = {v["identities"][0]["value"]: v["value"] for v in page["values"] + rest["values"]}
        assert found == {"u1": 2, "u2": 0}, found

        # Preview a draft: values now, nothing saved.
        r = server.admin("POST", "/v1/computed-traits/preview", json={"definition": 'max revenue of "Order Completed"'})
        assert r.status_code == 200, r.text
        assert r.json()["with_value"] == 1 and r.json()["sample"][0]["value"] == 120
        assert len(server.admin("GET", "/v1/computed-traits").json()["computed_traits"]) == len(TRAITS)

        # Change a definition: backfilled.
        r = server.admin("PUT", "/v1/computed-traits/orders_90d", json={"definition": 'count "Order Completed"'})
        assert r.status_code == 200, r.text
        assert computed(server, "user_id:u1")["orders_90d"] == 3

        # In use by an audience: refused; once the audience is gone, deleted.
        r = server.admin("DELETE", "/v1/computed-traits/orders_90d")
        assert r.status_code == 409 and "computed orders_90d" in r.json()["detail"], r.text
        assert server.admin("DELETE", "/v1/audiences/loyal").status_code == 200
        assert server.admin("DELETE", "/v1/computed-traits/orders_90d").status_code == 200
        assert "orders_90d" not in computed(server, "user_id:u1")

        # Restart: definitions and values come back (the clock is restored).
        server.restart()
        set_clock(server, "2030-04-10T10:00:01Z")
        values = computed(server, "user_id:u1")
        assert values["spend_365d"] == 220 and values["recency_score"] == 3, values
        # 90 days after the last order (Feb 28, 10:00) the score drops to 1.
        set_clock(server, "2030-05-29T09:59:59Z")
        assert computed(server, "user_id:u1")["recency_score"] == 3
        set_clock(server, "2030-05-29T10:00:00Z")
        assert computed(server, "user_id:u1")["recency_score"] == 1
    finally:
        server.stop()


def test_computed_trait_errors_say_what_is_wrong(kairos):
    r = kairos.admin("POST", "/v1/computed-traits", json={"name": "x", "definition": "case when trait plan = \"pro\" then 1"})
    assert r.status_code == 400
    body = r.json()
    assert (body["line"], body["column"]) == (1, 36) and "`end`" in body["detail"], body
    r = kairos.admin("POST", "/v1/computed-traits", json={"name": "has space", "definition": 'count "A"'})
    assert r.status_code == 400 and "letters, digits" in r.json()["detail"]
    r = kairos.admin("POST", "/v1/audiences", json={"name": "a", "definition": "computed nope > 1"})
    assert r.status_code == 400 and "no such computed trait" in r.json()["detail"], r.text
    assert kairos.admin("POST", "/v1/computed-traits", json={"name": "n", "definition": 'count "A"'}).status_code == 201
    r = kairos.admin("POST", "/v1/computed-traits", json={"name": "n", "definition": 'count "B"'})
    assert r.status_code == 409, r.text
    assert kairos.admin("GET", "/v1/computed-traits/nope").status_code == 404
