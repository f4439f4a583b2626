"""`seldon-river run` answers as Seldon's real executor does, manifest by manifest.

The same components (same folders, parameters and seeds) are started twice: once behind the
prebuilt v1.17.1 executor, once by ``seldon-river run``. The same requests go to both, over REST
and gRPC with SeldonClient, and the replies must match once request ids are set aside:
predictions, routing, detector tags, feedback replies (the root's own), errors and what each
node learned.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import requests

from harness import run_graph
from local_run import export_models, phishing_manifests, read_manifest
from support import PHISHING_FEATURES, RedisServer, as_dict, phishing_stream, truth

ROWS = list(phishing_stream(6))
PUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}")


def normal(value):
    """``value`` with request ids and timings set aside (they differ between any two runs)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "puid":
                out[key] = bool(item)  # present or not must match, not the id
            elif key == "metrics":
                out[key] = sorted((m.get("key"), m.get("type"), None if m.get("type") == "TIMER" else m.get("value"))
                                  for m in item)
            else:
                out[key] = normal(item)
        return out
    if isinstance(value, list):
        return [normal(v) for v in value]
    if isinstance(value, str):
        return PUID.sub("<puid>", value)
    return value


def answer(result) -> tuple:
    """What a SeldonClient call gave back, comparable across the two graphs."""
    if not result.success:
        return "failed", PUID.sub("<puid>", re.sub(r"127\.0\.0\.1:\d+", "<address>", str(result.msg)))
    return "ok", normal(as_dict(result.response))


class Side:
    """One way of serving the manifest: its SeldonClients, REST address and components' status."""

    def __init__(self, http: int, grpc_port: int, status):
        from seldon_core.seldon_client import SeldonClient

        self.rest_url = f"http://127.0.0.1:{http}/api/v1.0"
        self.clients = {
            transport: SeldonClient(gateway="seldon", transport=transport, deployment_name="local",
                                    gateway_endpoint=f"127.0.0.1:{port}", client_return_type="proto")
            for transport, port in (("rest", http), ("grpc", grpc_port))
        }
        self.status = status

    def predict(self, transport: str, data: np.ndarray, names: list[str]):
        return self.clients[transport].predict(data=data, names=names, gateway_prefix="")

    def feedback(self, transport: str, prediction, **kwargs):
        return self.clients[transport].feedback(prediction_request=prediction.request,
                                                prediction_response=prediction.response, gateway_prefix="", **kwargs)


def rows(i: int) -> np.ndarray:
    x, _ = ROWS[i]
    return np.array([[x[f] for f in PHISHING_FEATURES]])


def conversation(side: Side) -> list:
    """Every request of the comparison, in order, and what each side answered."""
    said = []
    for transport in ("rest", "grpc"):
        for i in range(3):
            prediction = side.predict(transport, rows(i), PHISHING_FEATURES)
            said.append((transport, "predict", answer(prediction)))
            said.append((transport, "feedback", answer(side.feedback(
                transport, prediction, reward=1.0, prediction_truth=truth([ROWS[i][1]])))))
        # The same feedback again is acknowledged as already learned, on both.
        said.append((transport, "feedback again", answer(side.feedback(
            transport, prediction, reward=1.0, prediction_truth=truth([ROWS[2][1]])))))
        # A reward the router refuses, and a row with a feature missing: refused alike.
        said.append((transport, "bad reward", answer(side.feedback(
            transport, prediction, reward=7.0, prediction_truth=truth([ROWS[2][1]])))))
        said.append((transport, "missing feature", answer(side.predict(
            transport, rows(3)[:, 1:], PHISHING_FEATURES[1:]))))
    # Label-only feedback over REST: the prediction found again by its request id.
    x, y = ROWS[4]
    reply = requests.post(f"{side.rest_url}/predictions", timeout=30,
                          json={"data": {"names": PHISHING_FEATURES, "ndarray": [[x[f] for f in PHISHING_FEATURES]]}})
    puid = reply.headers.get("Seldon-Puid")
    said.append(("rest", "raw predict", reply.status_code, normal(reply.json()), bool(puid)))
    fb = requests.post(f"{side.rest_url}/feedback", headers={"Seldon-Puid": puid}, timeout=30,
                       json={"truth": {"data": {"ndarray": [[y]]}}, "response": {"meta": {"puid": puid}}})
    said.append(("rest", "label-only feedback", fb.status_code, normal(fb.json())))
    # A refused row over REST: the component's status and message reach the client unchanged.
    refused = requests.post(f"{side.rest_url}/predictions", timeout=30, json={
        "data": {"names": PHISHING_FEATURES[1:], "ndarray": [[x[f] for f in PHISHING_FEATURES[1:]]]}})
    said.append(("rest", "refused row", refused.status_code, normal(refused.json())))
    # Not JSON at all.
    bad = requests.post(f"{side.rest_url}/predictions", data=b"{not json", timeout=30,
                        headers={"Content-Type": "application/json"})
    said.append(("rest", "not json", bad.status_code))
    said.append(("learned", {name: learned(s) for name, s in side.status().items()}))
    return said


def learned(status: dict):
    metrics = status.get("metrics") or {}
    return metrics.get("learned", status.get("replica", {}).get("position"))


@pytest.mark.parametrize("manifest", phishing_manifests(), ids=lambda p: p.stem)
def test_seldon_river_run_answers_as_the_executor_does(manifest, services, runs, tmp_path):
    deployment = read_manifest(manifest)
    nodes = export_models(manifest, tmp_path / "executor" / "models")
    redis = RedisServer(tmp_path / "redis").start()
    try:
        graph_gen = run_graph(services.start, manifest, redis.url,
                              {n: tmp_path / "executor" / "models" / n for n in nodes}, tmp_path / "executor")
        graph = next(graph_gen)
        try:
            executor = Side(graph.http, graph.grpc,
                            lambda: {n: s.status() for n, s in graph.components.items()})
            theirs = conversation(executor)
        finally:
            graph_gen.close()
    finally:
        redis.stop()

    export_models(manifest, tmp_path / "run" / "models")
    run = runs.start(manifest, tmp_path / "run")
    local = Side(run.port, run.grpc_port, lambda: {n: run.status(n) for n in run.info["components"]})
    ours = conversation(local)

    assert len(ours) == len(theirs)
    for mine, executors in zip(ours, theirs):
        assert mine == executors, (deployment.name, json.dumps(mine, default=str)[:1500],
                                   json.dumps(executors, default=str)[:1500])
