"""Replays every request real SDKs sent (../shared/data/sdk-captures) against Kairos.

Each capture file is one SDK session: config fetches, CORS preflights and
event posts, including retries that reuse messageIds. The requests are sent
again with the same method, path and query, headers (except Host,
Content-Length and Connection) and body bytes. Only the write keys change:
Kairos knows only keys it generated, so each captured key is swapped for the
key of a source created for it (Basic header, `writeKey` in the body or
query, the settings path); a gzip body is re-compressed only when its key
had to change.

Bodies the capture tool kept only as parsed JSON (`raw_body_b64` null; every
non-gzip body) are re-serialized the way the SDK wrote them: the JSON layout
whose byte length equals the captured `raw_body_len`.

The status the capture server answered back then was scripted (429s, 500s,
...): a correct server answers 200 to every valid event post.
"""

import base64
import gzip
import http.client
import json
import re
import urllib.parse
from collections import Counter
from datetime import timedelta, datetime

import pytest

from conftest import shared_data

CAPTURE_DIR = shared_data("sdk-captures")
CAPTURE_FILES = sorted(CAPTURE_DIR.glob("*.json"))

SKIPPED_HEADERS = {"host", "content-length", "connection"}
PATH_TYPES = {
    "t": "track", "i": "identify", "p": "page", "s": "screen", "g": "group", "a": "alias",
    "track": "track", "identify": "identify", "page": "page", "screen": "screen",
    "group": "group", "alias": "alias",
}
BATCH_PATHS = {"/v1/batch", "/v1/b", "/v1/import", "/beacon/v1/batch"}

JSON_LAYOUTS = (
    lambda o: json.dumps(o, separators=(",", ":"), ensure_ascii=False),  # JSON.stringify
    lambda o: json.dumps(o),  # Python json.dumps defaults
    lambda o: json.dumps(o, ensure_ascii=False),
    lambda o: json.dumps(o, separators=(",", ":")),
)


def test_capture_set_is_complete():
    """The replay below needs the capture files; an empty directory would pass vacuously."""
    assert len(CAPTURE_FILES) >= 50, f"only {len(CAPTURE_FILES)} capture files in {CAPTURE_DIR}"
    requests_total = sum(len(json.loads(f.read_text())) for f in CAPTURE_FILES)
    assert requests_total >= 150


# --- rebuilding the captured bytes ------------------------------------------

def captured_body(capture) -> bytes:
    """The body bytes as the SDK sent them (still compressed when it was gzip)."""
    if capture.get("raw_body_b64"):
        raw = base64.b64decode(capture["raw_body_b64"])
        assert len(raw) == capture["raw_body_len"], "capture raw_body_len disagrees with raw_body_b64"
        return raw
    if capture.get("body_text"):
        return capture["body_text"].encode()
    if capture.get("body_json") is not None:
        want = capture.get("raw_body_len")
        candidates = [layout(capture["body_json"]).encode() for layout in JSON_LAYOUTS]
        for candidate in candidates:
            if len(candidate) == want:
                return candidate
        raise AssertionError(f"cannot rebuild the {want}-byte body of {capture['method']} {capture['path']}")
    return b""


def decoded_body(capture) -> bytes:
    raw = captured_body(capture)
    if (capture.get("content_encoding") or "").lower() == "gzip":
        return gzip.decompress(raw)
    return raw


def captured_write_keys(capture):
    """Every write key the request carries, wherever it is."""
    keys = set()
    decoded = capture.get("authorization_basic_decoded")
    if decoded:
        user, _, password = decoded.partition(":")
        keys.add(user or password)
    for value in (capture.get("query") or {}).get("writeKey", []):
        keys.add(value)
    query = urllib.parse.urlsplit(capture["path"]).query
    for value in urllib.parse.parse_qs(query).get("writeKey", []):
        keys.add(value)
    match = re.match(r"^/v1/projects/([^/]+)/settings", capture["path"])
    if match:
        keys.add(match.group(1))
    body = capture.get("body_json")
    if isinstance(body, dict) and isinstance(body.get("writeKey"), str):
        keys.add(body["writeKey"])
    return {key for key in keys if key}


def rewrite_body(capture, key_map) -> bytes:
    raw = captured_body(capture)
    if not raw:
        return raw
    is_gzip = (capture.get("content_encoding") or "").lower() == "gzip"
    plain = gzip.decompress(raw) if is_gzip else raw
    changed = plain
    for old, new in key_map.items():
        pattern = re.compile(rb'("writeKey"\s*:\s*")' + re.escape(old.encode()) + rb'"')
        changed = pattern.sub(lambda m: m.group(1) + new.encode() + b'"', changed)
    if changed == plain:
        return raw  # untouched: the exact bytes the SDK sent
    return gzip.compress(changed) if is_gzip else changed


