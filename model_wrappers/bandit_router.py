"""BanditRouter: a Seldon ROUTER that sends each request to one child and learns from rewards.

Run it with Seldon's wrapper::

    seldon-core-microservice model_wrappers.BanditRouter --service-type ROUTER \\
        --parameters '[{"name": "n_arms", "value": "2", "type": "INT"}]'

- ``route``: answers the index of the child (arm) for the request, ``[[arm]]``, and tags the reply
  with ``seldon_river_arm``. The draw uses this process's random generator (seeded by ``seed``);
  routing changes nothing that is learned, so processes need not agree on their draws.
- ``send_feedback``: the reward goes to the arm that ``response.meta.routing[<this unit>]`` names
  (the unit is the graph node name, ``PREDICTIVE_UNIT_ID``). Seldon's orchestrator writes
  ``meta.routing`` into responses only when the predictor's ``svcOrchSpec.env`` sets
  ``SELDON_ENABLE_ROUTING_INJECTION``. Without this router's entry, the arm remembered for the
  feedback's request id is used; with neither, a feedback carrying a reward is refused
  (HTTP 400 / gRPC INVALID_ARGUMENT), never dropped silently, and one without (a label for the
  models below) is acknowledged without learning. A reward is learned once per feedback id
  (see :mod:`model_wrappers.adapter_support`). The reward is the request's reward
  per row, in [0, 1]; the arm is credited with one observation per row of the feedback's request
  (see :mod:`model_wrappers.learning.router`). A feedback carrying no reward counts as reward 0:
  protobuf cannot tell an absent reward from 0, and the orchestrator leaves a 0 reward out.

Examples
--------
>>> import tempfile
>>> from model_wrappers.protocol import dict_to_feedback
>>> folder = tempfile.mkdtemp()
>>> router = BanditRouter(n_arms=2, policy="thompson", seed=7, state_uri=f"sqlite:///{folder}/state.db")
>>> router.load()
>>> reply = router.route_raw({"data": {"ndarray": [[1.0, 2.0]]}})
>>> arm = reply["data"]["ndarray"][0][0]
>>> arm in (0, 1), reply["meta"]["tags"]["seldon_river_arm"] == arm
(True, True)
>>> ack = router.send_feedback_raw(dict_to_feedback({
...     "request": {"data": {"ndarray": [[1.0, 2.0]]}},
...     "response": {"meta": {"routing": {router.unit: arm}}}, "reward": 1.0}))
>>> router.status()["arms"][arm]["pulls"]
1.0

"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import random

from google.protobuf.message import Message

from . import payload, seldon_metrics
from .adapter_support import (
    ALREADY_LEARNED_TAG, LEARNED_TAG, METRIC_PREFIX, Feedback, call_puid, prediction_puid,
)
from .checks import count_rows
from .config import StateSettings, fingerprint, unit_id
from .errors import InvalidInput, StateUnavailable, seldon_errors
from .learning.router import RouterSettings, RouterState, reward_event
from .log import LogUnavailable, steps
from .log.replica import Replica
from .stock_wrapper import StockWrapperSupport

logger = logging.getLogger(__name__)

DEFAULT_UNIT = "router"
def arm_metrics(arms: list[dict]) -> list[dict]:
    """Per-arm GAUGEs (tagged ``arm``): rewarded rows, feedbacks and mean reward."""
    metrics = []
    for arm in arms:
        tags = {"arm": str(arm["arm"])}
        for name in ("pulls", "feedbacks", "mean_reward"):
            metrics.append(
                {"type": "GAUGE", "key": f"{METRIC_PREFIX}arm_{name}", "value": arm[name], "tags": dict(tags)}
            )
    return metrics


class BanditRouter(StockWrapperSupport):
    """Seldon ROUTER choosing a child with a :mod:`river.bandit` policy and learning from rewards.

    Parameters
    ----------
    n_arms
        Required (INT): the number of children of this router in the graph.
    policy
        ``epsilon_greedy`` (default), ``ucb``, ``thompson`` (Beta-Bernoulli) or ``exp3``.
    epsilon
        epsilon-greedy: probability of routing to a random arm (default 0.1).
    decay
        epsilon-greedy: exploration after ``t`` rewarded rows is ``epsilon * exp(-decay * t)``
        (default 0: no decay).
    delta
        UCB: width of the confidence bonus; 1 (default) gives UCB1 for rewards in [0, 1].
    gamma
        Exp3: share of uniform exploration, in (0, 1] (default 0.1).
    burn_in
        Rewarded rows every arm needs before the policy chooses (default 1); until then each
        request goes to a random arm among those still below it.
    seed
        Seeds this process's routing draws (the learned statistics need no seed: they are the
        same in every process that applied the same log). Unset: seeded from the OS.
    state_uri
        Learning-log URI (see :mod:`model_wrappers.config`).
    state_name
        Log name; defaults to the graph node's name. The log of a router is also keyed by
        ``n_arms``, ``policy`` (and ``gamma`` for Exp3): changing ``epsilon``, ``decay``,
        ``delta``, ``burn_in`` or ``seed`` keeps what was learned.
    checkpoint_every
        Events between checkpoints.
    max_staleness_ms
        How long routing may go without catching up with the log; 0 catches up every time.
    label_ttl_seconds, label_capacity
        How long, and for how many requests at most, the arm chosen for a request id is kept,
        for feedback that names its prediction only by request id (default: one day, and
        ``n_arms`` times a model's default of 100,000, as the router sees every child's traffic).
        Keep them at least those of the router's children.

    """

    def __init__(
        self,
        n_arms: int | None = None,
        policy: str = "epsilon_greedy",
        epsilon: float = 0.1,
        decay: float = 0.0,
        delta: float = 1.0,
        gamma: float = 0.1,
        burn_in: int = 1,
        seed: int | None = None,
        state_uri: str | None = None,
        state_name: str | None = None,
        checkpoint_every: int = 1000,
        max_staleness_ms: int = 0,
        label_ttl_seconds: int = 86400,
        label_capacity: int | None = None,
    ):
        if n_arms is None:
            raise ValueError(
                "n_arms is required: set the INT parameter n_arms to the number of children of this ROUTER"
            )
        # Checked here, before Seldon forks its servers, so a bad parameter stops the start.
        self.settings = RouterSettings(
            n_arms=n_arms, policy=policy, epsilon=epsilon, decay=decay, delta=delta, gamma=gamma, burn_in=burn_in
        )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.seed = seed
        self.unit = unit_id(DEFAULT_UNIT)
        self.state_options = dict(
            state_uri=state_uri, state_name=state_name,
            checkpoint_every=checkpoint_every, max_staleness_ms=max_staleness_ms,
        )
        # The router sees the requests of every child: it keeps n_arms times a model's default
        # records, so it does not forget a request id before the child that answered it does.
        self.label_ttl = float(label_ttl_seconds)
        self.label_capacity = int(label_capacity) if label_capacity is not None else 100_000 * self.settings.n_arms
        self.replica: Replica | None = None
        self.rng: random.Random | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def load(self) -> None:
        settings = StateSettings.resolve(DEFAULT_UNIT, fingerprint(self.settings.identity()), **self.state_options)
        # One generator per process, made after Seldon's fork.
        self.rng = random.Random(self.seed)
        self.replica = Replica.started(lambda: RouterState(self.settings), RouterState.restore, settings,
                                       ttl=self.label_ttl, capacity=self.label_capacity)
        seldon_metrics.install()
        if os.environ.get("PREDICTIVE_UNIT_ID") is None:
            logger.warning("PREDICTIVE_UNIT_ID is not set: feedback must carry response.meta.routing[%r]", self.unit)
        logger.info(
            "router %s (%s, %d arms) at log position %d, %d events replayed",
            self.unit, self.settings.policy, self.settings.n_arms, self.replica.position, self.replica.replayed,
        )

    # -- Seldon hooks ---------------------------------------------------------------------
    @seldon_errors
    def route_raw(self, request):
        # The policy is not contextual: the payload is not read, only checked to be a message.
        as_proto = isinstance(request, Message)
        if not as_proto:
            payload.to_dict(request)
        puid = call_puid()
        arm, arms = self.replica.read(lambda state: (state.choose(self.rng), state.arms()))
        if puid:
            # A feedback that comes back without meta.routing (label-only, or no routing
            # injection) still names the arm through its request id.
            self.replica.log.remember(puid, str(arm).encode())
        metrics = arm_metrics(arms) + [
            {"type": "COUNTER", "key": f"{METRIC_PREFIX}arm_routed", "value": 1, "tags": {"arm": str(arm)}}
        ]
        reply = {
            "data": {"ndarray": [[arm]]},
            "meta": {
                "tags": {"seldon_river_arm": arm, "seldon_river_policy": self.settings.policy},
                "metrics": metrics,
            },
        }
        return payload.to_proto(reply) if as_proto else reply

    @seldon_errors
    def send_feedback_raw(self, feedback):
        return steps.run(self.send_feedback_steps(feedback))

    def send_feedback_steps(self, feedback):
        """:meth:`send_feedback_raw` as :mod:`~model_wrappers.log.steps` (how the project's server calls it)."""
        read = Feedback.read(feedback)
        message = read.message
        arm = read.routing.get(self.unit)
        if arm is None and "reward" not in message:
            # A label for the models below (the orchestrator sends feedback to every node):
            # nothing for a bandit to learn, which is not an error.
            return self._ack({LEARNED_TAG: 0}, read)
        earlier = self.replica.applied_at(read.id)
        if earlier is not None:
            return self._ack({"seldon_river_position": earlier, ALREADY_LEARNED_TAG: True}, read)
        if arm is None:
            arm = yield from self._remembered_arm(message)
        if arm is None:
            routing = read.routing
            seen = f"it has routing for {sorted(routing)}" if routing else "it has no response.meta.routing"
            raise InvalidInput(
                f"feedback names no arm for router {self.unit!r}: expected response.meta.routing[{self.unit!r}], "
                f"{seen}, and its request id (response.meta.puid or the Seldon-Puid header) names no "
                "prediction routed here. Send back the response the prediction returned; Seldon's orchestrator "
                "adds meta.routing only when SELDON_ENABLE_ROUTING_INJECTION is set in the predictor's svcOrchSpec.env"
            )
        rows = 1
        for part in (message.get("request"), message.get("response")):
            found = count_rows(part) if part else None
            if found is not None:
                rows = max(found, 1)
                break
        event = read.event(reward_event(self.settings, arm, message.get("reward", 0.0), rows))
        position, already = yield from self.replica.submit_once_steps(event)
        tags = {"seldon_river_arm": event["arm"], "seldon_river_position": position}
        return self._ack({**tags, ALREADY_LEARNED_TAG: True} if already else tags, read)

    def _remembered_arm(self, message: dict) -> steps.Steps:
        """The arm the prediction named by the feedback's request id was routed to, or None."""
        puid = prediction_puid(message)
        if not puid:
            return None
        try:
            # Off the event loop: a store's round trip, or a short wait for another process.
            record = yield steps.Blocking(functools.partial(self.replica.log.recall, puid))
        except LogUnavailable as exc:
            raise StateUnavailable(f"feedback refused, nothing was learned: {exc}") from None
        return int(record) if record is not None else None

    def _ack(self, tags: dict, read: Feedback):
        metrics = arm_metrics(self.replica.read(lambda state: state.arms()))
        return read.reply(tags, metrics)

    def health_status_raw(self):
        return {"jsonData": self.status(), "meta": {}}

    def init_metadata(self) -> dict:
        return {
            "name": self.unit,
            "versions": [fingerprint(self.settings.identity())[:12]],
            "platform": "seldon-river",
            "inputs": [{"messagetype": "jsonData", "schema": {}}],
            "outputs": [{"messagetype": "ndarray", "schema": {"names": ["arm"], "shape": [1]}}],
            "custom": {"policy": self.settings.policy, "n_arms": str(self.settings.n_arms)},
        }

    # -- helpers --------------------------------------------------------------------------
    def status(self) -> dict:
        """What each arm has learned and where the log stands, as served by /health/status."""
        arms, figures = self.replica.read(lambda s: (s.arms(), s.figures()))
        return {
            "router": {"unit": self.unit, "seed": self.seed, **dataclasses.asdict(self.settings)},
            "arms": arms,
            "metrics": figures,
            "replica": self.replica.status(),
        }
