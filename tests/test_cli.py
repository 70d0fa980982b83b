"""The `kairos` command line against a running server: sources, import, tail,
and `kairos serve` refusing a bad configuration."""

import json
import os
import queue
import subprocess
import threading
import time
import uuid

import pytest
import requests

from conftest import ADMIN_TOKEN, Kairos, free_port, kairos_binary

REPORT_LINE = "rows={rows} accepted={accepted} duplicates={duplicates} suppressed={suppressed} rejected={rejected}"


def cli_env(server, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIROS_")}
    env.update(KAIROS_URL=server.base_url, KAIROS_ADMIN_TOKEN=ADMIN_TOKEN, NO_COLOR="1")
    env.update(extra)
    return env


def kairos(server, *args, env=None, timeout=60):
    result = subprocess.run([str(kairos_binary()), *args], capture_output=True, text=True,
                            env=env or cli_env(server), timeout=timeout)
    return result


def ok(result):
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


def last_line(stdout):
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines, "no output on stdout"
    return lines[-1].strip()


def post_batch(server, key, events):
    return requests.post(server.base_url + "/v1/batch", json={"batch": events}, headers=Kairos.basic(key), timeout=30)


def event(message_id=None, **extra):
    e = {"type": "track", "event": "Signed Up", "userId": "cli-user", "timestamp": "2024-05-01T12:00:00Z",
         "messageId": message_id or f"cli-{uuid.uuid4()}"}
    e.update(extra)
    return e


@pytest.fixture(scope="module")
def server(shared_kairos):
    return shared_kairos


# --- sources -----------------------------------------------------------------------

def test_sources_create_list_rotate(server):
    name = f"web-{uuid.uuid4().hex[:6]}"
    created = json.loads(ok(kairos(server, "sources", "create", name)))
    assert created["name"] == name and created["id"] and created["write_key"], created
    assert server.admin("GET", f"/v1/admin/sources/{created['id']}").json()["write_key"] == created["write_key"]

    listing = ok(kairos(server, "sources", "list"))
    row = [line for line in listing.splitlines() if created["id"] in line]
    assert len(row) == 1, listing
    assert name in row[0] and created["write_key"] in row[0], row

    assert post_batch(server, created["write_key"], [event()]).status_code == 200
    rotated = json.loads(ok(kairos(server, "sources", "rotate", created["id"])))
    new_key = rotated["write_key"]
    assert rotated["id"] == created["id"] and new_key and new_key != created["write_key"], rotated
    old = post_batch(server, created["write_key"], [event()])
    assert old.status_code == 401, old.text
    assert post_batch(server, new_key, [event()]).status_code == 200
    listing = ok(kairos(server, "sources", "list"))
    assert new_key in listing and created["write_key"] not in listing

    graced = json.loads(ok(kairos(server, "sources", "rotate", created["id"], "--grace-seconds", "3600")))
    assert post_batch(server, new_key, [event()]).status_code == 200, "old key must work during the grace period"
    assert post_batch(server, graced["write_key"], [event()]).status_code == 200
    assert len(server.events(created["id"])) == 4


def test_sources_flags_instead_of_env(server):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIROS_")}
    out = ok(kairos(server, "sources", "--url", server.base_url, "--admin-token", ADMIN_TOKEN, "list", env=env))
    assert "write key" in out.splitlines()[0].lower()


def test_sources_errors_are_explained(server):
    no_token = kairos(server, "sources", "list", env=cli_env(server, KAIROS_ADMIN_TOKEN=""))
    assert no_token.returncode != 0
    assert "token" in no_token.stderr.lower(), no_token.stderr

    wrong = kairos(server, "sources", "list", env=cli_env(server, KAIROS_ADMIN_TOKEN="wrong-token-123"))
    assert wrong.returncode != 0
    assert "401" in wrong.stderr and "bearer" in wrong.stderr.lower(), wrong.stderr

    missing = kairos(server, "sources", "rotate", "src_does_not_exist")
    assert missing.returncode != 0
    assert "404" in missing.stderr and "src_does_not_exist" in missing.stderr, missing.stderr

    down = kairos(server, "sources", "list", env=cli_env(server, KAIROS_URL=f"http://127.0.0.1:{free_port()}"))
    assert down.returncode != 0
    assert "connect" in down.stderr.lower(), down.stderr


# --- import ------------------------------------------------------------------------

def test_import_ndjson(server, tmp_path):
    source = server.create_source("import-ndjson")
    good = [event(properties={"plan": "pro", "seats": i}) for i in range(5)]
    no_message_id = {k: v for k, v in event(userId=f"nomid-{uuid.uuid4()}").items() if k != "messageId"}
    lines = [
        json.dumps(good[0]),
        json.dumps(good[1]),
        "",  # blank lines are skipped, not rows
        '{"type": "track", "event": "Broken", "userId": ',  # not JSON
        json.dumps(good[2]),
        json.dumps(event(userId=None)),  # no identity
        json.dumps(event(timestamp="yesterday-ish")),  # bad timestamp
        json.dumps(good[3]),
        json.dumps([1, 2, 3]),  # JSON, not an event
        json.dumps(no_message_id),
        json.dumps(good[4]),
    ]
    path = tmp_path / "events.ndjson"
    path.write_text("\n".join(lines) + "\n")
    report_path = tmp_path / "report.json"

    first = ok(kairos(server, "import", str(path), "--write-key", source["write_key"], "--report", str(report_path)))
    assert last_line(first) == REPORT_LINE.format(rows=10, accepted=6, duplicates=0, suppressed=0, rejected=4), first
    stored = server.events(source["id"])
    ids = [e["messageId"] for e in stored]
    assert sorted(m for m in ids if not m.startswith("kairos-")) == sorted(g["messageId"] for g in good)
    assert len(ids) == 6 and len(set(ids)) == 6, ids
    by_id = {e["messageId"]: e for e in stored}
    assert by_id[good[3]["messageId"]]["properties"] == {"plan": "pro", "seats": 3}
    assert any(e.get("userId") == no_message_id["userId"] for e in stored)

    second = ok(kairos(server, "import", str(path), "--write-key", source["write_key"]))
    assert last_line(second) == REPORT_LINE.format(rows=10, accepted=0, duplicates=6, suppressed=0, rejected=4), second
    assert len(server.events(source["id"])) == 6, "importing twice must not add events"

    report = json.loads(report_path.read_text())
    assert len(report["rejected"]) == 4, report
    # File lines (1-based): 4 not JSON, 6 no identity, 7 bad timestamp, 9 not an object.
    assert "not json" in json.dumps(report["rejected"]).lower()
    assert sorted(row["line"] for row in report["rejected"]) == [4, 6, 7, 9], report["rejected"]


def test_import_csv(server, tmp_path):
    source = server.create_source("import-csv")
    ids = [f"csv-{uuid.uuid4()}" for _ in range(6)]
    rows = [
        "type,event,userId,timestamp,messageId,properties.revenue",
        f"track,Order Completed,u-1,2024-05-01T10:00:00Z,{ids[0]},19.99",
        f"track,Order Completed,u-2,2024-05-01T11:00:00.123Z,{ids[1]},5",
        f"track,Order Completed,,2024-05-01T11:00:00Z,{ids[2]},7",  # no userId
        f"track,Order Completed,u-3,31/12/2024,{ids[3]},8",  # bad timestamp
        f'track,"Order, Refunded",u-4,2024-05-02T09:30:00+02:00,{ids[4]},-3.5',
        f"identify,,u-5,2024-05-02T09:30:00Z,{ids[5]},",
    ]
    path = tmp_path / "events.csv"
    path.write_text("\n".join(rows) + "\n")

    first = ok(kairos(server, "import", str(path), "--write-key", source["write_key"]))
    assert last_line(first) == REPORT_LINE.format(rows=6, accepted=4, duplicates=0, suppressed=0, rejected=2), first
    stored = {e["messageId"]: e for e in server.events(source["id"])}
    assert set(stored) == {ids[0], ids[1], ids[4], ids[5]}, stored.keys()
    assert stored[ids[0]]["properties"] == {"revenue": 19.99}, stored[ids[0]]
    assert stored[ids[1]]["properties"] == {"revenue": 5}
    assert stored[ids[4]]["event"] == "Order, Refunded" and stored[ids[4]]["properties"] == {"revenue": -3.5}
    assert stored[ids[4]]["timestamp"].startswith("2024-05-02T07:30:00"), stored[ids[4]]
    assert stored[ids[5]]["type"] == "identify" and stored[ids[5]]["userId"] == "u-5"

    second = ok(kairos(server, "import", str(path), "--write-key", source["write_key"]))
    assert last_line(second) == REPORT_LINE.format(rows=6, accepted=0, duplicates=4, suppressed=0, rejected=2), second
    assert len(server.events(source["id"])) == 4


def test_import_several_files_and_small_batches(server, tmp_path):
    source = server.create_source("import-multi")
    a = [event() for _ in range(7)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(e) + "\n" for e in a))
    csv_ids = [f"csv-{uuid.uuid4()}" for _ in range(3)]
    (tmp_path / "b.csv").write_text("type,event,userId,messageId\n" +
                                    "".join(f"track,Clicked,u,{m}\n" for m in csv_ids))
    out = ok(kairos(server, "import", str(tmp_path / "a.jsonl"), str(tmp_path / "b.csv"),
                    "--write-key", source["write_key"], "--batch-size", "2"))
    assert last_line(out) == REPORT_LINE.format(rows=10, accepted=10, duplicates=0, suppressed=0, rejected=0), out
    assert len(server.events(source["id"])) == 10


