"""Connection limits (issue 12, item 7): slow or idle clients cannot exhaust
the server's descriptors or starve normal requests.

Each test starts `kairos serve` with lowered `[server]` limits and talks to it
over raw loopback sockets, so it controls exactly how much of a request is
sent and when. Counts and waits are bounded.
"""

import json
import os
import resource
import select
import signal
import socket
import time

import requests

from conftest import ADMIN_TOKEN, Kairos

# kairos_http::server::EVICTABLE_AFTER: a connection must have waited this
# long for a request head before a newcomer at the cap may evict it.
EVICTABLE_AFTER = 1.0


def start(tmp_path, **server):
    lines = ["[server]"] + [
        f"{key} = {json.dumps(value)}" for key, value in server.items()
    ]
    config = tmp_path / "kairos.toml"
    config.write_text("\n".join(lines) + "\n")
    return Kairos(tmp_path / "data", extra_args=["--config", str(config)]).start()


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def connect(server, timeout=5.0):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    return sock


def read_until_closed(sock, limit=1.0 * 10):
    """Everything the server sends until it closes (or `limit` seconds)."""
    data = b""
    deadline = time.monotonic() + limit
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def metric(server, name, **labels):
    # Over the cap, /metrics itself may be answered 503 while a connection
    # just closed is not released yet: read until it answers.
    deadline = time.monotonic() + 5
    while True:
        response = server.admin("GET", "/metrics")
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert response.status_code == 200, response.text
    text = response.text
    total = 0.0
    for line in text.splitlines():
        if (line.startswith(name + "{") or line.startswith(name + " ")) and \
                all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def track(server, key, user="u1"):
    return requests.post(
        server.base_url + "/v1/track",
        headers=Kairos.basic(key),
        json={"userId": user, "event": "Ping"},
        timeout=10,
    )


