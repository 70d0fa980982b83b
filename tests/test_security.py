"""Files and secrets, end to end against the real binary (issue 12, item 5):
the data directory and every file in it are private whatever the umask;
an admin token the operator set is never printed; /metrics needs the admin
token or the read-only metrics token; CORS only on the browser routes and
never with credentials on admin routes; X-Forwarded-Host believed only
from configured proxies."""

import os
import stat

import pytest
import requests

from conftest import ADMIN_TOKEN, Kairos

METRICS_TOKEN = "prometheus-reads-this"


def start(tmp_path, config: str = "", env=None, name="data") -> Kairos:
    path = tmp_path / f"{name}.toml"
    path.write_text(config)
    return Kairos(tmp_path / name, extra_args=["--config", str(path)], env=env).start()


def modes(root) -> dict:
    """Permission bits of the root and of everything under it."""
    found = {str(root): stat.S_IMODE(os.stat(root).st_mode)}
    for directory, subdirectories, files in os.walk(root):
        for name in subdirectories + files:
            path = os.path.join(directory, name)
            found[path] = stat.S_IMODE(os.lstat(path).st_mode)
    return found


def test_the_data_directory_and_its_files_are_private_under_umask_000(tmp_path):
    previous = os.umask(0)  # the child inherits it: the worst an operator could have
    try:
        server = start(tmp_path)
    finally:
        os.umask(previous)
    try:
        key = server.create_source("web")["write_key"]
        r = requests.post(server.base_url + "/v1/track", json={"userId": "u1", "event": "E"},
                          headers=Kairos.basic(key), timeout=10)
        assert r.status_code == 200, r.text
        server.restart()  # journals rotated, tables flushed: more files written
        found = modes(server.data_dir)
        assert len(found) > 5, found
        for path, mode in found.items():
            assert mode & 0o077 == 0, f"{path} is {mode:o}: readable by others"
        assert found[str(server.data_dir)] == 0o700
        # Files are 0600 (umask 077 in the server), directories 0700.
        assert {mode for path, mode in found.items() if os.path.isfile(path)} == {0o600}, found
    finally:
        server.stop()


