"""The chart's Grafana dashboard: valid JSON, panels over metrics that really exist, its ConfigMap.

Every metric the dashboard queries must be in a real scrape: the full graph's components behind
Seldon's real orchestrator (whose own request metrics the traffic panels read) after predictions
and feedback, plus a regressor and a classifier watched for drift.
"""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import requests
import yaml

from drift_streams import FEATURES, agrawal_change, export_champion_and_challenger
from support import REPO, export_phishing, export_regressor, phishing_stream, require, truth

DASHBOARD = REPO / "charts" / "seldon-river" / "dashboards" / "seldon-river.json"
CHART = REPO / "charts" / "seldon-river"
DRIFT_GAUGES = {"seldon_river_drift_detections", "seldon_river_drift_warning"}
PANELS = ["Requests/s by node", "Latency by node (p50, p95)", "Rows learned", "Progressive metrics: classifiers",
          "Routing shares", "Outlier rate", "Drift detections", "In drift warning"]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict) -> list[dict]:
    return [p for p in board["panels"] if p["type"] != "row"]


def queries(board: dict) -> list[str]:
    exprs = [t["expr"] for p in panels(board) for t in p["targets"]]
    exprs += [v["query"]["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    return exprs


def metric_names(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in re.findall(r"\b(seldon_[a-z0-9_]+)\b", expr)}


def grouping_labels(exprs: list[str]) -> set[str]:
    found = set()
    for expr in exprs:
        for group in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", expr):
            found |= {label.strip() for label in group.split(",") if label.strip()}
    return found


def scraped(text: str) -> tuple[set[str], set[str]]:
    """Sample names and label names of a Prometheus text exposition."""
    names, labels = set(), set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?", line)
            names.add(match.group(1))
            labels |= set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)=\"", match.group(2) or ""))
    return names, labels


def test_the_dashboard_is_grafana_json_with_the_panels_it_promises():
    board = dashboard()
    assert board["uid"] == "seldon-river" and board["schemaVersion"] >= 30
    titles = [p["title"] for p in panels(board)]
    assert set(PANELS) <= set(titles), set(PANELS) - set(titles)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels(board):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and all(t["expr"].strip() and t["refId"] for t in panel["targets"]), panel["title"]
    variables = {v["name"] for v in board["templating"]["list"]}
    assert variables == {"datasource", "deployment", "node"}
    assert DRIFT_GAUGES <= metric_names(queries(board))


def test_every_metric_and_label_the_dashboard_queries_is_exported(services, tmp_path):
    from executor.harness import client, run_graph

    board = dashboard()
    models = {"model-a": export_phishing(tmp_path / "a"), "model-b": export_phishing(tmp_path / "b")}
    names, labels = set(), set()
    graph_run = run_graph(services.start, REPO / "manifests" / "full-graph.yaml", f"sqlite:///{tmp_path}/state.db",
                          models, tmp_path)
    graph = next(graph_run)
    try:
        seldon = client(graph, "rest")
        for x, y in phishing_stream(20):
            features = sorted(x)
            reply = seldon.predict(data=np.array([[x[f] for f in features]], dtype=object), names=features)
            assert reply.success, reply.msg
            feedback = seldon.feedback(prediction_request=reply.request, prediction_response=reply.response,
                                       reward=1.0, prediction_truth=truth([y]))
            assert feedback.success, feedback.msg
        texts = [requests.get(f"http://127.0.0.1:{graph.http}/metrics", timeout=10).text]  # the orchestrator's
        texts += [component.prometheus() for component in graph.components.values()]
    finally:
        graph_run.close()
    regressor = services.start("model_wrappers.RiverModel", "MODEL",
                               {"model_uri": str(export_regressor(tmp_path / "linear")),
                                "state_uri": f"sqlite:///{tmp_path}/regressor.db"}, tmp_path, name="regressor")
    rows = {"data": {"names": ["x1", "x2"], "ndarray": [[1.0, 2.0], [2.0, 1.0]]}}
    ack = regressor.feedback({"request": rows, "truth": {"data": {"ndarray": [[3.0], [4.0]]}}, "reward": 1.0})
    assert ack.status_code == 200, ack.text
    texts.append(regressor.prometheus())
    drifting = services.start("model_wrappers.RiverModel", "MODEL", {
        "model_uri": str(export_champion_and_challenger(tmp_path / "nb")), "state_uri": f"sqlite:///{tmp_path}/drift.db",
        "drift_reaction": "alert", "challengers": "challengers/hat"}, tmp_path, name="drifting")
    part = agrawal_change(10)
    ack = drifting.feedback({"request": {"data": {"names": FEATURES, "ndarray": [[x[f] for f in FEATURES] for x, _ in part]}},
                             "truth": {"data": {"ndarray": [[y] for _, y in part]}}})
    assert ack.status_code == 200, ack.text
    texts.append(drifting.prometheus())
    for text in texts:
        found_names, found_labels = scraped(text)
        names |= found_names
        labels |= found_labels
    wanted = metric_names(queries(board))
    assert not wanted - names, f"queried but not exported: {sorted(wanted - names)}"
    assert not grouping_labels(queries(board)) - labels - {"le"}
    assert {"seldon_river_learned", "seldon_river_arm_routed_total", "seldon_river_outlier_rate",
            "seldon_api_executor_client_requests_seconds_count", "seldon_river_mae", *DRIFT_GAUGES} <= wanted


def helm() -> str:
    path = subprocess.run(["bash", str(REPO / "scripts" / "tools.sh"), "path", "helm"], capture_output=True,
                          text=True, check=True).stdout.strip()
    require("helm", bool(path) and subprocess.run(["test", "-x", path]).returncode == 0,
            "bash scripts/tools.sh ensure helm")
    return path


def rendered(*args: str) -> list[dict]:
    done = subprocess.run([helm(), "template", "river", str(CHART), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def test_the_chart_ships_the_dashboard_as_a_configmap_when_asked():
    assert not [d for d in rendered() if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"].get("labels", {})]
    maps = [d for d in rendered("--set", "metrics.grafanaDashboard=true") if d["kind"] == "ConfigMap"]
    assert len(maps) == 1, maps
    assert maps[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(maps[0]["data"]["seldon-river.json"]) == dashboard()
    refused = subprocess.run([helm(), "template", "river", str(CHART), "--set", "metrics.grafanaDashboard=yes"],
                             capture_output=True, text=True)
    assert refused.returncode != 0 and "grafanaDashboard" in refused.stderr
