"""manifests/keyed-sharded.yaml behind Seldon's real executor: a KeyRouter over two keyed shards.

Each request reaches the shard owning its key; feedback is learned once, by the owner only;
a key sent straight to the wrong shard is refused; a shard killed with -9 and started again
on its ports keeps what it learned (its own learning log in Redis, as in the manifest).
"""

from __future__ import annotations

import grpc
import pytest
import requests
from seldon_core.proto import prediction_pb2_grpc
from seldon_core.utils import json_to_seldon_message

from harness import client, run_graph
from model_wrappers.learning.shards import shard_of
from model_wrappers.synthetic import Sales
from support import REPO, Microservice, as_dict, truth
from test_keyed_model import KEY, export_case, rows_of

MANIFEST = REPO / "manifests" / "keyed-sharded.yaml"
ROUTER = "key-router"
SHARDS = ["sales-shard-0", "sales-shard-1"]


@pytest.fixture(scope="module")
def graph(module_services, module_redis, tmp_path_factory):
    work = tmp_path_factory.mktemp("keyed-sharded")
    folder = export_case(work / "m5-model")
    yield from run_graph(module_services, MANIFEST, module_redis.url, {name: folder for name in SHARDS}, work)


@pytest.fixture(scope="module")
def rows():
    """A day of rows for 24 products, and one row owned by each shard."""
    day = rows_of(Sales(24, seed=3).day())
    by_shard = [[r for r in day if shard_of(r[KEY], 2) == i] for i in range(2)]
    assert all(by_shard), "both shards own some of the products"
    return day, by_shard


def learned(graph) -> list[float]:
    return [graph.components[name].status()["metrics"]["learned"] for name in SHARDS]


def positions(graph) -> list[int]:
    return [graph.components[name].status()["replica"]["position"] for name in SHARDS]


@pytest.mark.parametrize("transport", ["rest", "grpc"])
@pytest.mark.parametrize("owner", [0, 1])
def test_a_prediction_reaches_its_owner_and_its_feedback_is_learned_once_by_it(graph, rows, transport, owner):
    _, by_shard = rows
    row = by_shard[owner][0]
    c = client(graph, transport)
    before = learned(graph)
    reply = c.predict(json_data=[row])
    assert reply.success, reply.msg
    body = as_dict(reply.response)
    assert body["meta"]["routing"] == {ROUTER: owner, SHARDS[owner]: -1}, body["meta"]
    assert list(body["meta"]["tags"]["seldon_river_keys"]) == [row[KEY]]
    assert body["meta"]["tags"]["seldon_river_shard"] == owner
    fb = c.feedback(prediction_request=reply.request, prediction_response=reply.response,
                    reward=1.0, prediction_truth=truth([3.0]))
    assert fb.success, fb.msg
    assert as_dict(fb.response)["meta"]["tags"]["seldon_river_shard"] == owner
    expected = list(before)
    expected[owner] += 1
    assert learned(graph) == expected
    # The same feedback again is acknowledged and not learned twice.
    again = c.feedback(prediction_request=reply.request, prediction_response=reply.response,
                       reward=1.0, prediction_truth=truth([3.0]))
    assert again.success, again.msg
    assert learned(graph) == expected
    # The owner's figures name the key; the other shard does not know it.
    figures = [requests.get(f"{graph.components[n].rest_url}/health/status", params={"key": row[KEY]},
                            timeout=10).json()["jsonData"] for n in SHARDS]
    assert figures[owner]["keys"][row[KEY]]["observations"] >= 1
    assert figures[1 - owner]["keys"] == {} and figures[1 - owner]["unknown"] == [row[KEY]]


@pytest.mark.parametrize("with_routing", [False, True])
def test_label_only_feedback_is_learned_once_by_the_owner(graph, rows, with_routing):
    _, by_shard = rows
    url = f"http://127.0.0.1:{graph.http}/api/v1.0"
    for owner in (0, 1):
        row = by_shard[owner][1]
        before = learned(graph)
        reply = requests.post(f"{url}/predictions", json={"jsonData": [row]}, timeout=30)
        assert reply.status_code == 200, reply.text
        puid = reply.headers["Seldon-Puid"]
        assert reply.json()["meta"]["puid"] == puid
        response = {"meta": {"puid": puid}}
        if with_routing:
            response["meta"]["routing"] = reply.json()["meta"]["routing"]
        # Without routing the orchestrator sends it to both shards: the one that never made the
        # prediction acknowledges it without learning.
        fb = requests.post(f"{url}/feedback", json={"response": response, "truth": {"jsonData": [2.0]}},
                           headers={"Seldon-Puid": puid}, timeout=30)
        assert fb.status_code == 200, fb.text
        expected = list(before)
        expected[owner] += 1
        assert learned(graph) == expected, (owner, fb.text)


