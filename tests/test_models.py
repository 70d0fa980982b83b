"""Model scores end to end: scikit-learn models exported to ONNX (skl2onnx)
score the same in Kairos (ONNX Runtime loaded from the PyPI wheel) as in
onnxruntime's Python API, to 1e-5; Kairos' own models score live on every
event from features kept in the stream, land on the profile under
"scores" (shadow versions under "shadow_scores"), are read by audiences
(`score("purchase_propensity") > 0.7`) and by threshold triggers, survive
restarts; promotion, BG/NBD P(alive) per profile, and bad models named."""

import base64
import json
import math
import time
from pathlib import Path

import numpy as np
import onnxruntime
import requests
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from conftest import Kairos, shared_data
from test_journeys import Receiver, destination, wait_for

NUMERIC = ["Administrative", "Administrative_Duration", "Informational", "Informational_Duration",
           "ProductRelated", "ProductRelated_Duration", "BounceRates", "ExitRates", "PageValues", "SpecialDay"]
FEATURES = ["session.administrative", "session.administrative_duration", "session.informational",
            "session.informational_duration", "session.product_related", "session.product_related_duration",
            "session.bounce_rate", "session.exit_rate", "session.page_value", "session.special_day"]


def onnx_runtime_library() -> str:
    capi = Path(onnxruntime.__file__).parent / "capi"
    return str(next(capi.glob("libonnxruntime.so*")))


def start(tmp_path, extra_args=()) -> Kairos:
    return Kairos(tmp_path / "data", extra_args=extra_args, env={"ORT_DYLIB_PATH": onnx_runtime_library()}).start()


def shoppers():
    import csv
    with open(shared_data("online_shoppers/online_shoppers_intention.csv")) as file:
        rows = list(csv.DictReader(file))
    x = np.array([[float(row[name]) for name in NUMERIC] for row in rows], dtype=np.float32)
    y = np.array([row["Revenue"] == "TRUE" for row in rows])
    return x, y


def to_onnx(model, columns, zipmap):
    from skl2onnx import to_onnx as convert
    options = {id(model): {"zipmap": zipmap}}
    return convert(model, np.zeros((1, columns), dtype=np.float32), options=options).SerializeToString()


def test_onnx_models_score_like_onnxruntime(tmp_path):
    x, y = shoppers()
    train, rows = x[:8000], x[8000:8400]
    server = start(tmp_path)
    try:
        for name, model, zipmap in [
            ("gbm_300", GradientBoostingClassifier(n_estimators=300, max_depth=3, random_state=0), True),
            ("logistic", LogisticRegression(max_iter=2000), False),
        ]:
            model.fit(train, y[:8000])
            onnx = to_onnx(model, len(NUMERIC), zipmap)
            session = onnxruntime.InferenceSession(onnx, providers=["CPUExecutionProvider"])
            outputs = session.run(None, {session.get_inputs()[0].name: rows})
            probabilities = outputs[1]
            expected = [p[1] for p in probabilities] if zipmap else list(probabilities[:, 1])
            r = server.admin("POST", "/v1/models", json={
                "name": name, "format": "onnx", "model": base64.b64encode(onnx).decode(), "inputs": FEATURES})
            assert r.status_code == 201, r.text
            assert r.json()["mode"] == "shadow" and r.json()["version"] == 1
            r = server.admin("POST", f"/v1/models/{name}/score", json={"rows": rows.astype(float).tolist()})
            assert r.status_code == 200, r.text
            got = [score[name] for score in r.json()["scores"]]
            worst = max(abs(a - b) for a, b in zip(got, expected))
            assert worst < 1e-5, (name, worst)
        # Bad models are refused with the reason.
        r = server.admin("POST", "/v1/models", json={"name": "x", "format": "onnx", "model": "not base64!", "inputs": FEATURES})
        assert r.status_code == 400 and "base64" in r.json()["detail"], r.text
        r = server.admin("POST", "/v1/models", json={"name": "x", "format": "onnx",
                                                     "model": base64.b64encode(b"garbage").decode(), "inputs": FEATURES})
        assert r.status_code == 400 and "not an ONNX file" in r.json()["detail"], r.text
        # Well-formed protobuf that is no ONNX graph: ONNX Runtime says why.
        r = server.admin("POST", "/v1/models", json={"name": "x", "format": "onnx",
                                                     "model": base64.b64encode(b"\x08\x07").decode(), "inputs": FEATURES})
        assert r.status_code == 400 and "ONNX Runtime" in r.json()["detail"], r.text
        r = server.admin("POST", "/v1/models", json={"name": "x", "format": "gbm", "model": {}, "inputs": ["session.nope"]})
        assert r.status_code == 400 and "session.nope" in r.json()["detail"], r.text
        r = server.admin("POST", "/v1/models", json={"name": "x", "format": "pickle", "model": {}, "inputs": FEATURES})
        assert r.status_code == 400 and "format" in r.json()["detail"], r.text
        # A hostile tree whose child points back at its parent would loop
        # forever on every event: refused before anything is stored.
        cyclic = {"feature_count": 1, "base_margin": 0.0, "tree_roots": [0], "feature": [0, 4294967295],
                  "threshold": [0.5, 0.0], "left": [0, 0], "right": [1, 0], "missing_left": [True, False],
                  "value": [0.0, 0.1]}
        r = server.admin("POST", "/v1/models", json={"name": "x", "format": "gbm", "model": cyclic,
                                                     "inputs": ["session.events"]})
        assert r.status_code == 400 and "after their parent" in r.json()["detail"], r.text
        r = server.admin("POST", "/v1/models", json={"name": "x", "format": "gbm", "model": {**cyclic, "left": [1, 0]},
                                                     "inputs": ["session.events", "session.page_views"]})
        assert r.status_code == 400 and "the spec maps 2 inputs" in r.json()["detail"], r.text
    finally:
        server.stop()


