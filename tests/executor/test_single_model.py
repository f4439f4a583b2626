"""manifests/single-model.yaml behind Seldon's real executor, over REST and gRPC."""

from __future__ import annotations

import pytest

from harness import predict_row, run_graph
from support import REPO, as_dict, export_phishing, truth

MANIFEST = REPO / "manifests" / "single-model.yaml"


@pytest.fixture(scope="module")
def graph(module_services, tmp_path_factory):
    work = tmp_path_factory.mktemp("single")
    yield from run_graph(module_services, MANIFEST, f"sqlite:///{work / 'state.db'}",
                         {"model": export_phishing(work / "model")}, work)


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_predict_and_feedback_learned_once(graph, transport):
    before = graph.components["model"].status()
    c, x, y, reply = predict_row(graph, transport)
    body = as_dict(reply.response)
    assert body["data"].get("tensor", {}).get("values") or body["data"].get("ndarray"), body
    fb = c.feedback(prediction_request=reply.request, prediction_response=reply.response,
                    reward=1.0, prediction_truth=truth([y]))
    assert fb.success, fb.msg
    after = graph.components["model"].status()
    # Exactly once: one acknowledged feedback is one log entry and one learned example.
    assert after["replica"]["position"] == before["replica"]["position"] + 1, after
    assert after["metrics"]["learned"] == before["metrics"]["learned"] + 1, after