def test_a_feedback_with_the_request_and_no_routing_is_learned_once_by_the_owner(graph, rows):
    # With no routing the orchestrator sends it to both shards; the one owning none of its keys
    # acknowledges it without learning.
    _, by_shard = rows
    url = f"http://127.0.0.1:{graph.http}/api/v1.0/feedback"
    for owner in (0, 1):
        row = by_shard[owner][6]
        before = learned(graph)
        fb = requests.post(url, json={"request": {"jsonData": [row]}, "truth": {"jsonData": [1.0]}}, timeout=30)
        assert fb.status_code == 200, fb.text
        expected = list(before)
        expected[owner] += 1
        assert learned(graph) == expected, (owner, fb.text)


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_a_request_spanning_both_shards_is_refused_and_nothing_is_learned(graph, rows, transport):
    _, by_shard = rows
    mixed = [by_shard[0][0], by_shard[1][0]]
    before = positions(graph)
    reply = client(graph, transport).predict(json_data=mixed)
    assert not reply.success
    expected = f"the request's rows belong to several shards: {mixed[1][KEY]!r} belongs to shard 1; this is shard 0"
    if transport == "rest":
        raw = requests.post(f"http://127.0.0.1:{graph.http}/api/v1.0/predictions", json={"jsonData": mixed},
                            timeout=30)
        assert raw.status_code == 400 and expected in raw.json()["status"]["info"], raw.text
    else:
        stub = prediction_pb2_grpc.SeldonStub(grpc.insecure_channel(f"127.0.0.1:{graph.grpc}"))
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(json_to_seldon_message({"jsonData": mixed}))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and expected in err.value.details(), err.value
    # The other order goes to the other shard, which says the same of the first row.
    flipped = requests.post(f"http://127.0.0.1:{graph.http}/api/v1.0/predictions",
                            json={"jsonData": mixed[::-1]}, timeout=30)
    assert flipped.status_code == 400 and f"{mixed[0][KEY]!r} belongs to shard 0; this is shard 1" in flipped.text
    # A request the router cannot read a key from is refused by the shard it goes to, with the reason.
    keyless = {k: v for k, v in mixed[0].items() if k != KEY}
    reply = client(graph, transport).predict(json_data=[keyless])
    assert not reply.success and "row 0: missing features" in str(reply) and "product_id" in str(reply), reply
    # A feedback mixing them is refused by both shards: no part of it is learned.
    fb = requests.post(f"http://127.0.0.1:{graph.http}/api/v1.0/feedback",
                       json={"request": {"jsonData": mixed}, "truth": {"jsonData": [1.0, 1.0]}}, timeout=30)
    assert fb.status_code == 400 and "belongs to shard" in fb.text, fb.text
    assert positions(graph) == before


def test_a_key_sent_straight_to_the_wrong_shard_is_refused_and_learns_nothing(graph, rows):
    _, by_shard = rows
    row = by_shard[1][2]
    wrong = graph.components[SHARDS[0]]
    before = positions(graph), learned(graph)
    reply = wrong.predict({"jsonData": [row]})
    assert reply.status_code == 400, reply.text
    info = reply.json()["status"]["info"]
    assert f"{row[KEY]!r} belongs to shard 1; this is shard 0 of 2" in info, info
    with pytest.raises(grpc.RpcError) as err:
        prediction_pb2_grpc.SeldonStub(grpc.insecure_channel(f"127.0.0.1:{wrong.grpc}")).Predict(
            json_to_seldon_message({"jsonData": [row]}))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "belongs to shard 1" in err.value.details()
    # A feedback naming the routing (the response as the orchestrator returned it) is refused too.
    routed = {"request": {"jsonData": [row]}, "truth": {"jsonData": [9.0]},
              "response": {"meta": {"routing": {ROUTER: 0, SHARDS[0]: -1}}}}
    refused = wrong.feedback(routed)
    assert refused.status_code == 400 and "belongs to shard 1" in refused.text, refused.text
    # One with no routing is what the orchestrator sends every shard: acknowledged, not learned.
    fanned = wrong.feedback({"request": {"jsonData": [row]}, "truth": {"jsonData": [9.0]}})
    assert fanned.status_code == 200 and fanned.json()["meta"]["tags"]["seldon_river_learned"] == 0, fanned.text
    assert (positions(graph), learned(graph)) == before


def test_a_shard_killed_and_started_again_keeps_what_it_learned(graph, rows, request):
    _, by_shard = rows
    c = client(graph, "rest")
    for row in by_shard[1][3:6]:
        reply = c.predict(json_data=[row])
        assert reply.success, reply.msg
        fb = c.feedback(prediction_request=reply.request, prediction_response=reply.response,
                        reward=1.0, prediction_truth=truth([5.0]))
        assert fb.success, fb.msg
    probe = by_shard[1][3:6]
    served = [as_dict(c.predict(json_data=[r]).response)["jsonData"][0]["prediction"] for r in probe]
    old = graph.components[SHARDS[1]]
    status = old.status()
    old.kill9()
    down = c.predict(json_data=[probe[0]])
    assert not down.success  # the owner is gone; the other shard does not answer for its keys
    again = Microservice(old.class_path, old.service_type, old.parameters, graph.work,
                         env=old.env,
                         name=f"{SHARDS[1]}-again")
    again.http, again.grpc, again.metrics = old.http, old.grpc, old.metrics  # where the executor calls it
    request.addfinalizer(again.stop)
    again.start()
    graph.components[SHARDS[1]] = again
    now = again.status()
    assert now["metrics"]["learned"] == status["metrics"]["learned"]
    assert now["replica"]["position"] == status["replica"]["position"]
    assert now["replica"]["log_name"] == status["replica"]["log_name"]
    assert [as_dict(c.predict(json_data=[r]).response)["jsonData"][0]["prediction"] for r in probe] == \
        pytest.approx(served, rel=1e-12)
    # It goes on learning once per feedback.
    reply = c.predict(json_data=[probe[0]])
    fb = c.feedback(prediction_request=reply.request, prediction_response=reply.response,
                    reward=1.0, prediction_truth=truth([5.0]))
    assert fb.success, fb.msg
    assert again.status()["metrics"]["learned"] == status["metrics"]["learned"] + 1