def test_import_failures(server, tmp_path):
    source = server.create_source("import-bad")
    path = tmp_path / "bad.ndjson"
    path.write_text(json.dumps(event(userId=None)) + "\nnot json\n")
    all_bad = kairos(server, "import", str(path), "--write-key", source["write_key"])
    assert all_bad.returncode != 0, all_bad.stdout
    assert last_line(all_bad.stdout) == REPORT_LINE.format(rows=2, accepted=0, duplicates=0, suppressed=0, rejected=2)
    assert server.events(source["id"]) == []

    good = tmp_path / "good.ndjson"
    good.write_text(json.dumps(event()) + "\n")
    wrong_key = kairos(server, "import", str(good), "--write-key", "wk_not_a_key")
    assert wrong_key.returncode != 0
    assert "401" in wrong_key.stderr and "write key" in wrong_key.stderr.lower(), wrong_key.stderr

    missing = kairos(server, "import", str(tmp_path / "nope.ndjson"), "--write-key", source["write_key"])
    assert missing.returncode != 0 and "nope.ndjson" in missing.stderr, missing.stderr


# --- tail --------------------------------------------------------------------------

class LineReader:
    def __init__(self, stream):
        self.lines = queue.Queue()
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream):
        for line in iter(stream.readline, ""):
            self.lines.put(line)
        self.lines.put(None)

    def get(self, timeout):
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return ""


