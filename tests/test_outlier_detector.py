"""OutlierDetector served by the real seldon-core-microservice as an input TRANSFORMER.

Data: normal rows have a ~ N(0, 1), b ~ N(5, 2), c ~ U(0, 1); a planted outlier is 5 to 8
deviations out in every feature. The detector is half-space trees (50 trees, window 100) after a
warm-up of 300 rows.

- Fixed threshold 0.985, one outlier in each request of 20 rows (5% outliers), 20 requests:
  precision >= 0.9 and recall >= 0.9. (In process over 150 seeds: precision >= 0.95, recall 1.)
- Quantile 0.99, one outlier in every fourth request of 50 rows (0.5% outliers), 20 requests:
  recall >= 0.8 and at most 3% of the normal rows flagged. A quantile threshold flags about
  1 - q of the traffic by design. (In process over 150 seeds: recall 1, at most 1.4% flagged.)

Tests that need no server call the detector's Seldon hooks in this process (``detectors``).
"""

from __future__ import annotations

import logging
import random
import subprocess

import grpc
import numpy as np
import pytest
from seldon_core.proto import prediction_pb2_grpc
from seldon_core.seldon_client import SeldonClient
from seldon_core.utils import json_to_seldon_message, seldon_message_to_json

from model_wrappers.learning.detector import DetectorSettings, DetectorState
from model_wrappers.outlier_detector import OutlierDetector
from support import RedisServer

NAMES = ["a", "b", "c"]
UNIT = "outliers"
TREES = {"n_trees": 50, "window_size": 100, "warm_up": 300}


def normal(rng: random.Random) -> list[float]:
    return [round(rng.gauss(0, 1), 6), round(rng.gauss(5, 2), 6), round(rng.random(), 6)]


def outlier(rng: random.Random) -> list[float]:
    def side():
        return rng.choice([-1, 1])

    return [round(side() * rng.uniform(5, 8), 6), round(5 + side() * rng.uniform(10, 16), 6),
            round(side() * rng.uniform(2, 4), 6)]


def body(rows: list[list[float]], names=NAMES) -> dict:
    return {"data": {"names": list(names), "ndarray": rows}}


def named(rows: list[list[float]]) -> list[dict]:
    return [dict(zip(NAMES, r)) for r in rows]


def start_detector(services, workdir, state_uri=None, name="detector", **params):
    return services.start(
        "model_wrappers.OutlierDetector", "TRANSFORMER",
        {"state_uri": state_uri or f"sqlite:///{workdir}/state.db", "seed": 3, **TREES, **params},
        workdir, env={"PREDICTIVE_UNIT_ID": UNIT}, name=name,
    )


def transform(service, request: dict) -> dict:
    reply = service.rest("/transform-input", request)
    assert reply.status_code == 200, reply.text
    out = reply.json()
    # Passed on unchanged: same payload, names intact (not renamed t:0..n).
    assert out["data"] == request["data"]
    tags = out["meta"]["tags"]
    assert len(tags["outlier_score"]) == len(tags["is_outlier"]) == len(request["data"]["ndarray"])
    return out


def warm_up(service, rng, requests=6, size=50) -> list[dict]:
    """Send the warm-up rows; nothing may be flagged. Returns the learn events they made."""
    events = []
    for _ in range(requests):
        rows = [normal(rng) for _ in range(size)]
        assert not any(transform(service, body(rows))["meta"]["tags"]["is_outlier"])
        events.append({"type": "learn", "rows": named(rows)})
    return events


def planted(rng, size) -> tuple[list[list[float]], int]:
    rows = [normal(rng) for _ in range(size)]
    k = rng.randrange(size)
    rows[k] = outlier(rng)
    return rows, k


