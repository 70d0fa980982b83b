"""How long an erasure takes end to end (DELETE /v1/profiles/...): engine,
keys, outbox, lists, the journal rotation (~64 MB of writes) and the
compactions. Usage: KAIROS_BIN=target/release/kairos .work/venv/bin/python
bench/erasure.py [people] [erasures]. Prints the median."""

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import requests  # noqa: E402
from conftest import Kairos  # noqa: E402


def main():
    people = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    erasures = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    server = Kairos(Path(tempfile.mkdtemp()) / "data").start()
    try:
        key = server.create_source("web")["write_key"]
        batch = [{"type": "identify", "userId": f"p{n}", "messageId": f"i{n}", "traits": {"email": f"p{n}@x.example"}}
                 for n in range(people)]
        batch += [{"type": "track", "event": "Viewed", "userId": f"p{n % people}", "messageId": f"t{n}"}
                  for n in range(people * 25)]
        for start in range(0, len(batch), 500):
            r = requests.post(server.base_url + "/v1/batch", json={"batch": batch[start:start + 500]},
                              headers=Kairos.basic(key), timeout=60)
            assert r.status_code == 200, r.text
        seconds = []
        for n in range(min(erasures, people)):
            started = time.monotonic()
            r = server.admin("DELETE", f"/v1/profiles/user_id:p{n}")
            seconds.append(time.monotonic() - started)
            assert r.status_code == 200, r.text
        print(f"people={people} events={len(batch)} erasures={len(seconds)} "
              f"median={statistics.median(seconds):.3f}s min={min(seconds):.3f}s max={max(seconds):.3f}s")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