def test_tail(server):
    source = server.create_source("tail")
    other = server.create_source("tail-other")
    proc = subprocess.Popen([str(kairos_binary()), "tail", "--source", source["id"]], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env(server))
    try:
        stdout, stderr = LineReader(proc.stdout), LineReader(proc.stderr)
        banner = stderr.get(timeout=10)  # printed once the stream is open
        assert banner and "tail" in banner.lower(), f"no banner on stderr (exit {proc.poll()}): {banner!r}"

        sent = [event(), event(type="identify", traits={"plan": "pro"}), event()]
        assert post_batch(server, other["write_key"], [event()]).status_code == 200  # other source: not shown
        assert post_batch(server, source["write_key"], sent[:2]).status_code == 200
        r = requests.post(server.base_url + "/v1/track", json=sent[2], headers=Kairos.basic(source["write_key"]),
                          timeout=10)
        assert r.status_code == 200

        got = []
        deadline = time.monotonic() + 10
        while len(got) < len(sent) and time.monotonic() < deadline:
            line = stdout.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                pytest.fail(f"kairos tail exited ({proc.poll()}) after {got}")
            if line.strip():
                got.append(json.loads(line))
        assert [e["messageId"] for e in got] == [e["messageId"] for e in sent], got
        assert all(e["sourceId"] == source["id"] for e in got)
        assert got[1]["type"] == "identify" and got[1]["traits"] == {"plan": "pro"}
        assert stdout.get(timeout=0.5) == "", "tail printed an event of another source or a duplicate"
        assert proc.poll() is None, "tail must keep running"
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_tail_errors(server):
    result = kairos(server, "tail", env=cli_env(server, KAIROS_ADMIN_TOKEN="wrong-token-123"), timeout=20)
    assert result.returncode != 0
    assert "401" in result.stderr, result.stderr


