"""seldon-river: river online-learning pipelines as Seldon Core v1 components.

``seldon-core-microservice model_wrappers.RiverModel --service-type MODEL`` (and likewise
``BanditRouter`` as a ROUTER, ``OutlierDetector`` as a TRANSFORMER, ``KeyedRiverModel`` as a
MODEL, ``KeyRouter`` as the ROUTER over a keyed model's shards) imports this package and
looks the class up by name; the classes are imported on first use.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_COMPONENTS = {
    "RiverModel": "model_wrappers.river_model",
    "BanditRouter": "model_wrappers.bandit_router",
    "OutlierDetector": "model_wrappers.outlier_detector",
    "KeyedRiverModel": "model_wrappers.keyed_model",
    "KeyRouter": "model_wrappers.key_router",
}

__all__ = list(_COMPONENTS)


def __getattr__(name: str):
    if name in _COMPONENTS:
        return getattr(importlib.import_module(_COMPONENTS[name]), name)
    raise AttributeError(f"module 'model_wrappers' has no attribute {name!r}")
