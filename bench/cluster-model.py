"""A model check of docs/cluster.md's merge protocol (§5, §6): route stages,
the identity index with atomic compare-and-set batches, ops chains, profile
stages with tombstones, forwards, handovers and parking by merge count, and
crashes of any stage at any step. An experiment, not part of the product.

Run: python3 bench/cluster-model.py [runs] [seed]
Each run interleaves 3 partitions' stages at random, crashes them at random
points (a route stage after its batch, mid-publish, ...; a profile stage
back to its last checkpoint), drains, then checks the invariants:
I2/I3 every event in exactly one live profile, once; I4 one live profile per
connected person, holding exactly that person's events; I5 nothing parked at
the end; and the index resolves every identifier to its person's profile.
Identity limits are left out (every link merges), as in the equality test.
"""
import copy
import random
import sys
import zlib
from collections import Counter

P = 3


class Index:
    """KV bucket kairos_identity: records with revisions, atomic CAS batches."""

    def __init__(self):
        self.rec = {}  # key -> (value, rev)
        self.rev = 0

    def get(self, key):
        return self.rec.get(key, (None, 0))

    def commit(self, writes):
        """writes: {key: (value, expected_rev)}; all or nothing."""
        if any(self.get(k)[1] != exp for k, (_, exp) in writes.items()):
            return False
        for k, (v, _) in writes.items():
            self.rev += 1
            self.rec[k] = (copy.deepcopy(v), self.rev)
        return True


class World:
    def __init__(self, rng, events):
        self.rng = rng
        self.index = Index()
        self.events = [[] for _ in range(P)]  # KAIROS_EVENTS_<p>: list of identifier tuples
        for ids in events:
            self.events[part(ids[0])].append(ids)
        self.ops = [[] for _ in range(P)]  # KAIROS_OPS_<q>: messages {chain, src, ops, group, listed, through}
        for p in range(P):
            self.index.commit({("f", p): ({"published_through": 0, "pending": []}, 0)})
        self.route = [Route(self, p) for p in range(P)]
        self.prof = [Profile(self, q) for q in range(P)]

    def publish(self, q, msg):
        self.ops[q].append(msg)

    def last_on_chain(self, q, chain):
        for msg in reversed(self.ops[q]):
            if msg["chain"] == chain:
                return msg
        return None


def part(identifier):
    return zlib.crc32(identifier.encode()) % P


def home(pid):
    return pid[0]