def body_of(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


def test_half_open_flood_does_not_starve_a_normal_request(tmp_path):
    """1,100 half-sent heads against a cap of 100: a normal POST /v1/track is
    answered promptly, the server's descriptors stay bounded, and the flood's
    connections are evicted or refused rather than held."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2000:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    server = start(tmp_path, connections_max=100, header_read_timeout="30s", idle_timeout="30s")
    flood = []
    try:
        key = server.create_source("web")["write_key"]
        assert track(server, key).status_code == 200
        baseline = open_fds(server.proc.pid)
        for _ in range(1100):
            sock = connect(server)
            sock.sendall(b"POST /v1/track HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-")
            flood.append(sock)
        # Half-open heads are evictable once they waited this long.
        time.sleep(EVICTABLE_AFTER + 0.3)
        started = time.monotonic()
        response = track(server, key, user="u2")
        elapsed = time.monotonic() - started
        assert response.status_code == 200, response.text
        assert elapsed < 2.0, f"a normal request took {elapsed:.2f}s under the flood"
        fds = open_fds(server.proc.pid)
        # 100 served + at most 256 over-cap answers lingering + slack.
        assert fds <= baseline + 100 + 256 + 20, (baseline, fds)
        # The flood is not held: nearly every flood connection was refused
        # (503) or evicted (closed) while the cap stayed at 100.
        closed, refused = 0, 0
        deadline = time.monotonic() + 5
        pending = {sock.fileno(): sock for sock in flood}
        poller = select.poll()  # select() cannot watch descriptors over 1024
        for fd in pending:
            poller.register(fd, select.POLLIN)
        while pending and time.monotonic() < deadline:
            for fd, _ in poller.poll(200):
                try:
                    chunk = pending[fd].recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if chunk.startswith(b"HTTP/1.1 503"):
                    refused += 1
                closed += 1
                poller.unregister(fd)
                del pending[fd]
        assert closed >= 1000, (closed, refused)
        reasons = {reason: metric(server, "kairos_http_connections_closed_total", reason=reason)
                   for reason in ("evicted", "over_cap", "dropped")}
        # Over the cap: evicted once they waited, else answered 503 (while at
        # most 256 answers linger), else closed at once.
        assert sum(reasons.values()) >= 1000, reasons
        assert metric(server, "kairos_http_connections_open") <= 100
        print(f"flood: {closed} of 1100 closed by the server, {refused} of them with a 503; "
              f"fds {baseline} -> {fds}; normal track {elapsed * 1000:.0f} ms; closed by reason {reasons}")
    finally:
        for sock in flood:
            sock.close()
        server.stop()


def test_over_cap_connections_get_a_503_problem_without_being_read(tmp_path):
    """With every slot busy (event streams in flight, never evictable), a new
    connection is answered 503 problem+json with Retry-After at once."""
    server = start(tmp_path, connections_max=3)
    streams = []
    try:
        for _ in range(3):
            sock = connect(server)
            sock.sendall(
                b"GET /v1/admin/tail HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                + f"Authorization: Bearer {ADMIN_TOKEN}\r\n\r\n".encode()
            )
            sock.settimeout(5)
            assert sock.recv(4096).startswith(b"HTTP/1.1 200"), "the stream opened"
            streams.append(sock)
        extra = connect(server)
        started = time.monotonic()
        # Only part of a head: the answer must not wait for the rest.
        extra.sendall(b"GET /healthz HTTP/1.1\r\n")
        raw, closed = read_until_closed(extra, limit=5)
        assert closed and time.monotonic() - started < 2.0
        head, body = body_of(raw)
        assert head.startswith("HTTP/1.1 503"), head
        assert "retry-after: 1" in head.lower()
        assert "application/problem+json" in head
        problem = json.loads(body)
        assert problem["status"] == 503 and "connections_max" in problem["detail"]
        # A slot frees as soon as a stream closes.
        streams.pop().close()
        deadline = time.monotonic() + 5
        while True:
            try:
                if requests.get(server.base_url + "/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "a freed slot was never reused"
            time.sleep(0.1)
        assert metric(server, "kairos_http_connections_closed_total", reason="over_cap") >= 1
    finally:
        for sock in streams:
            sock.close()
        server.stop()


def test_a_slow_header_sender_is_cut_after_the_header_timeout(tmp_path):
    server = start(tmp_path, header_read_timeout="1s", idle_timeout="30s")
    try:
        sock = connect(server)
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        closed_at = None
        # Trickle a header byte every 200 ms: progress does not extend it.
        for _ in range(30):
            try:
                sock.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                closed_at = time.monotonic()
                break
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                try:
                    data = sock.recv(4096)
                except ConnectionResetError:
                    data = b""
                if not data:
                    closed_at = time.monotonic()
                    break
        assert closed_at is not None, "the slow header sender was never cut"
        assert 0.9 <= closed_at - started < 3.0, closed_at - started
        sock.close()
        assert metric(server, "kairos_http_connections_closed_total", reason="header_timeout") == 1
        # A normal client is unaffected.
        assert requests.get(server.base_url + "/healthz", timeout=5).status_code == 200
    finally:
        server.stop()


def test_a_huge_head_is_refused_with_431(tmp_path):
    server = start(tmp_path)
    try:
        sock = connect(server)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        try:
            for i in range(200):  # 200 headers of 1 KB: over the 64 KB head limit
                sock.sendall(f"X-Filler-{i}: {'a' * 1000}\r\n".encode())
        except (BrokenPipeError, ConnectionResetError):
            pass
        raw, closed = read_until_closed(sock, limit=5)
        assert raw.startswith(b"HTTP/1.1 431"), raw[:200]
        assert requests.get(server.base_url + "/healthz", timeout=5).status_code == 200
    finally:
        server.stop()


def test_a_slow_body_is_cut_with_a_408(tmp_path):
    server = start(tmp_path, body_read_timeout="1s")
    try:
        key = server.create_source("web")["write_key"]
        body = json.dumps({"userId": "u1", "event": "Slow"}).encode()
        sock = connect(server)
        auth = Kairos.basic(key)["Authorization"]
        sock.sendall(
            b"POST /v1/track HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Authorization: {auth}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[:10]
        )
        started = time.monotonic()
        raw, closed = read_until_closed(sock, limit=6)
        elapsed = time.monotonic() - started
        head, payload = body_of(raw)
        assert head.startswith("HTTP/1.1 408"), raw
        assert json.loads(payload)["code"] == "body_timeout"
        assert closed, "the connection stays open after a cut body"
        assert 0.9 <= elapsed < 3.0, elapsed
        assert track(server, key).status_code == 200
        # Admin bodies too (they are read by another extractor).
        sock = connect(server)
        sock.sendall(
            b"POST /v1/audiences HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Length: 100\r\n\r\n".encode()
            + b'{"name": '
        )
        raw, closed = read_until_closed(sock, limit=6)
        head, payload = body_of(raw)
        assert head.startswith("HTTP/1.1 408") and json.loads(payload)["code"] == "body_timeout", raw
    finally:
        server.stop()


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(tmp_path):
    server = start(tmp_path, idle_timeout="1s", header_read_timeout="10s")
    try:
        sock = connect(server)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        sock.settimeout(5)
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first
        idle_from = time.monotonic()
        rest, closed = read_until_closed(sock, limit=6)
        idle = time.monotonic() - idle_from
        assert closed and rest == b""
        # Idle, not the (longer) header timeout, closed it.
        assert 0.9 <= idle < 3.0, idle
        assert metric(server, "kairos_http_connections_closed_total", reason="idle_timeout") == 1
    finally:
        server.stop()


def test_shutdown_ends_event_streams_instead_of_waiting_for_them(tmp_path):
    server = start(tmp_path)
    sock = connect(server)
    sock.sendall(
        b"GET /v1/admin/tail HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Authorization: Bearer {ADMIN_TOKEN}\r\n\r\n".encode()
    )
    sock.settimeout(5)
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(timeout=8)
    assert time.monotonic() - started < 5.0
    assert server.proc.returncode == 0
    rest, closed = read_until_closed(sock, limit=2)
    assert closed
    sock.close()
    server.proc = None