def test_planted_outliers_are_flagged_with_a_fixed_threshold(services, tmp_path):
    service = start_detector(services, tmp_path, threshold=0.985)
    rng = random.Random(7)
    # The same detector fed the same events in process: the served scores must be its scores.
    twin = DetectorState(DetectorSettings(threshold=0.985, seed=3, **TREES))
    for event in warm_up(service, rng):
        twin.apply(event)
    tp = fp = fn = 0
    for _ in range(20):
        rows, k = planted(rng, 20)
        tags = transform(service, body(rows))["meta"]["tags"]
        assert (tags["outlier_score"], tags["is_outlier"]) == twin.score(named(rows))
        twin.apply({"type": "learn", "rows": named(rows)})
        for i, flag in enumerate(tags["is_outlier"]):
            tp += flag and i == k
            fp += flag and i != k
            fn += not flag and i == k
    precision, recall = tp / max(tp + fp, 1), tp / (tp + fn)
    assert precision >= 0.9 and recall >= 0.9, (tp, fp, fn)
    status = service.status()
    assert status["metrics"] == twin.figures()
    assert status["metrics"]["rows_seen"] == 300 + 400
    assert status["features"] == NAMES


def test_quantile_threshold_flags_planted_outliers_over_grpc(services, tmp_path):
    service = start_detector(services, tmp_path, quantile=0.99)
    rng = random.Random(11)
    warm_up(service, rng)  # over REST: the gRPC process learns it from the log
    client = SeldonClient(transport="grpc", microservice_endpoint=f"127.0.0.1:{service.grpc}")
    tp = fn = fp = normals = 0
    for n in range(20):
        rows, k = planted(rng, 50) if n % 4 == 0 else ([normal(rng) for _ in range(50)], None)
        sent = client.microservice(method="transform-input", data=np.array(rows), names=NAMES,
                                   payload_type="ndarray", microservice_endpoint=f"127.0.0.1:{service.grpc}")
        assert sent.success, sent.msg
        reply = seldon_message_to_json(sent.response)
        assert reply["data"] == seldon_message_to_json(sent.request)["data"]
        assert reply["data"]["names"] == NAMES
        for i, flag in enumerate(reply["meta"]["tags"]["is_outlier"]):
            if i == k:
                tp += flag
                fn += not flag
            else:
                normals += 1
                fp += flag
    assert tp / (tp + fn) >= 0.8, (tp, fn)
    assert fp / normals <= 0.03, (fp, normals)
    status = service.status()["metrics"]
    assert status["rows_seen"] == 300 + 1000 and status["warm"] == 1.0
    assert 0 < status["outlier_rate"] <= 0.03


@pytest.fixture
def reject_mode(services, tmp_path):
    service = start_detector(services, tmp_path, threshold=0.985, reject=True)
    rng = random.Random(5)
    warm_up(service, rng)
    return service, rng


def learned(service) -> tuple:
    status = service.status()
    return status["metrics"], status["replica"]["position"]


def test_reject_mode_refuses_a_request_holding_an_outlier(reject_mode):
    service, rng = reject_mode
    transform(service, body([normal(rng) for _ in range(10)]))
    before = learned(service)
    rows, k = planted(rng, 10)
    reply = service.rest("/transform-input", body(rows))
    assert reply.status_code == 422, reply.text
    info = reply.json()["status"]["info"]
    assert f"row {k} (score" in info and "nothing was passed on or learned" in info
    stub = prediction_pb2_grpc.TransformerStub(grpc.insecure_channel(f"127.0.0.1:{service.grpc}"))
    with pytest.raises(grpc.RpcError) as error:
        stub.TransformInput(json_to_seldon_message(body(rows)))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"row {k} (score" in error.value.details()
    assert learned(service) == before


MALFORMED = {
    "text value": (body([[0.1, "x", 0.5]]), "row 0, feature 'b': expected a finite number, got 'x'"),
    "unnamed columns": ({"data": {"ndarray": [[0.1, 5.0, 0.5]]}}, "must name its columns"),
    "other features": (body([[0.1, 5.0, 0.5]], names=["a", "b", "d"]), "features differ from the learned"),
    "empty batch": (body([]), "no rows"),
    "not an object": ([[0.1, 5.0, 0.5]], "expected a JSON object"),
    "null value": ({"jsonData": [{"a": 0.1, "b": None, "c": 0.5}]}, "missing value"),
    "boolean value": ({"jsonData": {"a": 0.1, "b": True, "c": 0.5}}, "expected a finite number, got True"),
}


