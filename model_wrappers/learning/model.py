"""A river pipeline as a state machine driven by ``learn`` and ``promote`` events.

Besides the pipeline that serves (the *champion*) and its progressive metrics, a state may
watch the champion's errors for drift (:mod:`.drift`) and carry challenger pipelines that learn
from the same rows without serving (:mod:`.challengers`); both change only through events, in
log order, so every replica agrees on when a drift was flagged and who serves.

Examples
--------
>>> from river import linear_model, preprocessing
>>> state = ModelState(preprocessing.StandardScaler() | linear_model.LinearRegression(), "regressor")
>>> state.apply({"type": "learn", "rows": [{"x": 1.0}, {"x": 2.0}], "truth": [2.0, 4.0]})
>>> state.learned
2
>>> names, values = state.predict([{"x": 3.0}])
>>> names
['prediction']

"""

from __future__ import annotations

import collections
import functools
import importlib.util
import logging
from typing import Any, Sequence

import dill

from ..artifact import ArtifactError
from ..checks import finite, is_number
from ..errors import InvalidInput
from .applied import first_application
from .challengers import Contender, PromotionRule, best_of, mean_of_last, row_error
from .drift import HISTORY, DriftSettings, DriftWatch
from .linear_table import LinearTable
from .progressive import ProgressiveScore

MAX_TRUTH = 1e100  # the largest regression truth taken (its square stays far from overflow)
MANY_FROM = 32  # rows from which a batch is answered at once where the pipeline allows it (payload.ARRAY_FROM)
logger = logging.getLogger(__name__)
_HAS_PANDAS = importlib.util.find_spec("pandas") is not None
OUTPUT_NAMES = {"regressor": ["prediction"], "anomaly": ["score"]}


def check_fits(pipeline: Any, task: str, what: str) -> None:
    """Refuse a pipeline that cannot do ``task`` (say, a dict, or a regressor in a folder edited to say classifier).

    Checked when a component loads, from what the pipeline's last step is: a component that
    loaded it would report ready and then fail to learn every feedback it acknowledged.
    """
    from ..river_kinds import is_anomaly_detector, is_classifier, is_regressor

    fits = {"classifier": is_classifier, "regressor": is_regressor, "anomaly": is_anomaly_detector}[task]
    if not fits(pipeline) or not callable(getattr(pipeline, "learn_one", None)):
        raise ArtifactError(
            f"{what} is a {type(pipeline).__name__}, which is not a river {task} (its metadata says "
            f"task {task!r}): export the pipeline again with the task it performs"
        )