def sigmoid(margin):
    return 1 / (1 + math.exp(-margin))


# A logistic model in Kairos' own format: standardized inputs.
PROPENSITY = {"means": [0.0, 0.0], "scales": [1.0, 1.0], "intercept": -3.0, "weights": [0.8, 2.5]}


def page(user, n, at, **properties):
    return {"type": "page", "userId": user, "messageId": f"p-{user}-{n}", "timestamp": at, "properties": properties}


def track(user, event, n, at, **properties):
    return {"type": "track", "event": event, "userId": user, "messageId": f"t-{user}-{n}", "timestamp": at,
            "properties": properties}


def test_scores_in_the_stream_reach_profiles_audiences_and_triggers(tmp_path):
    receiver = Receiver().start()
    server = start(tmp_path)
    try:
        destination(server, receiver)
        r = server.admin("POST", "/v1/models", json={
            "name": "purchase_propensity", "format": "logistic", "model": PROPENSITY, "mode": "active",
            "inputs": ["session.product_views", "session.cart_adds"]})
        assert r.status_code == 201, r.text
        r = server.admin("POST", "/v1/audiences", json={"name": "likely buyers",
                                                       "definition": 'score("purchase_propensity") > 0.7'})
        assert r.status_code == 201, r.text
        r = server.admin("POST", "/v1/journeys", json={
            "name": "nudge", "trigger": {"when": "score purchase_propensity > 0.9"},
            "steps": [{"send": {"destination": "hooks"}}]})
        assert r.status_code == 201, r.text
        key = server.create_source("shop")["write_key"]

        def send(events):
            r = requests.post(server.base_url + "/v1/batch", json={"batch": events}, headers=Kairos.basic(key), timeout=10)
            assert r.status_code == 200, r.text

        def profile():
            return server.admin("GET", "/v1/profiles/user_id:ann").json()

        send([page("ann", 1, "2030-01-01T10:00:00Z", page_type="product"),
              track("ann", "Product Viewed", 2, "2030-01-01T10:01:00Z", product_id="p1"),
              track("ann", "Product Viewed", 3, "2030-01-01T10:02:00Z", product_id="p2")])
        expected = sigmoid(-3.0 + 0.8 * 2)
        assert abs(profile()["scores"]["purchase_propensity"] - expected) < 1e-12
        assert "likely buyers" not in profile()["audiences"]
        # A cart add raises the score past 0.7 with this very event.
        send([track("ann", "Product Added", 4, "2030-01-01T10:03:00Z", product_id="p2")])
        assert abs(profile()["scores"]["purchase_propensity"] - sigmoid(-3.0 + 0.8 * 2 + 2.5)) < 1e-12
        assert sigmoid(-3.0 + 0.8 * 2 + 2.5) > 0.7 and "likely buyers" in profile()["audiences"]
        assert receiver.verified == []
        send([track("ann", "Product Added", 5, "2030-01-01T10:04:00Z", product_id="p3")])  # > 0.9
        assert wait_for(lambda: len(receiver.accepted) == 1), receiver.verified
        # A new session (31 minutes later) starts from zero.
        send([page("ann", 6, "2030-01-01T10:35:00Z", page_type="help")])
        assert abs(profile()["scores"]["purchase_propensity"] - sigmoid(-3.0)) < 1e-12
        assert "likely buyers" not in profile()["audiences"]

        # A second version in shadow: scored, shown, not acted on.
        shadow = dict(PROPENSITY, intercept=2.0)
        r = server.admin("POST", "/v1/models", json={
            "name": "purchase_propensity", "format": "logistic", "model": shadow,
            "inputs": ["session.product_views", "session.cart_adds"]})
        assert r.status_code == 201 and r.json()["version"] == 2, r.text
        send([page("ann", 7, "2030-01-01T10:36:00Z", page_type="help")])
        view = profile()
        assert abs(view["shadow_scores"]["purchase_propensity"] - sigmoid(2.0)) < 1e-12
        assert abs(view["scores"]["purchase_propensity"] - sigmoid(-3.0)) < 1e-12
        assert "likely buyers" not in view["audiences"]
        # Promoted: it becomes the score audiences read (from the next event on).
        r = server.admin("POST", "/v1/models/purchase_propensity/versions/2/promote")
        assert r.status_code == 200, r.text
        send([page("ann", 8, "2030-01-01T10:37:00Z", page_type="help")])
        view = profile()
        assert abs(view["scores"]["purchase_propensity"] - sigmoid(2.0)) < 1e-12 and view["shadow_scores"] == {}
        assert "likely buyers" in view["audiences"]
        modes = {m["version"]: m["mode"] for m in server.admin("GET", "/v1/models").json()["models"]}
        assert modes == {1: "retired", 2: "active"}
        # Restart: the registry persists and the replay recomputes the scores.
        server.stop()
        server.start()
        view = profile()
        assert abs(view["scores"]["purchase_propensity"] - sigmoid(2.0)) < 1e-12
        assert "likely buyers" in view["audiences"]
    finally:
        server.stop()
        receiver.stop()


