"""RiverModel: a river pipeline served as a Seldon MODEL that keeps learning from feedback.

Run it with Seldon's wrapper::

    seldon-core-microservice model_wrappers.RiverModel --service-type MODEL \\
        --parameters '[{"name": "model_uri", "value": "/mnt/models", "type": "STRING"}]'

- ``predict``: classifiers answer per-class probabilities (columns named after the classes),
  regressors a ``prediction`` column, anomaly detectors a ``score`` column. The reply's
  ``meta.puid`` is the request id (Seldon's ``Seldon-Puid`` header, the request's ``meta.puid``,
  or a new one), which is all a later label-only feedback needs.
- ``send_feedback``: the truth for each row becomes one ``learn`` event in the learning log;
  every process of the component applies it (progressive metrics first, then ``learn_one``).
  Features come from the feedback's ``request`` or, when it has none, from the prediction
  remembered under its ``puid``. The event carries the feedback's id (see
  :mod:`model_wrappers.adapter_support`): the same feedback sent again is learned once and
  answered with the tag ``seldon_river_already_learned``.

Examples
--------
>>> import tempfile
>>> from river import linear_model, preprocessing
>>> from model_wrappers.artifact import export_model
>>> folder = tempfile.mkdtemp()
>>> _ = export_model(preprocessing.StandardScaler() | linear_model.LinearRegression(), folder,
...                  task="regressor", features=["x"])
>>> model = RiverModel(model_uri=folder, state_uri=f"sqlite:///{folder}/state.db")
>>> model.load()
>>> reply = model.predict_raw({"data": {"ndarray": [[2.0]]}})
>>> reply["data"]["names"], reply["data"]["ndarray"]
(['prediction'], [[0.0]])
>>> from model_wrappers.protocol import dict_to_feedback
>>> ack = model.send_feedback_raw(dict_to_feedback({
...     "request": {"data": {"ndarray": [[2.0]]}}, "truth": {"data": {"ndarray": [[4.0]]}}}))
>>> model.predict_raw({"data": {"ndarray": [[2.0]]}})["data"]["ndarray"][0][0] > 0
True

"""

from __future__ import annotations

import functools
import logging

from . import payload, seldon_metrics
from .adapter_support import (
    ALREADY_LEARNED_TAG, LEARNED_TAG, Feedback, GaugeReport, encode_record, gauges, recall_prediction,
    request_puid,
)
from .artifact import load_model, read_metadata
from .checks import meta_of
from .config import StateSettings
from .errors import NotFound, seldon_errors
from .keyed_artifact import is_keyed
from .learning.model import ModelState, check_fits
from .log import steps
from .log.replica import Replica
from .model_options import ModelOptions
from .stock_wrapper import StockWrapperSupport

logger = logging.getLogger(__name__)

