"""The bandit router's learned state: per-arm reward statistics driven by ``reward`` events.

The state holds one :mod:`river.bandit` policy. Its statistics change only in :meth:`RouterState.apply`,
so every process that applies the same log holds exactly the same statistics. Choosing an arm
(:meth:`RouterState.choose`) runs the policy's own selection rule on a view of the policy whose
randomness is the caller's random number generator: a routing decision never changes the learned
state, and processes do not need to agree on their draws.

Rewards
-------
A ``reward`` event says: arm ``arm`` served a request of ``rows`` rows and earned ``reward`` per row,
a number in [0, 1] (e.g. the fraction of the rows it got right). The arm is credited with ``rows``
observations whose mean is ``reward``: nothing is rounded (Seldon's own routers count
``int(reward * rows)`` successes, which turns a single-row reward of 0.5 into a failure).

- ``epsilon_greedy`` and ``ucb``: a weighted running mean (weight ``rows``) per arm.
- ``thompson``: a Beta(1, 1) prior per arm; a reward adds ``reward * rows`` to alpha and
  ``(1 - reward) * rows`` to beta (for 0/1 rewards this is the usual Beta-Bernoulli update).
- ``exp3``: the arm's log-weight grows by ``gamma * rows * reward / (p * n_arms)``, ``p`` being the
  arm's selection probability computed from the weights the event finds (so every process uses the
  same ``p``); weights are rescaled so the largest is 1, which keeps long runs from overflowing.

Examples
--------
>>> import random
>>> state = RouterState(RouterSettings(n_arms=2, policy="ucb"))
>>> state.choose(random.Random(0)) in (0, 1)
True
>>> state.apply(reward_event(state.settings, arm=0, reward=0.0, rows=1))
>>> state.apply(reward_event(state.settings, arm=1, reward=1.0, rows=3))
>>> [(a["arm"], a["pulls"], a["mean_reward"]) for a in state.arms()]
[(0, 1.0, 0.0), (1, 3.0, 1.0)]
>>> state.choose(random.Random(0))
1
>>> reward_event(state.settings, arm=2, reward=1.0, rows=1)
Traceback (most recent call last):
...
model_wrappers.errors.InvalidInput: routing names arm 2 but this router has 2 arms (0..1)

"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
from typing import Any

import dill
from river import bandit, proba, stats

from ..checks import check_reward
from ..errors import InvalidInput
from .applied import first_application

POLICIES = ("epsilon_greedy", "ucb", "thompson", "exp3")


class FractionalBeta(proba.Beta):
    """A Beta distribution that takes rewards in [0, 1], optionally weighted.

    :class:`river.proba.Beta` counts any truthy value as a whole success; here a reward ``x`` with
    weight ``w`` adds ``x * w`` successes and ``(1 - x) * w`` failures.
    """

    def update(self, x, w=1.0):
        self.alpha += x * w
        self.beta += (1 - x) * w

    def revert(self, x, w=1.0):
        self.alpha -= x * w
        self.beta -= (1 - x) * w


@dataclasses.dataclass(frozen=True)
class RouterSettings:
    """How the router chooses and learns; validated on creation.

    Parameters
    ----------
    n_arms
        Number of children of the router (arms), at least 1.
    policy
        ``epsilon_greedy``, ``ucb``, ``thompson`` or ``exp3``.
    epsilon
        epsilon-greedy: probability of routing to a random arm, in [0, 1].
    decay
        epsilon-greedy: exploration after ``t`` rewarded rows is ``epsilon * exp(-decay * t)``.
    delta
        UCB: width of the confidence bonus (1 gives UCB1), at least 0.
    gamma
        Exp3: share of uniform exploration, in (0, 1].
    burn_in
        Rewarded rows every arm needs before the policy chooses; until then requests go to a
        random arm among those below it.

    """

    n_arms: int
    policy: str = "epsilon_greedy"
    epsilon: float = 0.1
    decay: float = 0.0
    delta: float = 1.0
    gamma: float = 0.1
    burn_in: int = 1

    def __post_init__(self):
        def bad(name, expected):
            raise ValueError(f"{name} must be {expected}, got {getattr(self, name)!r}")

        if not _is_int(self.n_arms) or self.n_arms < 1:
            bad("n_arms", "an integer of at least 1 (the number of children of this ROUTER)")
        if self.policy not in POLICIES:
            bad("policy", "one of " + ", ".join(POLICIES))
        for name in ("epsilon", "decay", "delta", "gamma"):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value):
                bad(name, "a finite number")
        if not 0 <= self.epsilon <= 1:
            bad("epsilon", "in [0, 1]")
        if self.decay < 0:
            bad("decay", "0 or more")
        if self.delta < 0:
            bad("delta", "0 or more")
        if not 0 < self.gamma <= 1:
            bad("gamma", "in (0, 1]")
        if not _is_int(self.burn_in) or self.burn_in < 0:
            bad("burn_in", "an integer of at least 0")

    def identity(self) -> dict:
        """The settings the learned statistics depend on (the rest only shape routing).

        Changing one of these starts a new log; changing e.g. ``epsilon`` keeps what was learned.
        """
        identity: dict[str, Any] = {"n_arms": self.n_arms, "policy": self.policy}
        if self.policy == "exp3":
            identity["gamma"] = float(self.gamma)
        return identity


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def reward_event(settings: RouterSettings, arm: Any, reward: Any, rows: Any) -> dict:
    """A validated ``reward`` event, or :class:`InvalidInput` saying what is wrong."""
    if not _is_int(arm):
        raise InvalidInput(f"routing must name an arm as an integer, got {arm!r}")
    if not 0 <= arm < settings.n_arms:
        raise InvalidInput(
            f"routing names arm {arm} but this router has {settings.n_arms} arms (0..{settings.n_arms - 1})"
        )
    reward = check_reward(reward)
    if not _is_int(rows) or rows < 1:
        raise InvalidInput(f"the rewarded request must have at least one row, got {rows!r}")
    return {"type": "reward", "arm": arm, "reward": reward, "rows": rows}


def _make_policy(settings: RouterSettings) -> bandit.base.Policy:
    # The policy's own random generator is never used to choose (see RouterState.choose): a fixed
    # seed keeps even its unused state identical in every process.
    if settings.policy == "epsilon_greedy":
        return bandit.EpsilonGreedy(epsilon=settings.epsilon, decay=settings.decay, seed=0)
    if settings.policy == "ucb":
        return bandit.UCB(delta=settings.delta, seed=0)
    if settings.policy == "thompson":
        return bandit.ThompsonSampling(reward_obj=FractionalBeta(1, 1), seed=0)
    return bandit.Exp3(gamma=settings.gamma, seed=0)


class RouterState:
    """Per-arm statistics of one bandit router.

    Parameters
    ----------
    settings
        The router's settings; see :class:`RouterSettings`.

    """

    def __init__(self, settings: RouterSettings):
        self.settings = settings
        self.arm_ids = list(range(settings.n_arms))
        self.policy = _make_policy(settings)
        if settings.policy != "ucb":
            # Create every arm's statistics now: the policies read them through defaultdicts, which
            # would otherwise add entries while choosing. UCB tells an arm with no reward by its
            # missing entry (an infinite bound), so its entries appear with the first reward.
            for arm in self.arm_ids:
                self.policy._rewards[arm]
                if settings.policy == "exp3":
                    self.policy._weights[arm] = 1.0
        self.log_weights = [0.0] * settings.n_arms
        self.means = [stats.Mean() for _ in self.arm_ids]
        self.feedbacks = [0] * settings.n_arms
        self.observations = 0

    # -- events ---------------------------------------------------------------------------
    def apply(self, event: dict, position: int | None = None) -> None:
        """Apply one ``reward`` event from the log (at ``position``); a copy of one already applied changes nothing."""
        if event.get("type") != "reward":
            raise ValueError(f"RouterState cannot apply a {event.get('type')!r} event")
        checked = reward_event(self.settings, event.get("arm"), event.get("reward"), event.get("rows"))
        if not first_application(self, event, position):
            return
        arm, reward, rows = checked["arm"], checked["reward"], checked["rows"]
        policy = self.policy
        if self.settings.policy == "exp3":
            self._exp3_update(arm, reward, rows)
        policy._rewards[arm].update(reward, rows)
        policy._counts[arm] += rows
        policy._n += rows
        self.means[arm].update(reward, rows)
        self.feedbacks[arm] += 1
        self.observations += rows

    def _exp3_update(self, arm: int, reward: float, rows: int) -> None:
        p = self.exp3_probabilities()[arm]
        self.log_weights[arm] += self.settings.gamma * rows * reward / (p * self.settings.n_arms)
        top = max(self.log_weights)
        self.log_weights = [w - top for w in self.log_weights]
        for a, w in zip(self.arm_ids, self.log_weights):
            self.policy._weights[a] = math.exp(w)

    def exp3_probabilities(self) -> list[float]:
        """Exp3's selection probabilities for the current weights (river's formula)."""
        gamma, k = self.settings.gamma, self.settings.n_arms
        weights = [self.policy._weights[a] for a in self.arm_ids]
        total = sum(weights)
        return [(1 - gamma) * w / total + gamma / k for w in weights]

    # -- reads ----------------------------------------------------------------------------
    def choose(self, rng: random.Random) -> int:
        """The arm for one request, drawn with ``rng``; the state is left as it was."""
        burn_in = self.settings.burn_in
        counts = self.policy._counts
        waiting = [a for a in self.arm_ids if counts[a] < burn_in]
        if waiting:
            return int(rng.choice(waiting))
        view = copy.copy(self.policy)  # shares the statistics, gets its own randomness
        view._rng = rng
        if self.settings.policy == "thompson":
            view._rewards = {a: _drawing_with(d, rng) for a, d in self.policy._rewards.items()}
        return int(view._pull(self.arm_ids))

    def arms(self) -> list[dict]:
        """What each arm has learned: rewarded rows (pulls), feedbacks and mean reward."""
        return [
            {
                "arm": a,
                "pulls": float(self.policy._counts[a]),
                "feedbacks": self.feedbacks[a],
                "mean_reward": float(self.means[a].get()),
            }
            for a in self.arm_ids
        ]

    def figures(self) -> dict[str, float]:
        """Totals, by name."""
        figures = {"observations": float(self.observations), "feedbacks": float(sum(self.feedbacks))}
        if self.settings.policy == "epsilon_greedy":
            figures["epsilon"] = float(self.policy.current_epsilon)
        return figures

    # -- checkpoints ----------------------------------------------------------------------
    def snapshot(self) -> bytes:
        return dill.dumps(self)

    @staticmethod
    def restore(blob: bytes) -> "RouterState":
        return dill.loads(blob)


def _drawing_with(distribution: proba.base.Distribution, rng: random.Random) -> proba.base.Distribution:
    view = copy.copy(distribution)
    view._rng = rng
    return view