def test_probability_alive_per_profile_from_bgnbd(tmp_path):
    # On the manual clock, the day of the last visit: P(alive) is re-scored
    # as days pass, so on the system clock this test would change meaning
    # once the real date passes 2030-02-05.
    server = start(tmp_path, extra_args=["--clock", "manual"])
    try:
        assert server.admin("POST", "/v1/admin/clock", json={"now": "2030-02-05T12:00:00Z"}).status_code == 200
        r = server.admin("POST", "/v1/models", json={
            "name": "alive", "format": "bgnbd", "mode": "active",
            "model": {"r": 0.2426, "alpha": 4.4135, "a": 0.7929, "b": 2.4258, "horizon_weeks": 13},
            "inputs": ["profile.repeat_order_days", "profile.order_recency_weeks", "profile.order_age_weeks"]})
        assert r.status_code == 201, r.text
        assert r.json()["outputs"] == ["alive", "alive_expected"]
        key = server.create_source("shop")["write_key"]
        # Orders on days 0, 14 and 28 (two the same day), then a visit at day 35.
        events = [track("bo", "Order Completed", n, at, revenue=10)
                  for n, at in enumerate(["2030-01-01T10:00:00Z", "2030-01-15T10:00:00Z", "2030-01-15T18:00:00Z",
                                          "2030-01-29T10:00:00Z"])]
        events.append(page("bo", 9, "2030-02-05T10:00:00Z"))
        r = requests.post(server.base_url + "/v1/batch", json={"batch": events}, headers=Kairos.basic(key), timeout=10)
        assert r.status_code == 200, r.text
        scores = server.admin("GET", "/v1/profiles/user_id:bo").json()["scores"]
        # BG/NBD with x = 2 repeat days, t_x = 4 weeks, T = 5 weeks (lifetimes' formula).
        r_, alpha, a, b = 0.2426, 4.4135, 0.7929, 2.4258
        x, t_x, T = 2, 4.0, 5.0
        p_alive = 1 / (1 + (a / (b + x - 1)) * ((alpha + T) / (alpha + t_x)) ** (r_ + x))
        assert abs(scores["alive"] - p_alive) < 1e-9, (scores, p_alive)
        assert scores["alive_expected"] > 0
    finally:
        server.stop()