class RiverModel(StockWrapperSupport):
    """Seldon MODEL serving a river pipeline from a model folder.

    Parameters
    ----------
    model_uri
        The model folder (``seldon-river export`` writes one); Seldon mounts ``modelUri`` at
        ``/mnt/models``.
    state_uri
        Learning-log URI (see :mod:`model_wrappers.config`).
    state_name
        Log name; defaults to the graph node's name.
    checkpoint_every
        Events between checkpoints.
    max_staleness_ms
        How long a prediction may go without catching up with the log; 0 catches up every time.
    label_ttl_seconds
        How long the features of a prediction are kept for a label-only feedback.
    label_capacity
        How many predictions are kept for label-only feedback at most; 0 keeps none (every
        feedback must then carry its request).
    routed
        The model is a child of a ROUTER. Seldon's orchestrator sends a feedback that carries no
        ``meta.routing`` (a label-only one) to every child; the children that never answered its
        request id acknowledge it without learning (tag ``seldon_river_learned: 0``) instead of
        answering 404, so the model that answered learns it and the client gets 200.
    drift_detector, drift_options, drift_reaction
        How the model's errors are watched for drift and what a drift sets off (see
        :mod:`model_wrappers.model_options`): the task's default detector, reaction ``alert``.
    challengers, promote_after, promote_margin, promote_window, drift_trial
        Challenger model folders (comma-separated) that learn from every feedback without
        serving, and when one takes over.

    """

    def __init__(
        self,
        model_uri: str = "/mnt/models",
        state_uri: str | None = None,
        state_name: str | None = None,
        checkpoint_every: int = 1000,
        max_staleness_ms: int = 0,
        label_ttl_seconds: int = 86400,
        label_capacity: int = 100_000,
        routed: bool = False,
        drift_detector: str | None = None,
        drift_options: str | None = None,
        drift_reaction: str | None = None,
        challengers: str | None = None,
        promote_after: int | None = None,
        promote_margin: float | None = None,
        promote_window: int | None = None,
        drift_trial: int | None = None,
    ):
        # Seldon builds the object once and forks REST and gRPC processes from it: connections
        # and the learned state are made in load(), which runs in each of them.
        self.model_uri = model_uri
        self.state_options = dict(
            state_uri=state_uri,
            state_name=state_name,
            checkpoint_every=checkpoint_every,
            max_staleness_ms=max_staleness_ms,
        )
        self.label_ttl = float(label_ttl_seconds)
        self.label_capacity = int(label_capacity)
        self.routed = bool(routed)
        self.options = ModelOptions.from_parameters(
            drift_detector, drift_options, drift_reaction, challengers, promote_after, promote_margin, promote_window,
            drift_trial,
        )
        self.replica: Replica | None = None
        self._gauges = GaugeReport()

    # -- lifecycle ------------------------------------------------------------------------
    def load(self) -> None:
        if is_keyed(self.model_uri):
            raise RuntimeError(
                f"{self.model_uri} is a keyed model folder (one pipeline per key): serve it with "
                "model_wrappers.KeyedRiverModel"
            )
        loaded = load_model(self.model_uri)
        meta = loaded.metadata
        self.metadata = meta
        self.schema = payload.Schema(meta.features)
        check_fits(loaded.pipeline, meta.task, f"{self.model_uri}/model.dill")
        fresh = self.options.fresh_state(loaded)
        settings = StateSettings.resolve(meta.name, self.options.version(meta, self.model_uri), **self.state_options)
        self.replica = Replica.started(
            fresh, ModelState.restore, settings, ttl=self.label_ttl, capacity=self.label_capacity
        )
        seldon_metrics.install()
        logger.info(
            "loaded %s (%s, sha256 %s) at log position %d, %d events replayed",
            meta.name, meta.task, meta.sha256[:12], self.replica.position, self.replica.replayed,
        )

    # -- Seldon hooks ---------------------------------------------------------------------
    @seldon_errors
    def predict_raw(self, request):
        as_proto = not isinstance(request, dict)
        message = payload.to_dict(request)
        batch = self.schema.read(message, with_array=True)
        puid = request_puid(message)

        def answer(state):
            # A table of numbers goes to the model as it came: a batch may never need its dicts.
            names, values = (state.predict(batch.rows) if batch.table is None
                             else state.predict_table(batch.names, batch.table, batch.array))
            return names, values, state.figures(), state.reply_tags(), self.replica.position

        names, values, figures, learned_tags, position = self.replica.read(answer)
        self._remember(puid, batch)
        # Keep the tags earlier graph nodes added (e.g. the outlier detector's), as Seldon's
        # wrapper does for components without raw hooks.
        tags = {**(meta_of(message).get("tags") or {}), **self._tags(position), **learned_tags}
        meta = {"puid": puid, "tags": tags, "metrics": self._gauges.changed(figures)}
        return payload.reply(batch.kind, names, values, meta, as_proto)

    @seldon_errors
    def send_feedback_raw(self, feedback):
        return steps.run(self.send_feedback_steps(feedback))

    def send_feedback_steps(self, feedback):
        """:meth:`send_feedback_raw` as :mod:`~model_wrappers.log.steps` (how the project's server calls it)."""
        read = Feedback.read(feedback, self.routed)
        read.require_truth(self.metadata.task)
        earlier = self.replica.applied_at(read.id)
        if earlier is not None:
            return self._ack(earlier, read, {ALREADY_LEARNED_TAG: True})
        try:
            rows = yield from self._feedback_rows(read.message)
        except NotFound:
            if not read.for_a_sibling():
                raise
            return self._ack(self.replica.position, read, {LEARNED_TAG: 0})
        state = self.replica.state
        values = state.check_truth(payload.read_values(read.truth, "truth"), len(rows)) if read.has_truth else None
        position, already = yield from self.replica.submit_once_steps(
            read.event({"type": "learn", "rows": rows, "truth": values}))
        return self._ack(position, read, {ALREADY_LEARNED_TAG: True} if already else {})

    def health_status_raw(self):
        return {"jsonData": self.status(), "meta": {}}

    def init_metadata(self) -> dict:
        # Called by the wrapper before load(): the metadata file alone is enough.
        meta = read_metadata(self.model_uri)
        names = [f.name for f in meta.features]
        outputs = {"regressor": ["prediction"], "anomaly": ["score"]}.get(meta.task, [str(c) for c in meta.classes])
        return {
            "name": meta.name,
            "versions": [meta.sha256[:12]],
            "platform": f"river-{meta.river_version}",
            "inputs": [{"messagetype": "tensor", "schema": {"names": names, "shape": [len(names)]}}],
            "outputs": [{"messagetype": "tensor", "schema": {"names": outputs, "shape": [len(outputs)]}}],
            "custom": {"task": meta.task, "sha256": meta.sha256},
        }

    # -- helpers --------------------------------------------------------------------------
    def status(self) -> dict:
        """What the model has learned and where its log stands, as served by /health/status."""
        figures, drift, challengers = self.replica.read(
            lambda s: (s.figures(), s.drift_status(), s.challenger_status())
        )
        out = {
            "model": {"name": self.metadata.name, "task": self.metadata.task, "sha256": self.metadata.sha256,
                      "folder": str(self.model_uri), "options": self.options.parameters()},
            "metrics": figures,
            "replica": self.replica.status(),
        }
        if drift is not None:
            out["drift"] = drift
        if challengers is not None:
            out["challengers"] = challengers
        return out

    def _ack(self, position: int, read: Feedback, tags: dict):
        figures, learned_tags = self.replica.read(lambda s: (s.figures(), s.reply_tags()))
        return read.reply({**self._tags(position), **learned_tags, **tags}, gauges(figures))

    def _tags(self, position: int) -> dict:
        return {"seldon_river_model": self.metadata.name, "seldon_river_position": position}

    def _remember(self, puid: str, batch: payload.Batch) -> None:
        if self.label_capacity <= 0:
            return  # label-only feedback is off: feedback must carry its request
        # A table of numbers is kept as one list of names and lists of values: far less to encode.
        record = {"names": self.schema.names, "table": batch.table} if batch.table is not None else batch.rows
        # Written in the background; a failure is logged there and only affects label-only feedback.
        self.replica.log.remember(puid, encode_record(record))

    def _feedback_rows(self, message: dict) -> steps.Steps:
        request = message.get("request") or {}
        if request.get("data") is not None or request.get("jsonData") is not None:
            return self.schema.read(request).rows
        # A label-only feedback: the record may take a store's round trip, or a short wait for
        # another process to write it, so it is looked up off the event loop.
        _, record = yield steps.Blocking(
            functools.partial(recall_prediction, message, self.replica.log, self.label_ttl, self.label_capacity))
        if isinstance(record, dict):
            return [dict(zip(record["names"], row)) for row in record["table"]]
        return record
