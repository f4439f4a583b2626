"""A linear pipeline answered for a whole table at once, from the weights it has learned.

River's batch path (``predict_proba_many``) goes through pandas: for ``StandardScaler |
LogisticRegression`` and 100 rows it costs about ten times the arithmetic, and river 0.24 and
later do not install pandas at all. The scaler's means and variances and the model's weights are
plain numbers that learning updates in place, so a table of rows can be answered with a few numpy
operations on them, read afresh at every call.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from river import compose, linear_model, optim, preprocessing

# Where river's sigmoid stops computing and answers 0 or 1.
SIGMOID_LIMIT = 30.0


class LinearTable:
    """``[StandardScaler |] LogisticRegression`` or ``[StandardScaler |] LinearRegression`` on a table.

    The answers are river's own per-row ones (``predict_proba_one``, ``predict_one``) up to the
    order in which the products are summed: a feature of variance zero scales to 0, a logit
    beyond ±30 gives a probability of exactly 0 or 1, as river does one row at a time.

    Parameters
    ----------
    scaler
        The pipeline's ``StandardScaler``, or None when the model reads the features as they come.
    linear
        The pipeline's ``LogisticRegression`` or ``LinearRegression``.

    Examples
    --------
    >>> from river import datasets, linear_model, preprocessing
    >>> model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    >>> data = list(datasets.Phishing().take(300))
    >>> for x, y in data:
    ...     model.learn_one(x, y)
    >>> names = list(data[0][0])
    >>> table = [[x[n] for n in names] for x, _ in data[:3]]
    >>> at_once = LinearTable.of(model).outputs(names, table)
    >>> one_by_one = [model.predict_proba_one(x) for x, _ in data[:3]]
    >>> [[round(p, 12) for p in row] for row in at_once.tolist()] == [
    ...     [round(p[c], 12) for c in LinearTable.of(model).columns] for p in one_by_one]
    True

    """

    def __init__(self, scaler: preprocessing.StandardScaler | None, linear):
        self.scaler = scaler
        self.linear = linear
        self.logistic = isinstance(linear, linear_model.LogisticRegression)
        # The output columns: LogisticRegression's classes, or LinearRegression's one prediction.
        self.columns = [False, True] if self.logistic else ["prediction"]

    @classmethod
    def of(cls, pipeline) -> LinearTable | None:
        """The table form of ``pipeline``, or None when it is not one of these shapes.

        Exact types only: a subclass may predict otherwise.
        """
        if type(pipeline) is compose.Pipeline:
            if compose.Pipeline._LEARN_UNSUPERVISED_DURING_PREDICT:
                return None  # the scaler would learn from every row it predicts
            steps = list(pipeline.steps.values())
        else:
            steps = [pipeline]
        scaler = steps[0] if len(steps) == 2 else None
        linear = steps[-1]
        if len(steps) > 2 or (scaler is not None and not _plain_scaler(scaler)):
            return None
        if type(linear) is linear_model.LogisticRegression:
            fits = type(linear.loss) is optim.losses.Log
        elif type(linear) is linear_model.LinearRegression:
            fits = type(linear.loss).mean_func is optim.losses.RegressionLoss.mean_func
        else:
            return None
        return cls(scaler, linear) if fits else None

    def outputs(self, names: Sequence[str], table) -> np.ndarray | None:
        """One row of outputs (in :attr:`columns` order) per row of ``table``, whose columns are ``names``.

        ``table`` holds finite numbers: lists of them, or a float array. None when the model has
        not learned a weight for every name (river would then make one up as it reads it), or
        when a value overflows on the way (river's answer would not be a number either).
        """
        weights = self.linear._weights
        if not all(name in weights for name in names):
            return None
        # An overflow is looked for once, in the logits, rather than warned about in the log.
        with np.errstate(over="ignore", invalid="ignore"):
            x = np.array(table, dtype=float)
            scaler = self.scaler
            if scaler is None:
                weight = np.array([weights[name] for name in names], dtype=float)
            else:
                # .get: reading a defaultdict by [] would add the names it lacks to the scaler's state.
                means, variances = scaler.means, scaler.vars
                mean, variance, weight = np.array(
                    [(means.get(name, 0.0), variances.get(name, 0.0), weights[name]) for name in names], dtype=float).T
                x -= mean
                if scaler.with_std:
                    if variance.min() < 0:
                        return None
                    scale = np.sqrt(variance)
                    scale[variance == 0] = np.inf  # river scales a feature of no variance to 0
                    x /= scale
            z = x @ weight + self.linear.intercept
        if not np.isfinite(z).all():
            return None
        if not self.logistic:
            return z[:, None]
        out = np.empty((len(z), 2))
        p = out[:, 1]
        np.divide(1.0, 1.0 + np.exp(-np.clip(z, -SIGMOID_LIMIT, SIGMOID_LIMIT)), out=p)
        p[z < -SIGMOID_LIMIT] = 0.0
        p[z > SIGMOID_LIMIT] = 1.0
        np.subtract(1.0, p, out=out[:, 0])
        return out


def _plain_scaler(step) -> bool:
    """A StandardScaler over all time (river 0.26 can also scale over a rolling window)."""
    return type(step) is preprocessing.StandardScaler and getattr(step, "window_size", None) is None
