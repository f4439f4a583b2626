"""The outlier detector's learned state: a :mod:`river.anomaly` filter driven by ``learn`` events.

A ``learn`` event carries the rows of one request. :meth:`DetectorState.apply` decides, row by
row and in log order, which rows are normal, so every process that applies the log makes the same
decisions and holds the same detector:

- The first ``warm_up`` rows are all learned; nothing is flagged before that.
- After it, a row whose score reaches the threshold is an outlier and is not learned (river's
  ``protect_anomaly_detector``); the others are learned.
- With a quantile threshold (:class:`river.anomaly.QuantileFilter`) the threshold is the running
  ``quantile`` of the scores of every row seen from the second half of the warm-up on (earlier
  scores come from a detector that has hardly learned anything); with a fixed threshold
  (:class:`river.anomaly.ThresholdFilter`) it is ``threshold``.

:meth:`DetectorState.score` reads the state and changes nothing.

Detectors
---------
``half_space_trees``
    :class:`river.anomaly.HalfSpaceTrees` on standardised features: each feature is centred and
    scaled by its running mean and deviation, then mapped so that -4..+4 deviations span [0, 1],
    the range the trees split. (With a min-max scaler the range is set by the most extreme rows
    seen, so a far-out row lands in the same edge cell as the most extreme normal rows.) Scores
    are in [0, 1]. The trees score 0 until they have learned ``window_size`` rows and the threshold
    is fitted on the second half of the warm-up, so ``warm_up`` must be at least twice
    ``window_size``; unset, ``window_size`` is 250 or half the warm-up, whichever is smaller.
``one_class_svm``
    :class:`river.anomaly.OneClassSVM` on standardised features (parameter ``nu``).

Examples
--------
>>> import random
>>> rng = random.Random(0)
>>> state = DetectorState(DetectorSettings(warm_up=300, window_size=100, quantile=0.99))
>>> for _ in range(10):
...     state.apply({"type": "learn", "rows": [{"a": rng.gauss(0, 1), "b": rng.gauss(0, 1)} for _ in range(50)]})
>>> state.learned >= 300, state.warm
(True, True)
>>> scores, flags = state.score([{"a": 0.1, "b": -0.2}, {"a": 9.0, "b": -9.0}])
>>> flags
[False, True]

"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import dill
from river import anomaly, compose, preprocessing, stats

from ..errors import InvalidInput
from .applied import first_application

DETECTORS = ("half_space_trees", "one_class_svm")
SPREAD = 4.0  # standard deviations on each side that the half-space trees split
SCORE_QUANTILES = (0.5, 0.9, 0.99)
MAX_REPORTED = 5


def to_unit_range(x: dict) -> dict:
    """Map standardised values so that -SPREAD..+SPREAD deviations become 0..1."""
    return {k: (v + SPREAD) / (2 * SPREAD) for k, v in x.items()}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class DetectorSettings:
    """What the detector is made of; validated on creation.

    Parameters
    ----------
    detector
        ``half_space_trees`` or ``one_class_svm``.
    quantile
        Flag rows scoring at or above this running quantile of the scores, in (0, 1). The default
        when neither ``quantile`` nor ``threshold`` is set: 0.99.
    threshold
        Flag rows scoring at or above this fixed value instead.
    warm_up
        Rows learned before any row is flagged.
    n_trees, height, window_size
        Half-space trees: number of trees (default 50: fewer trees give noisier scores, more
        cost linearly more time), their height, rows per mass window (default: 250, or half of
        ``warm_up`` when that is smaller).
    nu
        One-class SVM: the expected share of outliers, in (0, 1).
    seed
        Seeds the trees' random splits (the same in every process).

    """

    detector: str = "half_space_trees"
    quantile: float | None = None
    threshold: float | None = None
    warm_up: int = 500
    n_trees: int = 50
    height: int = 8
    window_size: int | None = None
    nu: float = 0.05
    seed: int = 0

    def __post_init__(self):
        def bad(name, expected):
            raise ValueError(f"{name} must be {expected}, got {getattr(self, name)!r}")

        if self.detector not in DETECTORS:
            bad("detector", "one of " + ", ".join(DETECTORS))
        if self.quantile is not None and self.threshold is not None:
            raise ValueError(
                f"set quantile or threshold, not both (got quantile={self.quantile}, threshold={self.threshold})"
            )
        if self.quantile is None and self.threshold is None:
            object.__setattr__(self, "quantile", 0.99)
        if self.quantile is not None and not (_is_number(self.quantile) and 0 < self.quantile < 1):
            bad("quantile", "a number in (0, 1)")
        if self.threshold is not None and not _is_number(self.threshold):
            bad("threshold", "a finite number")
        if self.window_size is None and isinstance(self.warm_up, int):
            object.__setattr__(self, "window_size", max(1, min(250, self.warm_up // 2)))
        for name in ("warm_up", "n_trees", "height", "window_size", "seed"):
            value = getattr(self, name)
            lowest = 0 if name in ("warm_up", "seed") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
                bad(name, "a positive integer" if lowest else "an integer of at least 0")
        if not (_is_number(self.nu) and 0 < self.nu < 1):
            bad("nu", "a number in (0, 1)")
        if self.detector == "half_space_trees" and self.warm_up < 2 * self.window_size:
            raise ValueError(
                f"warm_up ({self.warm_up}) must be at least twice window_size ({self.window_size}): half-space "
                "trees score every row 0 until they have learned one window, and the threshold is fitted "
                "on the second half of the warm-up"
            )


def make_filter(settings: DetectorSettings) -> anomaly.base.AnomalyFilter:
    """The river anomaly filter (detector with its scaling, and threshold) for ``settings``."""
    if settings.detector == "half_space_trees":
        detector = (
            preprocessing.StandardScaler()
            | compose.FuncTransformer(to_unit_range)
            | anomaly.HalfSpaceTrees(
                n_trees=settings.n_trees, height=settings.height, window_size=settings.window_size, seed=settings.seed
            )
        )
    else:
        detector = preprocessing.StandardScaler() | anomaly.OneClassSVM(nu=settings.nu)
    if settings.quantile is not None:
        return anomaly.QuantileFilter(detector, q=settings.quantile, protect_anomaly_detector=True)
    return anomaly.ThresholdFilter(detector, threshold=settings.threshold, protect_anomaly_detector=True)


class DetectorState:
    """One anomaly filter, the features it learned and counts of what it decided.

    Parameters
    ----------
    settings
        See :class:`DetectorSettings`.

    """

    def __init__(self, settings: DetectorSettings):
        self.settings = settings
        self.filter = make_filter(settings)
        self.features: list[str] | None = None  # fixed by the first learned row
        self.seen = 0  # rows applied
        self.learned = 0  # rows the detector learned
        self.outliers = 0  # rows judged outliers after the warm-up (not learned)
        self.scored = 0  # rows judged after the warm-up
        self.skipped = 0  # rows whose features differ from the learned ones
        self.score_quantiles = {q: stats.Quantile(q) for q in SCORE_QUANTILES}

    @property
    def warm(self) -> bool:
        return self.learned >= self.settings.warm_up

    # -- validation -----------------------------------------------------------------------
    def check(self, rows: list[dict]) -> None:
        """Refuse rows that are not numbers or whose features differ from the learned ones."""
        problems = []
        expected = self.features or sorted(rows[0])
        for i, row in enumerate(rows):
            if sorted(row) != expected:
                missing = sorted(set(expected) - set(row))
                unknown = sorted(set(row) - set(expected))
                what = "learned" if self.features else "first row's"
                problems.append(
                    f"row {i}: features differ from the {what} {expected} (missing {missing}, unknown {unknown})"
                )
                continue
            for name, value in row.items():
                if not _is_number(value):
                    problems.append(f"row {i}, feature {name!r}: expected a finite number, got {value!r}")
        if problems:
            more = len(problems) - MAX_REPORTED
            raise InvalidInput("; ".join(problems[:MAX_REPORTED]) + (f" (and {more} more)" if more > 0 else ""))

    # -- events ---------------------------------------------------------------------------
    def apply(self, event: dict, position: int | None = None) -> None:
        """Apply one ``learn`` event: decide which of its rows are normal and learn those.

        A copy of an event already applied (same ``id``: the same request seen twice) changes nothing.
        """
        if event.get("type") != "learn":
            raise ValueError(f"DetectorState cannot apply a {event.get('type')!r} event")
        if not first_application(self, event, position):
            return
        f = self.filter
        quantile = getattr(f, "quantile", None)
        for x in event["rows"]:
            if self.features is None and all(_is_number(v) for v in x.values()) and x:
                self.features = sorted(x)
            if sorted(x) != self.features or not all(_is_number(v) for v in x.values()):
                self.skipped += 1
                continue
            self.seen += 1
            score = f.score_one(x)
            if not self.warm:
                f.anomaly_detector.learn_one(x)
                self.learned += 1
                if quantile is not None and self.learned > self.settings.warm_up // 2:
                    quantile.update(score)
                continue
            # QuantileFilter.learn_one / ThresholdFilter.learn_one, with the score computed once.
            self.scored += 1
            for q in self.score_quantiles.values():
                q.update(score)
            if f.classify(score):
                self.outliers += 1
            else:
                f.anomaly_detector.learn_one(x)
                self.learned += 1
            if quantile is not None:
                quantile.update(score)

    # -- reads ----------------------------------------------------------------------------
    def score(self, rows: list[dict]) -> tuple[list[float], list[bool]]:
        """Per row: the outlier score, and whether it is flagged (never during the warm-up)."""
        if self.features is None:
            # Nothing learned yet: scoring would only add empty statistics for the features.
            return [0.0] * len(rows), [False] * len(rows)
        scores = [float(self.filter.score_one(x)) for x in rows]
        warm = self.warm
        return scores, [bool(warm and self.filter.classify(s)) for s in scores]

    def threshold(self) -> float | None:
        """The score at and above which rows are flagged, once known."""
        if self.settings.threshold is not None:
            return float(self.settings.threshold)
        value = self.filter.quantile.get()
        return float(value) if value else None

    def figures(self) -> dict[str, float]:
        """Counts, outlier rate and score quantiles (of rows judged after the warm-up), by name."""
        figures = {
            "rows_seen": float(self.seen),
            "rows_learned": float(self.learned),
            "rows_outliers": float(self.outliers),
            "rows_skipped": float(self.skipped),
            "outlier_rate": self.outliers / self.scored if self.scored else 0.0,
            "warm": 1.0 if self.warm else 0.0,
        }
        threshold = self.threshold()
        if threshold is not None:
            figures["outlier_threshold"] = threshold
        if self.scored:
            for q, quantile in self.score_quantiles.items():
                figures[f"outlier_score_p{round(q * 100)}"] = float(quantile.get())
        return figures

    # -- checkpoints ----------------------------------------------------------------------
    def snapshot(self) -> bytes:
        return dill.dumps(self)

    @staticmethod
    def restore(blob: bytes) -> "DetectorState":
        return dill.loads(blob)
