"""One learned model across processes and replicas, surviving crashes, on every log backend.

Every test here runs real processes: Seldon's microservice (gunicorn workers plus its gRPC
process), a second replica on other ports, a real redis-server and a real Kafka broker.
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import random
import subprocess
import threading

import grpc
import pytest
import requests

from model_wrappers.artifact import load_model
from model_wrappers.config import StateSettings
from model_wrappers.log import open_log
from model_wrappers.log.replica import decode
from model_wrappers.protocol import dict_to_feedback, dict_to_message, message_to_dict
from support import (
    PHISHING_FEATURES, RedisServer, SeldonStub, model_service, phishing_pipeline, phishing_stream, rows_payload,
    start_kafka,
)

STREAM = list(phishing_stream(400))
PROBES = [x for x, _ in STREAM[-5:]]


@pytest.fixture(params=["sqlite", "redis", "kafka"])
def state_uri(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    if request.param == "kafka":
        return request.getfixturevalue("kafka_uri")
    return request.getfixturevalue("redis_server").url


def feedback_body(x, y) -> dict:
    return {"request": rows_payload([x], PHISHING_FEATURES), "truth": {"jsonData": [y]}}


def send(service, transport: str, body: dict) -> None:
    if transport == "rest":
        reply = service.feedback(body)
        assert reply.status_code == 200, reply.text
    else:
        stub = SeldonStub(grpc.insecure_channel(f"127.0.0.1:{service.grpc}"))
        stub.SendFeedback(dict_to_feedback(body), timeout=30)


def probe_rest(service) -> list:
    return service.predict(rows_payload(PROBES, PHISHING_FEATURES)).json()["data"]["ndarray"]


def probe_grpc(service) -> list:
    stub = SeldonStub(grpc.insecure_channel(f"127.0.0.1:{service.grpc}"))
    reply = stub.Predict(dict_to_message(rows_payload(PROBES, PHISHING_FEATURES)), timeout=30)
    return message_to_dict(reply)["data"]["ndarray"]


def in_process(events: list[tuple[dict, object]]) -> list:
    """What river itself predicts for the probes after learning ``events`` in order."""
    model = phishing_pipeline()
    for x, y in events:
        model.learn_one(x, y)
    return [[model.predict_proba_one(x).get(c, 0.0) for c in (True, False)] for x in PROBES]


def flat(rows: list) -> list[float]:
    return [v for row in rows for v in row]


def log_of(folder, state_uri):
    meta = load_model(folder).metadata
    return open_log(state_uri, StateSettings.resolve(meta.name, meta.sha256).name)


def logged_events(folder, state_uri) -> list[dict]:
    log = log_of(folder, state_uri)
    try:
        return [decode(payload) for _, payload in log.read(0, 100_000)]
    finally:
        log.close()


def rest_pids(service, calls: int = 40) -> dict[int, int]:
    """Ask /health/status concurrently so every gunicorn worker answers; position by pid."""
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: service.status()["replica"], range(calls)))
    return {s["pid"]: s["position"] for s in statuses}


def test_workers_grpc_and_a_second_replica_hold_one_identical_model(services, phishing_folder, tmp_path, state_uri):
    a = model_service(services, phishing_folder, tmp_path, state_uri, workers=2, name="a")
    b = model_service(services, phishing_folder, tmp_path, state_uri, workers=1, name="b")
    rng = random.Random(7)
    events = STREAM[:120]
    for x, y in events:
        send(rng.choice([a, b]), rng.choice(["rest", "grpc"]), feedback_body(x, y))

    expected = in_process(events)
    answers = [probe_rest(a) for _ in range(6)] + [probe_rest(b), probe_grpc(a), probe_grpc(b)]
    for answer in answers:
        assert flat(answer) == pytest.approx(flat(expected), rel=1e-12, abs=1e-15)
    assert all(answer == answers[0] for answer in answers)  # bit-identical across processes
    pids = rest_pids(a)
    assert len(pids) == 2, "both gunicorn workers should have answered"
    assert set(pids.values()) == {len(events)}


@pytest.mark.parametrize("backend", ["sqlite", "redis", "kafka"])
def test_kill9_mid_stream_loses_no_acknowledged_feedback(services, phishing_folder, tmp_path, backend, request):
    state_uri = {"sqlite": lambda: f"sqlite:///{tmp_path}/state.db",
                 "redis": lambda: request.getfixturevalue("redis_server").url,
                 "kafka": lambda: request.getfixturevalue("kafka_uri")}[backend]()
    a = model_service(services, phishing_folder, tmp_path, state_uri, name="a")
    b = model_service(services, phishing_folder, tmp_path, state_uri, name="b")
    acked: list[tuple[dict, object]] = []
    killed = threading.Event()

    def stream():
        for i, (x, y) in enumerate(STREAM[:150]):
            target = a if i % 2 == 0 else b
            try:
                reply = target.feedback(feedback_body(x, y))
            except requests.ConnectionError:
                continue  # not acknowledged: the client would retry it
            if reply.status_code == 200:
                acked.append((x, y))
            if len(acked) == 40 and not killed.is_set():
                killed.set()

    sender = threading.Thread(target=stream)
    sender.start()
    killed.wait(timeout=120)
    a.kill9()  # while the sender keeps streaming
    sender.join(timeout=300)
    assert not sender.is_alive()

    restarted = model_service(services, phishing_folder, tmp_path, state_uri, name="a-again")
    events = logged_events(phishing_folder, state_uri)

    def key(row: dict) -> str:  # feedback arrives as protobuf, where every number is a double
        return json.dumps({k: float(v) for k, v in row.items()}, sort_keys=True)

    logged_rows = collections.Counter(key(e["rows"][0]) for e in events)
    for x, _ in acked:  # every acknowledged feedback is in the log ...
        assert logged_rows[key(x)] > 0
        logged_rows[key(x)] -= 1
    # ... and at most the one in flight at the kill is there without an acknowledgement.
    assert len(acked) <= len(events) <= len(acked) + 1
    status = restarted.status()
    assert status["replica"]["position"] == len(events) == status["metrics"]["learned"]
    replay = [(e["rows"][0], e["truth"][0]) for e in events]
    assert flat(probe_rest(restarted)) == pytest.approx(flat(in_process(replay)), rel=1e-12, abs=1e-15)
    assert probe_rest(restarted) == probe_rest(b)


def test_restart_after_compaction_replays_only_the_tail(services, phishing_folder, tmp_path, state_uri):
    served = model_service(services, phishing_folder, tmp_path, state_uri, checkpoint_every=25)
    for x, y in STREAM[:60]:
        send(served, "rest", feedback_body(x, y))
    before = probe_rest(served)
    served.stop()

    log = log_of(phishing_folder, state_uri)
    try:
        assert log.load_checkpoint().position == 50
        assert log.list_checkpoints() == [50, 25]  # the newest 3 are kept: two so far
        assert log.read(0, 1000)[0][0] == 25  # events before the oldest kept checkpoint are gone
    finally:
        log.close()
    again = model_service(services, phishing_folder, tmp_path, state_uri, checkpoint_every=25, name="again")
    replica = again.status()["replica"]
    assert replica["restored_from"] == 50
    assert replica["replayed_at_start"] == 10
    assert probe_rest(again) == before


def test_redis_down_refuses_feedback_keeps_predicting_and_recovers(services, phishing_folder, tmp_path, redis_server):
    served = model_service(services, phishing_folder, tmp_path, redis_server.url)
    for x, y in STREAM[:5]:
        send(served, "rest", feedback_body(x, y))
    before = probe_rest(served)
    assert probe_grpc(served) == before  # the gRPC process has caught up too
    redis_server.stop()

    x, y = STREAM[5]
    refused = served.feedback(feedback_body(x, y))
    assert refused.status_code == 503
    assert "not logged, so nothing was learned" in refused.json()["status"]["info"]
    assert redis_server.url.split("//")[1].split("/")[0] in refused.json()["status"]["info"]
    with pytest.raises(grpc.RpcError) as err:
        send(served, "grpc", feedback_body(x, y))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert probe_rest(served) == before and probe_grpc(served) == before

    restarted = RedisServer(redis_server.workdir, port=redis_server.port).start()
    try:
        send(served, "rest", feedback_body(x, y))
        status = served.status()
        assert status["metrics"]["learned"] == 6
        assert status["replica"]["log_error"] is None
        assert flat(probe_rest(served)) == pytest.approx(flat(in_process(STREAM[:6])), rel=1e-12, abs=1e-15)
    finally:
        restarted.stop()


def test_kafka_broker_killed_refuses_feedback_keeps_predicting_and_recovers(services, phishing_folder, tmp_path):
    cluster = start_kafka(tmp_path / "kafka")
    try:
        served = model_service(services, phishing_folder, tmp_path, cluster.uri())
        for x, y in STREAM[:5]:
            send(served, "rest", feedback_body(x, y))
        before = probe_rest(served)
        assert probe_grpc(served) == before
        cluster.kill9(1)  # no clean shutdown: what it acknowledged must be on disk already

        x, y = STREAM[5]
        first = served.feedback(feedback_body(x, y))
        # The process's producer may not have seen the broker go yet: it then sends, cannot tell
        # whether the append was logged, and says so (504, resend). Never a 200.
        assert first.status_code in (503, 504), first.text
        if first.status_code == 504:
            assert "Resend it" in first.json()["status"]["info"]
        # Once an append failed, the next one asks for the topic first: refused at once.
        refused = served.feedback(feedback_body(x, y))
        assert refused.status_code == 503
        assert "not logged, so nothing was learned" in refused.json()["status"]["info"]
        assert cluster.bootstrap in refused.json()["status"]["info"]
        with pytest.raises(grpc.RpcError) as err:
            send(served, "grpc", feedback_body(x, y))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert probe_rest(served) == before and probe_grpc(served) == before

        cluster.start_node(1)  # same port, same data
        send(served, "rest", feedback_body(x, y))
        status = served.status()
        assert status["metrics"]["learned"] == 6
        assert status["replica"]["log_error"] is None
        assert flat(probe_rest(served)) == pytest.approx(flat(in_process(STREAM[:6])), rel=1e-12, abs=1e-15)
        assert [decode(p)["truth"] for _, p in log_of(phishing_folder, cluster.uri()).read(0)] == \
            [[y] for _, y in STREAM[:6]]  # the refused attempts left nothing behind

        cluster.stop_node(1)  # a clean restart of the broker too
        cluster.start_node(1)
        fresh = model_service(services, phishing_folder, tmp_path, cluster.uri(), name="fresh")
        assert fresh.status()["replica"]["position"] == 6
        assert probe_rest(fresh) == probe_rest(served)
    finally:
        cluster.stop()


def test_unwritable_log_volume_refuses_feedback_and_recovers(services, phishing_folder, tmp_path):
    state = tmp_path / "state"
    served = model_service(services, phishing_folder, tmp_path, f"sqlite:///{state}/state.db")
    for x, y in STREAM[:5]:
        send(served, "rest", feedback_body(x, y))
    before = probe_rest(served)
    files = [str(state / "state.db"), str(state / "state.db-wal")]
    subprocess.run(["chattr", "+i", *files], check=True)  # immutable even for root
    try:
        x, y = STREAM[5]
        refused = served.feedback(feedback_body(x, y))
        assert refused.status_code == 503
        assert f"cannot append to the learning log {state}/state.db" in refused.json()["status"]["info"]
        assert probe_rest(served) == before
    finally:
        subprocess.run(["chattr", "-i", *files], check=True)
    send(served, "rest", feedback_body(x, y))
    assert served.status()["metrics"]["learned"] == 6


def test_threaded_workers_accept_concurrent_feedback(services, phishing_folder, tmp_path):
    """gunicorn's threaded workers share one log connection per process across threads."""
    served = services.start(
        "model_wrappers.RiverModel", "MODEL",
        {"model_uri": str(phishing_folder), "state_uri": f"sqlite:///{tmp_path}/state.db"},
        tmp_path, workers=1, env={"GUNICORN_THREADS": "4"}, name="threaded",
    )
    events = STREAM[:80]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda e: served.feedback(feedback_body(*e)), events))
    assert [r.status_code for r in replies] == [200] * len(events)
    assert served.status()["metrics"]["learned"] == len(events)