def rewrite_target(capture, key_map) -> str:
    path = capture["path"]
    for old, new in key_map.items():
        path = path.replace(f"/v1/projects/{old}/settings", f"/v1/projects/{new}/settings")
    split = urllib.parse.urlsplit(path)
    query = split.query
    if not query and capture.get("query"):
        query = urllib.parse.urlencode(capture["query"], doseq=True)
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        pairs = [(name, key_map.get(value, value) if name == "writeKey" else value) for name, value in pairs]
        query = urllib.parse.urlencode(pairs)
    return split.path + (f"?{query}" if query else "")


def rewrite_headers(capture, key_map):
    headers = []
    for name, value in capture["headers"]:
        if name.lower() in SKIPPED_HEADERS:
            continue
        if name.lower() == "authorization" and value.lower().startswith("basic "):
            decoded = base64.b64decode(value.split(" ", 1)[1]).decode()
            user, sep, password = decoded.partition(":")
            user, password = key_map.get(user, user), key_map.get(password, password)
            value = value.split(" ", 1)[0] + " " + base64.b64encode(f"{user}{sep}{password}".encode()).decode()
        headers.append((name, value))
    return headers


def send(server, method, target, headers, body):
    """Sends exactly these headers (plus Host, Content-Length, Connection)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", f"127.0.0.1:{server.port}")
        for name, value in headers:
            conn.putheader(name, value)
        if body or method in ("POST", "PUT"):
            conn.putheader("Content-Length", str(len(body)))
        conn.putheader("Connection", "close")
        conn.endheaders(body if body else None)
        response = conn.getresponse()
        payload = response.read()
        return response.status, response.headers, payload
    finally:
        conn.close()


def header_list(headers, name):
    value = headers.get(name) or ""
    return [item.strip().lower() for item in value.split(",") if item.strip()]


def check_cors(where, capture_headers, response_headers):
    origin = next((value for name, value in capture_headers if name.lower() == "origin"), None)
    allow_origin = response_headers.get("Access-Control-Allow-Origin")
    if origin is not None:
        assert allow_origin in (origin, "*"), f"{where}: Access-Control-Allow-Origin {allow_origin!r} for Origin {origin!r}"
        if allow_origin == "*":
            assert not any(name.lower() == "authorization" for name, _ in capture_headers), \
                f"{where}: '*' origin cannot be used for a credentialed request"
    assert "retry-after" in header_list(response_headers, "Access-Control-Expose-Headers"), \
        f"{where}: Access-Control-Expose-Headers must contain Retry-After (analytics-next reads it): {dict(response_headers)}"


def parse_time(text):
    """RFC 3339 with up to 9 fractional digits -> datetime (microseconds)."""
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text)
    assert match, f"not an RFC 3339 timestamp: {text!r}"
    base, fraction, zone = match.groups()
    fraction = (fraction or "0")[:6].ljust(6, "0")
    zone = "+00:00" if zone == "Z" else zone
    return datetime.fromisoformat(f"{base}.{fraction}{zone}")


def has_origin(capture):
    return any(name.lower() == "origin" for name, _ in capture["headers"])


def expected_events(capture):
    """(messageId, type, event) of each event a POST carries."""
    body = json.loads(decoded_body(capture))
    path = urllib.parse.urlsplit(capture["path"]).path
    if path in BATCH_PATHS:
        return [(e["messageId"], e["type"], dict(e, _batchSentAt=body.get("sentAt"))) for e in body["batch"]]
    path_type = PATH_TYPES[path.rsplit("/", 1)[-1]]
    return [(body["messageId"], path_type, body)]


# --- the replay -----------------------------------------------------------------

@pytest.mark.parametrize("capture_file", CAPTURE_FILES, ids=[f.stem for f in CAPTURE_FILES])
def test_replay_capture(shared_kairos, capture_file):
    captures = json.loads(capture_file.read_text())
    assert captures, f"{capture_file.name} is empty"
    old_keys = sorted({key for capture in captures for key in captured_write_keys(capture)})
    sources = {old: shared_kairos.create_source(f"{capture_file.stem}:{old}") for old in old_keys}
    key_map = {old: source["write_key"] for old, source in sources.items()}

    seen = {}  # messageId -> (type, event, old write key)
    failures = []
    for number, capture in enumerate(captures):
        target = rewrite_target(capture, key_map)
        headers = rewrite_headers(capture, key_map)
        body = rewrite_body(capture, key_map)
        where = f"{capture_file.name}#{number} {capture['method']} {target}"
        status, response_headers, payload = send(shared_kairos, capture["method"], target, headers, body)
        path = urllib.parse.urlsplit(target).path
        try:
            if capture["method"] == "OPTIONS":
                assert status in (200, 204), f"{where}: preflight answered {status}: {payload[:300]!r}"
                check_cors(where, capture["headers"], response_headers)
                requested = [h.strip().lower() for name, value in capture["headers"]
                             if name.lower() == "access-control-request-headers" for h in value.split(",") if h.strip()]
                allowed = header_list(response_headers, "Access-Control-Allow-Headers")
                for header in requested:
                    assert header in allowed or (header != "authorization" and "*" in allowed), \
                        f"{where}: requested header {header!r} not in Access-Control-Allow-Headers {allowed}"
                method = next((v for n, v in capture["headers"] if n.lower() == "access-control-request-method"), None)
                if method and method.upper() not in ("GET", "HEAD", "POST"):
                    assert method.lower() in header_list(response_headers, "Access-Control-Allow-Methods")
            elif capture["method"] == "POST":
                events = expected_events(capture)
                assert status == 200, f"{where}: expected 200, got {status}: {payload[:500]!r}"
                answer = json.loads(payload)
                new = [mid for mid, _, _ in events if mid not in seen]
                assert answer.get("success") is True, f"{where}: {answer}"
                assert answer.get("quarantined") == [], f"{where}: valid SDK events quarantined: {answer}"
                assert answer.get("accepted") == len(set(new)), f"{where}: accepted {answer} but {len(set(new))} new messageIds"
                assert answer.get("duplicates") == len(events) - len(set(new)), f"{where}: {answer}"
                if has_origin(capture):
                    check_cors(where, capture["headers"], response_headers)
                request_keys = captured_write_keys(capture)
                for mid, event_type, event in events:
                    seen.setdefault(mid, (event_type, event, request_keys))
            elif capture["method"] == "GET" and path.rstrip("/") == "/sourceConfig":
                assert status == 200, f"{where}: expected 200, got {status}: {payload[:300]!r}"
                config = json.loads(payload)
                old = captured_write_keys(capture).pop()
                assert config["source"]["writeKey"] == key_map[old], f"{where}: {config}"
                assert config["source"]["id"] == sources[old]["id"]
                if has_origin(capture):
                    check_cors(where, capture["headers"], response_headers)
            elif capture["method"] == "GET" and path.startswith("/v1/projects/"):
                assert status == 200, f"{where}: expected 200, got {status}: {payload[:300]!r}"
                settings = json.loads(payload)
                segment = settings["integrations"]["Segment.io"]
                old = captured_write_keys(capture).pop()
                assert segment["apiKey"] == key_map[old], f"{where}: {segment}"
                assert segment["apiHost"] == f"127.0.0.1:{shared_kairos.port}/v1", \
                    f"{where}: apiHost must point the SDK back at this server: {segment}"
            else:
                # /favicon.ico and the like: not part of the API; must not break anything.
                assert status < 500 and status != 405, f"{where}: {status} {payload[:300]!r}"
        except AssertionError as error:
            failures.append(str(error))
    assert not failures, "\n".join(failures)

    # Every distinct messageId is stored exactly once, in the right source, with the right type.
    for old, source in sources.items():
        stored = shared_kairos.events(source["id"])
        counts = Counter(event["messageId"] for event in stored)
        dupes = {mid: n for mid, n in counts.items() if n > 1}
        assert not dupes, f"{capture_file.name}: messageIds stored more than once: {dupes}"
        expected = {mid for mid, (_, _, keys) in seen.items() if old in keys}
        assert set(counts) == expected, (
            f"{capture_file.name} source for {old}: missing {sorted(expected - set(counts))}, "
            f"unexpected {sorted(set(counts) - expected)}")
        for event in stored:
            event_type, sent, _ = seen[event["messageId"]]
            mid = event["messageId"]
            assert event["type"] == event_type, f"{mid}: stored type {event['type']}, sent {event_type}"
            assert event["sourceId"] == source["id"]
            for field in ("userId", "anonymousId"):
                if sent.get(field) not in (None, ""):
                    assert event.get(field) == str(sent[field]), f"{mid}: {field} {event.get(field)!r} != {sent[field]!r}"
                else:
                    assert event.get(field) in (None, ""), f"{mid}: {field} was null/absent but stored {event.get(field)!r}"
            if event_type == "track":
                assert event.get("event") == sent["event"]
                assert event.get("properties") == sent.get("properties"), f"{mid}: properties changed"
            if event_type == "identify":
                traits = sent.get("traits") or (sent.get("context") or {}).get("traits")
                assert traits, f"{mid}: the capture has no traits to compare"
                stored_traits = event.get("traits") or {}
                for name, value in traits.items():
                    want = value.strip().lower() if name == "email" else value
                    assert stored_traits.get(name) == want, f"{mid}: trait {name} {stored_traits.get(name)!r} != {want!r}"
            assert event.get("timestamp") and event.get("receivedAt"), f"{mid}: timestamps missing: {event}"
            # Clock-skew correction: timestamp = receivedAt - (sentAt - client time).
            client_time = sent.get("timestamp") or sent.get("originalTimestamp")
            sent_at = sent.get("sentAt") or sent.get("_batchSentAt")
            assert client_time and sent_at, f"{mid}: the capture lacks timestamp/sentAt"
            expected_ts = parse_time(event["receivedAt"]) - (parse_time(sent_at) - parse_time(client_time))
            got_ts = parse_time(event["timestamp"])
            assert abs(got_ts - expected_ts) <= timedelta(milliseconds=1), (
                f"{mid}: timestamp {event['timestamp']}, expected receivedAt {event['receivedAt']} - "
                f"(sentAt {sent_at} - {client_time}) = {expected_ts.isoformat()}")
            assert "writeKey" not in event, f"{mid}: the write key (a credential) was stored with the event"
