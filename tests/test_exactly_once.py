"""Every acknowledged feedback is learned exactly once, and a refused one not at all.

- In process: every state skips a copy of a feedback (same id) in ``apply``, in log order; the
  ids survive a checkpoint; two processes logging the same feedback at once learn it once.
- Served (real processes, REST and gRPC): a retry, a label-only feedback resent with its
  features, a restart, two replicas, the router's rewards and the detector's traffic: each
  learned once, the copy answered 200 with ``seldon_river_already_learned``.
- Graph feedback that cannot half-succeed: what a router would refuse, a model refuses first.
- Refused means not learned: the learning log losing the reply of an append (resolved, then
  learned once), or the append itself (refused, not in the log), or staying unreachable (the
  outcome is reported unknown, and resending learns it once); Seldon's metrics Manager killed.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import signal
import threading
from pathlib import Path

import grpc
import pytest
from river import linear_model, preprocessing

from model_wrappers.keyed_artifact import export_keyed
from model_wrappers.learning.applied import AppliedIds, applied_at
from model_wrappers.learning.detector import DetectorSettings, DetectorState
from model_wrappers.learning.keyed import KeyedState, Templates
from model_wrappers.learning.model import ModelState
from model_wrappers.learning.router import RouterSettings, RouterState, reward_event
from model_wrappers.log import open_log
from model_wrappers.log.keystore import open_keystore
from model_wrappers.log.redis import APPEND
from model_wrappers.log.replica import Replica, decode
from model_wrappers.protocol import dict_to_feedback, dict_to_message, message_to_dict
from model_wrappers.synthetic import FEATURES, candidates
from support import SERVERS, FaultyLink, SeldonStub, export_regressor, wait_until

ALREADY = "seldon_river_already_learned"
ROW = {"x1": 1.0, "x2": 2.0}
UNIT = "exactly-once"


def request(rows=(ROW,)) -> dict:
    return {"data": {"names": ["x1", "x2"], "ndarray": [[r["x1"], r["x2"]] for r in rows]}}


def regressor() -> ModelState:
    return ModelState(preprocessing.StandardScaler() | linear_model.LinearRegression(), "regressor")


# -- in process: the states --------------------------------------------------------------------
def learn(feedback_id=None, y=3.0) -> dict:
    event = {"type": "learn", "rows": [ROW], "truth": [y]}
    return {**event, "id": feedback_id} if feedback_id else event


def keyed_state(tmp_path) -> KeyedState:
    store = open_keystore(f"sqlite:///{tmp_path}/keys.db", "keyed")
    origin = Templates({"linear": linear_model.LinearRegression()})
    return KeyedState(origin, "regressor", store=store)


@pytest.mark.parametrize("kind", ["model", "router", "detector", "keyed"])
def test_every_state_skips_a_copy_of_a_feedback_in_apply(kind, tmp_path):
    if kind == "model":
        state, event, count = regressor(), learn, lambda s: s.learned
    elif kind == "router":
        state = RouterState(RouterSettings(n_arms=2))

        def event(feedback_id=None):
            return {**reward_event(state.settings, 1, 1.0, 2), **({"id": feedback_id} if feedback_id else {})}

        def count(s):
            return s.observations
    elif kind == "detector":
        state = DetectorState(DetectorSettings(warm_up=10, n_trees=3))

        def event(feedback_id=None):
            return {"type": "learn", "rows": [{"a": 1.0, "b": 2.0}], **({"id": feedback_id} if feedback_id else {})}

        def count(s):
            return s.seen
    else:
        state = keyed_state(tmp_path)

        def event(feedback_id=None):
            return {"type": "learn", "keys": ["p1"], "rows": [ROW], "truth": [2.0],
                    **({"id": feedback_id} if feedback_id else {})}

        def count(s):
            return s.figures()["learned"]

    state.apply(event("puid:a"), 1)
    once = count(state)
    state.apply(event("puid:a"), 2)  # the copy
    assert count(state) == once
    assert applied_at(state, "puid:a") == 1
    state.apply(event("puid:b"), 3)
    state.apply(event(), 4)  # no id: learned every time
    state.apply(event(), 5)
    assert count(state) == 4 * once


def test_applied_ids_survive_checkpoints(tmp_path):
    model = regressor()
    model.apply(learn("puid:a"), 7)
    restored = ModelState.restore(model.snapshot())
    restored.apply(learn("puid:a"), 8)
    assert restored.learned == 1 and applied_at(restored, "puid:a") == 7

    keyed = keyed_state(tmp_path)
    keyed.apply({"type": "learn", "keys": ["p1"], "rows": [ROW], "truth": [2.0], "id": "puid:k"}, 1)
    header = keyed.snapshot()
    store = open_keystore(f"sqlite:///{tmp_path}/keys.db", "keyed")
    again = KeyedState.restore(header, origin=Templates({"linear": linear_model.LinearRegression()}),
                               task="regressor", store=store)
    again.apply({"type": "learn", "keys": ["p1"], "rows": [ROW], "truth": [2.0], "id": "puid:k"}, 2)
    assert again.figures()["learned"] == 1.0 and applied_at(again, "puid:k") == 1


def test_the_window_of_remembered_ids_is_bounded():
    applied = AppliedIds(capacity=1000)
    for i in range(5000):
        assert applied.add(f"puid:{i}", i + 1)
    assert len(applied) == 1000
    assert applied.position("puid:3999") is None and applied.position("puid:4000") == 4001
    packed = AppliedIds.__new__(AppliedIds)
    packed.__setstate__(applied.__getstate__())
    assert len(packed.__getstate__()["keys"]) == 8 * 1000  # 8 bytes an id in a checkpoint
    assert packed.position("puid:4999") == 5000 and not packed.add("puid:4999", 9)


def test_two_processes_logging_one_feedback_at_once_learn_it_once(tmp_path):
    path = tmp_path / "state.db"
    replicas = [Replica(regressor, ModelState.restore, open_log(f"sqlite:///{path}", "model")) for _ in range(2)]
    for replica in replicas:
        replica.start()
    for round_ in range(20):
        barrier = threading.Barrier(2)

        def submit(replica):
            barrier.wait()
            return replica.submit_once(learn(f"puid:{round_}", y=float(round_)))

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            outcomes = list(pool.map(submit, replicas))
        # Both acknowledged; at most one appended nothing, and exactly one learned it.
        assert sorted(already for _, already in outcomes) == [False, True]
        assert len({position for position, _ in outcomes}) == 1
    for replica in replicas:
        replica.sync()
        assert replica.state.learned == 20
    late = Replica(regressor, ModelState.restore, open_log(f"sqlite:///{path}", "model"))
    late.start()  # replays every copy that was logged, and skips it again
    assert late.state.learned == 20
    assert late.read(lambda s: s.pipeline.predict_one(ROW)) == replicas[0].read(lambda s: s.pipeline.predict_one(ROW))


# -- served ------------------------------------------------------------------------------------
def stub(service):
    return SeldonStub(grpc.insecure_channel(f"127.0.0.1:{service.grpc}"))


def tags(reply) -> dict:
    body = reply.json() if hasattr(reply, "json") else message_to_dict(reply)
    return body["meta"]["tags"]


def start_model(services, tmp_path, state_uri=None, name="model", server=None, **params):
    folder = tmp_path / "folder"
    if not folder.exists():
        export_regressor(folder)
    return services.start("model_wrappers.RiverModel", "MODEL",
                          {"model_uri": str(folder), "state_uri": state_uri or f"sqlite:///{tmp_path}/state.db",
                           **params}, tmp_path, env={"PREDICTIVE_UNIT_ID": UNIT}, name=name, server=server)


def status(service) -> tuple[int, float]:
    found = service.status()
    return found["replica"]["position"], found["metrics"].get("learned", found["metrics"].get("observations"))


@pytest.mark.parametrize("server", SERVERS)
def test_a_feedback_sent_again_is_learned_once_over_rest_and_grpc(services, tmp_path, server):
    served = start_model(services, tmp_path, server=server)
    puid = served.predict(request()).json()["meta"]["puid"]
    label_only = {"response": {"meta": {"puid": puid}}, "truth": {"data": {"ndarray": [[3.0]]}}}
    first = served.feedback(label_only)
    assert first.status_code == 200 and ALREADY not in tags(first)
    assert status(served) == (1, 1.0)
    # A retry over REST, the same over gRPC, and the label-only one sent again with its features
    # (as a 404 once advised): one feedback, learned once, each copy answered 200.
    again = served.feedback(label_only)
    over_grpc = stub(served).SendFeedback(dict_to_feedback(label_only), timeout=30)
    with_features = served.feedback({**label_only, "request": request()})
    for reply in (again, with_features):
        assert reply.status_code == 200 and tags(reply)[ALREADY] is True and tags(reply)["seldon_river_position"] == 1
    assert tags(over_grpc)[ALREADY] is True
    assert status(served) == (1, 1.0)  # nothing was even logged again
    # Two feedbacks about one prediction that name themselves are two feedbacks.
    for i in range(2):
        named = {**label_only, "response": {"meta": {"puid": puid, "tags": {"seldon_river_feedback_id": f"row-{i}"}}}}
        assert ALREADY not in tags(served.feedback(named))
    assert status(served) == (3, 3.0)
    # The request id of the call itself (Seldon-Puid header / seldon-puid metadata) names it too.
    header_puid = "from-the-orchestrator"
    assert served.predict(request(), headers={"Seldon-Puid": header_puid}).status_code == 200
    truth_only = {"truth": {"data": {"ndarray": [[5.0]]}}}
    assert ALREADY not in tags(served.feedback(truth_only, headers={"Seldon-Puid": header_puid}))
    reply = stub(served).SendFeedback(dict_to_feedback(truth_only), metadata=[("seldon-puid", header_puid)], timeout=30)
    assert tags(reply)[ALREADY] is True
    assert status(served) == (4, 4.0)


def test_the_ids_survive_a_restart(services, tmp_path):
    served = start_model(services, tmp_path, checkpoint_every=1)
    body = {"request": request(), "response": {"meta": {"puid": "p-1"}}, "truth": {"jsonData": [3.0]}}
    assert ALREADY not in tags(served.feedback(body))
    served.stop()
    again = start_model(services, tmp_path, checkpoint_every=1, name="again")
    assert again.status()["replica"]["restored_from"] == 1
    assert tags(again.feedback(body))[ALREADY] is True
    assert status(again) == (1, 1.0)


@pytest.fixture(params=["redis", "kafka"])
def shared_uri(request):
    """A log that replicas on several machines share: a redis-server or a Kafka broker."""
    if request.param == "redis":
        return request.getfixturevalue("redis_server").url
    return request.getfixturevalue("kafka_uri")


def test_two_replicas_sent_one_feedback_at_once_learn_it_once(services, tmp_path, shared_uri):
    replicas = [start_model(services, tmp_path, shared_uri, name=f"replica-{i}") for i in range(2)]
    for i in range(10):
        body = {"request": request(), "response": {"meta": {"puid": f"p-{i}"}}, "truth": {"jsonData": [float(i)]}}
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            replies = list(pool.map(lambda service: service.feedback(body), replicas))
        assert [r.status_code for r in replies] == [200, 200]
        assert sum(ALREADY not in tags(r) for r in replies) == 1
    learned = [status(r)[1] for r in replicas]
    assert learned == [10.0, 10.0]
    probes = [r.predict(request()).json()["data"]["ndarray"] for r in replicas]
    assert probes[0] == probes[1]


def keyed_folder(folder):
    export_keyed(folder, templates=candidates(), features=FEATURES, key_feature="product_id", name="m5",
                 min_observations=2)
    return folder


def test_keyed_model_router_and_detector_learn_a_copy_once(services, tmp_path):
    keyed = services.start("model_wrappers.KeyedRiverModel", "MODEL",
                           {"model_uri": str(keyed_folder(tmp_path / "keyed")),
                            "state_uri": f"sqlite:///{tmp_path}/keyed.db"}, tmp_path, name="keyed")
    row = {"product_id": "p1", **{f: 1.0 for f in FEATURES}}
    puid = keyed.predict({"jsonData": [row]}).json()["meta"]["puid"]
    body = {"response": {"meta": {"puid": puid}}, "truth": {"jsonData": [2.0]}}
    assert ALREADY not in tags(keyed.feedback(body))
    assert tags(stub(keyed).SendFeedback(dict_to_feedback(body), timeout=30))[ALREADY] is True
    assert status(keyed) == (1, 1.0)

    router = services.start("model_wrappers.BanditRouter", "ROUTER",
                            {"n_arms": 2, "state_uri": f"sqlite:///{tmp_path}/router.db"}, tmp_path,
                            env={"PREDICTIVE_UNIT_ID": UNIT}, name="router")
    arm = router.rest("/route", request(), headers={"Seldon-Puid": "routed-1"}).json()["data"]["ndarray"][0][0]
    reward = {"request": request(), "response": {"meta": {"puid": "routed-1", "routing": {UNIT: arm}}}, "reward": 1.0}
    assert ALREADY not in tags(router.feedback(reward))
    assert tags(router.feedback(reward))[ALREADY] is True
    # Without routing, the same reward names its arm through the remembered request id: still a copy.
    assert tags(router.feedback({**reward, "response": {"meta": {"puid": "routed-1"}}}))[ALREADY] is True
    arms = router.status()["arms"]
    assert arms[arm]["pulls"] == 1.0 and arms[1 - arm]["pulls"] == 0.0

    detector = services.start("model_wrappers.OutlierDetector", "TRANSFORMER",
                              {"warm_up": 20, "n_trees": 3, "state_uri": f"sqlite:///{tmp_path}/detector.db"},
                              tmp_path, name="detector")
    traffic = {"data": {"names": ["a", "b"], "ndarray": [[0.1, 0.2], [0.3, 0.4]]}}
    for _ in range(3):  # the same request, retried with its request id
        assert detector.rest("/transform-input", traffic, headers={"Seldon-Puid": "seen-once"}).status_code == 200
    detector.rest("/transform-input", traffic)  # without one: learned each time
    assert detector.status()["metrics"]["rows_seen"] == 4.0


# -- graph feedback that cannot half-succeed ---------------------------------------------------
def test_what_the_router_would_refuse_every_model_refuses_first(services, tmp_path):
    # Seldon's orchestrator sends a feedback to the models, then to the router: a model must
    # not learn what the router will refuse.
    served = start_model(services, tmp_path, routed=True)
    puid = served.predict(request()).json()["meta"]["puid"]
    bad_reward = {"request": request(), "response": {"meta": {"puid": puid, "routing": {"router": 0}}},
                  "truth": {"jsonData": [3.0]}, "reward": 1.5}
    refused = served.feedback(bad_reward)
    assert refused.status_code == 400 and "reward must be in [0, 1]" in refused.json()["status"]["info"]
    unattributable = {"request": request(), "truth": {"jsonData": [3.0]}, "reward": 1.0}
    refused = served.feedback(unattributable)
    assert refused.status_code == 400 and "could not credit it" in refused.json()["status"]["info"]
    with pytest.raises(grpc.RpcError) as error:
        stub(served).SendFeedback(dict_to_feedback(bad_reward), timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert status(served) == (0, 0.0)
    # A label-only feedback for a prediction a sibling made: acknowledged, nothing learned.
    sibling = served.feedback({"response": {"meta": {"puid": "made-by-the-sibling"}}, "truth": {"jsonData": [3.0]}})
    assert sibling.status_code == 200 and tags(sibling)["seldon_river_learned"] == 0
    assert status(served) == (0, 0.0)


# -- refused means not learned -----------------------------------------------------------------
def test_an_append_whose_reply_is_lost_is_resolved_never_refused_yet_learned(services, tmp_path, redis_server):
    link = FaultyLink(redis_server.port)
    served = start_model(services, tmp_path, link.url)
    append = hashlib.sha1(APPEND.encode()).hexdigest().encode()
    log = open_log(redis_server.url, served.status()["replica"]["log"].split("'")[1])

    def body(i):
        return {"request": request(), "response": {"meta": {"puid": f"p-{i}"}}, "truth": {"jsonData": [float(i)]}}

    try:
        assert served.feedback(body(0)).status_code == 200  # Redis now holds the append script
        # Redis runs the append, the reply never arrives: the model asks Redis, finds it, answers 200.
        link.arm(append, "lose-reply")
        reply = served.feedback(body(1))
        assert link.fired.is_set()
        assert reply.status_code == 200, reply.text
        assert status(served) == (2, 2.0)
        # The append never reaches Redis: fenced off, refused, not in the log.
        link.arm(append, "swallow")
        reply = served.feedback(body(2))
        assert link.fired.is_set()
        assert reply.status_code == 503, reply.text
        assert "nothing was learned" in reply.json()["status"]["info"]
        assert [decode(p)["id"] for _, p in log.read(0)] == ["puid:p-0", "puid:p-1"]
        # Redis runs it, then stays out of reach longer than the model asks: the outcome is unknown
        # (never claimed refused), and resending the same feedback learns it exactly once.
        link.arm(append, "lose-reply", blackout=12.0)
        reply = served.feedback(body(3))
        assert reply.status_code == 504, reply.text
        assert "could not say whether the append was logged" in reply.json()["status"]["info"]
        wait_until(lambda: served.feedback(body(3)).status_code == 200, 40, "the log back")
        assert served.feedback(body(3)).json()["meta"]["tags"][ALREADY] is True
        assert status(served)[1] == 3.0
        assert {decode(p)["id"] for _, p in log.read(0)} == {"puid:p-0", "puid:p-1", "puid:p-3"}
    finally:
        log.close()
        link.close()


def metrics_manager(service) -> int:
    """The pid of Seldon's metrics Manager: the first process the wrapper's main process starts."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == service.proc.pid:
                children.append((int(fields[19]), int(entry.name)))
    return min(children)[1]