# --- serve with a bad configuration ----------------------------------------------------

def test_serve_bad_config_lists_every_problem(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIROS_")}
    env.update(KAIROS_LISTEN="nowhere", KAIROS_EVENT_BYTES_MAX="abc", KAIROS_DEDUP_WINDOW="soon",
               KAIROS_TYPO_SETTING="1")
    result = subprocess.run([str(kairos_binary()), "serve", "--data-dir", str(tmp_path / "data"), "--no-demo"],
                            capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode == 2, f"exit {result.returncode}: {result.stderr}"
    err = result.stderr
    for needle in ("nowhere", "KAIROS_EVENT_BYTES_MAX", "abc", "soon", "KAIROS_TYPO_SETTING"):
        assert needle in err, f"stderr should mention {needle!r}: {err}"
    assert "listen" in err.lower()
    problem_lines = [line for line in err.splitlines() if line.strip().startswith("-")]
    assert len(problem_lines) >= 4, err


def test_serve_bad_config_file(tmp_path):
    config = tmp_path / "kairos.toml"
    config.write_text('listen = "127.0.0.1:notaport"\n[limits]\nevent_bytes_max = "big"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIROS_")}
    result = subprocess.run([str(kairos_binary()), "serve", "--config", str(config),
                             "--data-dir", str(tmp_path / "data")],
                            capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode == 2, f"exit {result.returncode}: {result.stderr}"
    assert "kairos.toml" in result.stderr and "event_bytes_max" in result.stderr, result.stderr


def serve_raw(tmp_path, args, env_updates):
    """`kairos serve` with exactly these arguments and KAIROS_ variables (none
    inherited); returns the process and its base URL once ready."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIROS_")}
    env.update(KAIROS_LISTEN=f"127.0.0.1:{port}", KAIROS_ADMIN_TOKEN=ADMIN_TOKEN, **env_updates)
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([str(kairos_binary()), "serve", *args], stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
        try:
            if requests.get(base + "/readyz", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.05)
    return proc, base


def test_serve_good_config_from_env(tmp_path):
    proc, base = serve_raw(tmp_path, [], dict(KAIROS_BATCH_EVENTS_MAX="3", KAIROS_DATA_DIR=str(tmp_path / "data"),
                                              KAIROS_DEMO="false"))
    try:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        source = requests.post(base + "/v1/admin/sources", json={"name": "env"}, headers=headers, timeout=10).json()
        r = requests.post(base + "/v1/batch", json={"batch": [event() for _ in range(4)]},
                          headers=Kairos.basic(source["write_key"]), timeout=10)
        assert r.status_code == 400 and r.json()["code"] == "batch_too_many_events", r.text
        assert "3" in r.json()["detail"]
        assert requests.get(base + "/v1/admin/events", headers=headers, timeout=10).json()["events"] == [], \
            "KAIROS_DEMO=false must not create demo events"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_first_command_serves_demo_data_with_audiences_and_computed_traits(tmp_path):
    """`kairos serve` with the demo (the README's first command): demo events,
    and audiences and computed traits over them, backfilled at start."""
    proc, base = serve_raw(tmp_path, ["--data-dir", str(tmp_path / "data")], {})
    try:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ada = requests.get(base + "/v1/profiles/user_id:ada", headers=headers, timeout=10).json()
        assert ada["computed"]["orders_90d"] == 1 and ada["computed"]["spend_365d"] == 89, ada
        assert "recent buyers" in ada["audiences"], ada
        audiences = {a["name"]: a["size"] for a in requests.get(base + "/v1/audiences", headers=headers, timeout=10).json()["audiences"]}
        assert audiences["recent buyers"] == 3 and audiences["big spenders"] == 1, audiences
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# --- logs and progress on non-terminals (issue 12, item 15) ------------------------

def serve_logging(tmp_path, args, env_updates=None):
    """Serves with stdout and stderr going to a file (not a terminal), with a
    debug filter so that requests log something; returns the log's bytes
    after one source was created and the server stopped."""
    proc, base = serve_raw(tmp_path, ["--data-dir", str(tmp_path / "data"), "--no-demo", *args],
                           dict(KAIROS_LOG="debug,fjall=warn,lsm_tree=warn", **(env_updates or {})))
    try:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        r = requests.post(base + "/v1/admin/sources", json={"name": "logs"}, headers=headers, timeout=10)
        assert r.status_code == 201, r.text
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return (tmp_path / "serve.log").read_bytes()


def test_text_logs_have_no_escape_codes_when_not_on_a_terminal(tmp_path):
    log = serve_logging(tmp_path, [])
    assert b"serving" in log and b"shutting down" in log, log[-2000:]
    assert b"\x1b" not in log, "ANSI escape codes in a log file"
    # KAIROS_LOG (the log filter) is a known setting, not a configuration error.
    assert b"unknown setting" not in log


def test_json_logs_are_one_object_per_line(tmp_path):
    log = serve_logging(tmp_path, ["--log-format", "json"]).decode()
    assert "\x1b" not in log
    records = []
    for line in log.splitlines():
        # The banner (how to connect) is plain text on stdout, before any log.
        if line.startswith("Kairos listening") or line.startswith("  ") or not line.strip():
            continue
        records.append(json.loads(line))
    assert records, log
    assert all({"timestamp", "level", "fields"} <= set(record) for record in records), records[:3]
    messages = [record["fields"].get("message") for record in records]
    assert "serving" in messages and "source created" in messages, messages
    assert {record["level"] for record in records} <= {"TRACE", "DEBUG", "INFO", "WARN", "ERROR"}


def test_import_on_a_pipe_prints_progress_lines_with_units(server, tmp_path):
    source = server.create_source("import-progress")
    path = tmp_path / "many.ndjson"
    path.write_text("".join(json.dumps(event(f"progress-{i}", userId=f"p{i % 50}")) + "\n" for i in range(2000)))
    result = kairos(server, "import", str(path), "--write-key", source["write_key"],
                    "--batch-size", "20", "--progress-every", "100ms")
    ok(result)
    assert last_line(result.stdout) == REPORT_LINE.format(rows=2000, accepted=2000, duplicates=0, suppressed=0,
                                                          rejected=0)
    progress = [line for line in result.stderr.splitlines() if line.startswith("import ")]
    assert "\x1b" not in result.stderr and "\r" not in result.stderr
    assert len(progress) >= 2, result.stderr  # periodic lines, then the final one
    assert all(" events/s" in line and "% of " in line for line in progress), progress
    assert progress[-1].endswith("(done)") and ": 2000 events, 100% of " in progress[-1], progress[-1]
    # Trait records count in records/s.
    crm = tmp_path / "crm.csv"
    crm.write_text("email,plan\nann@example.com,pro\nbob@example.com,free\n")
    result = kairos(server, "import", "--traits", "email", str(crm))
    ok(result)
    assert any(line.startswith("import ") and ": 2 records," in line and " records/s" in line
               for line in result.stderr.splitlines()), result.stderr
