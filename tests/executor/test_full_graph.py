"""manifests/full-graph.yaml behind Seldon's real executor: detector, router, two models."""

from __future__ import annotations

import pytest

from harness import predict_row, run_graph
from support import REPO, as_dict, export_phishing, truth

MANIFEST = REPO / "manifests" / "full-graph.yaml"


@pytest.fixture(scope="module")
def graph(module_services, module_redis, tmp_path_factory):
    work = tmp_path_factory.mktemp("full")
    models = {"model-a": export_phishing(work / "a"), "model-b": export_phishing(work / "b")}
    yield from run_graph(module_services, MANIFEST, module_redis.url, models, work)


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_tags_routing_and_feedback_learned_once_by_the_routed_model(graph, transport):
    before = {n: graph.components[n].status() for n in ("model-a", "model-b")}
    c, x, y, reply = predict_row(graph, transport)
    meta = as_dict(reply.response).get("meta", {})
    assert any("outlier" in k for k in meta.get("tags", {})), meta
    assert meta.get("routing", {}).get("router") in (0, 1), meta
    chosen = ["model-a", "model-b"][meta["routing"]["router"]]
    fb = c.feedback(prediction_request=reply.request, prediction_response=reply.response,
                    reward=1.0, prediction_truth=truth([y]))
    assert fb.success, fb.msg
    assert fb.response is not None and "status" not in as_dict(fb.response), fb
    for name, was in before.items():
        now = graph.components[name].status()
        assert now["metrics"]["learned"] == was["metrics"]["learned"] + (name == chosen), (name, chosen, now)
