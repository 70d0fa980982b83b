"""The probabilistic matcher on live profiles, end to end: FEBRL4's 10,000
records imported as CRM profiles (keyed by their own record id, which the
matcher never sees), one matcher run over the API, and the merges checked
against the truth in `rec_id` — through the profile API, and again after a
restart (merges are events in the log). Records altered beyond a sure match
become review suggestions that a reviewer accepts or rejects.

Repeated runs (FEBRL1, and a generated set with several duplicates per
person) converge to one profile per person without wrong merges: a run over
the residue a merge leaves reuses the parameters estimated where the
duplicates were, even across a restart."""

import csv
import itertools
import random
from collections import defaultdict

import requests

from conftest import Kairos, shared_data

CONFIG = '[identity]\ncustom_types = ["rec_id"]\n'
FIELDS = ["given_name", "surname", "street_number", "address_1", "address_2", "suburb", "postcode", "state",
          "date_of_birth", "soc_sec_id"]


def read_febrl(name):
    with open(shared_data(f"febrl/{name}"), newline="") as handle:
        return [{key.strip(): (value or "").strip() for key, value in row.items()}
                for row in csv.DictReader(handle, skipinitialspace=True)]


def import_records(server, records):
    for start in range(0, len(records), 5000):
        r = server.admin("POST", "/v1/profiles/import", json={"identifier_type": "rec_id", "records": records[start:start + 5000]})
        assert r.status_code == 200, r.text
        assert r.json()["rejected"] == [], r.json()["rejected"][:3]


def profile(server, rec_id):
    r = server.admin("GET", f"/v1/profiles/rec_id:{rec_id}")
    assert r.status_code == 200, r.text
    return r.json()


def rec_ids(body):
    return {i["value"] for i in body["identities"] if i["type"] == "rec_id"}


def test_matcher_merges_febrl4_duplicates_and_suggests_near_misses(tmp_path):
    config = tmp_path / "kairos.toml"
    config.write_text(CONFIG)
    server = Kairos(tmp_path / "data", extra_args=["--config", str(config)]).start()
    try:
        a, b = read_febrl("dataset4a.csv"), read_febrl("dataset4b.csv")
        import_records(server, a + b)

        # Near misses: copies of some originals with the address, postcode,
        # birth date and id changed — same name, little else.
        rng = random.Random(7)
        near = []
        for index, original in enumerate(rng.sample(a, 40)):
            copy = dict(original, rec_id=f"near-{index}", address_1="1 other road", address_2="", street_number="99",
                        suburb=original["suburb"], postcode=original["postcode"], date_of_birth="", soc_sec_id="")
            near.append(copy)
        import_records(server, near)

        run = server.admin("POST", "/v1/admin/matching/run")
        assert run.status_code == 200, run.text
        result = run.json()
        assert result["profiles_compared"] == 10_040
        assert 4_990 <= result["links"] <= 5_100, result
        assert result["merge_events"] == result["links"]

        # Truth: rec-N-org and rec-N-dup-0 are one person. Check a sample
        # through the profile API (every answer reflects the merge events).
        entities = sorted({row["rec_id"].split("-")[1] for row in a})
        sample = random.Random(11).sample(entities, 150)
        merged = sum(rec_ids(profile(server, f"rec-{n}-org")) >= {f"rec-{n}-org", f"rec-{n}-dup-0"} for n in sample)
        assert merged >= 148, f"{merged} of 150 sampled true pairs merged"
        wrong = [n for n in sample if any(not v.startswith(f"rec-{n}-") and not v.startswith("near-")
                                          for v in rec_ids(profile(server, f"rec-{n}-org")))]
        assert wrong == [], f"profiles merged with another person: {wrong}"

        suggestions = server.admin("GET", "/v1/admin/matching/suggestions").json()["suggestions"]
        assert result["suggestions"] == len(suggestions)
        assert suggestions, "the near misses must land in the review band"
        for suggestion in suggestions:
            assert suggestion["score"] < suggestion["threshold"]
        first, second = suggestions[0], suggestions[-1] if len(suggestions) > 1 else None
        accepted = server.admin("POST", f"/v1/admin/matching/suggestions/{first['id']}/accept")
        assert accepted.status_code == 200 and accepted.json()["status"] == "merged", accepted.text
        ident = first["a"]["identifier"]
        together = server.admin("GET", f"/v1/profiles/{ident['type']}:{ident['value']}").json()
        other = first["b"]["identifier"]
        assert (other["type"], other["value"]) in {(i["type"], i["value"]) for i in together["identities"]}
        assert server.admin("POST", f"/v1/admin/matching/suggestions/{first['id']}/accept").status_code == 404
        if second:
            assert server.admin("DELETE", f"/v1/admin/matching/suggestions/{second['id']}").json()["status"] == "rejected"

        # Merges are events: a restart replays them.
        server.kill9()
        server.start()
        again = sum(rec_ids(profile(server, f"rec-{n}-org")) >= {f"rec-{n}-org", f"rec-{n}-dup-0"} for n in sample)
        assert again == merged
        assert server.admin("GET", f"/v1/profiles/{ident['type']}:{ident['value']}").json()["id"] == \
            server.admin("GET", f"/v1/profiles/{other['type']}:{other['value']}").json()["id"]
    finally:
        server.stop()


