"""Offers declared in the config file (`[[offers]]`, docs/configuration.md
and docs/decisions.md "Offers in the config file") against the real binary:
created at start and decided on, unchanged across a restart with the same
file, a new version when the file changes, and a file with a broken offer
refusing to start with the entry's index, name, line and column. `CART`
is docs/configuration.md's example."""

import subprocess

import requests

from conftest import ADMIN_TOKEN, Kairos, free_port, kairos_binary

CART = '''
[[offers]]
name = "cart rescue"
placements = ["home_hero"]
value = 5
eligibility = 'count "Product Added" within 1h >= 1'
content.web = { title = "Still thinking about it, {{ traits.first_name | default('friend') }}?" }
limits.impressions = { max = 3, per = "7d" }
'''


def welcome(title: str) -> str:
    return f'''
[[offers]]
name = "welcome"
placements = ["home_hero"]
value = 1
content.web = {{ title = "{title}" }}
'''


def decide(server: Kairos, profile: str) -> dict:
    r = server.admin("POST", "/v1/decide", json={"profile": profile, "placement": "home_hero",
                                                 "explore": False, "limit": 2})
    assert r.status_code == 200, r.text
    return r.json()


def versions(server: Kairos) -> dict:
    r = server.admin("GET", "/v1/offers")
    assert r.status_code == 200, r.text
    return {offer["name"]: offer["version"] for offer in r.json()["offers"]}


def start_refused(tmp_path, config_text: str) -> subprocess.CompletedProcess:
    config = tmp_path / "broken.toml"
    config.write_text(config_text)
    return subprocess.run(
        [str(kairos_binary()), "serve", "--no-demo", "--listen", f"127.0.0.1:{free_port()}",
         "--data-dir", str(tmp_path / "data"), "--config", str(config)],
        capture_output=True, text=True, timeout=60,
        env={"KAIROS_ADMIN_TOKEN": ADMIN_TOKEN, "PATH": "/usr/bin:/bin"})


def test_offers_from_the_config_file_are_created_versioned_on_change_and_checked(tmp_path):
    config = tmp_path / "kairos.toml"
    config.write_text(welcome("Welcome!") + CART)
    server = Kairos(tmp_path / "data", extra_args=["--config", str(config)]).start()
    try:
        assert versions(server) == {"welcome": 1, "cart rescue": 1}
        # The behavioural eligibility is kept exact per event, as for an
        # offer made through the API.
        key = server.create_source("web")["write_key"]
        assert [a["offer"] for a in decide(server, "user_id:u1")["actions"]] == ["welcome"]
        r = requests.post(server.base_url + "/v1/batch", headers=Kairos.basic(key), timeout=10, json={"batch": [
            {"type": "identify", "userId": "u1", "traits": {"first_name": "Ada"}},
            {"type": "track", "userId": "u1", "event": "Product Added"}]})
        assert r.status_code == 200, r.text
        actions = decide(server, "user_id:u1")["actions"]
        assert actions[0]["offer"] == "cart rescue", actions
        assert actions[0]["content"] == {"title": "Still thinking about it, Ada?"}

        # The same file again: nothing changes, no new version.
        server.restart()
        assert versions(server) == {"welcome": 1, "cart rescue": 1}

        # A changed offer in the file: a new version with the new content.
        config.write_text(welcome("Hello again!") + CART)
        server.restart()
        assert versions(server) == {"welcome": 2, "cart rescue": 1}
        contents = {a["offer"]: a["content"] for a in decide(server, "user_id:new")["actions"]}
        assert contents == {"welcome": {"title": "Hello again!"}}
        # Offers made through the API stay when the file does not name them.
        r = server.admin("POST", "/v1/offers", json={"name": "api made", "content": {"web": "x"}})
        assert r.status_code == 201, r.text
        server.restart()
        assert versions(server) == {"welcome": 2, "cart rescue": 1, "api made": 1}
    finally:
        server.stop()


def test_a_broken_offer_in_the_config_file_refuses_to_start_saying_where(tmp_path):
    broken = welcome("Welcome!") + '''
[[offers]]
name = "typo"
eligibility = 'trait plan =='
content.web = "x"
'''
    refused = start_refused(tmp_path, broken)
    assert refused.returncode == 2, (refused.returncode, refused.stderr)
    assert 'offers[1] "typo": eligibility:' in refused.stderr and "line 1, column 13" in refused.stderr, refused.stderr
    # What only the store can tell (an experiment that does not exist) is
    # checked at start as the API checks it, naming the entry too.
    missing = welcome("Welcome!") + '''
[[offers]]
name = "tested"
content.web = "x"
experiment = { name = "nope", variants = { b = { web = "y" } } }
'''
    refused = start_refused(tmp_path, missing)
    assert refused.returncode == 1, (refused.returncode, refused.stderr)
    assert 'offers[1] "tested": experiment.name: no experiment "nope"' in refused.stderr, refused.stderr
