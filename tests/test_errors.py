"""Typed errors and one error table (issue 13, item 4): every kind of
failure is answered the same way whatever raised it. A create with a taken
name is 409 `name_taken` for every kind of named thing, with a detail naming
the thing and how to fix it; a missing thing is 404 `not_found`; each
problem is `application/problem+json` whose `type` ends in its `code`. A
full disk during group commit is an I/O failure (503, retryable), never
reported as corrupt data."""

import subprocess

import pytest
import requests

from conftest import Kairos

PROBLEMS = "https://kairos.dev/problems/"


def problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status, body
    assert body["code"] == code and body["type"] == PROBLEMS + code, body
    return body


def test_every_kind_of_named_thing_refuses_a_taken_name_the_same_way(kairos):
    # A receiver nobody listens on: nothing is delivered in this test.
    hooks = {"type": "webhook", "name": "hooks", "url": "http://127.0.0.1:9/h"}
    creates = [
        ("audience", "/v1/audiences", {"name": "vip", "definition": 'performed "Order"'}),
        ("computed trait", "/v1/computed-traits",
         {"name": "orders", "definition": 'count "Order"'}),
        ("destination", "/v1/destinations", hooks),
        ("journey", "/v1/journeys",
         {"name": "welcome", "trigger": {"event": "Signed Up"}, "steps": [{"send": {"destination": "hooks"}}]}),
        ("audience sync", "/v1/audience-syncs", {"name": "vip-sync", "audience": "vip", "destination": "hooks"}),
    ]
    answers = []
    for thing, path, body in creates:
        first = kairos.admin("POST", path, json=body)
        assert first.status_code == 201, (thing, first.text)
        again = problem(kairos.admin("POST", path, json=body), 409, "name_taken")
        assert f'a {thing} named "{body["name"]}" exists' in again["detail"], again
        assert "choose another name" in again["detail"], again
        answers.append((again["status"], again["type"], again["title"]))
    assert len(set(answers)) == 1, f"one answer for every kind of thing: {answers}"


@pytest.mark.parametrize("method,path", [
    ("GET", "/v1/audiences/aud_nope"),
    ("GET", "/v1/computed-traits/ctr_nope"),
    ("GET", "/v1/destinations/dst_nope"),
    ("GET", "/v1/journeys/jny_nope"),
    ("DELETE", "/v1/audience-syncs/syn_nope"),
    ("DELETE", "/v1/models/nope"),
    ("GET", "/v1/admin/sources/src_nope"),
    ("GET", "/v1/profiles/user_id:nobody"),
    ("DELETE", "/v1/lists/vip/members/email:nobody@example.org"),
])
def test_every_kind_of_missing_thing_is_the_same_404(shared_kairos, method, path):
    body = problem(shared_kairos.admin(method, path), 404, "not_found")
    assert body["title"] == "Not found" and body["detail"], body


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MB tmpfs, so the disk really fills (needs root to mount)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount_point)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_is_a_retryable_storage_failure_not_corrupt_data(small_disk, tmp_path):
    server = Kairos(small_disk / "data")
    server.log_path = tmp_path / "kairos.log"  # not on the disk that fills
    server.start()
    try:
        key = server.create_source("web")["write_key"]
        refused = []
        for round_number in range(400):
            batch = [{"type": "track", "event": "E", "userId": f"u{round_number}-{n}",
                      "messageId": f"m{round_number}-{n}", "properties": {"junk": "x" * 2000}}
                     for n in range(100)]
            r = requests.post(server.base_url + "/v1/batch", json={"batch": batch},
                              headers=Kairos.basic(key), timeout=30)
            if r.status_code != 200:
                refused.append(r)
                if len(refused) == 2:
                    break
        assert refused, "6 MB filled up"
        # The group commit that hit ENOSPC: an I/O failure, retryable.
        first = problem(refused[0], 503, "storage_unavailable")
        assert refused[0].headers["retry-after"] == "1", first
        assert "nothing was acknowledged" in first["detail"] and "disk" in first["detail"], first
        # After a failed fsync the writer stops taking writes (and says so).
        problem(refused[1], 503, "stopped")
        assert requests.get(server.base_url + "/readyz", timeout=5).status_code == 503
    finally:
        server.stop()
