"""OutlierDetector: a Seldon input TRANSFORMER that scores every row and learns what is normal.

Run it with Seldon's wrapper::

    seldon-core-microservice model_wrappers.OutlierDetector --service-type TRANSFORMER \\
        --parameters '[{"name": "quantile", "value": "0.99", "type": "FLOAT"}]'

- ``transform_input``: the request goes on unchanged (same payload, same ``data.names``) with two
  per-row lists added to ``meta.tags``: ``outlier_score`` and ``is_outlier``. Scores and flags come
  from the detector as this process holds it when the request arrives. With ``reject`` a request
  holding an outlier is answered with HTTP 422 / gRPC INVALID_ARGUMENT instead, and nothing is
  learned from it.
- Learning: every passed request (or a ``learn_fraction`` of them) appends one ``learn`` event with
  its rows to the learning log: one log write per request. Which rows are normal, and so learned,
  is decided when the event is applied, in log order (see :mod:`model_wrappers.learning.detector`),
  so every process and replica holds the same detector. The event is named by the request id
  (``Seldon-Puid``, or ``meta.puid``), so a request sent twice is learned once. If the log cannot
  be written the request
  still goes on; only the learning from it is lost (logged as a warning, counted in
  ``seldon_river_learn_failures``, a counter: ``seldon_river_learn_failures_total`` in Prometheus).
- ``send_feedback`` is checked as every component checks a feedback (so it never refuses what
  the nodes below it learned) and acknowledged with ``seldon_river_learned: 0``: the detector
  learns from traffic, not labels.

Examples
--------
>>> import random, tempfile
>>> folder = tempfile.mkdtemp()
>>> detector = OutlierDetector(warm_up=200, n_trees=10, state_uri=f"sqlite:///{folder}/state.db")
>>> detector.load()
>>> rng = random.Random(1)
>>> for _ in range(4):
...     _ = detector.transform_input_raw(
...         {"data": {"names": ["a", "b"], "ndarray": [[rng.gauss(0, 1), rng.gauss(0, 1)] for _ in range(50)]}})
>>> request = {"data": {"names": ["a", "b"], "ndarray": [[0.1, -0.3], [25.0, -30.0]]}}
>>> reply = detector.transform_input_raw(request)
>>> reply["data"] == request["data"], reply["meta"]["tags"]["is_outlier"]
(True, [False, True])

"""

from __future__ import annotations

import dataclasses
import logging
import random

from google.protobuf.message import Message

from . import payload, seldon_metrics
from .artifact import Feature
from .checks import meta_of
from .config import StateSettings, fingerprint
from .errors import InvalidInput, StateUnavailable, seldon_errors
from .learning.detector import DetectorSettings, DetectorState
from .log.replica import Replica
from .stock_wrapper import StockWrapperSupport
from .adapter_support import LEARNED_TAG, METRIC_PREFIX, Feedback, call_puid, gauges

logger = logging.getLogger(__name__)

DEFAULT_UNIT = "detector"


class OutlierRejected(InvalidInput):
    """The request holds rows the detector deems outliers, and the detector rejects such requests."""

    status_code = 422
    reason = "MICROSERVICE_OUTLIER"