def test_admin_bodies_are_limited_while_reading_and_models_may_be_large(tmp_path):
    """Admin bodies over 4 MiB are refused with 413 — also when sent chunked
    without a Content-Length (the limit applies while reading, nothing is
    buffered past it); model registration allows 64 MiB (trees and ONNX
    files are big)."""
    server = Kairos(tmp_path / "data").start()
    try:
        big = b'{"name": "x", "definition": "' + b"a" * (5 * 1024 * 1024) + b'"}'
        r = requests.post(server.base_url + "/v1/audiences", data=big, headers=server.admin_headers(), timeout=30)
        assert r.status_code == 413 and "4194304" in r.json()["detail"], r.text[:300]
        chunks = (big[i:i + 65536] for i in range(0, len(big), 65536))
        r = requests.post(server.base_url + "/v1/audiences", data=chunks, headers=server.admin_headers(), timeout=30)
        assert r.status_code == 413 and "4194304" in r.json()["detail"], r.text[:300]
        # A tree model of 250,000 one-leaf trees: ~7 MB of JSON.
        leaves = 250_000
        trees = {"feature_count": 1, "base_margin": 0.0, "tree_roots": list(range(leaves)),
                 "feature": [4294967295] * leaves, "threshold": [0.0] * leaves, "left": [0] * leaves,
                 "right": [0] * leaves, "missing_left": [False] * leaves, "value": [1e-6] * leaves}
        body = {"name": "big", "format": "gbm", "model": trees, "inputs": ["session.events"]}
        assert len(json.dumps(body)) > 4 * 1024 * 1024
        r = server.admin("POST", "/v1/models", json=body)
        assert r.status_code == 201, r.text[:300]
    finally:
        server.stop()


# --- hostile models (issue 12, item 8) ---------------------------------------------------

def start_with(tmp_path, config: str) -> Kairos:
    path = tmp_path / "kairos.toml"
    path.write_text(config)
    return Kairos(tmp_path / "data", extra_args=["--config", str(path)],
                  env={"ORT_DYLIB_PATH": onnx_runtime_library()}).start()