class Route:
    """The route stage of p; volatile state: the cache and the position."""

    def __init__(self, w, p):
        self.w, self.p = w, p
        self.recover()

    def recover(self):
        """§5.5: read f.<p> and the last message of each chain from p."""
        w, p = self.w, self.p
        self.cache = {}
        f, _ = w.index.get(("f", p))
        lasts = [w.last_on_chain(q, ("from", p)) for q in range(P)]
        lasts = [m for m in lasts if m]
        self.pos = f["published_through"]  # events 1..pos are published
        self.skip, self.partial = set(), None
        if lasts:
            last_group = max(m["group"] for m in lasts)
            first, end = last_group
            if end > self.pos:
                # every group before the last started one is wholly published; of the
                # last one, exactly the events some chain's last message lists
                self.pos = first - 1
                for m in lasts:
                    if m["group"] == last_group:
                        self.skip |= set(m["listed"])
                self.partial = last_group
        self.republish = list(f["pending"])

    def lookup(self, key):
        """A read, through the cache (possibly stale) or the index."""
        if key in self.cache and self.w.rng.random() < 0.7:
            return self.cache[key]
        self.cache[key] = self.w.index.get(key)
        return self.cache[key]

    def live(self, pid, reads):
        """Follows absorbed_into links; records every revision read."""
        while True:
            rec, rev = self.lookup(("p", pid))
            reads[("p", pid)] = (rec, rev)
            if rec is None or rec["into"] is None:
                return pid
            pid = rec["into"]

    def step(self, crash):
        """Routes one group (1-3 events); may crash at `crash`."""
        w, p = self.w, self.p
        if self.partial:
            # complete the partly published group first, under its own range, listing
            # what was already published, and move the cursor before anything new
            first, end = self.partial
            group = [seq for seq in range(first, end + 1) if seq not in self.skip]
            known, span = sorted(self.skip), self.partial
        elif self.pos < len(w.events[p]):
            n = min(self.rng_int(1, 3), len(w.events[p]) - self.pos)
            group = list(range(self.pos + 1, self.pos + n + 1))
            known, span = [], (group[0], group[-1])
        elif self.republish:
            group, known, span = [], [], (self.pos + 1, self.pos)  # an empty group
        else:
            return False
        writes, ops_by_dest, merges = {}, {}, []
        if group:
            for _ in range(50):
                plan = self.plan(group)
                if plan is not None:
                    break
                self.cache = {}
            else:
                raise RuntimeError("route stage starved")
            writes, ops_by_dest, merges = plan
        if writes:
            f, frev = w.index.get(("f", p))
            f = copy.deepcopy(f)
            f["pending"] += merges
            writes[("f", p)] = (f, frev)
            if not w.index.commit(writes):
                STATS["conflicts"] += 1
                self.cache = {}
                return True  # conflict: the group is tried again
        if crash == "after_commit":
            return "crash"
        # a successor's pending merges go out with the first group it publishes
        for a, sv, sm, am, cause in self.republish:
            ops_by_dest.setdefault(home(a), ([], []))[0].insert(0, ("extract", a, am, sv, sm))
        dests = list(ops_by_dest)
        w.rng.shuffle(dests)
        for i, q in enumerate(dests):
            if crash == "mid_publish" and i == len(dests) // 2 and i > 0:
                return "crash"
            ops, listed = ops_by_dest[q]
            w.publish(q, {"chain": ("from", p), "src": p, "ops": ops, "group": span,
                          "listed": listed + known, "through": 0})
        if crash == "before_cursor":
            return "crash"
        self.republish = []
        return self.advance(span[1])

    def advance(self, end):
        """The group is published: move the cursor (lazily in the real thing,
        but at once after completing a partial group)."""
        w, p = self.w, self.p
        self.pos, self.skip, self.partial = max(self.pos, end), set(), None
        f, frev = w.index.get(("f", p))
        f = copy.deepcopy(f)
        f["published_through"] = self.pos
        f["pending"] = []
        w.index.commit({("f", p): (f, frev)})
        return True

    def rng_int(self, a, b):
        return self.w.rng.randint(a, b)

    def plan(self, group):
        """Resolves a group on the index as read; None when it read a torn view."""
        w, p = self.w, self.p
        writes, reads = {}, {}
        view = {}  # key -> value as this group sees it after its own writes
        ops_by_dest, merges = {}, []

        def rec_of(pid):
            if ("p", pid) in view:
                return view[("p", pid)]
            r, rev = reads.get(("p", pid)) or self.lookup(("p", pid))
            reads[("p", pid)] = (r, rev)
            return r

        def put(key, value):
            if key not in writes:
                exp = reads[key][1] if key in reads else w.index.get(key)[1] if key[0] == "i" else 0
                writes[key] = (None, exp)
            writes[key] = (value, writes[key][1])
            view[key] = value

        for seq in group:
            ids = w.events[p][seq - 1]
            known = []
            for ident in ids:
                if ("i", ident) in view:
                    pid = view[("i", ident)]
                else:
                    val, rev = self.lookup(("i", ident))
                    reads[("i", ident)] = (val, rev)
                    pid = val
                if pid is not None:
                    # follow tombstones (through this group's own writes first)
                    while True:
                        r = rec_of(pid)
                        if r is None:
                            return None  # claim seen before the record: a torn cached view
                        if r["into"] is None:
                            break
                        pid = r["into"]
                    if pid not in known:
                        known.append(pid)
            if known:
                anchor = known[0]
            else:
                anchor = (p, seq)
                put(("p", anchor), {"ids": [], "absorbed": 0, "into": None})
            arec = copy.deepcopy(rec_of(anchor))
            before = copy.deepcopy(arec)
            for a in known[1:]:
                r = copy.deepcopy(rec_of(a))
                am = r["absorbed"]
                r["into"] = anchor
                put(("p", a), r)
                arec["ids"] += r["ids"]
                arec["absorbed"] += 1
                merges.append((a, anchor, arec["absorbed"], am, (p, seq)))
                STATS["cross"] += home(a) != home(anchor)
                q = home(a)
                ops_by_dest.setdefault(q, ([], []))[0].append(("extract", a, am, anchor, arec["absorbed"]))
            for ident in ids:
                cur = view.get(("i", ident), reads.get(("i", ident), (None, 0))[0])
                if cur is None:
                    put(("i", ident), anchor)
                    arec["ids"].append(ident)
            if arec != before or ("p", anchor) in view:
                put(("p", anchor), arec)
            q = home(anchor)
            entry = ops_by_dest.setdefault(q, ([], []))
            entry[0].append(("apply", (p, seq), anchor, arec["absorbed"]))
            entry[1].append(seq)
        # records only read may be stale (§5.2): an Apply to a profile absorbed
        # since is forwarded by its home; every write expects what was read
        return writes, ops_by_dest, merges


