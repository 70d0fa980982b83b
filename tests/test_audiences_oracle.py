"""Audiences and computed traits against an independent oracle on real data,
replayed through the HTTP API with the engine's manual clock advanced to a
series of checkpoints; at each checkpoint the members of every audience and
every profile's computed trait values equal what DuckDB SQL computes over
the raw files:

- CDNOW's purchase history (69,659 orders of 23,570 customers,
  1997-01..1998-06) as `Order Completed` events (userId = customer);
- YOOCHOOSE clicks (83,846 clicks of 21,210 sessions, one week of April
  2014) as `Product Viewed` events (anonymousId = session).

Some definitions exist before the replay (kept incrementally), the others
are created midway (backfilled from the log)."""

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
AUDIENCES.update({
    "recent and valuable": (
        "computed recency_score >= 4 and computed spend_365d > 100",
        """SELECT customer FROM orders GROUP BY customer
           HAVING max(ts) > now - INTERVAL 90 DAY
              AND coalesce(sum(revenue) FILTER (WHERE ts > now - INTERVAL 365 DAY), 0) > 100""",
    ),
    "big order, no reorder in 60d": (
        '"Order Completed" where cds >= 3 not followed by "Order Completed" within 60d',
        """SELECT DISTINCT a.customer FROM orders a
           WHERE a.cds >= 3 AND a.ts + INTERVAL 60 DAY <= now
             AND NOT EXISTS (SELECT 1 FROM orders b WHERE b.customer = a.customer
                             AND b.ts > a.ts AND b.ts <= a.ts + INTERVAL 60 DAY)""",
    ),
    "varied quantities": (
        'distinct cds of "Order Completed" within 365d >= 3',
        "SELECT customer FROM orders WHERE ts > now - INTERVAL 365 DAY GROUP BY customer HAVING count(DISTINCT cds) >= 3",
    ),
})
CREATED_FIRST = ["frequent 90d", "big spenders 365d", "lapsed 180d", "recent and valuable"]

# name -> (definition, SQL selecting (customer, value) for every customer
# with a value at `now`)
COMPUTED = {
    "orders_90d": (
        'count "Order Completed" within 90d',
        "SELECT customer, count(*) FILTER (WHERE ts > now - INTERVAL 90 DAY) FROM orders GROUP BY customer",
    ),
    "spend_365d": (
        'sum revenue of "Order Completed" within 365d',
        "SELECT customer, coalesce(sum(revenue) FILTER (WHERE ts > now - INTERVAL 365 DAY), 0) FROM orders GROUP BY customer",
    ),
    "last_order_at": (
        'last "Order Completed"',
        "SELECT customer, strftime(max(ts), '%Y-%m-%dT%H:%M:%SZ') FROM orders GROUP BY customer",
    ),
    "recency_score": (
        'case when last "Order Completed" less than 30d ago then 5\n'
        '     when last "Order Completed" less than 90d ago then 4\n'
        '     when last "Order Completed" less than 180d ago then 3\n'
        '     when last "Order Completed" less than 365d ago then 2\n'
        '     else 1 end',
        """SELECT customer, CASE WHEN max(ts) > now - INTERVAL 30 DAY THEN 5 WHEN max(ts) > now - INTERVAL 90 DAY THEN 4
                                 WHEN max(ts) > now - INTERVAL 180 DAY THEN 3 WHEN max(ts) > now - INTERVAL 365 DAY THEN 2
                                 ELSE 1 END FROM orders GROUP BY customer""",
    ),
    "avg_cds": (
        'avg cds of "Order Completed"',
        "SELECT customer, avg(cds) FROM orders GROUP BY customer",
    ),
    "usual_cds_365d": (
        'most frequent cds of "Order Completed" within 365d',
        """SELECT customer, cds FROM (
             SELECT customer, cds, row_number() OVER (PARTITION BY customer ORDER BY count(*) DESC, cds ASC) AS rank
             FROM orders WHERE ts > now - INTERVAL 365 DAY GROUP BY customer, cds) WHERE rank = 1""",
    ),
    "last_revenue": (
        'last revenue of "Order Completed"',
        """SELECT o.customer, max(o.revenue) FROM orders o
           JOIN (SELECT customer, max(ts) AS latest FROM orders GROUP BY customer) l
             ON o.customer = l.customer AND o.ts = l.latest GROUP BY o.customer""",
    ),
}
COMPUTED_FIRST = ["orders_90d", "spend_365d", "recency_score", "last_revenue"]


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


