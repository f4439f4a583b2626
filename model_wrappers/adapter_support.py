"""What the Seldon adapters share: custom-metric gauges and the label-only feedback join."""

from __future__ import annotations

import json

from .errors import InvalidInput, NotFound, StateUnavailable
from .log import LogUnavailable
from .request_context import current_puid

METRIC_PREFIX = "seldon_river_"


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


def recall_prediction(message: dict, log, ttl: float, capacity: int) -> tuple[str, object]:
    """The puid a label-only feedback names and what was remembered under it at predict time."""
    request = message.get("request") or {}
    puid = (
        ((message.get("response") or {}).get("meta") or {}).get("puid")
        or (request.get("meta") or {}).get("puid")
        or current_puid()
    )
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
