"""Drift and a challenger taking over, behind Seldon's real executor, over REST and gRPC.

manifests/single-model.yaml, its model given a challenger and the ``challenger`` drift
reaction; a planted concept change (tests/drift_streams.py) goes in as feedback through the
executor with SeldonClient. The replies through the executor must say who serves, and
``seldon-river replay`` / ``promote`` must work against the running component.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from drift_streams import CHANGE, FEATURES, agrawal_change, export_champion_and_challenger
from harness import client, run_graph
from model_wrappers.cli import main as cli
from support import REPO, as_dict, truth

MANIFEST = REPO / "manifests" / "single-model.yaml"
EXTRA = {"drift_reaction": "challenger", "challengers": "challengers/hat", "promote_after": "0"}


def with_challenger(out):
    """single-model.yaml with the drift and challenger parameters added to its model."""
    documents = list(yaml.safe_load_all(MANIFEST.read_text()))
    for doc in documents:
        if doc and doc.get("kind") == "SeldonDeployment":
            params = doc["spec"]["predictors"][0]["graph"]["parameters"]
            params += [{"name": k, "type": "INT" if k == "promote_after" else "STRING", "value": v}
                       for k, v in EXTRA.items()]
    out.write_text(yaml.safe_dump_all(documents))
    return out


@pytest.fixture(scope="module")
def graph(module_services, tmp_path_factory):
    work = tmp_path_factory.mktemp("drift")
    folder = export_champion_and_challenger(work / "nb")
    yield from run_graph(module_services, with_challenger(work / "manifest.yaml"), f"sqlite:///{work / 'state.db'}",
                         {"model": folder}, work)


def served_by(graph, transport: str, x: dict) -> str:
    reply = client(graph, transport).predict(data=np.array([[x[n] for n in FEATURES]]), names=FEATURES)
    assert reply.success, reply.msg
    return as_dict(reply.response)["meta"]["tags"]["seldon_river_champion"]


def test_planted_change_hands_serving_to_the_challenger(graph, capsys):
    rows = agrawal_change(1200)
    assert served_by(graph, "rest", rows[0][0]) == "nb"
    for i in range(0, len(rows), 50):
        part = rows[i:i + 50]
        c = client(graph, "rest" if (i // 50) % 2 else "grpc")
        reply = c.predict(data=np.array([[x[n] for n in FEATURES] for x, _ in part]), names=FEATURES)
        assert reply.success, reply.msg
        fb = c.feedback(prediction_request=reply.request, prediction_response=reply.response, reward=1.0,
                        prediction_truth=truth([y for _, y in part]))
        assert fb.success, fb.msg

    status = graph.components["model"].status()
    assert status["metrics"]["learned"] == 1200.0  # every acknowledged feedback learned once
    events = status["drift"]["events"]
    first = next(e for e in events if e["kind"] == "drift")
    assert CHANGE < first["learned"] <= CHANGE + 200, events
    assert status["challengers"]["champion"] == "hat", status["challengers"]
    assert served_by(graph, "rest", rows[0][0]) == "hat" and served_by(graph, "grpc", rows[0][0]) == "hat"

    url = graph.components["model"].rest_url
    assert cli(["replay", "--from", url, "--json"]) == 0
    replayed = json.loads(capsys.readouterr().out)
    assert replayed["served"] == status["metrics"] and replayed["served_name"] == "hat"

    assert cli(["promote", "nb", "--from", url]) == 0
    assert "nb serves" in capsys.readouterr().out
    assert served_by(graph, "grpc", rows[0][0]) == "nb"
    assert graph.components["model"].status()["challengers"]["changes"][-1]["detail"].startswith("nb serves by command")
