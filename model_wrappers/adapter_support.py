"""What the Seldon adapters share: custom-metric gauges, request ids, and reading a feedback.

Which feedback is which
-----------------------
A feedback names what it is about, and that name is its id in the learning log (see
:mod:`model_wrappers.learning.applied`): the same feedback sent twice, by a retry, a graph
fanning it out or a replay, is learned once and answered 200 the second time with the tag
``seldon_river_already_learned``. The id is, in this order:

1. ``response.meta.tags.seldon_river_feedback_id`` when the client sets it (to send several
   feedbacks about one prediction, e.g. one per row, give each its own);
2. else the request id of the prediction: ``response.meta.puid``, ``request.meta.puid``, or the
   call's ``Seldon-Puid`` header (``seldon-puid`` gRPC metadata). One feedback per prediction.

A feedback that carries none of these is learned every time it is sent.
"""

from __future__ import annotations

import dataclasses
import json

import orjson

from . import payload
from .checks import check_reward, meta_of, text_id
from .errors import InvalidInput, NotFound, StateUnavailable
from .log import LogUnavailable
from .request_context import current_puid
from .request_ids import new_request_id

METRIC_PREFIX = "seldon_river_"
FEEDBACK_ID_TAG = "seldon_river_feedback_id"
ALREADY_LEARNED_TAG = "seldon_river_already_learned"
LEARNED_TAG = "seldon_river_learned"


def call_puid() -> str | None:
    """The request id the orchestrator sent with this call (header or gRPC metadata), checked as text."""
    puid = current_puid()
    return text_id(puid, "the Seldon-Puid request id") if puid else None


def request_puid(message: dict) -> str:
    """The id a prediction is remembered under: the call's request id, else ``meta.puid``, else a new one."""
    return call_puid() or meta_of(message).get("puid") or new_request_id()


def prediction_puid(message: dict) -> str | None:
    """The request id of the prediction a feedback is about (``response.meta.puid``, ``request.meta.puid``, the call's)."""
    for part in ("response", "request"):
        puid = meta_of(message.get(part)).get("puid")
        if puid:
            return puid
    return call_puid()


def feedback_id(message: dict) -> str | None:
    """The id a feedback is learned under (see the module's docstring), or None."""
    explicit = (meta_of(message.get("response")).get("tags") or {}).get(FEEDBACK_ID_TAG)
    if explicit is not None:
        return "id:" + text_id(explicit, f"response.meta.tags.{FEEDBACK_ID_TAG}")
    puid = prediction_puid(message)
    return "puid:" + puid if puid else None


@dataclasses.dataclass
class Feedback:
    """A feedback read and checked as a whole, before any part of it is learned.

    Every component refuses the same malformed feedback the same way, so a feedback the
    orchestrator sends to several nodes is refused by the first, before the others learn it.
    """

    message: dict
    as_proto: bool
    id: str | None
    routed: bool = False

    @classmethod
    def read(cls, feedback, routed: bool = False) -> "Feedback":
        message = payload.feedback_to_dict(feedback)
        if "reward" in message:
            # The router's rule, checked by every node: Seldon's orchestrator sends a feedback to
            # the models first and to the router last, which must not refuse what they learned.
            check_reward(message["reward"])
        read = cls(message, not isinstance(feedback, dict), feedback_id(message), routed)
        if routed and "reward" in message and not read.routing and not prediction_puid(message):
            raise InvalidInput(
                "feedback with a reward but neither response.meta.routing nor a request id "
                "(response.meta.puid or the Seldon-Puid header): the router above this model could not "
                "credit it to an arm, so no node learns it"
            )
        return read

    @property
    def routing(self) -> dict:
        return meta_of(self.message.get("response")).get("routing") or {}

    @property
    def truth(self) -> dict:
        return self.message.get("truth") or {}

    @property
    def has_truth(self) -> bool:
        return self.truth.get("data") is not None or self.truth.get("jsonData") is not None

    def require_truth(self, task: str) -> None:
        if not self.has_truth and task != "anomaly":
            reward = " (it has only a reward: rewards are for the BanditRouter)" if "reward" in self.message else ""
            raise InvalidInput(
                "feedback has no truth: a MODEL learns from truth.data.ndarray, truth.data.tensor or "
                f"truth.jsonData{reward}"
            )

    def for_a_sibling(self) -> bool:
        """Whether a label-only feedback whose prediction is unknown here was answered by another child.

        Seldon's orchestrator sends a feedback without ``meta.routing`` to every child of a
        router; a routed model that never made the prediction acknowledges it without learning.
        """
        return self.routed and not self.routing

    def reply(self, tags: dict, metrics: list | None = None):
        """The acknowledgement: ``meta.puid`` names the prediction this feedback was about.

        Seldon's orchestrator hands the client the root node's reply alone, so every component
        says which prediction it acknowledged, whichever node is the root.
        """
        meta = {"puid": prediction_puid(self.message), "tags": tags, "metrics": metrics or []}
        return payload.ack(meta, self.as_proto)

    def event(self, event: dict) -> dict:
        """``event`` carrying this feedback's id, so the log learns it once."""
        return {**event, "id": self.id} if self.id else event


