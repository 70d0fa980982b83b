"""Audiences against an independent oracle on real data: the CDNOW purchase
history (69,659 orders of 23,570 customers, 1997-01..1998-06) replayed as
`Order Completed` events through the HTTP API, with the engine's manual
clock advanced to a series of checkpoints. At each checkpoint the members
of every audience equal what DuckDB SQL computes over the raw file.
Half the audiences exist before the replay (kept incrementally), half are
created midway (backfilled from the log)."""

from datetime import datetime, timedelta, timezone

import duckdb
import requests

from conftest import Kairos, shared_data

CHECKPOINTS = ["1997-02-01", "1997-04-15", "1997-09-01", "1998-01-01", "1998-07-01"]

# name -> (definition, SQL over `orders(customer, ts, cds, revenue)` at `now`;
# the SQL selects the customers that must be members)
AUDIENCES = {
    "frequent 90d": (
        'count "Order Completed" within 90d >= 3',
        "SELECT customer FROM orders WHERE ts > now - INTERVAL 90 DAY GROUP BY customer HAVING count(*) >= 3",
    ),
    "big spenders 365d": (
        'sum revenue of "Order Completed" within 365d > 500',
        "SELECT customer FROM orders WHERE ts > now - INTERVAL 365 DAY GROUP BY customer HAVING sum(revenue) > 500",
    ),
    "lapsed 180d": (
        'last "Order Completed" more than 180d ago',
        "SELECT customer FROM orders GROUP BY customer HAVING max(ts) < now - INTERVAL 180 DAY",
    ),
    "march buyers gone quiet": (
        'performed "Order Completed" between 1997-03-01 and 1997-04-01\n'
        'and did not perform "Order Completed" within 60d',
        """SELECT customer FROM orders GROUP BY customer
           HAVING count(*) FILTER (WHERE ts >= TIMESTAMP '1997-03-01' AND ts < TIMESTAMP '1997-04-01') > 0
              AND count(*) FILTER (WHERE ts > now - INTERVAL 60 DAY) = 0""",
    ),
    "big order then reorder": (
        '"Order Completed" where cds >= 5 then "Order Completed" within 30d',
        """SELECT DISTINCT a.customer FROM orders a JOIN orders b ON a.customer = b.customer
           WHERE a.cds >= 5 AND b.ts > a.ts AND b.ts <= a.ts + INTERVAL 30 DAY""",
    ),
    "one big order this year": (
        'max revenue of "Order Completed" within 365d >= 100\n'
        'and count "Order Completed" within 365d < 2\n'
        'or in audience "lapsed 180d" and avg revenue of "Order Completed" > 80',
        """SELECT customer FROM orders GROUP BY customer
           HAVING (max(revenue) FILTER (WHERE ts > now - INTERVAL 365 DAY) >= 100
                   AND count(*) FILTER (WHERE ts > now - INTERVAL 365 DAY) < 2)
               OR (max(ts) < now - INTERVAL 180 DAY AND avg(revenue) > 80)""",
    ),
}
CREATED_FIRST = ["frequent 90d", "big spenders 365d", "lapsed 180d"]


def load_orders():
    rows = []
    with open(shared_data("cdnow/CDNOW_master.txt")) as handle:
        next(handle)
        for index, line in enumerate(handle):
            customer, date, cds, revenue = line.split()
            day = datetime.strptime(date, "%Y%m%d").replace(tzinfo=timezone.utc)
            rows.append((index, customer, day, int(cds), float(revenue)))
    # The file is sorted by customer; replay in time order.
    return sorted(rows, key=lambda row: (row[2], row[0]))


def oracle(con, sql: str, now: str) -> set:
    query = sql.replace("now", f"TIMESTAMP '{now} 00:00:00'")
    return {row[0] for row in con.execute(query).fetchall()}


def members(server: Kairos, name: str) -> set:
    found, after = set(), None
    while True:
        params = {"limit": 1000, **({"after": after} if after else {})}
        page = server.admin("GET", f"/v1/audiences/{name}/members", params=params).json()
        for member in page["members"]:
            users = [i["value"] for i in member["identities"] if i["type"] == "user_id"]
            assert len(users) == 1, member
            found.add(users[0])
        after = page["next"]
        if not after:
            return found


def test_audiences_equal_duckdb_on_cdnow_at_every_checkpoint(tmp_path):
    orders = load_orders()
    con = duckdb.connect()
    con.execute("CREATE TABLE orders (customer VARCHAR, ts TIMESTAMP, cds INTEGER, revenue DOUBLE)")
    server = Kairos(tmp_path / "data", extra_args=["--clock", "manual"]).start()
    try:
        key = server.create_source("cdnow")["write_key"]
        assert server.admin("POST", "/v1/admin/clock", json={"now": "1997-01-01T00:00:00Z"}).status_code == 200
        for name in CREATED_FIRST:
            r = server.admin("POST", "/v1/audiences", json={"name": name, "definition": AUDIENCES[name][0]})
            assert r.status_code == 201, r.text
        sent = 0
        for number, checkpoint in enumerate(CHECKPOINTS):
            r = server.admin("POST", "/v1/admin/clock", json={"now": f"{checkpoint}T00:00:00Z"})
            assert r.status_code == 200, r.text
            limit = datetime.fromisoformat(checkpoint).replace(tzinfo=timezone.utc)
            batch_rows = [row for row in orders[sent:] if row[2] < limit]
            for start in range(0, len(batch_rows), 1000):
                chunk = batch_rows[start:start + 1000]
                events = [{"type": "track", "event": "Order Completed", "userId": customer, "messageId": f"cdnow-{index}",
                           "timestamp": day.strftime("%Y-%m-%dT%H:%M:%SZ"), "properties": {"revenue": revenue, "cds": cds}}
                          for index, customer, day, cds, revenue in chunk]
                r = requests.post(server.base_url + "/v1/batch", json={"batch": events}, headers=Kairos.basic(key), timeout=60)
                assert r.status_code == 200 and r.json()["accepted"] == len(chunk), r.text
            con.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)",
                            [(customer, day.replace(tzinfo=None), cds, revenue) for _, customer, day, cds, revenue in batch_rows])
            sent += len(batch_rows)
            if number == 1:
                # The rest are created midway: backfilled from the stored history.
                for name in AUDIENCES:
                    if name not in CREATED_FIRST:
                        r = server.admin("POST", "/v1/audiences", json={"name": name, "definition": AUDIENCES[name][0]})
                        assert r.status_code == 201, r.text
                        assert r.json()["backfill"]["events"] == sent
            active = [name for name in AUDIENCES if name in CREATED_FIRST or number >= 1]
            for name in active:
                expected = oracle(con, AUDIENCES[name][1], checkpoint)
                actual = members(server, name)
                assert actual == expected, (
                    f"{name} at {checkpoint}: {len(actual)} members, DuckDB {len(expected)}; "
                    f"extra {sorted(actual - expected)[:5]}, missing {sorted(expected - actual)[:5]}")
        assert sent == len(orders)
        # Previews (the reference evaluator over the stored history) agree too.
        for name, (definition, sql) in AUDIENCES.items():
            preview = server.admin("POST", "/v1/audiences/preview", json={"definition": definition, "sample": 0}).json()
            assert preview["size"] == len(oracle(con, sql, CHECKPOINTS[-1])), (name, preview)
        sizes = {a["name"]: a["size"] for a in server.admin("GET", "/v1/audiences").json()["audiences"]}
        assert all(size > 0 for size in sizes.values()), sizes
    finally:
        server.stop()