def sql_at(sql: str, now: str) -> str:
    stamp = now.replace("T", " ").rstrip("Z")
    if len(stamp) == 10:
        stamp += " 00:00:00"
    return sql.replace("now", f"TIMESTAMP '{stamp}'")


def oracle(con, sql: str, now: str) -> set:
    return {str(row[0]) for row in con.execute(sql_at(sql, now)).fetchall()}


def oracle_values(con, sql: str, now: str) -> dict:
    return {str(row[0]): row[1] for row in con.execute(sql_at(sql, now)).fetchall()}


def pages(server: Kairos, path: str, key: str, identity: str):
    """Every entry of a paged listing, keyed by the identity of `identity` type."""
    after = None
    while True:
        params = {"limit": 1000, **({"after": after} if after else {})}
        r = server.admin("GET", path, params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        for entry in page[key]:
            names = [i["value"] for i in entry["identities"] if i["type"] == identity]
            assert len(names) == 1, entry
            yield names[0], entry
        after = page["next"]
        if not after:
            return


def members(server: Kairos, name: str, identity: str = "user_id") -> set:
    return {who for who, _ in pages(server, f"/v1/audiences/{name}/members", "members", identity)}


def values(server: Kairos, name: str, identity: str = "user_id") -> dict:
    return {who: entry["value"] for who, entry in pages(server, f"/v1/computed-traits/{name}/values", "values", identity)}


def same_value(actual, expected) -> bool:
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        return isinstance(actual, (int, float)) and abs(actual - expected) <= 1e-9 * max(1.0, abs(expected))
    return actual == expected


def check_checkpoint(server, con, audiences: dict, computed: dict, now: str, identity: str = "user_id"):
    for name, (_, sql) in audiences.items():
        expected = oracle(con, sql, now)
        actual = members(server, name, identity)
        assert actual == expected, (
            f"{name} at {now}: {len(actual)} members, DuckDB {len(expected)}; "
            f"extra {sorted(actual - expected)[:5]}, missing {sorted(expected - actual)[:5]}")
    for name, (_, sql) in computed.items():
        expected = oracle_values(con, sql, now)
        actual = values(server, name, identity)
        assert actual.keys() == expected.keys(), (
            f"{name} at {now}: {len(actual)} values, DuckDB {len(expected)}; "
            f"extra {sorted(actual.keys() - expected.keys())[:5]}, missing {sorted(expected.keys() - actual.keys())[:5]}")
        wrong = [(who, actual[who], expected[who]) for who in expected if not same_value(actual[who], expected[who])]
        assert not wrong, f"{name} at {now}: {len(wrong)} differ, e.g. {wrong[:5]}"


def create_definitions(server, audiences: dict, computed: dict, names) -> list:
    """Creates the named definitions (computed traits first: audiences may
    read them); returns each creation's backfill report."""
    reports = []
    for name in names:
        if name in computed:
            r = server.admin("POST", "/v1/computed-traits", json={"name": name, "definition": computed[name][0]})
            assert r.status_code == 201, r.text
            reports.append(r.json()["backfill"])
    for name in names:
        if name in audiences:
            r = server.admin("POST", "/v1/audiences", json={"name": name, "definition": audiences[name][0]})
            assert r.status_code == 201, r.text
            reports.append(r.json()["backfill"])
    return reports


def test_audiences_equal_duckdb_on_cdnow_at_every_checkpoint(tmp_path):
    orders = load_orders()
    con = duckdb.connect()
    con.execute("CREATE TABLE orders (customer VARCHAR, ts TIMESTAMP, cds INTEGER, revenue DOUBLE)")
    server = Kairos(tmp_path / "data", extra_args=["--clock", "manual"]).start()
    try:
        key = server.create_source("cdnow")["write_key"]
        assert server.admin("POST", "/v1/admin/clock", json={"now": "1997-01-01T00:00:00Z"}).status_code == 200
        create_definitions(server, AUDIENCES, COMPUTED, COMPUTED_FIRST + CREATED_FIRST)
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
                later = [name for name in list(COMPUTED) + list(AUDIENCES) if name not in COMPUTED_FIRST + CREATED_FIRST]
                for report in create_definitions(server, AUDIENCES, COMPUTED, later):
                    # The log also holds the membership announcements made so far.
                    assert report["events"] >= sent, report
            check_checkpoint(
                server, con,
                {name: AUDIENCES[name] for name in AUDIENCES if name in CREATED_FIRST or number >= 1},
                {name: COMPUTED[name] for name in COMPUTED if name in COMPUTED_FIRST or number >= 1},
                checkpoint)
        assert sent == len(orders)
        # Previews (the reference evaluator over the stored history) agree too.
        for name, (definition, sql) in AUDIENCES.items():
            # A preview evaluates the whole stored history from scratch (~10 s
            # here in a debug build): give it room on a busy machine.
            preview = requests.post(server.base_url + "/v1/audiences/preview", json={"definition": definition, "sample": 0},
                                    headers=server.admin_headers(), timeout=180).json()
            assert preview["size"] == len(oracle(con, sql, CHECKPOINTS[-1])), (name, preview)
        sizes = {a["name"]: a["size"] for a in server.admin("GET", "/v1/audiences").json()["audiences"]}
        assert all(size > 0 for size in sizes.values()), sizes
    finally:
        server.stop()


CLICK_FILES = ["yoochoose-clicks-100k_train_full.txt", "yoochoose-clicks-100k_test.txt"]
CLICK_CHECKPOINTS = ["2014-04-02T06:00:00Z", "2014-04-04T00:00:00Z", "2014-04-06T18:30:00Z",
                     "2014-04-07T12:00:00Z", "2014-04-09T00:00:00Z"]
# over `clicks(session, ts, item)`
CLICK_AUDIENCES = {
    "browsing now": (
        'count "Product Viewed" within 1h >= 5',
        "SELECT session FROM clicks WHERE ts > now - INTERVAL 1 HOUR GROUP BY session HAVING count(*) >= 5",
    ),
    "explorers today": (
        'distinct product_id of "Product Viewed" within 1d >= 3',
        "SELECT session FROM clicks WHERE ts > now - INTERVAL 1 DAY GROUP BY session HAVING count(DISTINCT item) >= 3",
    ),
    "quick second look": (
        '"Product Viewed" then "Product Viewed" within 30s',
        """SELECT DISTINCT a.session FROM clicks a JOIN clicks b ON a.session = b.session
           WHERE b.ts > a.ts AND b.ts <= a.ts + INTERVAL 30 SECOND""",
    ),
    "left the site": (
        'performed "Product Viewed" within 1d and did not perform "Product Viewed" within 1h',
        """SELECT session FROM clicks GROUP BY session
           HAVING count(*) FILTER (WHERE ts > now - INTERVAL 1 DAY) > 0
              AND count(*) FILTER (WHERE ts > now - INTERVAL 1 HOUR) = 0""",
    ),
}
CLICK_COMPUTED = {
    "views_1h": (
        'count "Product Viewed" within 1h',
        "SELECT session, count(*) FILTER (WHERE ts > now - INTERVAL 1 HOUR) FROM clicks GROUP BY session",
    ),
    "favourite_item_1d": (
        'most frequent product_id of "Product Viewed" within 1d',
        """SELECT session, item FROM (
             SELECT session, item, row_number() OVER (PARTITION BY session ORDER BY count(*) DESC, item ASC) AS rank
             FROM clicks WHERE ts > now - INTERVAL 1 DAY GROUP BY session, item) WHERE rank = 1""",
    ),
}


def load_clicks():
    rows = []
    for file in CLICK_FILES:
        with open(shared_data(f"yoochoose_sample/{file}")) as handle:
            next(handle)
            for number, line in enumerate(handle):
                session, item, seconds = line.split()
                rows.append((f"{file}-{number}", session, round(float(seconds) * 1000), int(item)))
    return sorted(rows, key=lambda row: row[2])


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def test_click_audiences_equal_duckdb_on_yoochoose_at_every_checkpoint(tmp_path):
    clicks = load_clicks()
    con = duckdb.connect()
    con.execute("CREATE TABLE raw_clicks (session VARCHAR, ms BIGINT, item BIGINT)")
    server = Kairos(tmp_path / "data", extra_args=["--clock", "manual"]).start()
    try:
        key = server.create_source("yoochoose")["write_key"]
        assert server.admin("POST", "/v1/admin/clock", json={"now": "2014-04-01T00:00:00Z"}).status_code == 200
        first = ["browsing now", "quick second look", "views_1h"]
        largest = {}
        create_definitions(server, CLICK_AUDIENCES, CLICK_COMPUTED, first)
        sent = 0
        for number, checkpoint in enumerate(CLICK_CHECKPOINTS):
            r = server.admin("POST", "/v1/admin/clock", json={"now": checkpoint})
            assert r.status_code == 200, r.text
            limit = datetime.fromisoformat(checkpoint.replace("Z", "+00:00")).timestamp() * 1000
            batch_rows = [row for row in clicks[sent:] if row[2] < limit]
            for start in range(0, len(batch_rows), 1000):
                chunk = batch_rows[start:start + 1000]
                events = [{"type": "track", "event": "Product Viewed", "anonymousId": session, "messageId": f"yc-{line}",
                           "timestamp": iso_ms(ms), "properties": {"product_id": item}}
                          for line, session, ms, item in chunk]
                r = requests.post(server.base_url + "/v1/batch", json={"batch": events}, headers=Kairos.basic(key), timeout=60)
                assert r.status_code == 200 and r.json()["accepted"] == len(chunk), r.text
            con.executemany("INSERT INTO raw_clicks VALUES (?, ?, ?)", [(session, ms, item) for _, session, ms, item in batch_rows])
            con.execute("CREATE OR REPLACE VIEW clicks AS SELECT session, epoch_ms(ms) AS ts, item FROM raw_clicks")
            sent += len(batch_rows)
            if number == 1:
                later = [name for name in list(CLICK_COMPUTED) + list(CLICK_AUDIENCES) if name not in first]
                for report in create_definitions(server, CLICK_AUDIENCES, CLICK_COMPUTED, later):
                    # The log also holds the membership announcements made so far.
                    assert report["events"] >= sent, report
            check_checkpoint(
                server, con,
                {name: CLICK_AUDIENCES[name] for name in CLICK_AUDIENCES if name in first or number >= 1},
                {name: CLICK_COMPUTED[name] for name in CLICK_COMPUTED if name in first or number >= 1},
                checkpoint, identity="anonymous_id")
            for audience in server.admin("GET", "/v1/audiences").json()["audiences"]:
                largest[audience["name"]] = max(largest.get(audience["name"], 0), audience["size"])
        assert sent == len(clicks)
        # Every audience had members at some checkpoint (none is trivially empty).
        assert len(largest) == len(CLICK_AUDIENCES) and all(size > 0 for size in largest.values()), largest
    finally:
        server.stop()
