"""What a river estimator does (classify, regress, score anomalies), the same on every supported river.

river 0.23 answers it with ``river.utils.inspect``, which later rivers no longer have; these
checks read the estimator the same way on both. A pipeline does what its last step does; an
anomaly detector is known by its base class's name, as that class moved from ``river.anomaly``
to ``river.base``.

Examples
--------
>>> from river import anomaly, linear_model, preprocessing
>>> is_classifier(preprocessing.StandardScaler() | linear_model.LogisticRegression())
True
>>> is_regressor(preprocessing.StandardScaler() | linear_model.LogisticRegression())
False
>>> is_anomaly_detector(preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees())
True
>>> is_classifier({"not": "a model"})
False

"""

from __future__ import annotations

from typing import Any


def last_step(model: Any) -> Any:
    """The estimator that gives a pipeline's output (``model`` itself when it is no pipeline)."""
    from river import compose

    while isinstance(model, compose.Pipeline) and model.steps:
        model = list(model.steps.values())[-1]
    return model


def is_classifier(model: Any) -> bool:
    from river import base

    return isinstance(last_step(model), base.Classifier)


def is_regressor(model: Any) -> bool:
    from river import base

    return isinstance(last_step(model), base.Regressor)


def is_anomaly_detector(model: Any) -> bool:
    return any(cls.__name__ == "AnomalyDetector" for cls in type(last_step(model)).__mro__)
