"""Drift on a served model's error stream: a ``river.drift`` detector fed in log order.

Every learned row gives the champion's error on it before it learns (the same prediction its
progressive metrics score): 0/1 for a classifier (wrong class), the absolute error for a
regressor, the score itself for an anomaly detector (no truth is needed: a shift of the scores
is a shift of the data). The detector runs inside the state machine, so every replica sees the
same rows in the same order and flags the same positions; its state is part of each checkpoint.

A detection is *drift* only when the errors went up: ADWIN flags changes either way, and its
estimate before and after the cut tells which way it went; a fall of the error (the model got
better) is recorded as an ``improvement`` and sets off no reaction. KSWIN, also two-sided,
gives no estimate: each of its detections counts as drift. PageHinkley watches rises only. Binary
detectors (DDM, EDDM, FHDDM, HDDM_A, HDDM_W) watch 0/1 errors, so only classifiers take them;
they also raise warnings, counted on each entry into the warning zone.

Examples
--------
>>> watch = DriftWatch(DriftSettings.for_task("classifier", "DDM"))
>>> for i in range(2000):
...     kind = watch.update(0.0 if i < 1000 or i % 2 else 1.0, learned=i + 1, position=i + 1)
>>> watch.detections >= 1, watch.history[-1]["kind"], 1000 < watch.last_detection < 1200
(True, 'drift', True)

"""

from __future__ import annotations

import collections
import dataclasses
import inspect
import json
from typing import Any

from river import drift

REACTIONS = ("alert", "reset", "challenger")
HISTORY = 50  # events kept for status and the live view
DEFAULT_DETECTOR = {"classifier": "DDM", "regressor": "ADWIN", "anomaly": "ADWIN"}
SEED = 42  # detectors that sample (KSWIN) are seeded so every replica flags the same rows
BINARY = ("DDM", "EDDM", "FHDDM", "HDDM_A", "HDDM_W")
TWO_SIDED = ("ADWIN", "KSWIN")


def _classes() -> dict[str, type]:
    """Detector name -> class, for the installed river (``HDDM_A`` was renamed ``HDDMA`` in 0.24)."""
    found = {"ADWIN": drift.ADWIN, "KSWIN": drift.KSWIN, "PageHinkley": drift.PageHinkley}
    for name in BINARY:
        cls = getattr(drift.binary, name, None) or getattr(drift.binary, name.replace("_", ""), None)
        if cls is not None:
            found[name] = cls
    return found


def canonical(name: str) -> str:
    """``"hddma"``, ``"HDDM_A"``, ``"page_hinkley"`` -> the detector's name as this module spells it."""
    wanted = name.replace("_", "").replace("-", "").lower()
    for known in list(_classes()) + ["none"]:
        if known.replace("_", "").lower() == wanted:
            return known
    raise ValueError(f"unknown drift detector {name!r}: expected one of {sorted(_classes())} or 'none'")


