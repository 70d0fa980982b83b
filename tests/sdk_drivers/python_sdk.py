"""Drives one unmodified Python analytics SDK through a scenario.

Used in-process by tests/test_sdk_python.py (segment-analytics-python,
rudder-sdk-python) and as a script, in its own venv, for analytics-python
1.4.post1, whose `backoff==1.10.0` pin conflicts with rudder-sdk-python:

    python python_sdk.py --sdk legacy --host URL --write-key KEY \
        --events-json FILE [--gzip] [--max-retries N]

Only the host and the write key differ from a stock setup. Prints one JSON
line: {"requests": [...what the SDK's HTTP session saw...], "errors": [...]}.
"""

import argparse
import json
import sys
import time


def load_sdk(sdk):
    """(module with the Client, the requests.Session the SDK posts with)."""
    if sdk == "segment":
        from segment.analytics import client as client_mod, request as request_mod
    elif sdk == "rudder":
        from rudderstack.analytics import client as client_mod, request as request_mod
    elif sdk == "legacy":
        from analytics import client as client_mod, request as request_mod
    else:
        raise ValueError(sdk)
    return client_mod.Client, request_mod._session


def make_client(sdk, host, write_key, *, gzip=None, max_retries=None, on_error=None):
    Client, _ = load_sdk(sdk)
    kwargs = {"host": host, "on_error": on_error, "upload_interval": 0.1}
    if gzip is not None:
        kwargs["gzip"] = gzip
    if max_retries is not None:
        kwargs["max_retries"] = max_retries
    return Client(write_key, **kwargs)


def send(client, ev):
    """One scenario event (Segment-spec dict) as the SDK's own call."""
    common = {"message_id": ev.get("messageId")}
    t = ev["type"]
    uid, aid = ev.get("userId"), ev.get("anonymousId")
    if t == "identify":
        return client.identify(user_id=uid, anonymous_id=aid, traits=ev.get("traits"), **common)
    if t == "track":
        return client.track(user_id=uid, anonymous_id=aid, event=ev["event"], properties=ev.get("properties"), **common)
    if t == "page":
        return client.page(user_id=uid, anonymous_id=aid, category=ev.get("category"), name=ev.get("name"),
                           properties=ev.get("properties"), **common)
    if t == "screen":
        return client.screen(user_id=uid, anonymous_id=aid, category=ev.get("category"), name=ev.get("name"),
                             properties=ev.get("properties"), **common)
    if t == "group":
        return client.group(user_id=uid, anonymous_id=aid, group_id=ev["groupId"], traits=ev.get("traits"), **common)
    if t == "alias":
        return client.alias(previous_id=ev["previousId"], user_id=uid, **common)
    raise ValueError(t)


def run(sdk, host, write_key, events, *, gzip=None, max_retries=None, flush_timeout=45):
    """Sends `events`, flushes, shuts the client down. Returns (requests seen, errors)."""
    _, session = load_sdk(sdk)
    seen, errors = [], []

    def hook(response, *args, **kwargs):
        req = response.request
        seen.append({"method": req.method, "url": req.url, "status": response.status_code,
                     "content_encoding": req.headers.get("Content-Encoding"),
                     "retry_after": response.headers.get("Retry-After"), "body": response.text[:300]})

    def on_error(exc, batch):
        errors.append({"error": repr(exc)[:500], "batch_size": len(batch)})

    session.hooks.setdefault("response", []).append(hook)
    try:
        client = make_client(sdk, host, write_key, gzip=gzip, max_retries=max_retries, on_error=on_error)
        for ev in events:
            ok, _msg = send(client, ev)
            if not ok:
                errors.append({"error": f"enqueue refused for {ev['type']}"})
        started = time.time()
        client.flush()
        client.join()
        if time.time() - started > flush_timeout:
            errors.append({"error": f"flush took {time.time() - started:.1f}s"})
    finally:
        session.hooks["response"].remove(hook)
    return seen, errors


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--sdk", required=True, choices=["segment", "rudder", "legacy"])
    ap.add_argument("--host", required=True)
    ap.add_argument("--write-key", required=True)
    ap.add_argument("--events-json", required=True, help="file with the JSON list of scenario events")
    ap.add_argument("--gzip", action="store_true")
    ap.add_argument("--max-retries", type=int)
    a = ap.parse_args(argv)
    with open(a.events_json) as f:
        events = json.load(f)
    seen, errors = run(a.sdk, a.host, a.write_key, events, gzip=a.gzip or None, max_retries=a.max_retries)
    print(json.dumps({"requests": seen, "errors": errors}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
