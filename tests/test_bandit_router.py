"""BanditRouter served by the real seldon-core-microservice, called as Seldon's orchestrator does.

The orchestrator calls ``/route`` (gRPC ``Route``) and forwards each feedback, with the response's
``meta.routing`` (``{"<router node>": arm, "<model node>": -1}``), to ``/send-feedback`` (gRPC
``SendFeedback``). The router runs with ``PREDICTIVE_UNIT_ID`` set to its node name, as the
operator sets it.

Convergence: two arms, arm 1 pays 1 with probability 0.7 and arm 0 with 0.3 (rewards drawn from a
seeded generator). After 400 feedbacks the better arm has at least 75% of the last 100 routes, for
every policy. (Run in process over 300 seeds, the lowest share seen was 0.77 for UCB, 0.78 for
Exp3, 0.88 for epsilon-greedy and 0.93 for Thompson sampling.)
"""

from __future__ import annotations

import math
import random

import grpc
import numpy as np
import pytest
from seldon_core.proto import prediction_pb2_grpc
from seldon_core.seldon_client import SeldonClient
from seldon_core.utils import json_to_feedback, json_to_seldon_message, seldon_message_to_json

from model_wrappers.learning.router import RouterSettings, RouterState, reward_event

UNIT = "bandit"
PAYS = (0.3, 0.7)
ROUNDS = 400
LAST = 100
SHARE = 0.75
POLICIES = {
    "epsilon_greedy": {"epsilon": 0.1},
    "ucb": {"delta": 1.0},
    "thompson": {},
    "exp3": {"gamma": 0.1},
}
REQUEST = {"data": {"names": ["x1", "x2"], "ndarray": [[0.5, 1.5]]}}


def start_router(services, workdir, state_uri, name="router", **params):
    return services.start(
        "model_wrappers.BanditRouter", "ROUTER",
        {"n_arms": 2, "state_uri": state_uri, **params},
        workdir, env={"PREDICTIVE_UNIT_ID": UNIT}, name=name,
    )


def route(service, request=REQUEST) -> int:
    reply = service.rest("/route", request)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    arm = body["data"]["ndarray"][0][0]
    assert type(arm) is int and body["meta"]["tags"]["seldon_river_arm"] == arm
    return arm


def orchestrator_feedback(arm, reward, request=REQUEST) -> dict:
    """A feedback as Seldon's orchestrator forwards it to the router (routing injection on)."""
    return {
        "request": request,
        "response": {"data": {"names": ["p"], "ndarray": [[0.9]]}, "meta": {"routing": {UNIT: arm, "model-a": -1}}},
        "reward": reward,
    }


def feedback(service, arm, reward, request=REQUEST):
    ack = service.rest("/send-feedback", orchestrator_feedback(arm, reward, request))
    assert ack.status_code == 200, ack.text
    return ack.json()


def play(service, rounds, env: random.Random, log: list | None = None) -> list[int]:
    """Route, draw the chosen arm's reward, send it back; return the arms routed to."""
    arms = []
    for _ in range(rounds):
        arm = route(service)
        reward = 1.0 if env.random() < PAYS[arm] else 0.0
        feedback(service, arm, reward)
        arms.append(arm)
        if log is not None:
            log.append((arm, reward))
    return arms


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_converges_to_the_better_arm(services, tmp_path, policy):
    params = {"policy": policy, "seed": 11, "burn_in": 5, **POLICIES[policy]}
    service = start_router(services, tmp_path, f"sqlite:///{tmp_path}/state.db", **params)
    rewards: list = []
    arms = play(service, ROUNDS, random.Random(2024), rewards)

    share = arms[-LAST:].count(1) / LAST
    assert share >= SHARE, f"{policy}: better arm got {share:.0%} of the last {LAST} routes"
    # The served statistics are exactly those of the same policy fed the same rewards in process.
    settings = RouterSettings(n_arms=2, **{k: v for k, v in params.items() if k != "seed"})
    expected = RouterState(settings)
    for arm, reward in rewards:
        expected.apply(reward_event(settings, arm, reward, 1))
    status = service.status()
    assert status["arms"] == expected.arms()
    assert [a["pulls"] for a in status["arms"]] == [arms.count(0), arms.count(1)]


