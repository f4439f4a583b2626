"""Progressive validation: score each example with the current model, then learn from it.

The metrics and the scoring rule are exactly those of :func:`river.evaluate.progressive_val_score`,
so a served model's published figures equal river's own evaluation of the same ordered stream.

Examples
--------
>>> from river import linear_model, preprocessing
>>> model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
>>> score = ProgressiveScore("classifier")
>>> for x, y in [({"a": 1.0}, True), ({"a": -1.0}, False), ({"a": 2.0}, True)]:
...     _ = score.update(model, x, y)
...     model.learn_one(x, y)
>>> sorted(score.values())
['accuracy', 'cross_entropy', 'macro_f1']

"""

from __future__ import annotations

import functools
import math
import re

from river import metrics

from ..river_kinds import is_anomaly_detector, is_classifier


def metrics_for(task: str) -> metrics.base.Metrics:
    """The progressive metrics reported for a task kind."""
    if task == "classifier":
        return metrics.Accuracy() + metrics.CrossEntropy() + metrics.MacroF1()
    if task == "regressor":
        return metrics.MAE() + metrics.RMSE() + metrics.R2()
    if task == "anomaly":
        return metrics.base.Metrics([metrics.ROCAUC()])
    raise ValueError(f"unknown task {task!r}")


def metric_key(metric: metrics.base.Metric) -> str:
    """``CrossEntropy`` -> ``cross_entropy``: the name used in metrics, tags and status."""
    return _snake_case(type(metric).__name__)


@functools.lru_cache(maxsize=256)
def _snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


class ProgressiveScore:
    """Running progressive metrics of one model, updated before each ``learn_one``.

    Parameters
    ----------
    task
        ``"classifier"``, ``"regressor"`` or ``"anomaly"``.

    """

    def __init__(self, task: str):
        self.task = task
        self.metric = metrics_for(task)
        self.count = 0

    def update(self, model, x: dict, y):
        """Score ``model`` on ``(x, y)`` the way river's progressive validation does; returns what it predicted."""
        # Which method scores is read once per model object: the checks walk the pipeline.
        scoring = self.__dict__.get("_scoring")
        if scoring is None or scoring[0] is not model:
            scoring = self._scoring = (model, self._scoring_method(model))
        y_pred = getattr(model, scoring[1])(x)
        self.count += 1
        if y_pred != {} and y_pred is not None:
            self.metric.update(y_true=y, y_pred=y_pred)
        return y_pred

    def _scoring_method(self, model) -> str:
        if self.task == "anomaly" or is_anomaly_detector(model):
            return "score_one"
        if is_classifier(model) and not self.metric.requires_labels:
            return "predict_proba_one"
        return "predict_one"

    def __getstate__(self) -> dict:
        # A checkpoint holds the figures, not which model was scored last.
        return {k: v for k, v in self.__dict__.items() if k != "_scoring"}

    def values(self) -> dict[str, float]:
        """Current values by metric name; metrics with no finite value yet are left out."""
        out = {}
        for m in self.metric:
            value = m.get()
            if isinstance(value, (int, float)) and math.isfinite(value):
                out[metric_key(m)] = float(value)
        return out
