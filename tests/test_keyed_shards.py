"""Keyed models split over shards: the ownership rule, and KeyedRiverModel shards served for real."""

from __future__ import annotations

import collections
import os
import subprocess
import sys

import dill
import requests
import grpc
import pytest
from seldon_core.utils import json_to_feedback, json_to_seldon_message

from model_wrappers.key_router import KeyRouter
from model_wrappers.learning.shards import Shards, shard_of
from model_wrappers.synthetic import Sales, candidates
from support import REPO
from test_keyed_model import KEY, export_case, grpc_stub, key_status, keyed_service, predictions, rows_of

SHARDS = 2


# -- the ownership rule --------------------------------------------------------------------------
def test_the_owner_of_a_key_is_the_same_in_every_process():
    keys = [f"FOODS_1_{i:03d}_CA_1" for i in range(200)]
    here = [shard_of(k, 4) for k in keys]
    code = "import sys, json; from model_wrappers.learning.shards import shard_of; " \
           "print(json.dumps([shard_of(k, 4) for k in json.loads(sys.argv[1])]))"
    import json

    for seed in ("0", "12345"):  # Python's own hash() would differ between these
        done = subprocess.run([sys.executable, "-c", code, json.dumps(keys)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}, check=True)
        assert json.loads(done.stdout) == here


def test_every_key_has_exactly_one_owner_and_the_shards_share_the_keys():
    keys = [f"P{i}" for i in range(4000)]
    for count in (1, 2, 4):
        owners = [[i for i in range(count) if Shards(count, i).owns(k)] for k in keys]
        assert all(len(o) == 1 for o in owners)
        assert all(Shards(count, 0).owner(k) == o[0] for k, o in zip(keys, owners))
        per_shard = collections.Counter(o[0] for o in owners)
        # A fair split: each shard within 10% of its share.
        assert all(abs(n - len(keys) / count) < 0.1 * len(keys) / count for n in per_shard.values()), per_shard