def test_batch_reward_counts_every_row_without_rounding(services, tmp_path):
    service = start_router(services, tmp_path, f"sqlite:///{tmp_path}/state.db", burn_in=0)
    batch = {"data": {"ndarray": [[0.1, 0.2]] * 4}}
    feedback(service, 1, 0.25, batch)
    feedback(service, 1, 0.5, {"data": {"ndarray": [[0.1, 0.2]]}})
    arms = service.status()["arms"]
    assert arms[1] == {"arm": 1, "pulls": 5.0, "feedbacks": 2, "mean_reward": pytest.approx(0.3)}
    assert arms[0]["pulls"] == 0.0


def test_burn_in_gives_every_arm_traffic_first(services, tmp_path):
    service = start_router(services, tmp_path, f"sqlite:///{tmp_path}/state.db",
                           n_arms=3, policy="epsilon_greedy", epsilon=0.0, burn_in=2, seed=3)
    # Arm 2 is the only one without rewards: burn-in sends every request to it.
    for arm in (0, 0, 1, 1):
        feedback(service, arm, 1.0)
    assert {route(service) for _ in range(10)} == {2}
    feedback(service, 2, 0.0)
    feedback(service, 2, 0.0)
    # Burn-in is over and epsilon is 0: the best arm by mean reward (a tie between 0 and 1).
    assert {route(service) for _ in range(20)} <= {0, 1}


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_restart_and_second_replica_keep_the_learned_statistics(services, tmp_path, request, backend):
    state_uri = (request.getfixturevalue("redis_server").url if backend == "redis"
                 else f"sqlite:///{tmp_path}/state.db")
    params = {"policy": "thompson", "seed": 5, "checkpoint_every": 7}
    first = start_router(services, tmp_path, state_uri, name="first", **params)
    env = random.Random(99)
    play(first, 30, env)
    learned = first.status()
    assert sum(a["feedbacks"] for a in learned["arms"]) == 30

    second = start_router(services, tmp_path, state_uri, name="second", **params)
    assert second.status()["arms"] == learned["arms"]
    # Feedback through either replica reaches both.
    play(second, 5, env)
    assert first.status()["arms"] == second.status()["arms"]

    first.stop()
    restarted = start_router(services, tmp_path, state_uri, name="restarted", **params)
    status = restarted.status()
    assert status["arms"] == second.status()["arms"]
    assert sum(a["feedbacks"] for a in status["arms"]) == 35
    # It started from a checkpoint (every 7 events) and replayed only the tail.
    assert status["replica"]["restored_from"] == 35
    assert status["replica"]["replayed_at_start"] == 0


REST_BAD_FEEDBACK = {
    "no routing": ({"request": REQUEST, "response": {"data": {"ndarray": [[1]]}}, "reward": 1.0},
                   "no response.meta.routing"),
    "routing for another unit only": (
        {"request": REQUEST, "response": {"meta": {"routing": {"other-router": 1}}}, "reward": 1.0},
        "routing for ['other-router']"),
    "arm out of range": (orchestrator_feedback(2, 1.0), "this router has 2 arms"),
    "negative arm": (orchestrator_feedback(-1, 1.0), "names arm -1"),
    "non-numeric reward": (orchestrator_feedback(1, "high"), "reward"),
    "reward above 1": (orchestrator_feedback(1, 1.5), "reward must be in [0, 1]"),
    "NaN reward": (orchestrator_feedback(1, "NaN"), "finite number"),
}


BAD_ROUTE_REQUESTS = [
    ([[1.0, 2.0]], "expected a JSON object"),
    ({"data": {"ndarray": [[1]]}, "features": [1]}, "unknown fields ['features']"),
]


@pytest.fixture
def played(services, tmp_path):
    service = start_router(services, tmp_path, f"sqlite:///{tmp_path}/state.db", seed=1)
    play(service, 6, random.Random(1))
    return service


def learned(service) -> tuple:
    status = service.status()
    return status["arms"], status["replica"]["position"]


def test_malformed_feedback_and_routing_are_refused_over_rest(played):
    before = learned(played)
    for case, (body, message) in REST_BAD_FEEDBACK.items():
        for path in ("/send-feedback", "/api/v1.0/feedback"):
            reply = played.rest(path, body)
            assert reply.status_code == 400, (case, reply.text)
            assert message in reply.json()["status"]["info"], case
    for body, message in BAD_ROUTE_REQUESTS:
        reply = played.rest("/route", body)
        assert reply.status_code == 400, reply.text
        assert message in reply.json()["status"]["info"]
    assert learned(played) == before