def test_feedback_goes_on_when_seldons_metrics_manager_dies(services, tmp_path):
    served = start_model(services, tmp_path, server="seldon-core")
    os.kill(metrics_manager(served), signal.SIGKILL)
    for i in range(3):
        body = {"request": request(), "response": {"meta": {"puid": f"p-{i}"}}, "truth": {"jsonData": [float(i)]}}
        reply = served.feedback(body)
        assert reply.status_code == 200, reply.text
        assert stub(served).Predict(dict_to_message(request()), timeout=30).data.names == ["prediction"]
    assert status(served) == (3, 3.0)


def test_a_folder_whose_pipeline_does_not_fit_its_task_fails_at_load(tmp_path):
    # Loaded, it would report ready and acknowledge feedback its pipeline can never learn.
    from model_wrappers import RiverModel
    from model_wrappers.artifact import ArtifactError, export_model

    export_model({"weights": [1.0]}, tmp_path / "a-dict", task="regressor", features=["x1", "x2"])
    # Export refuses the contradiction, so the folder's task is edited afterwards, as by hand.
    export_model(preprocessing.StandardScaler() | linear_model.LogisticRegression(), tmp_path / "task-edited",
                 task="classifier", features=["x1", "x2"], classes=[True, False])
    metadata = tmp_path / "task-edited" / "seldon-river.json"
    metadata.write_text(metadata.read_text().replace('"task": "classifier"', '"task": "regressor"'))
    for folder, found in (("a-dict", "dict"), ("task-edited", "Pipeline")):
        model = RiverModel(model_uri=str(tmp_path / folder), state_uri=f"sqlite:///{tmp_path}/state.db")
        with pytest.raises(ArtifactError, match=f"is a {found}, which is not a river regressor"):
            model.load()