STATS = Counter()


class Profile:
    """The profile stage of q: replays KAIROS_OPS_<q> from its checkpoint."""

    def __init__(self, w, q):
        self.w, self.q = w, q
        self.state = {"pos": 0, "profiles": {}, "tomb": {}, "parked": {}}
        self.checkpoint = copy.deepcopy(self.state)
        self.suppress = {}

    def crash(self):
        """§7.2: restore the checkpoint; suppress publishes already on our chains."""
        w, q = self.w, self.q
        self.state = copy.deepcopy(self.checkpoint)
        self.suppress = {}
        for r in range(P):
            last = w.last_on_chain(r, ("fwd", q))
            self.suppress[r] = last["through"] if last else 0

    def send(self, r, op):
        s = self.state
        if s["pos"] <= self.suppress.get(r, 0):
            return  # already on the chain (deterministic replay)
        self.w.publish(r, {"chain": ("fwd", self.q), "src": self.q, "ops": [op], "group": (0, 0),
                           "listed": [], "through": s["pos"]})

    def step(self):
        s = self.state
        if s["pos"] >= len(self.w.ops[self.q]):
            return False
        msg = self.w.ops[self.q][s["pos"]]
        s["pos"] += 1
        for op in msg["ops"]:
            self.run(op)
        if self.w.rng.random() < 0.2:
            self.checkpoint = copy.deepcopy(s)
        return True

    def count(self, pid):
        prof = self.state["profiles"].get(pid)
        return len(prof["direct"]) if prof else 0

    def run(self, op):
        s = self.state
        kind = op[0]
        if kind == "apply":
            _, ev, x, m = op
            if x in s["tomb"]:
                sx, sm = s["tomb"][x]
                STATS["forwards"] += 1
                self.send(home(sx), ("apply", ev, sx, sm))
            elif self.count(x) < m:
                STATS["parked"] += 1
                s["parked"].setdefault(x, []).append(op)
            else:
                prof = s["profiles"].setdefault(x, {"events": [], "direct": set()})
                prof["events"].append(ev)
        elif kind == "extract":
            _, a, am, sv, sm = op
            if a in s["tomb"]:
                return
            if self.count(a) < am:
                s["parked"].setdefault(a, []).append(op)
                return
            state = s["profiles"].pop(a, {"events": [], "direct": set()})
            s["tomb"][a] = (sv, sm)
            self.send(home(sv), ("handover", a, sv, state))
            for parked in s["parked"].pop(a, []):
                self.run(parked)  # now forwarded
        elif kind == "handover":
            _, a, sv, state = op
            prof = s["profiles"].get(sv)
            if prof and a in prof["direct"]:
                return
            if sv in s["tomb"]:
                raise AssertionError(f"handover to a tombstone {sv}: I5's ordering broken")
            prof = s["profiles"].setdefault(sv, {"events": [], "direct": set()})
            prof["events"] += state["events"]
            prof["direct"].add(a)
            parked = s["parked"].pop(sv, [])
            for op2 in parked:
                self.run(op2)


