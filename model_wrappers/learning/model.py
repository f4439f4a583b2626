"""A river pipeline as a state machine driven by ``learn`` events.

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

import importlib.util
import logging
import math
from typing import Any, Sequence

import dill

from ..artifact import ArtifactError
from ..errors import InvalidInput
from .applied import first_application
from .progressive import ProgressiveScore

MANY_FROM = 32  # rows from which a batch tries the pipeline's predict_proba_many
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

    """

    def __init__(self, pipeline: Any, task: str, classes: Sequence[Any] = ()):
        self.pipeline = pipeline
        self.task = task
        self.declared = tuple(classes)
        self.classes: list[Any] = list(classes)
        self.score = ProgressiveScore(task)
        self.learned = 0

    # -- events ---------------------------------------------------------------------------
    def check_truth(self, values: list, n_rows: int) -> list:
        """Validate and normalise the truth of a feedback before it becomes an event."""
        if len(values) != n_rows:
            raise InvalidInput(f"truth has {len(values)} values but the feedback has {n_rows} rows")
        return [self._check_one(i, v) for i, v in enumerate(values)]

    def _check_one(self, i: int, value: Any) -> Any:
        if self.task == "regressor":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidInput(f"truth row {i}: a regressor needs a finite number, got {value!r}")
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
        if event.get("type") != "learn":
            raise ValueError(f"ModelState cannot apply a {event.get('type')!r} event")
        if not first_application(self, event, position):
            return
        truth = event.get("truth")
        self._figures = None
        for i, x in enumerate(event["rows"]):
            y = truth[i] if truth is not None else None
            if self.task == "anomaly":
                if y is not None:
                    self.score.update(self.pipeline, x, y)
                self.pipeline.learn_one(x)
            else:
                self.score.update(self.pipeline, x, y)
                self.pipeline.learn_one(x, y)
                if self.task == "classifier" and y not in self.classes:
                    self.classes.append(y)
            self.learned += 1

    # -- reads ----------------------------------------------------------------------------
    def predict(self, rows: list[dict], table: list[list] | None = None) -> tuple[list[str], list[list]]:
        """Output column names and one output row per input row.

        ``table`` may give the same rows as lists of numbers in the rows' key order (it saves
        rebuilding them for a batch prediction).
        """
        if self.task == "regressor":
            return OUTPUT_NAMES["regressor"], [[float(self.pipeline.predict_one(x) or 0.0)] for x in rows]
        if self.task == "anomaly":
            return OUTPUT_NAMES["anomaly"], [[float(self.pipeline.score_one(x))] for x in rows]
        probas = self._predict_probas(rows, table)
        classes = list(self.classes)
        extra = {c for p in probas for c in p if c not in classes}
        classes += sorted(extra, key=lambda c: (type(c).__name__, str(c)))
        return [str(c) for c in classes], [[float(p.get(c, 0.0)) for c in classes] for p in probas]

    def _predict_probas(self, rows: list[dict], table: list[list] | None) -> list[dict]:
        # river's vectorised path pays off from a few dozen rows where the pipeline offers one
        # (StandardScaler | LogisticRegression: 100 rows in ~0.3 ms instead of ~0.5 ms). It is
        # used only once it gave the same answers as the per-row path on a real batch.
        many = getattr(self, "_many", None)  # checkpoints from before this path have none
        batch = self._predict_proba_many(rows, table) if len(rows) >= MANY_FROM and many is not False else None
        if batch is not None and many:
            return batch
        one = [self.pipeline.predict_proba_one(x) for x in rows]
        if batch is not None:
            # First batch: every process answers batches the same way once they agree.
            self._many = _same_probas(batch, one)
            if self._many:
                return batch
            logger.info("predict_proba_many disagrees with predict_proba_one for this pipeline: per row")
        return one

    def _predict_proba_many(self, rows: list[dict], table: list[list] | None) -> list[dict] | None:
        """Class probabilities through the pipeline's batch path; None when this batch cannot take it.

        The batch path takes a pandas DataFrame; river 0.24 and later do not install pandas,
        and without it every batch goes row by row (the same answers).
        """
        if not _HAS_PANDAS:
            return None
        import numpy as np
        import pandas as pd

        columns = list(rows[0])
        try:
            values = table if table is not None else [[x[c] for c in columns] for x in rows]
            frame = pd.DataFrame(np.array(values, dtype=float), columns=columns)
            out = self.pipeline.predict_proba_many(frame)
        except (AttributeError, NotImplementedError):
            self._many = False  # no batch path in this pipeline
            return None
        except (TypeError, ValueError, KeyError):
            return None  # e.g. category features: this batch goes row by row
        classes = list(out.columns)
        return [dict(zip(classes, p)) for p in out.to_numpy().tolist()]

    def figures(self) -> dict[str, float]:
        """Progressive metrics and counters, by name (computed once per change of the state)."""
        # getattr: checkpoints written before this cache existed have no _figures.
        cached = getattr(self, "_figures", None)
        if cached is None:
            cached = self._figures = {**self.score.values(), "learned": float(self.learned)}
        return cached

    # -- checkpoints ----------------------------------------------------------------------
    def snapshot(self) -> bytes:
        return dill.dumps(self)

    @staticmethod
    def restore(blob: bytes) -> "ModelState":
        return dill.loads(blob)


def _same_probas(batch: list[dict], one: list[dict], tolerance: float = 1e-9) -> bool:
    """Whether two lists of class probabilities agree (same classes, values within ``tolerance``)."""
    return all(
        a.keys() == b.keys() and all(abs(a[c] - b[c]) <= tolerance for c in a) for a, b in zip(batch, one)
    )