def onnx_model(nodes, initializers, x_shape=(1, 1)):
    """A graph reading X (float [1, 1]) and giving Y (float)."""
    from onnx import TensorProto, helper
    graph = helper.make_graph(
        nodes, "hostile",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def b64(model) -> str:
    return base64.b64encode(model.SerializeToString()).decode()


def external(tensor, location="secret.bin"):
    from onnx import TensorProto
    tensor.ClearField("float_data")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    return tensor


def counting_loop(trip_count_node_output):
    """Loop(M) adding 1 per iteration to 0: Y = the number of iterations."""
    from onnx import TensorProto, helper
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["v_in", "one_f"], ["v_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [])],
        initializer=[helper.make_tensor("one_f", TensorProto.FLOAT, [], [1.0])])
    return helper.make_node("Loop", [trip_count_node_output, "cond", "zero_f"], ["Y"], body=body)


def loop_model(trap_value=None):
    """Always loops 2^62 times, or (with `trap_value`) only when X equals it."""
    from onnx import TensorProto, helper
    huge = 2 ** 62
    inits = [helper.make_tensor("cond", TensorProto.BOOL, [], [True]),
             helper.make_tensor("zero_f", TensorProto.FLOAT, [], [0.0]),
             helper.make_tensor("huge", TensorProto.INT64, [], [huge])]
    if trap_value is None:
        return onnx_model([counting_loop("huge")], inits)
    inits += [helper.make_tensor("trap", TensorProto.FLOAT, [], [float(trap_value)]),
              helper.make_tensor("one", TensorProto.INT64, [], [1]),
              helper.make_tensor("scalar", TensorProto.INT64, [0], [])]
    nodes = [helper.make_node("Reshape", ["X", "scalar"], ["x"]),
             helper.make_node("Equal", ["x", "trap"], ["is_trap"]),
             helper.make_node("Where", ["is_trap", "huge", "one"], ["m"]),
             counting_loop("m")]
    return onnx_model(nodes, inits)


def metric(server, name, **labels):
    text = server.admin("GET", "/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_onnx_external_data_is_refused_at_registration(tmp_path):
    from onnx import TensorProto, helper
    (tmp_path / "secret.bin").write_bytes(b"\x00\x00\x80\x3f" * 4)
    server = start(tmp_path)
    try:
        # An initializer whose bytes live in a file next to the server.
        weights = external(helper.make_tensor("W", TensorProto.FLOAT, [1, 1], [1.0]))
        as_initializer = onnx_model([helper.make_node("Add", ["X", "W"], ["Y"])], [weights])
        # The same, hidden in a Constant inside an If's branch (a subgraph).
        hidden = external(helper.make_tensor("C", TensorProto.FLOAT, [1, 1], [1.0]))
        branch = helper.make_graph(
            [helper.make_node("Constant", [], ["c"], value=hidden)], "branch", [],
            [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 1])])
        in_subgraph = onnx_model(
            [helper.make_node("If", ["yes"], ["c_out"], then_branch=branch, else_branch=branch),
             helper.make_node("Add", ["X", "c_out"], ["Y"])],
            [helper.make_tensor("yes", TensorProto.BOOL, [], [True])])
        for model in (as_initializer, in_subgraph):
            r = server.admin("POST", "/v1/models", json={
                "name": "leak", "format": "onnx", "model": b64(model), "inputs": ["trait.x"]})
            assert r.status_code == 400, r.text
            assert "external data" in r.json()["detail"], r.text
        # A self-contained model is fine.
        plain = onnx_model([helper.make_node("Add", ["X", "W"], ["Y"])],
                           [helper.make_tensor("W", TensorProto.FLOAT, [1, 1], [1.0])])
        r = server.admin("POST", "/v1/models", json={
            "name": "plain", "format": "onnx", "model": b64(plain), "inputs": ["trait.x"]})
        assert r.status_code == 201, r.text
        assert server.admin("GET", "/v1/models").json()["models"][0]["name"] == "plain"
    finally:
        server.stop()


def test_an_onnx_model_that_always_loops_is_refused_by_the_probe(tmp_path):
    server = start_with(tmp_path, '[models]\nscore_timeout = "200ms"\n')
    try:
        started = time.monotonic()
        r = server.admin("POST", "/v1/models", json={
            "name": "spin", "format": "onnx", "model": b64(loop_model()), "inputs": ["trait.x"]})
        assert r.status_code == 400, r.text
        assert "score_timeout" in r.json()["detail"], r.text
        assert time.monotonic() - started < 5
    finally:
        server.stop()