def test_malformed_input_is_refused_and_changes_nothing(services, tmp_path):
    service = start_detector(services, tmp_path)
    warm_up(service, random.Random(2), requests=1, size=20)
    before = learned(service)
    for case, (request, message) in MALFORMED.items():
        reply = service.rest("/transform-input", request)
        assert reply.status_code == 400, (case, reply.text)
        assert message in reply.json()["status"]["info"], case
    stub = prediction_pb2_grpc.TransformerStub(grpc.insecure_channel(f"127.0.0.1:{service.grpc}"))
    with pytest.raises(grpc.RpcError) as error:
        stub.TransformInput(json_to_seldon_message(body([[0.1, "x", 0.5]])))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "expected a finite number" in error.value.details()
    assert learned(service) == before


def test_every_payload_kind_passes_through_unchanged(services, tmp_path):
    service = start_detector(services, tmp_path, features="a,b,c")
    rng = random.Random(3)
    rows = [normal(rng) for _ in range(3)]
    flat = [v for r in rows for v in r]
    for request in (
        {"data": {"ndarray": rows}},  # unnamed: named by the features parameter
        {"data": {"names": ["c", "a", "b"], "ndarray": [[r[2], r[0], r[1]] for r in rows]}},
        {"data": {"names": NAMES, "tensor": {"shape": [3, 3], "values": flat}}},
        {"jsonData": [dict(zip(NAMES, r)) for r in rows]},
        {"data": {"names": NAMES, "ndarray": rows}, "meta": {"puid": "p-1", "tags": {"upstream": "kept"}}},
    ):
        reply = service.rest("/transform-input", request)
        assert reply.status_code == 200, reply.text
        out = reply.json()
        assert {k: v for k, v in out.items() if k != "meta"} == {k: v for k, v in request.items() if k != "meta"}
        if "meta" in request:
            assert out["meta"]["puid"] == "p-1" and out["meta"]["tags"]["upstream"] == "kept"
    # Served on its own, it answers predictions the same way.
    reply = service.predict({"data": {"names": NAMES, "ndarray": rows}})
    assert reply.status_code == 200, reply.text
    assert reply.json()["data"] == {"names": NAMES, "ndarray": rows}
    assert service.status()["metrics"]["rows_seen"] == 18


def test_replicas_and_restarts_share_the_detector(services, tmp_path, redis_server):
    first = start_detector(services, tmp_path, redis_server.url, name="first", quantile=0.99, checkpoint_every=4)
    rng = random.Random(9)
    warm_up(first, rng)
    second = start_detector(services, tmp_path, redis_server.url, name="second", quantile=0.99, checkpoint_every=4)
    assert learned(second)[0] == learned(first)[0]
    # What one replica learns from its traffic, the other applies too (and flags alike).
    probe = body([normal(rng) for _ in range(5)] + [outlier(rng)])
    assert transform(first, probe)["meta"]["tags"]["is_outlier"][-1] is True
    assert learned(second) == learned(first)
    assert transform(second, probe)["meta"]["tags"]["is_outlier"][-1] is True
    first.stop()
    restarted = start_detector(services, tmp_path, redis_server.url, name="restarted",
                               quantile=0.99, checkpoint_every=4)
    assert learned(restarted)[0] == learned(second)[0]
    status = restarted.status()["replica"]
    assert status["restored_from"] == 8 and status["replayed_at_start"] == 0


def test_outlier_figures_are_published_as_metrics(services, tmp_path):
    service = start_detector(services, tmp_path, threshold=0.985)
    rng = random.Random(4)
    warm_up(service, rng)
    # Figures are read as each request arrives: the second request reports the first one's scores.
    for _ in range(2):
        rows, _ = planted(rng, 20)
        transform(service, body(rows))
    text = service.prometheus()
    for name in ("seldon_river_outlier_rate", "seldon_river_rows_seen", "seldon_river_outlier_threshold",
                 "seldon_river_outlier_score_p99", "seldon_river_outliers_total", "seldon_river_rows_total"):
        assert f"\n{name}{{" in text, f"{name} missing from:\n{text[:2000]}"


