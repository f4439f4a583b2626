"""manifests/bandit.yaml behind Seldon's real executor: routing injection and exactly-once feedback."""

from __future__ import annotations

import pytest

from harness import predict_row, run_graph
from support import REPO, as_dict, export_phishing, phishing_stream, truth

MANIFEST = REPO / "manifests" / "bandit.yaml"


@pytest.fixture(scope="module")
def graph(module_services, module_redis, tmp_path_factory):
    work = tmp_path_factory.mktemp("bandit")
    models = {"model-a": export_phishing(work / "a"), "model-b": export_phishing(work / "b")}
    yield from run_graph(module_services, MANIFEST, module_redis.url, models, work)


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_routing_injected_and_feedback_learned_once_by_the_routed_model(graph, transport):
    before = {n: s.status() for n, s in graph.components.items() if n != "router"}
    c, x, y, reply = predict_row(graph, transport)
    routing = as_dict(reply.response).get("meta", {}).get("routing", {})
    assert routing.get("router") in (0, 1), as_dict(reply.response)
    chosen = ["model-a", "model-b"][routing["router"]]
    fb = c.feedback(prediction_request=reply.request, prediction_response=reply.response,
                    reward=1.0, prediction_truth=truth([y]))
    assert fb.success, fb.msg
    for name, was in before.items():
        now = graph.components[name].status()
        expected = was["metrics"]["learned"] + (1 if name == chosen else 0)
        assert now["metrics"]["learned"] == expected, (name, chosen, now)


def test_label_only_feedback_is_learned_once_by_the_routed_model(graph):
    from harness import label_only_feedback

    (x, y), = list(phishing_stream(1))
    before = {n: graph.components[n].status() for n in ("model-a", "model-b")}
    reply, fb = label_only_feedback(graph, x, y)
    assert reply.status_code == 200 and reply.json()["meta"].get("puid") == reply.headers["Seldon-Puid"], reply.text
    assert fb.status_code == 200, fb.text
    chosen = ["model-a", "model-b"][reply.json()["meta"]["routing"]["router"]]
    for name, was in before.items():
        now = graph.components[name].status()
        assert now["metrics"]["learned"] == was["metrics"]["learned"] + (name == chosen), (name, chosen, now, fb.text)


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_a_reward_the_router_refuses_is_learned_by_no_node(graph, transport):
    # The orchestrator sends the feedback to the routed model first: it must refuse it as the
    # router will, not learn it and leave the client with an error.
    c, x, y, reply = predict_row(graph, transport)
    before = {n: s.status()["replica"]["position"] for n, s in graph.components.items()}
    fb = c.feedback(prediction_request=reply.request, prediction_response=reply.response,
                    reward=1.5, prediction_truth=truth([y]))
    assert not fb.success and "reward must be in [0, 1]" in str(fb), fb
    assert {n: s.status()["replica"]["position"] for n, s in graph.components.items()} == before