def label_key(value: Any) -> Any:
    """Labels compare by value and, failing that, by text ("1" matches 1, "True" matches True)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


class ModelState:
    """One river pipeline, its progressive metrics and the classes it has seen.

    Parameters
    ----------
    pipeline
        The river estimator; it is only ever changed by :meth:`apply`.
    task
        ``"classifier"``, ``"regressor"`` or ``"anomaly"``.
    classes
        Declared class labels (classifiers). Empty means labels are learned as they come.
    name
        The champion's name (in status, tags and promotion events).
    drift
        How the champion's errors are watched for drift; None watches nothing.
    challengers
        Challenger name -> river pipeline, learning from every row without serving.
    rule
        When a challenger takes over by itself (needed with challengers).

    """

    def __init__(self, pipeline: Any, task: str, classes: Sequence[Any] = (), *, name: str = "champion",
                 drift: DriftSettings | None = None, challengers: dict[str, Any] | None = None,
                 rule: PromotionRule | None = None):
        self.pipeline = pipeline
        self.task = task
        self.declared = tuple(classes)
        self.classes: list[Any] = list(classes)
        self.score = ProgressiveScore(task)
        self.learned = 0
        self.name = name
        self.drift = DriftWatch(drift) if drift is not None else None
        # Reset needs the pipeline as the folder gave it: kept (pickled) only when it can be asked for.
        self.origin = dill.dumps(pipeline) if drift is not None and drift.reaction == "reset" else None
        if challengers and rule is None:
            raise ValueError("challengers need a promotion rule")
        self.rule = rule if challengers else None
        self.challengers = {n: Contender(p, task, rule.window) for n, p in (challengers or {}).items()}
        self.errors: collections.deque = collections.deque(maxlen=rule.window if challengers else 1)
        self.since_change = 0
        self.trial_until: int | None = None
        self.promotions = 0
        self.changes: collections.deque = collections.deque(maxlen=HISTORY)

    # -- events ---------------------------------------------------------------------------
    def check_truth(self, values: list, n_rows: int) -> list:
        """Validate and normalise the truth of a feedback before it becomes an event."""
        if len(values) != n_rows:
            raise InvalidInput(f"truth has {len(values)} values but the feedback has {n_rows} rows")
        return [self._check_one(i, v) for i, v in enumerate(values)]

    def _check_one(self, i: int, value: Any) -> Any:
        if self.task == "regressor":
            if not is_number(value) or not finite(value):
                raise InvalidInput(f"truth row {i}: a regressor needs a finite number, got {value!r}")
            if abs(value) > MAX_TRUTH:
                # Squared errors of larger values overflow in learning and in the metrics.
                raise InvalidInput(f"truth row {i}: a regressor's truth must lie within ±{MAX_TRUTH:g}, got {value!r}")
            return value
        if self.task == "anomaly":
            if value not in (0, 1, True, False):
                raise InvalidInput(f"truth row {i}: an anomaly label must be 0/1 or true/false, got {value!r}")
            return bool(value)
        if isinstance(value, float):
            if not value.is_integer():
                raise InvalidInput(f"truth row {i}: expected a class label, got the number {value}")
            value = int(value)
        if not isinstance(value, (str, int, bool)):
            raise InvalidInput(f"truth row {i}: expected a class label, got {value!r}")
        if not self.declared:
            return value
        for known in self.declared:
            if value == known and type(value) is type(known):
                return known
        matches = [k for k in self.declared if label_key(k) == label_key(value)]
        if len(matches) == 1:
            return matches[0]
        raise InvalidInput(f"truth row {i}: unknown class {value!r}; this model's classes are {list(self.declared)}")

    def apply(self, event: dict, position: int | None = None) -> None:
        """Apply one event from the log (at ``position``). Events are validated before they are logged.

        A copy of a feedback already applied (same ``id``) changes nothing.
        """
        kind = event.get("type")
        if kind not in ("learn", "promote"):
            raise ValueError(f"ModelState cannot apply a {kind!r} event")
        if not first_application(self, event, position):
            return
        self._figures = None
        if kind == "promote":
            self._promote_by_command(event, position)
            return
        truth = event.get("truth")
        # getattr: checkpoints written before drift and challengers existed have neither.
        watch, challengers = getattr(self, "drift", None), getattr(self, "challengers", None)
        for i, x in enumerate(event["rows"]):
            y = truth[i] if truth is not None else None
            if self.task == "anomaly":
                y_pred = self.score.update(self.pipeline, x, y) if y is not None else None
                if watch is not None and y_pred is None:
                    y_pred = self.pipeline.score_one(x)
                self.pipeline.learn_one(x)
                error = float(y_pred) if y_pred is not None else None
            else:
                y_pred = self.score.update(self.pipeline, x, y)
                self.pipeline.learn_one(x, y)
                if self.task == "classifier" and y not in self.classes:
                    self.classes.append(y)
                error = row_error(self.task, y_pred, y) if watch is not None or challengers else None
            self.learned += 1
            if challengers:
                if error is not None:
                    self.errors.append(error)
                for contender in challengers.values():
                    contender.learn(x, y)
                self.since_change += 1
            if watch is not None and error is not None and watch.update(error, self.learned, position):
                self._react_to_drift(position)
            if challengers and self.trial_until is not None and self.learned >= self.trial_until:
                self._end_trial(position)
        if challengers:
            self._promote_by_rule(position)

    # -- changes of champion ------------------------------------------------------------------
    def _react_to_drift(self, position: int | None) -> None:
        reaction = self.drift.settings.reaction
        if reaction == "reset":
            self.pipeline = dill.loads(self.origin)
            self.errors.clear()
            self.since_change = 0
            self._note("reset", position, f"{self.name} restarted from the model folder's pipeline after drift")
            self.drift.restart()
        elif reaction == "challenger" and self.trial_until is None:
            # Judged on the rows after the drift: before it, every pipeline fitted the old concept.
            self.trial_until = self.learned + self.rule.trial

    def _end_trial(self, position: int | None) -> None:
        self.trial_until = None
        rows = self.rule.trial
        champion = mean_of_last(self.errors, rows)
        best, best_error = best_of(self.challengers, rows)
        if best is not None and (champion is None or best_error < champion):
            self._swap(best, position, f"after drift: error {best_error:.4g} against {_shown(champion)} over {rows} rows")
        else:
            self._note("kept", position, f"after drift no challenger erred less than {self.name} "
                                         f"over {rows} rows ({_shown(champion)})")

    def _promote_by_rule(self, position: int | None) -> None:
        rule = self.rule
        if rule.promote_after == 0 or self.since_change < rule.promote_after:
            return
        champion = mean_of_last(self.errors, rule.window)
        best, best_error = best_of(self.challengers, rule.window)
        if best is not None and champion is not None and rule.better(best_error, champion):
            self._swap(best, position, f"by rule: recent error {best_error:.4g} against {champion:.4g}")

    def _promote_by_command(self, event: dict, position: int | None) -> None:
        name = event.get("candidate")
        if name in (getattr(self, "challengers", None) or {}):
            self._swap(name, position, "by command")
        else:
            self._note("refused", position, f"no challenger named {name!r} to promote")

    def _swap(self, name: str, position: int | None, why: str) -> None:
        promoted, old = self.challengers.pop(name), self.name
        # The demoted champion keeps its recent errors; its progressive metrics start now.
        demoted = Contender(self.pipeline, self.task, self.rule.window)
        demoted.errors, demoted.learned = self.errors, self.learned
        self.challengers[old] = demoted
        self.pipeline, self.errors, self.name = promoted.pipeline, promoted.errors, name
        self.since_change = 0
        self.trial_until = None
        self._many = None  # the new champion's batch path is checked on its own first batch
        self.promotions += 1
        self._note("promote", position, f"{name} serves {why}; {old} is a challenger")
        if self.drift is not None:
            self.drift.restart()

    def _note(self, kind: str, position: int | None, detail: str) -> None:
        self.changes.append({"position": position, "learned": self.learned, "kind": kind, "detail": detail})

    # -- reads ----------------------------------------------------------------------------
    def predict(self, rows: Sequence[dict]) -> tuple[list[str], list[list]]:
        """Output column names and one output row per input row."""
        if self.task == "regressor":
            return OUTPUT_NAMES["regressor"], [[float(self.pipeline.predict_one(x) or 0.0)] for x in rows]
        if self.task == "anomaly":
            return OUTPUT_NAMES["anomaly"], [[float(self.pipeline.score_one(x))] for x in rows]
        return self._per_row_output(self._probas_one(rows))

    def predict_table(self, names: list[str], table: list[list], array=None) -> tuple[list[str], list[list]]:
        """:meth:`predict` for rows given as lists of finite numbers, one per name in ``names``.

        ``array`` is the same table as a float array, when the caller has made one.

        A batch of a few dozen rows or more is answered at once where the pipeline allows it
        (see :meth:`_batch_outputs`), once this state saw that way give the per-row answers on a
        real batch; the rows are then never built as dicts.
        """
        if self.task != "anomaly" and len(table) >= MANY_FROM and getattr(self, "_many", None) is not False:
            many = self._predict_many(names, table, table if array is None else array)
            if many is not None:
                return many
        return self.predict([dict(zip(names, row)) for row in table])

    def _ordered_classes(self, seen) -> list:
        """The model's classes, then any other class a prediction named (sorted, so every replica agrees)."""
        classes = list(self.classes)
        known = set(classes)
        extra = {c for c in seen if c not in known}
        return classes + sorted(extra, key=lambda c: (type(c).__name__, str(c)))

    def _per_row_output(self, probas: list[dict]) -> tuple[list[str], list[list]]:
        classes = self._ordered_classes(c for p in probas for c in p)
        return [str(c) for c in classes], [[float(p.get(c, 0.0)) for c in classes] for p in probas]

    def _probas_one(self, rows: Sequence[dict]) -> list[dict]:
        return [self.pipeline.predict_proba_one(x) for x in rows]

    def _predict_many(self, names: list[str], table: list[list], array) -> tuple[list[str], list[list]] | None:
        """The output of the whole batch at once (read from ``array``); None when it cannot be answered so."""
        found = self._batch_outputs(names, array)
        if found is None:
            return None
        import numpy as np

        columns, raw = found
        if self.task == "regressor":
            out_names, values = OUTPUT_NAMES["regressor"], raw
        else:
            classes = self._ordered_classes(columns)
            out_names, values = [str(c) for c in classes], raw
            if columns != classes:
                at = {c: i for i, c in enumerate(columns)}
                if len(at) < len(classes):  # a class never predicted: the zero column appended last
                    raw = np.hstack([raw, np.zeros((len(raw), 1))])
                values = raw[:, [at.get(c, -1) for c in classes]]
        out = values.tolist()
        if not getattr(self, "_many", None):  # checkpoints from before this path have no _many
            # First batch: every process answers batches the same way once they agree.
            one = self.predict([dict(zip(names, row)) for row in table])
            self._many = _same_output((out_names, out), one)
            if not self._many:
                logger.info("the batch path disagrees with the per-row answers for this pipeline: per row")
                return one
        return out_names, out

    def _batch_outputs(self, names: list[str], table):
        """``(columns, array)`` for the whole batch (lists of numbers, or a float array), or None.

        A linear pipeline is computed from its weights (:class:`LinearTable`), else a classifier
        goes through river's ``predict_proba_many`` where it has one.
        """
        linear = LinearTable.of(self.pipeline)
        if linear is not None:
            values = linear.outputs(names, table)
            return None if values is None else (linear.columns, values)
        if self.task != "classifier":
            return None
        frame = self._predict_proba_many(names, table)
        return None if frame is None else (list(frame.columns), frame.to_numpy(dtype=float))

    def _predict_proba_many(self, names: list[str], table: list[list]):
        """The pipeline's ``predict_proba_many`` frame; None when this batch cannot take it.

        The batch path takes a pandas DataFrame; river 0.24 and later do not install pandas,
        and without it every batch goes row by row (the same answers).
        """
        if not _HAS_PANDAS:
            return None
        import numpy as np
        import pandas as pd

        try:
            frame = pd.DataFrame(np.asarray(table, dtype=float), columns=_frame_columns(tuple(names)), copy=False)
            return self.pipeline.predict_proba_many(frame)
        except (AttributeError, NotImplementedError):
            self._many = False  # no batch path in this pipeline
            return None
        except (TypeError, ValueError, KeyError):
            return None  # e.g. a step that expects other than numbers: this batch goes row by row

    def figures(self) -> dict[str, float]:
        """Progressive metrics and counters, by name (computed once per change of the state)."""
        # getattr: checkpoints written before this cache existed have no _figures.
        cached = getattr(self, "_figures", None)
        if cached is None:
            cached = {**self.score.values(), "learned": float(self.learned)}
            watch = getattr(self, "drift", None)
            if watch is not None:
                cached.update(watch.figures())
            if getattr(self, "challengers", None):
                cached["promotions"] = float(self.promotions)
            self._figures = cached
        return cached

    def reply_tags(self) -> dict:
        """Tags every reply carries about drift and who serves."""
        tags = {}
        watch = getattr(self, "drift", None)
        if watch is not None:
            tags["seldon_river_drift_detections"] = watch.detections
            tags["seldon_river_drift_warning"] = watch.in_warning
        if getattr(self, "challengers", None):
            tags["seldon_river_champion"] = self.name
        return tags

    def drift_status(self) -> dict | None:
        """The drift watch and every change of champion, for ``/health/status`` (None when unwatched)."""
        watch = getattr(self, "drift", None)
        changes = list(getattr(self, "changes", ()))
        if watch is None:
            return None
        out = watch.status()
        out["events"] = sorted(out["events"] + changes, key=lambda e: (e["learned"], e["position"] or 0))[-HISTORY:]
        return out

    def challenger_status(self) -> dict | None:
        """Champion, challengers and the promotion rule (None without challengers)."""
        if not getattr(self, "challengers", None):
            return None
        rule = self.rule
        champion = mean_of_last(self.errors, rule.window)
        return {
            "champion": self.name,
            "champion_recent_error": champion,
            "candidates": {name: c.figures() for name, c in self.challengers.items()},
            "promotions": self.promotions,
            "since_change": self.since_change,
            "promote_after": rule.promote_after, "promote_margin": rule.promote_margin, "window": rule.window,
            "trial": rule.trial, "in_trial_until": self.trial_until,
            "changes": list(self.changes),
        }

    # -- checkpoints ----------------------------------------------------------------------
    def snapshot(self) -> bytes:
        return dill.dumps(self)

    @staticmethod
    def restore(blob: bytes) -> "ModelState":
        return dill.loads(blob)


@functools.lru_cache(maxsize=64)
def _frame_columns(names: tuple[str, ...]):
    """The column index of a batch's frame, built once per feature list (pandas makes it slowly)."""
    import pandas as pd

    return pd.Index(names)


def _shown(error: float | None) -> str:
    return "none yet" if error is None else f"{error:.4g}"


def _same_output(batch: tuple[list[str], list[list]], one: tuple[list[str], list[list]],
                 tolerance: float = 1e-9) -> bool:
    """Whether two outputs agree: the same column names, and values within ``tolerance``."""
    return batch[0] == one[0] and len(batch[1]) == len(one[1]) and all(
        len(a) == len(b) and all(abs(u - v) <= tolerance for u, v in zip(a, b)) for a, b in zip(batch[1], one[1])
    )