@dataclasses.dataclass(frozen=True)
class DriftSettings:
    """Which detector watches a model's errors and what a drift sets off.

    Parameters
    ----------
    task
        ``"classifier"``, ``"regressor"`` or ``"anomaly"``.
    detector
        A ``river.drift`` detector name (``ADWIN``, ``PageHinkley``, ``KSWIN``, ``DDM``, ``EDDM``,
        ``FHDDM``, ``HDDM_A``, ``HDDM_W``).
    options
        Keyword arguments of the detector, as a JSON object text (e.g. ``{"delta": 0.001}``).
    reaction
        ``alert`` (count, expose and log the drift), ``reset`` (also replace the champion by a
        fresh copy of the model folder's pipeline) or ``challenger`` (also hand serving to the
        challenger with the lowest recent error, when one is lower than the champion's).

    """

    task: str
    detector: str
    options: str = "{}"
    reaction: str = "alert"

    def __post_init__(self):
        if self.reaction not in REACTIONS:
            raise ValueError(f"drift_reaction must be one of {list(REACTIONS)}, got {self.reaction!r}")
        if self.detector in BINARY and self.task != "classifier":
            raise ValueError(
                f"{self.detector} watches 0/1 errors, which only a classifier has; a {self.task} "
                f"takes ADWIN, KSWIN or PageHinkley"
            )
        self.build()  # refuses options the detector does not take, when the component loads

    @classmethod
    def for_task(cls, task: str, detector: str | None = None, options: str | dict | None = None,
                 reaction: str = "alert") -> "DriftSettings | None":
        """Settings from component parameters; None when ``detector`` is ``none`` (no watch)."""
        name = canonical(detector) if detector else DEFAULT_DETECTOR[task]
        if name == "none":
            return None
        if isinstance(options, dict):
            options = json.dumps(options, sort_keys=True)
        return cls(task, name, options or "{}", reaction)

    def build(self) -> Any:
        """A new detector in its initial state."""
        try:
            kwargs = json.loads(self.options)
        except ValueError as exc:
            raise ValueError(f"drift_options must be a JSON object, got {self.options!r}: {exc}") from None
        if not isinstance(kwargs, dict):
            raise ValueError(f"drift_options must be a JSON object, got {self.options!r}")
        cls = _classes()[self.detector]
        accepted = inspect.signature(cls).parameters
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise ValueError(f"{self.detector} takes no option {unknown}; it takes {sorted(accepted)}")
        if "seed" in accepted:
            kwargs.setdefault("seed", SEED)
        if self.detector == "PageHinkley":
            kwargs.setdefault("mode", "up")  # only a rise of the error is drift
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{self.detector}({self.options}) cannot be built: {exc}") from None


class DriftWatch:
    """A drift detector over one error stream, with the record of what it flagged.

    Parameters
    ----------
    settings
        The detector and the reaction.

    """

    def __init__(self, settings: DriftSettings):
        self.settings = settings
        self.detector = settings.build()
        self.warnings = 0
        self.detections = 0
        self.in_warning = False
        self.last_detection: int | None = None
        self.history: collections.deque = collections.deque(maxlen=HISTORY)

    def update(self, error: float, learned: int, position: int | None) -> str | None:
        """Feed one error; ``"drift"`` when the errors rose here, else None."""
        detector = self.detector
        before = getattr(detector, "estimation", None)
        detector.update(error)
        warning = bool(getattr(detector, "warning_detected", False))
        if warning and not self.in_warning:
            self.warnings += 1  # counted, not noted: warnings come and go far more often than drift
        self.in_warning = warning
        if not detector.drift_detected:
            return None
        after = getattr(detector, "estimation", None)
        if self.settings.detector in TWO_SIDED and before is not None and after is not None and after < before:
            self.note("improvement", learned, position, f"mean error fell from {before:.4g} to {after:.4g}")
            return None
        self.detections += 1
        self.in_warning = False
        self.last_detection = learned
        detail = f"{self.settings.detector} flagged a rise of the error"
        if before is not None and after is not None:
            detail += f" (mean {before:.4g} -> {after:.4g})"
        self.note("drift", learned, position, detail)
        return "drift"

    def restart(self) -> None:
        """A fresh detector: the stream it watched is that of a model no longer serving."""
        self.detector = self.settings.build()
        self.in_warning = False

    def note(self, kind: str, learned: int, position: int | None, detail: str) -> None:
        self.history.append({"position": position, "learned": learned, "kind": kind, "detail": detail})

    def figures(self) -> dict[str, float]:
        return {"drift_detections": float(self.detections), "drift_warnings": float(self.warnings),
                "drift_warning": float(self.in_warning)}

    def status(self) -> dict:
        return {
            "detector": self.settings.detector, "options": json.loads(self.settings.options),
            "reaction": self.settings.reaction, "warnings": self.warnings, "detections": self.detections,
            "in_warning": self.in_warning, "last_detection": self.last_detection, "events": list(self.history),
        }
