#!/usr/bin/env python3
"""Backfill of one new audience over the whole CDNOW history (69,659 orders
as `Order Completed` events): starts the release binary on an empty data
directory, loads the orders over HTTP, then creates (and deletes) an
audience several times and reports the backfill time the server measured
and the request's round trip, medians over the runs.

    python3 bench/backfill-cdnow.py [runs=5]      (after cargo build --release)
"""
import base64, json, os, socket, statistics, subprocess, sys, tempfile, time, urllib.request
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "kairos"
CDNOW = ROOT.parent / "shared" / "data" / "cdnow" / "CDNOW_master.txt"
TOKEN = "bench-admin-token"
DEFINITION = 'count "Order Completed" within 90d >= 2 or sum revenue of "Order Completed" > 500'


def call(base, method, path, body=None, auth=None):
    request = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": auth or f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    port = socket.socket(); port.bind(("127.0.0.1", 0)); port_number = port.getsockname()[1]; port.close()
    base = f"http://127.0.0.1:{port_number}"
    with tempfile.TemporaryDirectory() as work:
        server = subprocess.Popen([str(BIN), "serve", "--listen", f"127.0.0.1:{port_number}", "--data-dir", f"{work}/data",
                                   "--no-demo", "--clock", "manual"], env={**os.environ, "KAIROS_ADMIN_TOKEN": TOKEN},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(base + "/readyz", timeout=1); break
                except OSError:
                    time.sleep(0.05)
            call(base, "POST", "/v1/admin/clock", {"now": "1998-07-01T00:00:00Z"})
            key = call(base, "POST", "/v1/admin/sources", {"name": "cdnow"})["write_key"]
            basic = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
            lines = CDNOW.read_text().splitlines()[1:]
            events = []
            for index, line in enumerate(lines):
                customer, date, cds, revenue = line.split()
                day = datetime.strptime(date, "%Y%m%d").replace(tzinfo=timezone.utc)
                events.append({"type": "track", "event": "Order Completed", "userId": customer, "messageId": f"cdnow-{index}",
                               "timestamp": day.strftime("%Y-%m-%dT%H:%M:%SZ"), "properties": {"revenue": float(revenue), "cds": int(cds)}})
            for start in range(0, len(events), 1000):
                call(base, "POST", "/v1/batch", {"batch": events[start:start + 1000]}, auth=basic)
            server_seconds, round_trips, sizes = [], [], []
            for run in range(runs):
                started = time.perf_counter()
                created = call(base, "POST", "/v1/audiences", {"name": f"backfilled {run}", "definition": DEFINITION})
                round_trips.append(time.perf_counter() - started)
                server_seconds.append(created["backfill"]["seconds"])
                sizes.append(created["size"])
                call(base, "DELETE", f"/v1/audiences/{created['id']}")
            print(json.dumps({"orders": len(events), "events_replayed": created["backfill"]["events"], "members": sizes[-1],
                              "backfill_seconds": server_seconds, "round_trip_seconds": round_trips}))
            print(f"backfill of one audience over CDNOW ({len(events):,} orders): median {statistics.median(server_seconds):.3f} s "
                  f"in the engine, {statistics.median(round_trips):.3f} s per create request ({runs} runs)")
        finally:
            server.terminate(); server.wait(timeout=20)


if __name__ == "__main__":
    main()
