"""Champion and challengers: pipelines that learn from the same feedback without serving.

A model may carry challenger pipelines. Every learned row is first predicted by each of them
(scored like the champion: progressive metrics since it joined, and its error over the last
``window`` rows), then learned by each of them, in log order like everything learned, so every
replica holds the same challengers with the same figures.

A challenger takes over serving (is *promoted*; the champion it replaces becomes a challenger):

- by rule: once ``promote_after`` rows have been learned since the last change of champion, the
  challenger whose mean error over its last ``window`` rows is lowest is promoted when that error
  is below the champion's by more than ``promote_margin`` (a fraction: 0.05 means 5 % lower);
- after a drift, when the model's drift reaction is ``challenger`` (see :mod:`.drift`): once
  ``trial`` more rows have been learned, the challenger that erred least on them, if it erred
  less than the champion (before the drift every pipeline fitted the old concept, so only the
  rows after it tell which adapts);
- by command: a ``promote`` event in the learning log (``seldon-river promote``).

Examples
--------
>>> rule = PromotionRule("regressor", promote_after=10, promote_margin=0.05, window=10, trial=5)
>>> rule.better(0.5, than=1.0), rule.better(0.97, than=1.0)
(True, False)

"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
from typing import Any

from .progressive import ProgressiveScore


@dataclasses.dataclass(frozen=True)
class PromotionRule:
    """When a challenger's recent error is low enough to take over serving.

    Parameters
    ----------
    task
        ``"classifier"`` or ``"regressor"``: the error is the rate of wrong classes, or the
        absolute error.
    promote_after
        Rows learned since the last change of champion before the rule may promote; 0 leaves
        promotion to drift and to commands.
    promote_margin
        How much lower (a fraction of the champion's) a challenger's recent error must be.
    window
        Rows over which recent errors are averaged.
    trial
        Rows after a drift on which challengers and champion are compared, when the drift
        reaction is ``challenger`` (at most ``window``).

    """

    task: str
    promote_after: int = 1000
    promote_margin: float = 0.05
    window: int = 500
    trial: int = 100

    def __post_init__(self):
        if self.task not in ("classifier", "regressor"):
            raise ValueError(f"challengers are compared on their errors, which a {self.task} has not: "
                             "a classifier or a regressor may carry challengers")
        if int(self.promote_after) < 0:
            raise ValueError(f"promote_after must be 0 or more rows, got {self.promote_after}")
        if not 0 <= float(self.promote_margin) < 1:
            raise ValueError(f"promote_margin must be a fraction from 0 up to 1, got {self.promote_margin}")
        if int(self.window) < 1:
            raise ValueError(f"promote_window must be at least 1 row, got {self.window}")
        if not 1 <= int(self.trial) <= int(self.window):
            raise ValueError(f"drift_trial must be from 1 up to promote_window ({self.window}) rows, got {self.trial}")

    def better(self, error: float, than: float) -> bool:
        """Whether a recent ``error`` beats the champion's by the margin."""
        return error < than * (1.0 - self.promote_margin)


class Contender:
    """One pipeline that learns from every row: its progressive score and its recent errors.

    Parameters
    ----------
    pipeline
        The river estimator.
    task
        ``"classifier"`` or ``"regressor"``.
    window
        Rows of recent errors kept.

    """

    def __init__(self, pipeline: Any, task: str, window: int):
        self.pipeline = pipeline
        self.score = ProgressiveScore(task)
        self.errors: collections.deque = collections.deque(maxlen=int(window))
        self.learned = 0

    def learn(self, x: dict, y: Any) -> None:
        error = row_error(self.score.task, self.score.update(self.pipeline, x, y), y)
        if error is not None:
            self.errors.append(error)
        self.pipeline.learn_one(x, y)
        self.learned += 1

    def recent_error(self) -> float | None:
        """Mean error over the kept rows (None before the first)."""
        return mean_of_last(self.errors, len(self.errors))

    def figures(self) -> dict[str, float]:
        out = {**self.score.values(), "learned": float(self.learned)}
        recent = self.recent_error()
        if recent is not None:
            out["recent_error"] = recent
        return out


def mean_of_last(errors: collections.deque, rows: int) -> float | None:
    """Mean of the newest ``rows`` errors (fewer when fewer are kept; None when none are)."""
    if not errors:
        return None
    last = list(itertools.islice(reversed(errors), rows))
    return math.fsum(last) / len(last)


def best_of(contenders: dict[str, "Contender"], rows: int) -> tuple[str | None, float | None]:
    """The contender with the lowest mean error over its newest ``rows`` rows, and that error."""
    best, best_error = None, None
    for name, contender in contenders.items():
        error = mean_of_last(contender.errors, rows)
        if error is not None and (best_error is None or error < best_error):
            best, best_error = name, error
    return best, best_error


def row_error(task: str, y_pred: Any, y: Any) -> float | None:
    """The error of one prediction: 0/1 for a class, the absolute error for a number.

    ``y_pred`` is what :meth:`ProgressiveScore.update` scored: class probabilities or a class for
    a classifier (the most probable class counts), a number for a regressor. None when the model
    could not predict yet, or there is no truth.
    """
    if y is None or y_pred is None or y_pred == {}:
        return None
    if task == "classifier":
        predicted = max(y_pred, key=y_pred.get) if isinstance(y_pred, dict) else y_pred
        return 0.0 if predicted == y else 1.0
    return abs(float(y) - float(y_pred))
