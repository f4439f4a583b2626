"""manifests/outlier-model.yaml behind Seldon's real executor: detector tags, feedback, 400s."""

from __future__ import annotations

import pytest

from harness import predict_row, run_graph
from support import REPO, as_dict, export_phishing, truth

MANIFEST = REPO / "manifests" / "outlier-model.yaml"


@pytest.fixture(scope="module")
def graph(module_services, tmp_path_factory):
    work = tmp_path_factory.mktemp("outlier")
    yield from run_graph(module_services, MANIFEST, f"sqlite:///{work / 'state.db'}",
                         {"model": export_phishing(work / "model")}, work)


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_detector_tags_reach_the_client_and_feedback_is_learned_once(graph, transport):
    before = graph.components["model"].status()
    c, x, y, reply = predict_row(graph, transport)
    tags = as_dict(reply.response).get("meta", {}).get("tags", {})
    assert any("outlier" in k for k in tags), as_dict(reply.response)
    fb = c.feedback(prediction_request=reply.request, prediction_response=reply.response,
                    reward=1.0, prediction_truth=truth([y]))
    assert fb.success, fb.msg
    assert fb.response is not None and "status" not in as_dict(fb.response), fb
    after = graph.components["model"].status()
    assert after["metrics"]["learned"] == before["metrics"]["learned"] + 1, after


def test_bad_request_message_reaches_rest_client_unchanged(graph):
    import requests

    direct = graph.components["outlier-detector"].rest("/transform-input", {"data": {"ndarray": "nope"}})
    through = requests.post(f"http://127.0.0.1:{graph.http}/api/v1.0/predictions",
                            json={"data": {"ndarray": "nope"}}, timeout=30)
    assert direct.status_code == 400, direct.text
    assert through.status_code == 400, through.text
    assert through.json()["status"]["info"] == direct.json()["status"]["info"], (through.text, direct.text)