@pytest.mark.parametrize("count,index,message", [
    (0, 0, "shards must be 1 (not sharded) or more, got 0"),
    (2, 2, "shard must be from 0 to shards - 1 = 1, got 2"),
    (2, -1, "shard must be from 0 to shards - 1 = 1, got -1"),
    (True, 0, "shards and shard must be integers"),
])
def test_bad_shard_settings_are_refused_with_the_reason(count, index, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        Shards(count, index)


def test_the_router_and_the_shards_read_the_same_key():
    router = KeyRouter(shards=SHARDS, key_feature=KEY)
    rows = rows_of(Sales(20, seed=1).day())
    for row in rows:
        shard = shard_of(row[KEY], SHARDS)
        for message in ({"jsonData": [row]}, {"jsonData": row},
                        {"data": {"names": list(row), "ndarray": [list(row.values())]}},
                        {"data": {"ndarray": [list(row.values())]}}):  # key first, as the keyed model reads it
            assert router.route_raw(message)["data"]["ndarray"] == [[shard]], message
    tagged = KeyRouter(shards=SHARDS, key_tag="product")
    key = rows[0][KEY]
    assert tagged.route_raw({"meta": {"tags": {"product": [key, key]}}, "data": {"ndarray": [[1], [2]]}}) \
        ["data"]["ndarray"] == [[shard_of(key, SHARDS)]]


def test_the_router_refuses_nothing_itself_and_says_why_in_python():
    # Seldon's orchestrator hides a router's error message (REST) or fails on it (gRPC): the
    # shard a request goes to refuses it instead, so route never raises.
    router = KeyRouter(shards=SHARDS, key_feature=KEY)
    rows = rows_of(Sales(20, seed=1).day())
    first = next(r for r in rows if shard_of(r[KEY], SHARDS) == 1)
    other = next(r for r in rows if shard_of(r[KEY], SHARDS) == 0)
    assert router.route_raw({"jsonData": [first, other]})["data"]["ndarray"] == [[1]]
    for unreadable in ({"jsonData": [{"price": 1.0}]}, {"strData": "x"}, {"jsonData": [{KEY: None}]}):
        assert router.route_raw(unreadable)["data"]["ndarray"] == [[0]]
    with pytest.raises(Exception, match="the request.s rows belong to 2 shards .rows 0 .* to shard 1; rows 1 .* to shard 0"):
        router.shard_for({"jsonData": [first, other]})
    with pytest.raises(Exception, match="row 0 has no key: expected the feature 'product_id'"):
        router.keys_of({"jsonData": [{"price": 1.0}]})
    with pytest.raises(ValueError, match="exactly one of them"):
        KeyRouter(shards=2)
    with pytest.raises(ValueError, match="shards is required"):
        KeyRouter(key_feature=KEY)


# -- shards served -------------------------------------------------------------------------------
@pytest.fixture
def listed_folder(tmp_path):
    ids = Sales(30, seed=5).ids
    mapping = dill.loads(dill.dumps({pid: candidates() for pid in ids}))
    return export_case(tmp_path / "listed", mapping=mapping), ids


def start_shards(services, folder, tmp_path, state_uri, **params):
    return [keyed_service(services, folder, tmp_path, state_uri, name=f"shard-{i}", shards=SHARDS, shard=i, **params)
            for i in range(SHARDS)]


def test_each_shard_holds_and_learns_only_its_own_keys(services, listed_folder, tmp_path):
    folder, ids = listed_folder
    shards = start_shards(services, folder, tmp_path, f"sqlite:///{tmp_path}/state.db", preload=True)
    owned = {i: [k for k in ids if shard_of(k, SHARDS) == i] for i in range(SHARDS)}
    assert all(owned.values()), owned
    day = Sales(30, seed=5).day()
    for i, shard in enumerate(shards):
        status = shard.status()
        assert status["keyed"]["listed_keys"] == len(owned[i])
        assert status["keyed"]["shards"] == SHARDS and status["keyed"]["shard"] == i
        assert f"-shard-{i}-of-{SHARDS}-" in status["replica"]["log_name"], status["replica"]
        mine = [r for r in rows_of(day) if r[KEY] in owned[i]]
        ack = shard.feedback({"request": {"jsonData": mine}, "truth": {"jsonData": [1.0] * len(mine)}})
        assert ack.status_code == 200, ack.text
    for i, shard in enumerate(shards):
        status = shard.status()
        assert status["metrics"]["keys"] == len(owned[i])
        assert status["metrics"]["learned"] == len(owned[i])
        # Only its own keys are ever loaded.
        assert status["metrics"]["keys_loaded"] == len(owned[i])
        every = key_status(shard, keys="all", limit=1000)
        assert sorted(every["keys"]) == sorted(owned[i])


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_a_key_of_another_shard_is_refused_saying_who_owns_it_and_nothing_is_learned(
        services, listed_folder, tmp_path, transport):
    folder, ids = listed_folder
    shards = start_shards(services, folder, tmp_path, f"sqlite:///{tmp_path}/state.db")
    day = Sales(30, seed=5).day()
    rows = rows_of(day)
    theirs = next(r for r in rows if shard_of(r[KEY], SHARDS) == 1)
    mine = next(r for r in rows if shard_of(r[KEY], SHARDS) == 0)
    shard = shards[0]
    assert shard.feedback({"request": {"jsonData": [mine]}, "truth": {"jsonData": [2.0]}}).ok
    before = shard.status()
    expected = f"{theirs[KEY]!r} belongs to shard 1; this is shard 0 of 2"
    feedback = {"request": {"jsonData": [mine, theirs]}, "truth": {"jsonData": [1.0, 1.0]}}
    if transport == "rest":
        reply = shard.predict({"jsonData": [theirs]})
        assert reply.status_code == 400 and expected in reply.json()["status"]["info"], reply.text
        reply = shard.feedback(feedback)
        assert reply.status_code == 400 and expected in reply.json()["status"]["info"], reply.text
        assert "nothing was learned" in reply.json()["status"]["info"]
    else:
        with pytest.raises(grpc.RpcError) as err:
            grpc_stub(shard).Predict(json_to_seldon_message({"jsonData": [mine, theirs]}))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and expected in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            grpc_stub(shard).SendFeedback(json_to_feedback(feedback))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and expected in err.value.details()
    after = shard.status()
    assert after["replica"]["position"] == before["replica"]["position"]
    assert after["metrics"] == before["metrics"]
    assert shards[1].status()["metrics"]["learned"] == 0


def test_a_routed_shard_acknowledges_without_learning_a_feedback_sent_to_every_shard(services, listed_folder, tmp_path):
    # Seldon's orchestrator sends a feedback that names no routing to every child of the router:
    # the owner learns it, the other shards acknowledge it, none refuses it.
    folder, ids = listed_folder
    shards = start_shards(services, folder, tmp_path, f"sqlite:///{tmp_path}/state.db", routed=True)
    rows = rows_of(Sales(30, seed=5).day())
    theirs = [r for r in rows if shard_of(r[KEY], SHARDS) == 1][:3]
    feedback = {"request": {"jsonData": theirs}, "truth": {"jsonData": [1.0] * len(theirs)}}
    ack = shards[0].feedback(feedback)
    assert ack.status_code == 200 and ack.json()["meta"]["tags"]["seldon_river_learned"] == 0, ack.text
    assert shards[1].feedback(feedback).ok
    assert [s.status()["metrics"]["learned"] for s in shards] == [0, len(theirs)]
    # A feedback routed to this shard (it names the routing) is refused as a direct one is.
    routed = {**feedback, "response": {"meta": {"routing": {"key-router": 0}}}}
    reply = shards[0].feedback(routed)
    assert reply.status_code == 400 and "belongs to shard 1" in reply.json()["status"]["info"], reply.text
    # A batch mixing the shards' keys is refused by every shard: nobody learns part of it.
    mine = next(r for r in rows if shard_of(r[KEY], SHARDS) == 0)
    mixed = {"request": {"jsonData": [mine, theirs[0]]}, "truth": {"jsonData": [1.0, 1.0]}}
    assert [s.feedback(mixed).status_code for s in shards] == [400, 400]
    assert [s.status()["metrics"]["learned"] for s in shards] == [0, len(theirs)]


def test_one_shard_predicts_as_the_unsharded_model_for_its_keys(services, tmp_path):
    folder = export_case(tmp_path / "model")
    sales = Sales(12, seed=21)
    whole = keyed_service(services, folder, tmp_path, f"sqlite:///{tmp_path}/whole.db", name="whole")
    shards = start_shards(services, folder, tmp_path, f"sqlite:///{tmp_path}/shards.db")
    for day in sales.days(6):
        rows = rows_of(day)
        assert whole.feedback({"request": {"jsonData": rows}, "truth": {"jsonData": day.sales}}).ok
        for i, shard in enumerate(shards):
            part = [(r, y) for r, y in zip(rows, day.sales) if shard_of(r[KEY], SHARDS) == i]
            ack = shard.feedback({"request": {"jsonData": [r for r, _ in part]}, "truth": {"jsonData": [y for _, y in part]}})
            assert ack.status_code == 200, ack.text
    rows = rows_of(sales.day())
    expected = predictions(whole, rows)
    for i, shard in enumerate(shards):
        indexes = [j for j, r in enumerate(rows) if shard_of(r[KEY], SHARDS) == i]
        assert predictions(shard, [rows[j] for j in indexes]) == pytest.approx([expected[j] for j in indexes], rel=1e-12)


# -- seldon-river run on manifests/keyed-sharded.yaml ----------------------------------------------
def test_seldon_river_run_serves_the_sharded_manifest(runs, tmp_path):
    from local_run import MANIFESTS, read_manifest

    manifest = MANIFESTS / "keyed-sharded.yaml"
    shards = [n.name for n in read_manifest(manifest).predictor.graph.walk() if n.type == "MODEL"]
    assert shards == ["sales-shard-0", "sales-shard-1"]
    for name in shards:
        export_case(tmp_path / "models" / name)
    run = runs.start(manifest, tmp_path)
    rows = rows_of(Sales(16, seed=2).day())
    url = f"{run.url}/api/v1.0"
    for owner in (0, 1):
        row = next(r for r in rows if shard_of(r[KEY], SHARDS) == owner)
        before = [run.status(n)["metrics"]["learned"] for n in shards]
        reply = requests.post(f"{url}/predictions", json={"jsonData": [row]}, timeout=30)
        assert reply.status_code == 200, reply.text
        assert reply.json()["meta"]["routing"]["key-router"] == owner
        assert reply.json()["meta"]["tags"]["seldon_river_shard"] == owner
        fb = requests.post(f"{url}/feedback", json={"request": {"jsonData": [row]}, "response": reply.json(),
                                                    "truth": {"jsonData": [4.0]}}, timeout=30)
        assert fb.status_code == 200, fb.text
        before[owner] += 1
        assert [run.status(n)["metrics"]["learned"] for n in shards] == before
    mixed = [next(r for r in rows if shard_of(r[KEY], SHARDS) == i) for i in (0, 1)]
    refused = requests.post(f"{url}/predictions", json={"jsonData": mixed}, timeout=30)
    assert refused.status_code == 400 and "the request's rows belong to several shards" in refused.text, refused.text


def test_a_shard_restarts_from_its_own_checkpoint_and_log(services, listed_folder, tmp_path):
    folder, ids = listed_folder
    state_uri = f"sqlite:///{tmp_path}/state.db"
    shards = start_shards(services, folder, tmp_path, state_uri, checkpoint_every=2)
    rows = rows_of(Sales(30, seed=5).day())
    mine = [r for r in rows if shard_of(r[KEY], SHARDS) == 1]
    for row in mine[:5]:  # positions 1..5: checkpoints at 2 and 4, one event after them
        assert shards[1].feedback({"request": {"jsonData": [row]}, "truth": {"jsonData": [3.0]}}).ok
    expected = predictions(shards[1], mine)
    before = shards[1].status()
    shards[1].kill9()
    again = keyed_service(services, folder, tmp_path, state_uri, name="again", shards=SHARDS, shard=1,
                          checkpoint_every=2)
    status = again.status()
    assert status["replica"]["restored_from"] == 4 and status["replica"]["replayed_at_start"] == 1
    assert status["replica"]["log_name"] == before["replica"]["log_name"]
    assert status["metrics"]["learned"] == 5 and status["metrics"]["keys"] == before["metrics"]["keys"]
    assert predictions(again, mine) == pytest.approx(expected, rel=1e-12)
    # The other shard's log and keys were never touched.
    assert shards[0].status()["replica"]["position"] == 0