def test_matching_endpoints_need_the_admin_token_and_known_ids(kairos):
    assert requests.post(kairos.base_url + "/v1/admin/matching/run", timeout=5).status_code == 401
    empty = kairos.admin("POST", "/v1/admin/matching/run").json()
    assert empty["profiles_compared"] == 0 and empty["links"] == 0
    missing = kairos.admin("POST", "/v1/admin/matching/suggestions/sug_999/accept")
    assert missing.status_code == 404 and "GET /v1/admin/matching/suggestions" in missing.json()["detail"]


# Repeated runs: the pairwise figures the issue set as the target.
PRECISION_MIN = 0.995
F1_MIN = 0.99
# One-to-one per run halves a person's profiles each run: 5 profiles need 3.
RUNS_MAX = 6


def run_until_converged(server, restart_after_first=False):
    """Matcher runs until one merges nothing; returns each run's answer."""
    runs = []
    for _ in range(RUNS_MAX):
        r = server.admin("POST", "/v1/admin/matching/run")
        assert r.status_code == 200, r.text
        runs.append(r.json())
        if runs[-1]["links"] == 0:
            return runs
        if restart_after_first and len(runs) == 1:
            server.kill9()
            server.start()
    raise AssertionError(f"no convergence in {RUNS_MAX} runs: {runs}")


def pairwise_scores(server, entity_of):
    """Precision, recall and F1 over record pairs: a pair is predicted when
    both records end in one profile, true when they are one person."""
    profile_of = {rec_id: profile(server, rec_id)["id"] for rec_id in entity_of}
    clusters = defaultdict(list)
    for rec_id, profile_id in profile_of.items():
        clusters[profile_id].append(rec_id)
    predicted = {frozenset(pair) for members in clusters.values() for pair in itertools.combinations(members, 2)}
    people = defaultdict(list)
    for rec_id, entity in entity_of.items():
        people[entity].append(rec_id)
    true = {frozenset(pair) for members in people.values() for pair in itertools.combinations(members, 2)}
    hits = len(predicted & true)
    precision = hits / len(predicted) if predicted else 0.0
    recall = hits / len(true) if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    wrong = sorted(tuple(sorted(pair)) for pair in predicted - true)
    return precision, recall, f1, wrong


def matcher_server(tmp_path):
    config = tmp_path / "kairos.toml"
    config.write_text(CONFIG)
    return Kairos(tmp_path / "data", extra_args=["--config", str(config)]).start()


def test_repeated_runs_on_febrl1_never_merge_the_residue(tmp_path):
    server = matcher_server(tmp_path)
    try:
        records = read_febrl("dataset1.csv")
        import_records(server, records)
        runs = run_until_converged(server, restart_after_first=True)
        first, later = runs[0], runs[1:]
        assert first["parameters"] == "estimated" and first["links"] >= 495, first
        # The residue (500 different people) holds no matches; its own EM
        # would find a "match" class there. The kept estimate (it survived
        # the restart) is used instead, and nothing more is merged.
        assert all(run["parameters"] == "stored" for run in later), later
        assert sum(run["links"] for run in later) == 0, later

        entity_of = {row["rec_id"]: row["rec_id"].split("-")[1] for row in records}
        precision, recall, f1, wrong = pairwise_scores(server, entity_of)
        print(f"FEBRL1 after {len(runs)} runs: precision {precision:.4f} recall {recall:.4f} F1 {f1:.4f}")
        assert wrong == [], f"different people merged: {wrong[:5]}"
        assert precision >= PRECISION_MIN and f1 >= F1_MIN, (precision, recall, f1)
    finally:
        server.stop()