def generate(rng, people):
    events, person_of = [], {}
    for person in range(people):
        devices = [f"a{person}.{d}" for d in range(rng.randint(1, 3))]
        user = f"u{person}" if rng.random() < 0.8 else None
        for ident in devices + ([user] if user else []):
            person_of[ident] = person
        for _ in range(rng.randint(1, 6)):
            r = rng.random()
            dev = rng.choice(devices)
            if user and r < 0.3:
                events.append((dev, user))
            elif user and r < 0.45:
                events.append((user,))
            else:
                events.append((dev,))
    rng.shuffle(events)
    return events, person_of


def check(w, person_of):
    # connected components of identifiers linked by events (no limits: every link merges)
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    want = {}
    for p in range(P):
        for seq, ids in enumerate(w.events[p], 1):
            for ident in ids[1:]:
                parent[find(ident)] = find(ids[0])
    for p in range(P):
        for seq, ids in enumerate(w.events[p], 1):
            want.setdefault(find(ids[0]), Counter())[(p, seq)] += 1
    live = {}
    for pr in w.prof:
        assert not any(pr.state["parked"].values()), f"I5: parked ops left in {pr.q}: {pr.state['parked']}"
        for pid, prof in pr.state["profiles"].items():
            assert home(pid) == pr.q
            live[pid] = Counter(prof["events"])
    seen = Counter()
    for c in live.values():
        seen.update(c)
    for ev, n in seen.items():
        assert n == 1, f"I3: event {ev} applied {n} times"
    total = sum(len(e) for e in w.events)
    assert len(seen) == total, f"I2: {total - len(seen)} events lost"
    by_events = {frozenset(c): pid for pid, c in live.items()}
    for comp, evs in want.items():
        assert frozenset(evs) in by_events, f"I4: person {comp} split or mixed"
    for ident in parent:
        val, _ = w.index.get(("i", ident))
        pid = val
        while w.index.get(("p", pid))[0]["into"] is not None:
            pid = w.index.get(("p", pid))[0]["into"]
        assert frozenset(want[find(ident)]) == frozenset(live[pid]), f"index: {ident} resolves elsewhere"
    return len(live), total


def run(seed):
    rng = random.Random(seed)
    events, person_of = generate(rng, rng.randint(3, 12))
    w = World(rng, events)
    w.rng = rng
    crashes = 0
    for _ in range(4000):
        stage = rng.random()
        p = rng.randrange(P)
        if stage < 0.5:
            r = rng.random()
            crash = ("after_commit" if r < 0.06 else "mid_publish" if r < 0.12
                     else "before_cursor" if r < 0.18 else None)
            if w.route[p].step(crash) == "crash":
                w.route[p].recover()
                crashes += 1
        else:
            if rng.random() < 0.05:
                w.prof[p].crash()
                crashes += 1
            else:
                w.prof[p].step()
    progress = True
    while progress:  # drain without crashes
        progress = False
        for p in range(P):
            progress |= bool(w.route[p].step(None))
            while w.prof[p].step():
                progress = True
    profiles, total = check(w, person_of)
    merges = sum(1 for k, (v, _) in w.index.rec.items() if k[0] == "p" and v["into"] is not None)
    return profiles, total, merges, crashes


if __name__ == "__main__":
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    seed0 = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    totals = Counter()
    for seed in range(seed0, seed0 + runs):
        profiles, events, merges, crashes = run(seed)
        totals.update(profiles=profiles, events=events, merges=merges, crashes=crashes)
    print(f"{runs} runs: invariants held; {totals['events']} events, {totals['profiles']} profiles, "
          f"{totals['merges']} merges ({STATS['cross']} across partitions), {totals['crashes']} crashes, "
          f"{STATS['forwards']} forwards, {STATS['parked']} ops parked, {STATS['conflicts']} batch conflicts")