GRPC_BAD_FEEDBACK = {
    "no routing": ({"request": REQUEST, "reward": 1.0}, "no response.meta.routing"),
    "routing for another unit only": (
        {"request": REQUEST, "response": {"meta": {"routing": {"other-router": 0}}}, "reward": 1.0},
        "routing for ['other-router']"),
    "arm out of range": (orchestrator_feedback(5, 1.0), "this router has 2 arms"),
    "NaN reward": (orchestrator_feedback(0, "NaN"), "finite number"),
    "negative reward": (orchestrator_feedback(0, -0.5), "reward must be in [0, 1]"),
}


def test_malformed_feedback_is_refused_over_grpc(played):
    before = learned(played)
    stub = prediction_pb2_grpc.SeldonStub(grpc.insecure_channel(f"127.0.0.1:{played.grpc}"))
    for case, (body, message) in GRPC_BAD_FEEDBACK.items():
        with pytest.raises(grpc.RpcError) as error:
            stub.SendFeedback(json_to_feedback(body))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, case
        assert message in error.value.details(), case
    assert learned(played) == before


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_seldon_client_routes_and_rewards(played, transport):
    endpoint = f"127.0.0.1:{played.http if transport == 'rest' else played.grpc}"
    client = SeldonClient(transport=transport, microservice_endpoint=endpoint)
    before = {a["arm"]: a for a in played.status()["arms"]}
    for _ in range(3):
        routed = client.microservice(method="route", data=np.array([[0.5, 1.5]]), payload_type="ndarray",
                                     microservice_endpoint=endpoint)
        assert routed.success, routed.msg
        reply = seldon_message_to_json(routed.response)
        arm = int(reply["data"]["ndarray"][0][0])
        assert reply["meta"]["tags"]["seldon_river_arm"] == arm
        assert arm in (0, 1)
        response = json_to_seldon_message({"data": {"ndarray": [[0.9]]}, "meta": {"routing": {UNIT: arm}}})
        ack = client.microservice_feedback(prediction_request=json_to_seldon_message(REQUEST),
                                           prediction_response=response, reward=1.0,
                                           microservice_endpoint=endpoint)
        assert ack.success, ack.msg
        after = {a["arm"]: a for a in played.status()["arms"]}
        assert after[arm]["feedbacks"] == before[arm]["feedbacks"] + 1
        assert after[arm]["mean_reward"] >= before[arm]["mean_reward"]
        before = after


def test_arm_statistics_are_published_as_metrics(played):
    status = played.status()
    route(played)
    text = played.prometheus()
    for arm in status["arms"]:
        for name in ("pulls", "feedbacks", "mean_reward"):
            lines = [line for line in text.splitlines()
                     if line.startswith(f"seldon_river_arm_{name}{{") and f'arm="{arm["arm"]}"' in line
                     and 'method="router"' in line]
            assert lines, f"no seldon_river_arm_{name} for arm {arm['arm']} in:\n{text[:3000]}"
            assert math.isclose(float(lines[0].rsplit(" ", 1)[1]), float(arm[name]))
    assert "seldon_river_arm_routed_total{" in text or "seldon_river_arm_routed{" in text


def test_missing_or_bad_parameters_stop_the_start(tmp_path):
    from model_wrappers.bandit_router import BanditRouter

    with pytest.raises(ValueError, match="n_arms is required"):
        BanditRouter()
    with pytest.raises(ValueError, match="policy must be one of"):
        BanditRouter(n_arms=2, policy="softmax")
    with pytest.raises(ValueError, match="epsilon must be in"):
        BanditRouter(n_arms=2, epsilon=1.5)


def test_routing_leaves_the_learned_state_unchanged():
    for policy, params in POLICIES.items():
        settings = RouterSettings(n_arms=3, policy=policy, burn_in=1, **params)
        state = RouterState(settings)
        for arm, reward in [(0, 1.0), (1, 0.0), (2, 0.5), (1, 1.0)]:
            state.apply(reward_event(settings, arm, reward, 2))
        before = state.snapshot()
        rng = random.Random(0)
        chosen = {state.choose(rng) for _ in range(200)}
        assert chosen <= {0, 1, 2}
        assert state.snapshot() == before, policy


def test_exp3_weights_stay_finite_on_long_runs():
    settings = RouterSettings(n_arms=2, policy="exp3", gamma=0.5)
    state = RouterState(settings)
    for _ in range(5000):
        state.apply(reward_event(settings, 1, 1.0, 100))
    probabilities = state.exp3_probabilities()
    assert all(math.isfinite(p) for p in probabilities)
    assert probabilities[1] == pytest.approx(1 - 0.5 / 2)