@pytest.mark.parametrize("detector", ["half_space_trees", "one_class_svm"])
def test_scoring_leaves_the_learned_state_unchanged(detector):
    rng = random.Random(1)
    settings = DetectorSettings(detector=detector, warm_up=100, window_size=50, n_trees=5, seed=1)
    state = DetectorState(settings)
    fresh = state.snapshot()
    state.score([dict(zip(NAMES, normal(rng)))])
    assert state.snapshot() == fresh
    for _ in range(4):
        state.apply({"type": "learn", "rows": [dict(zip(NAMES, normal(rng))) for _ in range(40)]})
    before = state.snapshot()
    state.score([dict(zip(NAMES, normal(rng))) for _ in range(20)] + [dict(zip(NAMES, outlier(rng)))])
    assert state.snapshot() == before


def test_bad_parameters_stop_the_start():
    with pytest.raises(ValueError, match="set quantile or threshold, not both"):
        OutlierDetector(quantile=0.9, threshold=0.5)
    with pytest.raises(ValueError, match=r"warm_up \(300\) must be at least twice window_size \(200\)"):
        OutlierDetector(warm_up=300, window_size=200)
    # Unset, the window follows a short warm-up.
    assert OutlierDetector(warm_up=200).settings.window_size == 100
    with pytest.raises(ValueError, match="detector must be one of"):
        OutlierDetector(detector="isolation_forest")
    for fraction in (1.5, -0.1, True, "0.5"):
        with pytest.raises(ValueError, match=r"learn_fraction must be in \[0, 1\], got"):
            OutlierDetector(learn_fraction=fraction)


# -- in process ---------------------------------------------------------------------------


LEARN_FAILURE = {"type": "COUNTER", "key": "seldon_river_learn_failures", "value": 1}


@pytest.fixture
def detectors(tmp_path):
    """Make loaded OutlierDetectors in this process, logging to ``tmp_path/<folder>/state.db``."""
    made: list[OutlierDetector] = []

    def make(folder: str = "state", **params) -> OutlierDetector:
        detector = OutlierDetector(state_uri=f"sqlite:///{tmp_path}/{folder}/state.db", seed=3, **{**TREES, **params})
        detector.load()
        made.append(detector)
        return detector

    yield make
    for detector in made:
        detector.replica.log.close()


# -- learning log unavailable -------------------------------------------------------------


def test_unwritable_log_passes_requests_on_unlearned_and_learning_resumes(detectors, tmp_path, caplog):
    detector = detectors(threshold=0.985)
    rng = random.Random(6)
    twin = DetectorState(DetectorSettings(threshold=0.985, seed=3, **TREES))
    for _ in range(6):
        rows = [normal(rng) for _ in range(50)]
        detector.transform_input_raw(body(rows))
        twin.apply({"type": "learn", "rows": named(rows)})
    before = detector.status()
    assert before["metrics"] == twin.figures() and before["replica"]["position"] == 6

    rows, k = planted(rng, 20)
    files = [str(tmp_path / "state" / "state.db"), str(tmp_path / "state" / "state.db-wal")]
    subprocess.run(["chattr", "+i", *files], check=True)  # immutable even for root
    try:
        with caplog.at_level(logging.WARNING, logger="model_wrappers.outlier_detector"):
            reply = detector.transform_input_raw(body(rows))  # returning at all is Seldon's HTTP 200
        during = detector.status()
    finally:
        subprocess.run(["chattr", "-i", *files], check=True)
    assert reply["data"] == body(rows)["data"]
    tags = reply["meta"]["tags"]
    assert (tags["outlier_score"], tags["is_outlier"]) == twin.score(named(rows))
    assert tags["is_outlier"][k] is True
    assert LEARN_FAILURE in reply["meta"]["metrics"]
    assert "request passed on without learning from it" in caplog.text
    assert f"cannot append to the learning log {tmp_path}/state/state.db" in caplog.text
    # The lost request left no trace: same learned state, same log position.
    assert during["metrics"] == before["metrics"] and during["replica"]["position"] == 6

    rows = [normal(rng) for _ in range(10)]
    reply = detector.transform_input_raw(body(rows))
    twin.apply({"type": "learn", "rows": named(rows)})
    assert LEARN_FAILURE not in reply["meta"]["metrics"]
    assert detector.status()["replica"]["position"] == 7
    assert detector.status()["metrics"] == twin.figures()
    # A process started now replays the log into the very same detector.
    assert detectors(threshold=0.985).status()["metrics"] == twin.figures()