def test_an_existing_open_data_directory_is_closed_at_start(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    server = start(tmp_path)
    try:
        assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
        assert "its mode is now 700" in server.log_path.read_text()
    finally:
        server.stop()


def test_an_admin_token_from_the_environment_or_the_config_is_never_printed(tmp_path):
    server = start(tmp_path, name="from-env")
    server.stop()
    printed = server.log_path.read_text()
    assert ADMIN_TOKEN not in printed
    assert "admin token: set from KAIROS_ADMIN_TOKEN (not printed)" in printed, printed

    config = tmp_path / "token.toml"
    config.write_text(f'admin_token = "{ADMIN_TOKEN}"\n')
    server = Kairos(tmp_path / "from-config", extra_args=["--config", str(config)])
    del server.env["KAIROS_ADMIN_TOKEN"]
    server.start()
    try:
        assert server.admin("GET", "/v1/admin/sources").status_code == 200  # the config's token works
    finally:
        server.stop()
    printed = server.log_path.read_text()
    assert ADMIN_TOKEN not in printed
    assert f"admin token: set from admin_token in {config} (not printed)" in printed, printed

    # A generated token is printed: the new user has no other copy at hand.
    server = Kairos(tmp_path / "generated")
    del server.env["KAIROS_ADMIN_TOKEN"]
    server.start()
    server.stop()
    line = next(line for line in server.log_path.read_text().splitlines() if "admin token" in line)
    assert line.split(": ")[-1].startswith("kat_"), line


def test_metrics_need_the_admin_token_or_the_metrics_token(tmp_path):
    server = start(tmp_path, f'metrics_token = "{METRICS_TOKEN}"\n')
    try:
        url = server.base_url + "/metrics"
        bearer = lambda token: {"Authorization": f"Bearer {token}"}
        r = requests.get(url, timeout=10)
        assert r.status_code == 401 and r.json()["code"] == "metrics_token_invalid", r.text
        assert "KAIROS_METRICS_TOKEN" in r.json()["detail"]
        assert requests.get(url, headers=bearer("wrong-token"), timeout=10).status_code == 401
        for token in (ADMIN_TOKEN, METRICS_TOKEN):
            r = requests.get(url, headers=bearer(token), timeout=10)
            assert r.status_code == 200 and "kairos_ingest_events_accepted_total" in r.text, r.text[:300]
        # The metrics token opens nothing else.
        r = requests.get(server.base_url + "/v1/admin/sources", headers=bearer(METRICS_TOKEN), timeout=10)
        assert r.status_code == 401
    finally:
        server.stop()
    # KAIROS_METRICS_TOKEN works the same.
    server = start(tmp_path, env={"KAIROS_METRICS_TOKEN": METRICS_TOKEN}, name="env")
    try:
        r = requests.get(server.base_url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10)
        assert r.status_code == 200
    finally:
        server.stop()


CORS_HEADERS = ("access-control-allow-origin", "access-control-allow-credentials", "access-control-allow-methods")


def test_cors_only_on_browser_routes_and_never_with_credentials_on_admin_routes(kairos):
    page = {"Origin": "https://shop.example"}
    key = kairos.create_source("web")["write_key"]
    preflight = {**page, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type"}
    # Collection: a page on any origin may send events (the browser SDKs).
    for path in ("/v1/batch", "/v1/track", "/v1/t", "/v1/in-app/stream"):
        r = requests.options(kairos.base_url + path, headers=preflight, timeout=10)
        assert r.status_code == 204 and r.headers["access-control-allow-origin"] == "https://shop.example", (path, r.headers)
    r = requests.post(kairos.base_url + "/v1/track", json={"userId": "u1", "event": "E"},
                      headers={**page, **Kairos.basic(key)}, timeout=10)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://shop.example"
    r = requests.get(kairos.base_url + f"/v1/projects/{key}/settings", headers=page, timeout=10)
    assert r.headers["access-control-allow-origin"] == "https://shop.example"
    # Admin and operations: no CORS at all, so no page can read an answer.
    for path in ("/v1/admin/sources", "/v1/profiles/user_id:u1", "/v1/audiences", "/metrics", "/v1/profiles/import"):
        r = requests.options(kairos.base_url + path, headers=preflight, timeout=10)
        assert not any(name in r.headers for name in CORS_HEADERS), (path, r.status_code, r.headers)
        r = requests.get(kairos.base_url + path, headers={**page, **kairos.admin_headers()}, timeout=10)
        assert r.status_code in (200, 404, 405), (path, r.status_code)
        assert not any(name in r.headers for name in CORS_HEADERS), (path, r.headers)


def settings_host(server: Kairos, key: str) -> tuple:
    r = requests.get(server.base_url + f"/v1/projects/{key}/settings", timeout=10,
                     headers={"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"})
    assert r.status_code == 200, r.text
    segment = r.json()["integrations"]["Segment.io"]
    return segment["protocol"], segment["apiHost"]


def test_forwarded_host_is_believed_only_from_a_configured_proxy(tmp_path):
    # The test client connects from 127.0.0.1: untrusted unless listed.
    for name, config in (("none", ""), ("other", 'trusted_proxies = ["10.0.0.0/8", "::1"]\n')):
        server = start(tmp_path, config, name=name)
        try:
            key = server.create_source("web")["write_key"]
            assert settings_host(server, key) == ("http", f"127.0.0.1:{server.port}/v1"), name
        finally:
            server.stop()
    server = start(tmp_path, 'trusted_proxies = ["127.0.0.0/8"]\n', name="trusted")
    try:
        key = server.create_source("web")["write_key"]
        assert settings_host(server, key) == ("https", "evil.example/v1")
    finally:
        server.stop()
    with pytest.raises(RuntimeError, match="trusted_proxies: \"proxy.local\": expected an IP address or a CIDR block"):
        start(tmp_path, 'trusted_proxies = ["proxy.local"]\n', name="bad")