def gauges(figures: dict[str, float]) -> list[dict]:
    """Seldon custom metrics (exported to Prometheus by the wrapper) for a dict of figures."""
    return [{"type": "GAUGE", "key": METRIC_PREFIX + k, "value": v} for k, v in sorted(figures.items())]


class GaugeReport:
    """Figures to attach to predictions as gauges, only when they changed since this process sent them.

    Seldon's metrics keep a gauge's last value per process and method (the ``method`` label), and
    each gauge sent costs the wrapper a round trip to its metrics store: predictions repeat the
    figures only when learning moved them. (Feedback replies always carry them: see :func:`gauges`.)

    Examples
    --------
    >>> report = GaugeReport()
    >>> report.changed({"learned": 1.0})
    [{'type': 'GAUGE', 'key': 'seldon_river_learned', 'value': 1.0}]
    >>> report.changed({"learned": 1.0}) is None
    True

    """

    def __init__(self):
        self._last: dict | None = None

    def changed(self, figures: dict[str, float]) -> list[dict] | None:
        if figures == self._last:
            return None
        self._last = dict(figures)
        return gauges(figures)


def encode_record(record) -> bytes:
    """What a prediction remembers for its label-only feedback, as JSON (read back by :func:`recall_prediction`).

    The rows were validated (finite numbers, strings, booleans, None), so orjson writes what
    ``json`` would, several times faster on a batch; anything it has no type for goes the slow way.

    >>> json.loads(encode_record({"names": ["a"], "table": [[1.5], [2]]}))
    {'names': ['a'], 'table': [[1.5], [2]]}
    >>> json.loads(encode_record([{"a": 2 ** 70}]))  # beyond orjson's 64-bit integers
    [{'a': 1180591620717411303424}]
    """
    try:
        return orjson.dumps(record)
    except TypeError:
        return json.dumps(record).encode()


def recall_prediction(message: dict, log, ttl: float, capacity: int) -> tuple[str, object]:
    """The puid a label-only feedback names and what was remembered under it at predict time."""
    puid = prediction_puid(message)
    if not puid:
        raise InvalidInput(
            "feedback has neither request features nor a prediction id: send the original "
            "request, or response.meta.puid (or the Seldon-Puid header) of the prediction"
        )
    try:
        record = log.recall(puid)
    except LogUnavailable as exc:
        raise StateUnavailable(f"feedback refused, nothing was learned: {exc}") from None
    if record is None:
        raise NotFound(
            f"no remembered prediction with puid {puid!r}: it was never made here or expired "
            f"(kept {ttl:g} s, at most {capacity} predictions); "
            "send the request features with the feedback instead"
        )
    return puid, json.loads(record)


# -- keys of keyed requests (the keyed model and the key router read them alike) ---------------
def request_key(value, where: str) -> str:
    """A key as the log and the key store name it; a clear 400 when ``value`` cannot be one."""
    from .artifact import ArtifactError
    from .keyed_artifact import key_text

    try:
        return key_text(value)
    except ArtifactError as exc:
        raise InvalidInput(f"{where}: {exc}") from None


def tagged_keys(message: dict, key_tag: str):
    """What ``meta.tags[key_tag]`` holds (one key, or a list with one key per row); 400 when absent."""
    tags = meta_of(message).get("tags") or {}
    if key_tag not in tags:
        raise InvalidInput(
            f"no key: expected meta.tags[{key_tag!r}] (one key, or a list with one key per row), "
            f"got tags {sorted(tags)}"
        )
    return tags[key_tag]