def test_redis_down_passes_requests_on_unlearned_and_learning_resumes(services, tmp_path, redis_server):
    service = start_detector(services, tmp_path, redis_server.url, threshold=0.985)
    rng = random.Random(8)
    warm_up(service, rng)
    stub = prediction_pb2_grpc.TransformerStub(grpc.insecure_channel(f"127.0.0.1:{service.grpc}"))

    def transform_grpc(rows) -> dict:
        return seldon_message_to_json(stub.TransformInput(json_to_seldon_message(body(rows)), timeout=30))

    # The gRPC process catches up now: once the log is down it scores with what it holds.
    transform_grpc([normal(rng) for _ in range(10)])
    before = learned(service)
    redis_server.stop()
    restarted = None
    try:
        rows, k = planted(rng, 20)
        assert transform(service, body(rows))["meta"]["tags"]["is_outlier"][k] is True  # HTTP 200
        reply = transform_grpc(rows)
        assert reply["data"] == body(rows)["data"] and reply["meta"]["tags"]["is_outlier"][k] is True
        status = service.status()
        assert (status["metrics"], status["replica"]["position"]) == before
        assert f"127.0.0.1:{redis_server.port}" in status["replica"]["log_error"]
        failures = [line for line in service.prometheus().splitlines()
                    if line.startswith("seldon_river_learn_failures_total{")]
        assert sum(float(line.rsplit(" ", 1)[1]) for line in failures) == 2, failures  # REST and gRPC

        restarted = RedisServer(redis_server.workdir, port=redis_server.port).start()
        transform(service, body([normal(rng) for _ in range(10)]))
        status = service.status()
        assert status["replica"]["position"] == before[1] + 1
        assert status["metrics"]["rows_seen"] == before[0]["rows_seen"] + 10
        assert status["replica"]["log_error"] is None
    finally:
        if restarted is not None:
            restarted.stop()


# -- learn_fraction -------------------------------------------------------------------------


def test_learn_fraction_learns_that_share_of_requests_alike_in_every_process(detectors):
    rng = random.Random(12)
    requests = [body([normal(rng) for _ in range(2)]) for _ in range(200)]
    # A warm-up longer than the traffic: every row sent to the log is learned, none judged.
    params = dict(learn_fraction=0.3, warm_up=1000, n_trees=10)
    first, second = detectors("first", **params), detectors("second", **params)
    for request in requests:
        for detector in (first, second):
            tags = detector.transform_input_raw(request)["meta"]["tags"]
            assert len(tags["outlier_score"]) == 2
    a, b = first.status(), second.status()
    logged = a["replica"]["position"]
    assert 0.22 <= logged / len(requests) <= 0.38, logged
    assert a["metrics"]["rows_learned"] == a["metrics"]["rows_seen"] == 2 * logged
    # The draws are seeded: the same traffic makes the same choices in another process.
    assert (b["metrics"], b["replica"]["position"]) == (a["metrics"], logged)


def test_learn_fraction_zero_scores_with_what_others_learned_and_learns_nothing(detectors):
    learner = detectors(threshold=0.985)
    watcher = detectors(threshold=0.985, learn_fraction=0)  # same settings, so the same log
    rng = random.Random(5)
    tags = watcher.transform_input_raw(body([normal(rng) for _ in range(10)]))["meta"]["tags"]
    assert tags == {"outlier_score": [0.0] * 10, "is_outlier": [False] * 10}  # nothing learned yet
    assert watcher.status()["replica"]["position"] == 0
    for _ in range(6):
        learner.transform_input_raw(body([normal(rng) for _ in range(50)]))
    before = learner.status()
    for _ in range(5):
        rows, k = planted(rng, 20)
        reply = watcher.transform_input_raw(body(rows))
        tags = reply["meta"]["tags"]
        assert (tags["outlier_score"], tags["is_outlier"]) == learner.replica.read(lambda s: s.score(named(rows)))
        assert tags["is_outlier"][k] is True
        assert LEARN_FAILURE not in reply["meta"]["metrics"]
    for detector in (learner, watcher):
        status = detector.status()
        assert (status["metrics"], status["replica"]["position"]) == (before["metrics"], 6)