def test_a_data_dependent_onnx_loop_gives_no_score_and_the_shard_keeps_going(tmp_path):
    server = start_with(tmp_path, '[models]\nscore_timeout = "200ms"\n[profiles]\nshards = 1\n')
    try:
        r = server.admin("POST", "/v1/models", json={
            "name": "trap", "format": "onnx", "model": b64(loop_model(trap_value=7)),
            "inputs": ["trait.magic"], "mode": "active"})
        assert r.status_code == 201, r.text
        key = server.create_source("web")["write_key"]

        def identify(user, magic):
            r = requests.post(server.base_url + "/v1/identify", headers=Kairos.basic(key), timeout=10,
                              json={"userId": user, "traits": {"magic": magic}})
            assert r.status_code == 200, r.text

        def profile(user):
            return server.admin("GET", f"/v1/profiles/user_id:{user}").json()

        identify("fine", 3)
        assert profile("fine")["scores"] == {"trap": 1.0}
        started = time.monotonic()
        identify("trapped", 7)
        view = profile("trapped")
        assert view["traits"]["magic"] == 7 and "trap" not in view["scores"]
        assert time.monotonic() - started < 5
        assert metric(server, "kairos_model_score_failures_total", model="trap", reason="deadline") == 1
        # Suspended after running over: the next person is not slowed by it.
        identify("next", 3)
        assert "trap" not in profile("next")["scores"]
        assert metric(server, "kairos_model_score_failures_total", model="trap", reason="suspended") >= 1
        assert metric(server, "kairos_model_score_seconds_count", model="trap") >= 1
    finally:
        server.stop()


def test_deleting_a_model_stops_a_run_in_progress(tmp_path):
    # A long timeout: only deletion can free the shard quickly.
    server = start_with(tmp_path, '[models]\nscore_timeout = "60s"\n[profiles]\nshards = 1\n')
    try:
        r = server.admin("POST", "/v1/models", json={
            "name": "trap", "format": "onnx", "model": b64(loop_model(trap_value=7)),
            "inputs": ["trait.magic"], "mode": "active"})
        assert r.status_code == 201, r.text
        key = server.create_source("web")["write_key"]
        for user, magic in [("trapped", 7), ("after", 3)]:
            r = requests.post(server.base_url + "/v1/identify", headers=Kairos.basic(key), timeout=10,
                              json={"userId": user, "traits": {"magic": magic}})
            assert r.status_code == 200, r.text
        # Wait until the shard is inside the loop: reads queue behind it.
        deadline = time.monotonic() + 15
        while True:
            try:
                requests.get(server.base_url + "/v1/profiles/user_id:trapped",
                             headers=server.admin_headers(), timeout=0.5)
            except requests.Timeout:
                break
            assert time.monotonic() < deadline, "the trap never ran"
            time.sleep(0.05)
        started = time.monotonic()
        assert server.admin("DELETE", "/v1/models/trap").status_code == 200
        # The shard comes out at once and applies the next person's event.
        view = requests.get(server.base_url + "/v1/profiles/user_id:after",
                            headers=server.admin_headers(), timeout=10).json()
        assert view["traits"]["magic"] == 3 and view["scores"] == {}
        assert time.monotonic() - started < 5
        assert metric(server, "kairos_model_score_failures_total", model="trap", reason="stopped") == 1
    finally:
        server.stop()


def gbm_chain(depth, trees=1):
    """One chain `depth` splits deep (every left child the next split), as
    `trees` trees sharing it."""
    leaf = depth
    return {
        "feature_count": 1, "base_margin": 0.0, "tree_roots": [0] * trees,
        "feature": [0] * depth + [4294967295], "threshold": [0.5] * depth + [0.0],
        "left": [i + 1 for i in range(depth)] + [0], "right": [leaf] * depth + [0],
        "missing_left": [True] * depth + [False], "value": [0.0] * depth + [0.1],
    }


def test_gbm_work_per_score_is_bounded_at_load(tmp_path):
    server = start(tmp_path)
    try:
        for model, limit in [(gbm_chain(100_000), "GBM_DEPTH_MAX"),
                             (gbm_chain(60, trees=10_000), "GBM_PATH_NODES_MAX")]:
            started = time.monotonic()
            r = server.admin("POST", "/v1/models", json={
                "name": "chain", "format": "gbm", "model": model, "inputs": ["trait.x"]})
            assert r.status_code == 400, r.text
            assert limit in r.json()["detail"], r.text
            assert time.monotonic() - started < 10
        r = server.admin("POST", "/v1/models", json={
            "name": "chain", "format": "gbm", "model": gbm_chain(6, trees=100), "inputs": ["trait.x"]})
        assert r.status_code == 201, r.text
    finally:
        server.stop()
