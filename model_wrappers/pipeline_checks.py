"""What a pipeline is told at export, checked against what the pipeline is.

A model folder records a task, feature names and class labels beside the pipeline; serving then
trusts them. A task that contradicts the estimator, or classes the estimator can never predict,
make a component that answers wrong columns and refuses every real label, so export refuses them
with a message saying what the pipeline predicts.

Examples
--------
>>> from river import linear_model, naive_bayes
>>> checked_task(linear_model.LogisticRegression(), None)
'classifier'
>>> checked_classes(linear_model.LogisticRegression(), "classifier", ["true", "false"])
(True, False)
>>> checked_classes(linear_model.LogisticRegression(), "classifier", ["yes", "no"])
Traceback (most recent call last):
...
model_wrappers.artifact.ArtifactError: LogisticRegression is a binary classifier: it predicts True and False only, so classes ['yes', 'no'] would never be predicted; export it with classes true,false (or none: they are then inferred), or make it multiclass (e.g. multiclass.OneVsRestClassifier)
>>> checked_classes(naive_bayes.GaussianNB(), "classifier", ["cat", "dog"])
('cat', 'dog')

"""

from __future__ import annotations

import copy
from typing import Any, Iterable, Sequence

from .artifact import TASKS, ArtifactError, Feature, infer_task
from .learning.model import label_key

BINARY_CLASSES = (True, False)


def checked_task(pipeline: Any, task: str | None) -> str:
    """``task``, or the task inferred from the estimator; refused when the two disagree."""
    if task is not None and task not in TASKS:
        raise ArtifactError(f"task must be one of {TASKS}, got {task!r}")
    try:
        inferred = infer_task(pipeline)
    except ArtifactError:
        if task is None:
            raise
        return task  # an estimator river cannot inspect: the caller's word is all there is
    if task is not None and task != inferred:
        raise ArtifactError(
            f"task {task!r} contradicts the pipeline: {_describe(pipeline)} is a {inferred}; "
            f"export it as a {inferred} (or leave the task out: it is inferred)"
        )
    return inferred


def is_binary(pipeline: Any) -> bool:
    """Whether the classifier can only predict ``True``/``False`` (river's ``_multiclass`` is False)."""
    return getattr(pipeline, "_multiclass", True) is False


def known_classes(pipeline: Any, features: Sequence[Feature] = ()) -> list:
    """The labels the pipeline predicts now (none for a multiclass model that has learned nothing)."""
    if is_binary(pipeline):
        return list(BINARY_CLASSES)
    probe = {f.name: (0.0 if f.type == "number" else "") for f in features}
    try:
        # A copy: river models are not supposed to change when predicting, but nothing forces them.
        found = copy.deepcopy(pipeline).predict_proba_one(probe)
    except Exception:  # a pipeline that cannot score an all-zero row tells nothing about its labels
        return []
    return sorted(found, key=lambda c: (type(c).__name__, str(c))) if isinstance(found, dict) else []


def checked_classes(pipeline: Any, task: str, classes: Iterable[Any], features: Sequence[Feature] = ()) -> tuple:
    """Class labels for the model folder: the given ones matched to what the pipeline predicts,
    or the predicted ones when none are given.

    Labels given as text match predicted labels of another type by their text, ignoring case
    (``"True"`` is ``True``, ``"1"`` is ``1``), so a label typed on a command line gets the type
    the model uses.
    """
    given = tuple(classes)
    for c in given:
        if not isinstance(c, (str, int)):  # bool is an int
            raise ArtifactError(f"class labels must be str, int or bool, got {c!r}")
    if task != "classifier":
        if given:
            raise ArtifactError(f"classes only apply to classifiers, not to a {task}")
        return ()
    if len(set(map(label_key, given))) != len(given):
        raise ArtifactError(f"class labels must be unique, got {list(given)}")
    predicted = known_classes(pipeline, features)
    if not given:
        if not predicted:
            raise ArtifactError(
                f"{_describe(pipeline)} has learned no classes yet, so they cannot be inferred: give the "
                "class labels in the order the prediction columns should have (--classes a,b,c)"
            )
        return tuple(predicted)
    matched = tuple(_match(c, predicted) for c in given)
    if is_binary(pipeline) and set(matched) != set(BINARY_CLASSES):
        raise ArtifactError(
            f"{_describe(pipeline)} is a binary classifier: it predicts True and False only, so classes "
            f"{list(given)} would never be predicted; export it with classes true,false (or none: they are "
            "then inferred), or make it multiclass (e.g. multiclass.OneVsRestClassifier)"
        )
    missing = [p for p in predicted if p not in matched]
    if missing:
        raise ArtifactError(
            f"{_describe(pipeline)} already predicts {predicted}, but classes {list(given)} leave out "
            f"{missing}: list every class it predicts"
        )
    return matched


def _match(label: Any, predicted: list) -> Any:
    for p in predicted:
        if p == label and type(p) is type(label):
            return p
    text = label.lower() if isinstance(label, str) else label_key(label)
    same = [p for p in predicted if label_key(p).lower() == text]
    return same[0] if len(same) == 1 else label


def _describe(pipeline: Any) -> str:
    steps = getattr(pipeline, "steps", None)
    if isinstance(steps, dict) and steps:
        return type(list(steps.values())[-1]).__name__
    return type(pipeline).__name__
