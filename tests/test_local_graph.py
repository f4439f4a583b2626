"""`seldon-river run` on the repository's manifests: real components, Seldon's client, no cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import requests

from local_run import (
    MANIFESTS, Run, export_models, manifest_paths, phishing_manifests, read_manifest, wait_gone,
)
from support import (
    PHISHING_FEATURES,
    REPO,
    as_dict,
    phishing_pipeline,
    phishing_stream,
    truth,
    wait_until,
)

ROWS = list(phishing_stream())
TOKEN = "local-run-token-0123456789"


def row(i: int) -> np.ndarray:
    x, _ = ROWS[i]
    return np.array([[x[f] for f in PHISHING_FEATURES]])


def predicted(response: dict) -> str:
    data = response["data"]
    return max(zip(data["names"], data["ndarray"][0]), key=lambda kv: kv[1])[0]


def learned(run: Run, node: str) -> float:
    return run.status(node)["metrics"]["learned"]


# -- every manifest ---------------------------------------------------------------------------
def test_the_repository_has_manifests():
    assert {p.name for p in manifest_paths()} >= {"single-model.yaml", "bandit.yaml", "outlier-model.yaml",
                                                   "full-graph.yaml"}


@pytest.mark.parametrize("manifest", phishing_manifests(), ids=lambda p: p.stem)
def test_manifest_serves_seldon_clients_and_learns_from_feedback(runs, tmp_path, manifest):
    nodes = export_models(manifest, tmp_path / "models")
    run = runs.start(manifest, tmp_path)
    deployment = read_manifest(manifest)
    for gateway, transport in [("ambassador", "rest"), ("seldon", "rest"), ("istio", "grpc"), ("seldon", "grpc")]:
        client = run.client(gateway, transport)
        prediction = client.predict(data=row(0), names=PHISHING_FEATURES)
        assert prediction.success, (gateway, transport, prediction.msg, run.output()[-3000:])
        response = as_dict(prediction.response)
        assert response["meta"]["puid"], response
        if deployment.predictor.routing_injection:
            routing = response["meta"]["routing"]
            answered = [n for n in nodes if n in routing]
            assert len(answered) == 1, routing
        else:
            assert "routing" not in response["meta"]
            answered = nodes[:1]
        before = learned(run, answered[0])
        feedback = client.feedback(prediction_request=prediction.request, prediction_response=prediction.response,
                                   reward=1.0, prediction_truth=truth([ROWS[0][1]]))
        assert feedback.success, (gateway, transport, feedback.msg, run.output()[-3000:])
        assert as_dict(feedback.response)["meta"]["puid"] == response["meta"]["puid"]
        assert learned(run, answered[0]) == before + 1
    pids = [c["pid"] for c in run.info["components"].values()]
    assert sorted(run.info["components"]) == sorted(
        n.name for n in deployment.predictor.graph.walk() if n.name in deployment.predictor.containers)
    assert run.stop() == 0
    wait_gone(pids)
    assert not (run.state / "run.json").exists()


# -- single model: puid, label-only feedback, token, a dead component -------------------------
def test_puid_header_label_only_feedback_token_and_a_dead_component(runs, tmp_path):
    manifest = MANIFESTS / "single-model.yaml"
    export_models(manifest, tmp_path / "models")
    run = runs.start(manifest, tmp_path, "--timeout", "5", env={"SELDON_RIVER_TOKEN": TOKEN},
                     headers={"Authorization": f"Bearer {TOKEN}"})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = {"data": {"names": PHISHING_FEATURES, "ndarray": row(1).tolist()}}
    base = f"{run.url}/seldon/default/river-single-model/api/v1.0"

    refused = requests.post(f"{base}/predictions", json=body, timeout=30)
    assert refused.status_code == 401
    assert requests.post(f"{base}/predictions", json=body, headers={"X-Auth-Token": "wrong"}, timeout=30).status_code == 401

    # The gateway makes the request id, passes it on, and it comes back both ways.
    answer = requests.post(f"{base}/predictions", json=body, headers=auth, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Seldon-Puid"] == answer.json()["meta"]["puid"]
    mine = requests.post(f"{base}/predictions", json=body, headers={**auth, "Seldon-Puid": "my-request-1"}, timeout=30)
    assert mine.headers["Seldon-Puid"] == "my-request-1" == mine.json()["meta"]["puid"]

    # A label-only feedback: the prediction is found again by its puid.
    before = learned_with(run, "model", auth)
    label_only = {"response": {"meta": {"puid": "my-request-1"}}, "truth": {"data": {"ndarray": [[ROWS[1][1]]]}}}
    ack = requests.post(f"{base}/feedback", json=label_only, headers=auth, timeout=30)
    assert ack.status_code == 200, ack.text
    assert ack.json()["meta"]["puid"] == "my-request-1"
    assert learned_with(run, "model", auth) == before + 1

    # A second run on the same state directory is refused.
    second = run_command(str(manifest), "--models-dir", str(tmp_path / "models"), "--state-dir", str(run.state),
                         "--port", "0", "--no-grpc")
    assert second.returncode == 2 and "another seldon-river run uses" in second.stderr, second.stderr

    # Another deployment's path is not served.
    other = requests.post(f"{run.url}/seldon/default/elsewhere/api/v1.0/predictions", json=body, headers=auth,
                          timeout=30)
    assert other.status_code == 404 and "river-single-model" in other.text

    # A component that hangs: a 504 naming it once the call's time limit (--timeout) is up.
    model = run.info["components"]["model"]
    os.killpg(model["pid"], signal.SIGSTOP)
    try:
        hung = requests.post(f"{base}/predictions", json=body, headers=auth, timeout=120)
    finally:
        os.killpg(model["pid"], signal.SIGCONT)
    assert hung.status_code == 504, hung.text
    assert "graph node 'model' did not answer /predict within 5 s" in hung.json()["status"]["info"]

    # A component that dies: clear 503s naming it (no waiting), and /ready says so.
    os.kill(model["pid"], signal.SIGKILL)
    wait_until(lambda: requests.get(f"{run.url}/ready", timeout=5).status_code == 503, 30, "the gateway noticing")
    for path, payload in [("predictions", body), ("feedback", label_only)]:
        failed = requests.post(f"{base}/{path}", json=payload, headers=auth, timeout=60)
        assert failed.status_code == 503, failed.text
        info = failed.json()["status"]["info"]
        assert "'model'" in info and "SIGKILL" in info, info
    assert "graph node 'model'" in requests.get(f"{run.url}/ready", timeout=5).text
    assert run.stop() == 0
    assert "graph node 'model'" in run.output() and "is down" in run.output()
    wait_gone([model["pid"]])


def learned_with(run: Run, node: str, headers: dict) -> float:
    response = requests.get(f"{run.url}/api/v1.0/status/{node}", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["jsonData"]["metrics"]["learned"]


# -- bandit: the router learns which model is better ------------------------------------------
def trained_pipeline():
    model = phishing_pipeline()
    for x, y in ROWS:
        model.learn_one(x, y)
    return model


def test_bandit_router_shifts_traffic_to_the_better_model(runs, tmp_path):
    from river import dummy

    manifest = MANIFESTS / "bandit.yaml"
    export_models(manifest, tmp_path / "models",
                  {"model-a": dummy.PriorClassifier(), "model-b": trained_pipeline()})
    run = runs.start(manifest, tmp_path)
    client = run.client()
    chosen = []
    for i in range(300):
        prediction = client.predict(data=row(i), names=PHISHING_FEATURES)
        assert prediction.success, prediction.msg
        response = as_dict(prediction.response)
        arm = response["meta"]["routing"]["router"]
        chosen.append(arm)
        correct = predicted(response).lower() == str(ROWS[i][1]).lower()
        feedback = client.feedback(prediction_request=prediction.request, prediction_response=prediction.response,
                                   reward=1.0 if correct else 0.0, prediction_truth=truth([ROWS[i][1]]))
        assert feedback.success, feedback.msg
    last = chosen[-100:]
    assert last.count(1) > 70, chosen
    # The truth went to the model that answered, and only to it; the reward to the router.
    assert learned(run, "model-a") == chosen.count(0)
    assert learned(run, "model-b") == chosen.count(1)
    arms = {a["arm"]: a for a in run.status("router")["arms"]}
    assert arms[0]["pulls"] + arms[1]["pulls"] == 300
    assert arms[1]["mean_reward"] > arms[0]["mean_reward"]


# -- outliers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("manifest", ["outlier-model.yaml", "full-graph.yaml"])
def test_planted_outliers_come_back_tagged(runs, tmp_path, manifest):
    from model_wrappers.local.demo import is_outlier

    path = MANIFESTS / manifest
    export_models(path, tmp_path / "models")
    run = runs.start(path, tmp_path)
    client = run.client()
    warm_up = int(next(n for n in read_manifest(path).predictor.graph.walk()
                       if n.name == "outlier-detector").parameter("warm_up") or 0)
    normal = []
    for i in range(warm_up + 100):
        prediction = client.predict(data=row(i % len(ROWS)), names=PHISHING_FEATURES)
        assert prediction.success, prediction.msg
        normal.append(is_outlier(as_dict(prediction.response)["meta"].get("tags", {})))
    planted = []
    for i in range(5):
        x = row(i) * 0 + 1000.0 * (i + 1)  # far outside [0, 1], where every Phishing feature lies
        prediction = client.predict(data=x, names=PHISHING_FEATURES)
        assert prediction.success, prediction.msg
        planted.append(is_outlier(as_dict(prediction.response)["meta"].get("tags", {})))
    assert all(planted), planted
    assert not any(normal[:warm_up]), "flagged during the warm-up"
    assert sum(normal[warm_up:]) < 50, normal  # most ordinary rows pass untagged


# -- what is refused before anything starts ---------------------------------------------------
def run_command(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "model_wrappers.cli", "run", *args], cwd=REPO,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=120)


def test_a_model_node_without_a_local_folder_is_refused(tmp_path):
    done = run_command(str(MANIFESTS / "bandit.yaml"), "--models-dir", str(tmp_path), "--state-dir", str(tmp_path))
    assert done.returncode == 2
    assert "graph node 'model-a' needs a local model folder" in done.stderr
    assert "--models model-a=DIR" in done.stderr and "s3://seldon-river/models/model-a" in done.stderr


def test_serving_beyond_loopback_needs_a_token(tmp_path):
    export_models(MANIFESTS / "single-model.yaml", tmp_path / "models")
    args = [str(MANIFESTS / "single-model.yaml"), "--models-dir", str(tmp_path / "models"),
            "--state-dir", str(tmp_path / "state"), "--host", "0.0.0.0"]
    done = run_command(*args, env={"SELDON_RIVER_TOKEN": ""})
    assert done.returncode == 2
    assert "--host 0.0.0.0" in done.stderr and "SELDON_RIVER_TOKEN" in done.stderr
    short = run_command(*args, "--token", "short")
    assert short.returncode == 2 and "at least 16 characters" in short.stderr


def test_a_router_without_routing_injection_is_warned_about():
    import dataclasses

    from model_wrappers.local.runner import warnings_for

    deployment = read_manifest(MANIFESTS / "bandit.yaml")
    assert warnings_for(deployment) == ([], [])
    bare = dataclasses.replace(deployment, predictor=dataclasses.replace(deployment.predictor, orchestrator_env={}))
    warnings, _ = warnings_for(bare)
    assert len(warnings) == 1 and "SELDON_ENABLE_ROUTING_INJECTION" in warnings[0]
    assert "cannot learn" in warnings[0]


def test_cluster_state_stores_are_replaced_by_local_files(tmp_path):
    from model_wrappers.local.plan import plan

    deployment = read_manifest(MANIFESTS / "full-graph.yaml")
    export_models(MANIFESTS / "full-graph.yaml", tmp_path / "models")
    components, notes = plan(deployment, tmp_path / "state", models_dir=tmp_path / "models")
    uris = {c.node: dict((p["name"], p["value"]) for p in c.parameters)["state_uri"] for c in components}
    assert uris == {n: f"sqlite:///{tmp_path / 'state' / n}.db" for n in uris}
    assert sum("redis://river-full-graph-redis:6379/0 is not usable locally" in n for n in notes) == 4


def test_each_node_gets_the_calls_seldons_orchestrator_makes():
    from model_wrappers.local import graph
    from model_wrappers.local.manifest import Node

    transformer, model, router = Node("t", "TRANSFORMER"), Node("m", "MODEL"), Node("r", "ROUTER")
    assert graph.input_call(transformer) == "/transform-input" and not graph.takes_feedback(transformer)
    assert graph.takes_feedback(Node("t", "TRANSFORMER", methods=("TRANSFORM_INPUT", "SEND_FEEDBACK")))
    assert graph.input_call(model) == "/predict" and graph.takes_feedback(model)
    assert graph.routes(router) and graph.takes_feedback(router) and graph.input_call(router) is None
    assert graph.input_call(Node("m", "MODEL", methods=("TRANSFORM_INPUT",))) == "/transform-input"
    assert graph.abtest(Node("ab", implementation="RANDOM_ABTEST")) and not graph.needs_process(Node("ab"))


@pytest.mark.parametrize("port", ["http_port", "grpc_port", "metrics_port"])
def test_a_component_whose_port_was_taken_is_started_on_other_ports(tmp_path, port):
    """Ports are chosen free, then bound by the component a moment later; one taken meanwhile
    (by another process, or as some connection's own port) must not fail the whole graph."""
    import socket

    from model_wrappers.local.plan import Component
    from model_wrappers.local.supervisor import Supervisor

    node = Component("nothing", "benchmarks.baselines.floor.Floor", "MODEL", (), {"PYTHONPATH": str(REPO)})
    supervisor = Supervisor([node], tmp_path / "logs", "local", "default", report=lambda message: None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        setattr(supervisor["nothing"], port, taken.getsockname()[1])
        try:
            supervisor.start(timeout=60)
            child = supervisor["nothing"]
            assert getattr(child, port) != taken.getsockname()[1]
            log = (tmp_path / "logs" / "nothing.log").read_text()
            assert log.count("--- ") == 2 and "Address already in use" in log
            assert requests.get(child.url + "/health/ping", timeout=10).text == "pong"
        finally:
            supervisor.stop()


def test_ports_are_chosen_outside_the_ephemeral_range_once_each_and_never_a_listened_one(monkeypatch):
    import socket

    from model_wrappers.local import ports

    low, high = ports.ephemeral_range()
    chosen = [ports.free_port() for _ in range(300)]
    assert len(set(chosen)) == len(chosen)
    assert not [p for p in chosen if low <= p <= high]

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        fresh = next(p for p in range(ports.LOWEST, low) if p not in chosen and ports._listenable("127.0.0.1", p))
        offered = iter([taken.getsockname()[1], chosen[0], fresh])

        class Scripted:
            @staticmethod
            def choice(seq):
                return next(offered) if isinstance(seq, range) else seq[0]

        monkeypatch.setattr(ports, "_choose", Scripted)
        assert ports.free_port() == fresh  # neither the one listened on nor the one handed out before
