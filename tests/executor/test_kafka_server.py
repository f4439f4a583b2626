"""manifests/single-model.yaml served the way ``serverType: kafka`` serves it, on a real broker.

Seldon's real executor runs with ``--server_type kafka`` (what the operator gives it for a
SeldonDeployment with ``serverType: kafka``): prediction requests come from a topic and the
replies go to another. Feedback comes from a third topic through ``seldon-river consume-feedback``,
which is killed with -9 before it committed anything it had sent and started again: every good
feedback must be learned exactly once, and every bad one set aside with its reason, never learned.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import requests

from harness import executor_binary, graph_file, start_components, stop
from model_wrappers.local.manifest import read_deployment
from support import REPO, free_port, phishing_stream, wait_until

MANIFEST = REPO / "manifests" / "single-model.yaml"
PREDICTIONS = 40


@pytest.fixture
def topics(kafka_broker):
    from confluent_kafka.admin import AdminClient, NewTopic

    prefix = f"k{uuid.uuid4().hex[:8]}."
    names = {n: prefix + n for n in ("requests", "replies", "feedback", "feedback.refused")}
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in names.values()]).values():
        future.result(30)
    return names


@pytest.fixture
def kafka_graph(services, kafka_broker, topics, tmp_path):
    from support import export_phishing

    deployment = read_deployment(MANIFEST)
    components = start_components(services.start, deployment, f"sqlite:///{tmp_path / 'state.db'}",
                                  {"model": export_phishing(tmp_path / "model")}, tmp_path)
    sdep = graph_file(MANIFEST, {n: (s.http, s.grpc) for n, s in components.items()}, tmp_path / "graph.yaml")
    http, grpc_port = free_port(), free_port()
    log = tmp_path / "executor.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [str(executor_binary(tmp_path)), "--sdep", deployment.name, "--namespace", "default",
             "--predictor", deployment.predictor.name, "--file", str(sdep),
             "--http_port", str(http), "--grpc_port", str(grpc_port), "--protocol", "seldon", "--transport", "rest",
             "--server_type", "kafka"],
            cwd=tmp_path,
            # As the operator passes them: the predictor's svcOrchSpec env names the broker and topics.
            env={**os.environ, **deployment.predictor.orchestrator_env, "KAFKA_BROKER": kafka_broker.bootstrap,
                 "KAFKA_INPUT_TOPIC": topics["requests"], "KAFKA_OUTPUT_TOPIC": topics["replies"]},
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    wait_until(lambda: requests.get(f"http://127.0.0.1:{http}/ready", timeout=1).status_code < 500,
               60, "executor", proc, log)
    yield components["model"], f"http://127.0.0.1:{http}"
    stop(proc)


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, dict]]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for value, headers in messages:
        producer.produce(topic, value=value, headers=list(headers.items()))
    assert producer.flush(30) == 0


def consume(bootstrap: str, topic: str, count: int, timeout: float = 60.0) -> list:
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    found, deadline = [], time.monotonic() + timeout
    try:
        while len(found) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                found.append(message)
    finally:
        consumer.close()
    return found


def consumer_command(bootstrap: str, topics: dict, url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "model_wrappers.cli", "consume-feedback", "--brokers", bootstrap,
            "--topic", topics["feedback"], "--to", url, *extra]


def test_predictions_through_topics_and_feedback_learned_exactly_once(kafka_graph, kafka_broker, topics, tmp_path):
    model, url = kafka_graph
    rows = list(phishing_stream(PREDICTIONS))
    names = sorted(rows[0][0])
    produce(kafka_broker.bootstrap, topics["requests"], [
        (json.dumps({"data": {"names": names, "ndarray": [[x[n] for n in names]]}}).encode(), {"Seldon-Puid": f"p{i}"})
        for i, (x, _) in enumerate(rows)])
    replies = consume(kafka_broker.bootstrap, topics["replies"], PREDICTIONS)
    puids = sorted(json.loads(m.value())["meta"]["puid"] for m in replies)
    assert puids == sorted(f"p{i}" for i in range(PREDICTIONS)), puids

    good = [({"response": {"meta": {"puid": f"p{i}"}}, "truth": {"data": {"ndarray": [[y]]}}}) for i, (_, y) in
            enumerate(rows[:30])]
    with_request = [{"request": {"data": {"names": names, "ndarray": [[x[n] for n in names]]}},
                     "truth": {"data": {"ndarray": [[y]]}}} for x, y in rows[30:35]]
    feedback = [json.dumps(f).encode() for f in good[:20]]
    feedback += [b"{not json", json.dumps(good[0]).encode()]  # a broken message, a copy of the first
    feedback += [json.dumps({"response": {"meta": {"puid": "p35"}}, "truth": {"data": {"ndarray": [["maybe"]]}}}).encode()]
    feedback += [json.dumps({"response": {"meta": {"puid": "never-predicted"}},
                             "truth": {"data": {"ndarray": [[True]]}}}).encode()]
    feedback += [json.dumps(f).encode() for f in good[20:] + with_request]
    produce(kafka_broker.bootstrap, topics["feedback"], [(v, {}) for v in feedback])
    expected = len(good) + len(with_request)

    # First consumer: nothing committed before it dies (commits every 1000), killed once it sent some.
    first = subprocess.Popen(consumer_command(kafka_broker.bootstrap, topics, url, "--commit-every", "1000"),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: model.status()["metrics"]["learned"] >= 10, 60, "first consumer", first)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    learned_before = model.status()["metrics"]["learned"]
    assert 10 <= learned_before < expected

    second = subprocess.run(consumer_command(kafka_broker.bootstrap, topics, url, "--idle-exit", "5"),
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    counts = json.loads(second.stdout.strip().splitlines()[-1])
    status = model.status()
    assert status["metrics"]["learned"] == expected, status  # each good feedback once, none of the bad ones
    # Read again from the start: what the first consumer had sent is acknowledged as already learned.
    assert counts["already_learned"] >= learned_before + 1, counts  # + the copy of the first message
    assert counts["refused"] == 3 and counts["acknowledged"] == len(feedback) - 3, counts

    # Refused by both consumers, a message is in the refused topic twice: its offset tells.
    refused = consume(kafka_broker.bootstrap, topics["feedback.refused"], 6, timeout=15)
    by_offset = {dict(m.headers())["offset"].decode(): m for m in refused}
    assert sorted(by_offset, key=int) == ["20", "22", "23"], by_offset
    reasons = {m.value(): dict(m.headers())["error"].decode() for m in by_offset.values()}
    assert reasons[b"{not json"].startswith("not JSON")
    assert "unknown class 'maybe'" in reasons[feedback[22]], reasons
    assert "never-predicted" in reasons[feedback[23]], reasons
