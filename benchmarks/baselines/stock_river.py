"""A river model served the way a Seldon user usually writes it: the stock-wrapper baseline.

``predict`` and ``send_feedback`` use the wrapper's default (non-raw) hooks, so every request
goes through Seldon's own payload handling. Learning happens in the process that received the
feedback only, and is lost on restart: that is what the stock wrapper offers.

Run it with::

    seldon-core-microservice benchmarks.baselines.stock_river.StockRiver --service-type MODEL \\
        --parameters '[{"name": "model_uri", "value": "/mnt/models", "type": "STRING"}]'
"""

from __future__ import annotations

import json
import os

import dill


class StockRiver:
    """River classifier behind Seldon's default ``predict``/``send_feedback`` hooks.

    Parameters
    ----------
    model_uri
        Folder holding ``model.dill`` (and ``seldon-river.json`` for the class labels).

    """

    def __init__(self, model_uri: str = "/mnt/models"):
        self.model_uri = model_uri
        self.model = None

    def load(self):
        with open(os.path.join(self.model_uri, "model.dill"), "rb") as fh:
            self.model = dill.load(fh)
        with open(os.path.join(self.model_uri, "seldon-river.json")) as fh:
            meta = json.load(fh)
        self.features = [f["name"] for f in meta["features"]]
        self.classes = meta["classes"]

    def class_names(self):
        return [str(c) for c in self.classes]

    def predict(self, X, features_names=None, meta=None):
        names = features_names or self.features
        out = []
        for row in X:
            proba = self.model.predict_proba_one(dict(zip(names, row)))
            out.append([proba.get(c, 0.0) for c in self.classes])
        return out

    def send_feedback(self, features, feature_names, reward, truth, routing=None):
        names = feature_names or self.features
        for row, y in zip(features, truth):
            label = y[0] if hasattr(y, "__len__") else y
            self.model.learn_one(dict(zip(names, row)), bool(label))
        return []