class OutlierDetector(StockWrapperSupport):
    """Seldon TRANSFORMER tagging outliers with a :mod:`river.anomaly` detector that keeps learning.

    Parameters
    ----------
    detector
        ``half_space_trees`` (default; on standardised features) or ``one_class_svm``.
    quantile
        Flag rows scoring at or above this running quantile of scores (default 0.99 when no
        ``threshold`` is set). A quantile flags about ``1 - quantile`` of the traffic, so set it
        above the share of outliers you expect.
    threshold
        Flag rows scoring at or above this fixed score instead (half-space-tree scores are in
        [0, 1]).
    warm_up
        Rows learned before anything is flagged (default 500); all of them are learned.
    reject
        Answer a request holding an outlier with HTTP 422 / gRPC INVALID_ARGUMENT (default false:
        pass it on, tagged).
    n_trees, height, window_size
        Half-space trees (defaults 50, 8, and 250 or half of ``warm_up`` when that is smaller);
        ``warm_up`` must be at least twice ``window_size``.
    nu
        One-class SVM: expected share of outliers (default 0.05).
    seed
        Seeds the trees (identical in every process) and this process's ``learn_fraction`` draws.
    features
        Comma-separated feature names, for requests whose columns are not named (``data.ndarray``
        or ``data.tensor`` without ``data.names``). Unset: requests must name their columns.
    learn_fraction
        Share of passed requests whose rows are sent to the learning log (default 1: all).
    state_uri
        Learning-log URI (see :mod:`model_wrappers.config`).
    state_name
        Log name; defaults to the graph node's name. The log is also keyed by the detector
        settings, so changing any of them starts learning afresh.
    checkpoint_every
        Events between checkpoints.
    max_staleness_ms
        How long scoring may go without catching up with the log; 0 catches up every time.

    """

    def __init__(
        self,
        detector: str = "half_space_trees",
        quantile: float | None = None,
        threshold: float | None = None,
        warm_up: int = 500,
        reject: bool = False,
        n_trees: int = 50,
        height: int = 8,
        window_size: int | None = None,
        nu: float = 0.05,
        seed: int = 0,
        features: str | None = None,
        learn_fraction: float = 1.0,
        state_uri: str | None = None,
        state_name: str | None = None,
        checkpoint_every: int = 1000,
        max_staleness_ms: int = 0,
    ):
        # Checked here, before Seldon forks its servers, so a bad parameter stops the start.
        self.settings = DetectorSettings(
            detector=detector, quantile=quantile, threshold=threshold, warm_up=warm_up, n_trees=n_trees,
            height=height, window_size=window_size, nu=nu, seed=seed,
        )
        if not isinstance(reject, bool):
            raise ValueError(f"reject must be a BOOL, got {reject!r}")
        is_number = isinstance(learn_fraction, (int, float)) and not isinstance(learn_fraction, bool)
        if not is_number or not 0 <= learn_fraction <= 1:
            raise ValueError(f"learn_fraction must be in [0, 1], got {learn_fraction!r}")
        names = [n.strip() for n in features.split(",") if n.strip()] if features else []
        self.reject = reject
        self.learn_fraction = float(learn_fraction)
        self.schema = payload.Schema([Feature(n) for n in names])
        self.state_options = dict(
            state_uri=state_uri, state_name=state_name,
            checkpoint_every=checkpoint_every, max_staleness_ms=max_staleness_ms,
        )
        self.version = fingerprint({**dataclasses.asdict(self.settings), "features": ",".join(names)})
        self.replica: Replica | None = None
        self.rng: random.Random | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def load(self) -> None:
        settings = StateSettings.resolve(DEFAULT_UNIT, self.version, **self.state_options)
        self.rng = random.Random(self.settings.seed)
        self.replica = Replica.started(lambda: DetectorState(self.settings), DetectorState.restore, settings)
        seldon_metrics.install()
        logger.info(
            "detector %s at log position %d, %d events replayed",
            self.settings.detector, self.replica.position, self.replica.replayed,
        )

    # -- Seldon hooks ---------------------------------------------------------------------
    @seldon_errors
    def transform_input_raw(self, request):
        as_proto = isinstance(request, Message)
        rows = self.schema.read(request).rows

        def inspect(state: DetectorState):
            state.check(rows)
            return (*state.score(rows), state.threshold(), state.figures())

        scores, flags, threshold, figures = self.replica.read(inspect)
        flagged = [i for i, flag in enumerate(flags) if flag]
        if self.reject and flagged:
            shown = ", ".join(f"row {i} (score {scores[i]:.4f})" for i in flagged[:5])
            more = f" and {len(flagged) - 5} more" if len(flagged) > 5 else ""
            raise OutlierRejected(
                f"rejected: {shown}{more} reached the outlier threshold {threshold:.4f}; "
                "nothing was passed on or learned"
            )
        metrics = gauges(figures) + [
            {"type": "COUNTER", "key": f"{METRIC_PREFIX}rows", "value": len(rows)},
            {"type": "COUNTER", "key": f"{METRIC_PREFIX}outliers", "value": len(flagged)},
        ]
        if self.learn_fraction >= 1 or self.rng.random() < self.learn_fraction:
            # The request id names the event: a request seen twice (a retry with the same
            # Seldon-Puid) is learned once.
            puid = call_puid() or (request.meta.puid if as_proto else meta_of(request).get("puid"))
            event = {"type": "learn", "rows": rows, **({"id": f"puid:{puid}"} if puid else {})}
            try:
                self.replica.submit_once(event)
            except StateUnavailable as exc:
                logger.warning("request passed on without learning from it: %s", exc)
                metrics.append({"type": "COUNTER", "key": f"{METRIC_PREFIX}learn_failures", "value": 1})
        tags = {"outlier_score": scores, "is_outlier": flags}
        return self._pass_on(request, tags, metrics, as_proto)

    # A detector served on its own (as a MODEL, or called on /api/v1.0/predictions) answers the same.
    predict_raw = transform_input_raw

    @seldon_errors
    def send_feedback_raw(self, feedback):
        # Checked as every component checks it (the detector is called after the nodes below
        # it, and refuses only what they refused), then acknowledged: it learns from traffic.
        read = Feedback.read(feedback)
        return read.reply({LEARNED_TAG: 0})

    def health_status_raw(self):
        return {"jsonData": self.status(), "meta": {}}

    def init_metadata(self) -> dict:
        names = self.schema.names
        schema = {"names": names, "shape": [len(names)]} if names else {}
        return {
            "name": DEFAULT_UNIT,
            "versions": [self.version[:12]],
            "platform": "seldon-river",
            "inputs": [{"messagetype": "tensor", "schema": schema}],
            "outputs": [{"messagetype": "tensor", "schema": schema}],
            "custom": {"detector": self.settings.detector, "reject": str(self.reject).lower()},
        }

    # -- helpers --------------------------------------------------------------------------
    def status(self) -> dict:
        """What the detector has learned and where its log stands, as served by /health/status."""
        figures, features = self.replica.read(lambda s: (s.figures(), s.features))
        return {
            "detector": {
                **dataclasses.asdict(self.settings), "reject": self.reject, "learn_fraction": self.learn_fraction,
            },
            "features": features,
            "metrics": figures,
            "replica": self.replica.status(),
        }

    @staticmethod
    def _pass_on(request, tags: dict, metrics: list[dict], as_proto: bool):
        """The request itself, unchanged but for our tags and metrics in its meta."""
        if not as_proto:
            meta = dict(request.get("meta") or {})
            meta["tags"] = {**(meta.get("tags") or {}), **tags}
            meta["metrics"] = metrics
            return {**request, "meta": meta}
        # The request's own class (seldon-core's under its stock wrapper): ours are merged in as
        # bytes, where a tag of ours replaces the request's of the same name.
        reply = type(request)()
        reply.CopyFrom(request)
        del reply.meta.metrics[:]
        reply.MergeFromString(payload.to_proto({"meta": {"tags": tags, "metrics": metrics}}).SerializeToString())
        return reply
