"""KeyedRiverModel served by the real seldon-core-microservice: one pair of models per product."""

from __future__ import annotations

import dill
import grpc
import numpy as np
import pytest
import requests
from river import metrics
from seldon_core.proto import prediction_pb2_grpc
from seldon_core.utils import json_to_feedback, json_to_seldon_message

from model_wrappers.keyed_artifact import export_keyed
from model_wrappers.synthetic import FEATURES, Sales, candidates
from support import as_dict, seldon_client, truth

CLASS = "model_wrappers.keyed_model.KeyedRiverModel"
KEY = "product_id"
MIN_OBS = 4
N_KEYS = 30


# -- the same loop, in process, with river only ------------------------------------------------
class Reference:
    """Per-key candidates fed in stream order; the serving choice follows the documented rule.

    Each row: every candidate is scored on it (progressive MAE) and learns it; from
    ``min_observations`` rows on, the candidate with the strictly lowest MAE takes over (ties
    keep the current one, the first declared wins among equals); a key starts on its first candidate.
    """

    def __init__(self, min_observations: int = MIN_OBS):
        self.min_observations = min_observations
        self.keys: dict[str, dict] = {}

    def key(self, key: str) -> dict:
        if key not in self.keys:
            models = candidates()
            self.keys[key] = {"models": models, "mae": {c: metrics.MAE() for c in models},
                              "chosen": next(iter(models)), "n": 0}
        return self.keys[key]

    def predict(self, key: str, x: dict) -> float:
        state = self.key(key)
        return float(state["models"][state["chosen"]].predict_one(x) or 0.0)

    def learn(self, key: str, x: dict, y: float) -> None:
        state = self.key(key)
        for name, model in state["models"].items():
            state["mae"][name].update(y, model.predict_one(x))
            model.learn_one(x, y)
        state["n"] += 1
        if state["n"] >= self.min_observations:
            best = state["chosen"]
            for name in state["models"]:
                if state["mae"][name].get() < state["mae"][best].get():
                    best = name
            state["chosen"] = best

    def chosen(self) -> dict[str, str]:
        return {k: s["chosen"] for k, s in self.keys.items()}


# -- helpers -----------------------------------------------------------------------------------
def export_case(folder, mapping=None, **kwargs):
    export_keyed(folder, templates=candidates(), mapping=mapping, features=FEATURES, key_feature=KEY,
                 name="m5", min_observations=MIN_OBS, **kwargs)
    return folder


def keyed_service(services, folder, workdir, state_uri, name="keyed", **params):
    return services.start(CLASS, "MODEL", {"model_uri": str(folder), "state_uri": state_uri, **params},
                          workdir, name=name)


def rows_of(day, keys=None) -> list[dict]:
    return [{KEY: pid, **x} for pid, x, _ in day.records() if keys is None or pid in keys]


def predictions(service, rows: list[dict]) -> list[float]:
    reply = service.predict({"jsonData": rows})
    assert reply.status_code == 200, reply.text
    return [r["prediction"] for r in reply.json()["jsonData"]]


