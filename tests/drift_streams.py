"""Streams with a planted concept change, and the champion and challenger folders they are served with.

Agrawal's loan rule 0 until row ``CHANGE``, rule 2 after it (river's ConceptDriftStream, width 5).
A Gaussian naive Bayes champion keeps every row it saw in its class statistics and adapts slowly;
a Hoeffding adaptive tree (ADWIN in its nodes) regrows the branches the change broke.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from river import naive_bayes, preprocessing, tree
from river.datasets import synth

CHANGE = 600
FEATURES = ["salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears", "loan"]


def agrawal_change(n: int, change: int = CHANGE):
    """``n`` rows ``(x, y)`` of Agrawal rule 0, switching to rule 2 at row ``change``."""
    stream = synth.ConceptDriftStream(
        stream=synth.Agrawal(classification_function=0, seed=42),
        drift_stream=synth.Agrawal(classification_function=2, seed=43),
        position=change, width=5, seed=1,
    )
    return [({k: float(v) for k, v in x.items()}, int(y)) for x, y in itertools.islice(stream, n)]


def champion_pipeline():
    return preprocessing.StandardScaler() | naive_bayes.GaussianNB()


def challenger_pipeline():
    return tree.HoeffdingAdaptiveTreeClassifier(seed=1)


def export_champion_and_challenger(folder: Path) -> Path:
    """A model folder ``nb`` with a challenger folder ``hat`` inside it (at ``challengers/hat``)."""
    from model_wrappers.artifact import export_model

    export_model(champion_pipeline(), folder, task="classifier", features=FEATURES, classes=[0, 1], name="nb")
    export_model(challenger_pipeline(), folder / "challengers" / "hat", task="classifier", features=FEATURES,
                 classes=[0, 1], name="hat")
    return folder