SYLLABLES = ["an", "bel", "cor", "da", "el", "fin", "gar", "hol", "is", "jen", "ka", "lor", "mar", "nel", "or",
             "pet", "ros", "sam", "tor", "wil", "ub", "vi", "ze", "qu"]


def word(rng, syllables):
    return "".join(rng.choice(SYLLABLES) for _ in range(syllables))


def typo(rng, text):
    """One keyboard slip: substitute, delete, insert or transpose."""
    if len(text) < 2:
        return text
    at = rng.randrange(len(text) - 1)
    kind = rng.choice(["substitute", "delete", "insert", "transpose"])
    alphabet = "0123456789" if text.isdigit() else "abcdefghijklmnopqrstuvwxyz"
    if kind == "substitute":
        return text[:at] + rng.choice(alphabet) + text[at + 1:]
    if kind == "delete":
        return text[:at] + text[at + 1:]
    if kind == "insert":
        return text[:at] + rng.choice(alphabet) + text[at:]
    return text[:at] + text[at + 1] + text[at] + text[at + 2:]


def generated_person(rng, index):
    suburb = rng.randrange(400)
    return {
        "given_name": word(rng, 2), "surname": word(rng, 3), "street_number": str(rng.randint(1, 150)),
        "address_1": f"{word(rng, 2)} {rng.choice(['street', 'road', 'avenue', 'place'])}",
        "address_2": rng.choice(["", "", "", f"unit {rng.randint(1, 40)}"]),
        "suburb": word(random.Random(suburb), 3), "postcode": str(2000 + suburb * 7),
        "state": ["nsw", "vic", "qld", "wa", "sa", "tas"][suburb % 6],
        "date_of_birth": f"19{rng.randint(30, 99):02d}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
        "soc_sec_id": str(rng.randint(1_000_000, 9_999_999)),
    }


def generated_duplicate(rng, person):
    """FEBRL-style: up to three modifications, each a typo, a missing value,
    swapped names or a day-month swap in the birth date."""
    copy = dict(person)
    for _ in range(rng.randint(1, 3)):
        change = rng.random()
        field = rng.choice(FIELDS)
        if change < 0.55:
            copy[field] = typo(rng, copy[field])
        elif change < 0.75 and field not in ("given_name", "surname"):
            copy[field] = ""
        elif change < 0.87:
            copy["given_name"], copy["surname"] = copy["surname"], copy["given_name"]
        else:
            birth = copy["date_of_birth"]
            if len(birth) == 8 and int(birth[6:]) <= 12:
                copy["date_of_birth"] = birth[:4] + birth[6:] + birth[4:6]
    return copy


def test_people_with_several_duplicates_converge_to_one_profile_each(tmp_path):
    rng = random.Random(2026)
    records, entity_of = [], {}
    for person_index in range(400):
        person = generated_person(rng, person_index)
        # 1 to 5 profiles a person: most have duplicates, some several.
        copies = [person] + [generated_duplicate(rng, person) for _ in range(rng.choice([0, 1, 1, 2, 2, 3, 4]))]
        for copy_index, copy in enumerate(copies):
            rec_id = f"gen-{person_index}-{copy_index}"
            records.append(dict(copy, rec_id=rec_id))
            entity_of[rec_id] = str(person_index)
    rng.shuffle(records)
    server = matcher_server(tmp_path)
    try:
        import_records(server, records)
        runs = run_until_converged(server)
        assert runs[0]["parameters"] == "estimated", runs[0]
        assert len(runs) >= 3, f"people with 5 profiles need several runs: {runs}"
        precision, recall, f1, wrong = pairwise_scores(server, entity_of)
        print(f"generated, {len(records)} records after {len(runs)} runs: "
              f"precision {precision:.4f} recall {recall:.4f} F1 {f1:.4f}; links per run {[r['links'] for r in runs]}")
        assert wrong == [], f"different people merged: {wrong[:5]}"
        assert precision >= PRECISION_MIN and f1 >= F1_MIN, (precision, recall, f1)
    finally:
        server.stop()