def key_status(service, **query) -> dict:
    reply = requests.get(f"{service.rest_url}/health/status", params=query, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()["jsonData"]


def all_keys(service) -> dict[str, dict]:
    return key_status(service, keys="all", limit=100_000)["keys"]


def grpc_stub(service):
    return prediction_pb2_grpc.SeldonStub(grpc.insecure_channel(f"127.0.0.1:{service.grpc}"))


def feed(service, reference: Reference, days, label_only_every: int = 2) -> None:
    """Each day: predict every product in one mixed batch (checked against the reference), then
    feed back the day's truth: every ``label_only_every``-th day by puid only."""
    for i, day in enumerate(days):
        rows = rows_of(day)
        reply = service.predict({"jsonData": rows})
        assert reply.status_code == 200, reply.text
        served = [r["prediction"] for r in reply.json()["jsonData"]]
        assert served == pytest.approx([reference.predict(pid, x) for pid, x, _ in day.records()], rel=1e-9)
        if label_only_every and i % label_only_every == 1:
            body = {"response": {"meta": {"puid": reply.json()["meta"]["puid"]}}, "truth": {"jsonData": day.sales}}
        else:
            body = {"request": {"jsonData": rows}, "truth": {"jsonData": day.sales}}
        ack = service.feedback(body)
        assert ack.status_code == 200, ack.text
        for pid, x, y in day.records():
            reference.learn(pid, x, y)


@pytest.fixture
def folder(tmp_path):
    return export_case(tmp_path / "model")


# -- isolation between keys ---------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_feedback_for_one_key_leaves_every_other_key_untouched(services, folder, tmp_path, transport):
    served = keyed_service(services, folder, tmp_path, f"sqlite:///{tmp_path}/state.db")
    client = seldon_client(served, transport)
    sales = Sales(N_KEYS, seed=7)
    warm = list(sales.days(3))
    for day in warm:  # every key learns a little, so predictions are not all zero
        assert served.feedback({"request": {"jsonData": rows_of(day)}, "truth": {"jsonData": day.sales}}).ok
    day = sales.day()
    rows = rows_of(day)
    a, b = rows[0], rows[1]
    before = predictions(served, rows)
    for _ in range(6):
        first = client.predict(json_data=[b])
        assert first.success, first.msg
        fb = client.feedback(prediction_request=first.request, prediction_response=first.response,
                             reward=0.0, prediction_truth=truth([50.0]))
        assert fb.success, fb.msg
    after = predictions(served, rows)
    assert after[0] == before[0]
    assert after[2:] == before[2:]
    assert after[1] > before[1]
    figures = key_status(served, key=[a[KEY], b[KEY]])["keys"]
    assert figures[a[KEY]]["observations"] == 3
    assert figures[b[KEY]]["observations"] == 9
    reply = as_dict(client.predict(json_data=[a, b]).response)
    assert set(reply["meta"]["tags"]["seldon_river_keys"]) == {a[KEY], b[KEY]}


# -- the served choice equals the in-process loop ------------------------------------------------
def test_served_choice_of_candidate_per_key_equals_the_in_process_loop(services, folder, tmp_path):
    served = keyed_service(services, folder, tmp_path, f"sqlite:///{tmp_path}/state.db")
    reference = Reference()
    feed(served, reference, Sales(N_KEYS, seed=11).days(16))
    published = all_keys(served)
    assert {k: v["candidate"] for k, v in published.items()} == reference.chosen()
    assert set(reference.chosen().values()) == {"knn", "linear"}, "the stream should make both candidates win somewhere"
    for key, state in reference.keys.items():
        assert published[key]["observations"] == 16
        for name in ("knn", "linear"):
            assert published[key]["candidates"][name]["mae"] == pytest.approx(state["mae"][name].get(), rel=1e-9)
    # Aggregates are Seldon custom metrics; per-key figures never become Prometheus series.
    status = served.status()["metrics"]
    chosen = list(reference.chosen().values())
    assert status["keys_chosen_knn"] == chosen.count("knn")
    assert status["keys_chosen_linear"] == chosen.count("linear")
    assert status["learned"] == 16 * N_KEYS
    prometheus = served.prometheus()
    assert "seldon_river_keys_chosen_linear" in prometheus and "seldon_river_mae" in prometheus
    assert not any(key in prometheus for key in reference.keys)


# -- mixed-key batches ----------------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_a_batch_may_mix_keys(services, folder, tmp_path, transport):
    served = keyed_service(services, folder, tmp_path, f"sqlite:///{tmp_path}/state.db")
    reference = Reference()
    sales = Sales(6, seed=3)
    feed(served, reference, sales.days(5), label_only_every=0)
    rows = rows_of(sales.day())
    mixed = [rows[0], rows[3], rows[0], rows[5], rows[3]]
    client = seldon_client(served, transport)
    names = [KEY, *FEATURES]
    result = client.predict(data=np.array([[r[n] for n in names] for r in mixed], dtype=object), names=names,
                            payload_type="ndarray")
    assert result.success, result.msg
    reply = as_dict(result.response)
    values = [row[0] for row in reply["data"]["ndarray"]]
    singles = [predictions(served, [r])[0] for r in mixed]
    assert values == pytest.approx(singles, rel=1e-12)
    assert values == pytest.approx([reference.predict(r[KEY], {f: r[f] for f in FEATURES}) for r in mixed], rel=1e-9)
    assert sorted(reply["meta"]["tags"]["seldon_river_keys"]) == sorted({r[KEY] for r in mixed})
    # Feedback for a mixed batch teaches each row's own key, rows of one key in batch order.
    fb = client.feedback(prediction_request=result.request, prediction_response=result.response,
                         reward=0.0, prediction_truth=truth([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert fb.success, fb.msg
    for r, y in zip(mixed, [1.0, 2.0, 3.0, 4.0, 5.0]):
        reference.learn(r[KEY], {f: r[f] for f in FEATURES}, y)
    untouched = rows[1]
    assert predictions(served, mixed + [untouched]) == pytest.approx(
        [reference.predict(r[KEY], {f: r[f] for f in FEATURES}) for r in mixed + [untouched]], rel=1e-9)
    counts = key_status(served, key=[rows[0][KEY], rows[1][KEY], rows[3][KEY], rows[5][KEY]])["keys"]
    assert [counts[rows[i][KEY]]["observations"] for i in (0, 1, 3, 5)] == [7, 5, 7, 6]


def test_the_key_may_come_from_a_meta_tag(services, folder, tmp_path):
    served = keyed_service(services, folder, tmp_path, f"sqlite:///{tmp_path}/state.db", key_tag="product")
    x = {f: 1.0 for f in FEATURES}
    body = {"meta": {"tags": {"product": "A"}}, "data": {"names": FEATURES, "ndarray": [[x[f] for f in FEATURES]]}}
    assert served.predict(body).json()["data"]["ndarray"] == [[0.0]]
    for _ in range(3):
        ack = served.feedback({"request": body, "truth": {"data": {"ndarray": [[5.0]]}}})
        assert ack.status_code == 200, ack.text
    per_row = {"meta": {"tags": {"product": ["A", "B"]}},
               "data": {"names": FEATURES,
                        "tensor": {"shape": [2, len(FEATURES)], "values": [1.0] * 2 * len(FEATURES)}}}
    reply = served.predict(per_row).json()
    a, b = reply["data"]["tensor"]["values"]
    assert a > 0 and b == 0.0
    assert reply["meta"]["tags"]["seldon_river_keys"]["A"]["observations"] == 3
    missing = served.predict({"data": body["data"]})
    assert missing.status_code == 400 and "expected meta.tags['product']" in missing.json()["status"]["info"]
    wrong = served.predict({**per_row, "meta": {"tags": {"product": ["A"]}}})
    assert wrong.status_code == 400 and "has 1 keys but the request has 2 rows" in wrong.json()["status"]["info"]


# -- bad key input -------------------------------------------------------------------------------
FIRST_ROW = Sales(3, seed=5).day().rows[0]


def row(key) -> dict:
    return {KEY: key, **FIRST_ROW}


KNOWN = Sales(3, seed=5).ids[0]
BAD_KEYS = {
    "no key feature": ([{f: 1.0 for f in FEATURES}], "missing features ['product_id']"),
    "null key": ([{**row(KNOWN), KEY: None}], "feature 'product_id': missing value (null)"),
    "boolean key": ([{**row(KNOWN), KEY: True}], "a key must be a string or an integer, got True"),
    "fractional key": ([{**row(KNOWN), KEY: 1.5}], "a key must be a string or an integer, got the number 1.5"),
    "unknown key": ([row("NOT_A_PRODUCT")], "unknown key 'NOT_A_PRODUCT'"),
    "one unknown key in a batch": ([row(KNOWN), row("NOPE_1"), row(KNOWN)], "unknown key 'NOPE_1'"),
}


@pytest.fixture
def listed_service(services, tmp_path):
    """Keys listed in the folder (a dill'd key -> pipelines mapping) and creating keys switched off."""
    ids = Sales(3, seed=5).ids
    mapping_file = tmp_path / "mapping.dill"
    mapping_file.write_bytes(dill.dumps({pid: candidates() for pid in ids}))
    folder = export_case(tmp_path / "listed", mapping=dill.loads(mapping_file.read_bytes()))
    return keyed_service(services, folder, tmp_path, f"sqlite:///{tmp_path}/state.db", create_keys=False)


def test_bad_key_input_is_a_clear_400_and_touches_no_state(listed_service):
    served = listed_service
    probe = [row(KNOWN)]
    assert served.feedback({"request": {"jsonData": probe}, "truth": {"jsonData": [3.0]}}).ok
    before = predictions(served, probe)
    figures_before = key_status(served, key=KNOWN)["keys"][KNOWN]
    for case, (rows, message) in BAD_KEYS.items():
        reply = served.predict({"jsonData": rows})
        assert reply.status_code == 400, (case, reply.text)
        assert message in reply.json()["status"]["info"], case
        with pytest.raises(grpc.RpcError) as err:
            grpc_stub(served).Predict(json_to_seldon_message({"jsonData": rows}))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in err.value.details(), case
        feedback = {"request": {"jsonData": rows}, "truth": {"jsonData": [1.0] * len(rows)}}
        reply = served.feedback(feedback)
        assert reply.status_code == 400, (case, reply.text)
        assert message in reply.json()["status"]["info"], case
        with pytest.raises(grpc.RpcError) as err:
            grpc_stub(served).SendFeedback(json_to_feedback(feedback))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in err.value.details(), case
    # Nothing was learned, not even from the valid rows of a batch.
    assert predictions(served, probe) == before
    assert key_status(served, key=KNOWN)["keys"][KNOWN] == figures_before
    assert served.status()["replica"]["position"] == 1
    assert served.status()["metrics"]["keys"] == 3


def test_listed_keys_start_from_their_own_pipelines(services, tmp_path):
    sales = Sales(4, seed=9)
    warmed = Reference()
    for day in sales.days(10):  # warmed up offline, as a user would before exporting
        for pid, x, y in day.records():
            for model in warmed.key(pid)["models"].values():
                model.learn_one(x, y)
    mapping = {pid: state["models"] for pid, state in warmed.keys.items()}
    folder = export_case(tmp_path / "warm", mapping=mapping)
    served = keyed_service(services, folder, tmp_path, f"sqlite:///{tmp_path}/state.db")
    day = sales.day()
    assert predictions(served, rows_of(day)) == pytest.approx(
        [warmed.keys[pid]["models"]["knn"].predict_one(x) for pid, x, _ in day.records()], rel=1e-12)
    # A new product starts from the templates (created: create_keys defaults to on with templates).
    assert predictions(served, [{**rows_of(day)[0], KEY: "NEW_PRODUCT"}]) == [0.0]
    assert served.status()["keyed"]["listed_keys"] == 4


# -- restarts and checkpoints ------------------------------------------------------------------------
@pytest.mark.parametrize("backend,capacity,preload", [
    ("sqlite", 0, False), ("sqlite", 7, False), ("redis", 7, False), ("redis", 0, True)])
def test_a_restart_restores_every_key(services, folder, tmp_path, request, backend, capacity, preload):
    if backend == "redis":
        state_uri = request.getfixturevalue("redis_server").url
    else:
        state_uri = f"sqlite:///{tmp_path}/state.db"
    params = dict(checkpoint_every=3, max_keys_in_memory=capacity, preload=preload)
    served = keyed_service(services, folder, tmp_path, state_uri, **params)
    reference = Reference()
    sales = Sales(N_KEYS, seed=13)
    feed(served, reference, sales.days(10))
    # Single-row feedback for a few keys: more events, and a checkpoint that holds few keys.
    day = sales.day()
    for pid, x, y in list(day.records())[:4]:
        ack = served.feedback({"request": {"jsonData": [{KEY: pid, **x}]}, "truth": {"jsonData": [y]}})
        assert ack.status_code == 200, ack.text
        reference.learn(pid, x, y)
    status = served.status()
    assert status["replica"]["position"] == 14
    if capacity:
        assert status["metrics"]["keys_loaded"] <= capacity
    rows = rows_of(day)
    expected = [reference.predict(pid, x) for pid, x, _ in day.records()]
    assert predictions(served, rows) == pytest.approx(expected, rel=1e-9)
    served.kill9()
    again = keyed_service(services, folder, tmp_path, state_uri, name="again", **params)
    replica = again.status()["replica"]
    assert replica["restored_from"] == 12 and replica["replayed_at_start"] == 2
    # Keys load on first use (only the two keys of the replayed events are in memory yet), or
    # all at start with preload.
    assert again.status()["metrics"]["keys_loaded"] == (N_KEYS if preload else 2)
    assert predictions(again, rows) == pytest.approx(expected, rel=1e-9)
    assert {k: v["candidate"] for k, v in all_keys(again).items()} == reference.chosen()
    feed(again, reference, sales.days(2))
    # The gRPC process applies the same log with its own memory (and evictions) and agrees.
    day = sales.day()
    reply = as_dict(grpc_stub(again).Predict(json_to_seldon_message({"jsonData": rows_of(day)})))
    assert [r["prediction"] for r in reply["jsonData"]] == pytest.approx(
        [reference.predict(pid, x) for pid, x, _ in day.records()], rel=1e-9)


def test_a_checkpoint_writes_only_the_keys_that_changed(services, folder, tmp_path):
    served = keyed_service(services, folder, tmp_path, f"sqlite:///{tmp_path}/state.db", checkpoint_every=4)
    sales = Sales(N_KEYS, seed=17)
    day = sales.day()
    rows = rows_of(day)
    assert served.feedback({"request": {"jsonData": rows}, "truth": {"jsonData": day.sales}}).ok
    for i in (0, 1, 0):  # positions 2..4: two keys change
        assert served.feedback({"request": {"jsonData": [rows[i]]}, "truth": {"jsonData": [1.0]}}).ok
    assert served.status()["keyed"]["last_checkpoint"]["keys"] == N_KEYS
    for i in (5, 5, 5, 6):  # positions 5..8
        assert served.feedback({"request": {"jsonData": [rows[i]]}, "truth": {"jsonData": [1.0]}}).ok
    checkpoint = served.status()["keyed"]["last_checkpoint"]
    assert checkpoint["position"] == 8 and checkpoint["keys"] == 2


def test_metadata_and_status_describe_the_keys(services, folder, tmp_path):
    served = keyed_service(services, folder, tmp_path, f"sqlite:///{tmp_path}/state.db")
    meta = requests.get(f"{served.rest_url}/api/v1.0/metadata", timeout=10).json()
    assert meta["inputs"][0]["schema"]["names"] == [KEY, *FEATURES]
    assert meta["custom"]["candidates"] == "knn,linear"
    status = served.status()
    assert status["keyed"]["key"] == {"feature": KEY}
    assert status["keyed"]["selection"] == {"metric": "mae", "min_observations": MIN_OBS}
    page = key_status(served, keys="all", limit=1)
    assert page == {"keys": {}, "total": 0, "offset": 0, "next_offset": None}
    bad = requests.get(f"{served.rest_url}/health/status", params={"keys": "all", "limit": "x"}, timeout=10)
    assert bad.status_code == 400
