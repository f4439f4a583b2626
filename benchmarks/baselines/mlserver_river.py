"""A minimal MLServer runtime for a river classifier: the MLServer baseline.

Imported by MLServer in its own virtual environment (``implementation:
mlserver_river.RiverRuntime`` in ``model-settings.json``); it reads the same model folder as the
Seldon components (``model.dill`` + ``seldon-river.json``). MLServer has no feedback endpoint, so
this runtime only predicts.
"""

from __future__ import annotations

import json
import os

import dill
import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class RiverRuntime(MLModel):
    """Per-class probabilities of a river classifier for a (rows x features) FP64 input."""

    async def load(self) -> bool:
        folder = await get_model_uri(self._settings)
        with open(os.path.join(folder, "model.dill"), "rb") as fh:
            self._model = dill.load(fh)
        with open(os.path.join(folder, "seldon-river.json")) as fh:
            meta = json.load(fh)
        self._features = [f["name"] for f in meta["features"]]
        self._classes = meta["classes"]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        X = self.decode(payload.inputs[0], default_codec=NumpyCodec)
        probas = [self._model.predict_proba_one(dict(zip(self._features, row))) for row in X.tolist()]
        out = np.array([[p.get(c, 0.0) for c in self._classes] for p in probas])
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("proba", out)])
