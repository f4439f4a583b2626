"""Keyed learning: a few small river models per key, the best of them serving that key.

A *key* is whatever splits the traffic into independent series (a product id, a store, a
user). Each key has its own :class:`KeyModels`: one :class:`~model_wrappers.learning.model.ModelState`
per candidate pipeline (each with its progressive metrics), the progressive metrics of what was
actually served, and the candidate currently serving the key. :class:`KeyedState` holds all
keys and is a state machine like every learned thing here: ``apply(event)`` is the only way it
changes, and ``learn`` events name, row by row, the key each row belongs to.

The choice of candidate, per key (:class:`Selection`):

- a key is served by its first candidate (in declared order) until it has seen
  ``min_observations`` feedback rows;
- after each feedback row, the candidate with the best progressive value of the selection
  metric (``mae`` for regressors: lowest wins) serves the key from the next prediction on;
- ties keep the current candidate; among several equally better ones, the first declared wins.

Keys scale by being stored one by one. :class:`KeyedState` loads a key when it is first used
(from a :class:`~model_wrappers.log.keystore.KeyStore`, else from its origin: the key's
pipelines in the model folder, or clones of the folder's templates), writes only the keys that
changed at a checkpoint, and in bounded-memory mode evicts the least recently used keys to the
store. Every key remembers the log position of the newest event in its stored state, so a key
stored ahead of a checkpoint is never taught the same event twice.

Examples
--------
>>> from river import linear_model, preprocessing
>>> origin = Templates({"a": linear_model.LinearRegression(), "b": preprocessing.StandardScaler()
...                     | linear_model.LinearRegression(intercept_lr=0.5)})
>>> state = KeyedState(origin, "regressor", selection=Selection("mae", min_observations=2))
>>> for y in (1.0, 2.0, 3.0):
...     state.apply({"type": "learn", "keys": ["p1"], "rows": [{"x": 1.0}], "truth": [y]})
>>> state.key_figures(["p1"])["p1"]["candidate"], state.key_figures(["p1"])["p1"]["observations"]
('b', 3)
>>> names, values = state.predict(["p1", "p2"], [{"x": 1.0}, {"x": 1.0}])
>>> names, values[1]
(['prediction'], [0.0])

"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import gc
import json
import logging
import math
import pickle
import sys
from typing import Any, Callable, ContextManager, Iterable, Iterator, Protocol, Sequence

import dill

from .applied import AppliedIds, first_application
from .challengers import row_error
from .drift import DriftSettings, DriftWatch
from .model import ModelState
from .progressive import ProgressiveScore, metric_key, metrics_for

logger = logging.getLogger(__name__)

HEADER_FORMAT = 1
# Metrics a key can be chosen by, and whether a higher value is better.
HIGHER_IS_BETTER = {
    "mae": False, "rmse": False, "cross_entropy": False,
    "r2": True, "accuracy": True, "macro_f1": True, "roc_auc": True,
}
DEFAULT_METRIC = {"regressor": "mae", "classifier": "accuracy", "anomaly": "roc_auc"}
# Metrics whose value over all keys follows from the per-key values and row counts.
MEAN_METRICS = ("mae", "accuracy", "cross_entropy")
ROOT_MEAN_SQUARE_METRICS = ("rmse",)


# -- serialization ----------------------------------------------------------------------------
def dumps(obj: Any) -> bytes:
    """Pickle ``obj``: plain pickle (ten times faster) unless only dill can do it."""
    try:
        return b"P" + pickle.dumps(obj, protocol=5)
    except (pickle.PicklingError, TypeError, AttributeError):
        return b"D" + dill.dumps(obj)


def loads(blob: bytes) -> Any:
    """Read what :func:`dumps` wrote."""
    kind, data = blob[:1], memoryview(blob)[1:]
    if kind == b"P":
        return pickle.loads(data)
    if kind == b"D":
        return dill.loads(bytes(data))
    raise ValueError(f"not a keyed-state blob: it starts with {bytes(kind)!r}, expected b'P' or b'D'")


FREEZE_FROM = 1024  # loaded keys at which the collector first stops scanning them
SNAPSHOT_CHUNK = 500  # keys pickled at a time while a checkpoint holds the state still


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while many small objects are built.

    Loading or teaching thousands of keys creates millions of objects; the collector would
    otherwise scan the growing heap again and again (three times slower, measured).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# -- the choice of candidate ------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Selection:
    """How a key's serving candidate is chosen from the candidates' progressive metrics.

    Parameters
    ----------
    metric
        A progressive metric name (``mae``, ``rmse``, ``r2``, ``accuracy``, ...).
    min_observations
        Feedback rows a key needs before its first candidate may be replaced.

    """

    metric: str = "mae"
    min_observations: int = 7

    def __post_init__(self):
        if self.metric not in HIGHER_IS_BETTER:
            raise ValueError(f"selection metric must be one of {sorted(HIGHER_IS_BETTER)}, got {self.metric!r}")
        if int(self.min_observations) < 0:
            raise ValueError(f"min_observations must be 0 or more, got {self.min_observations}")

    @classmethod
    def for_task(cls, task: str, metric: str | None = None, min_observations: int | None = None) -> "Selection":
        """The default metric of a task (``mae``, ``accuracy``, ``roc_auc``) unless one is given."""
        return cls(metric or DEFAULT_METRIC[task], 7 if min_observations is None else int(min_observations))

    def better(self, value: float, than: float) -> bool:
        return value > than if HIGHER_IS_BETTER[self.metric] else value < than

    def value(self, score: ProgressiveScore) -> float | None:
        """The selection metric's current value in ``score`` (None until it has a finite one)."""
        # Looked up by position in the task's metric set: this runs for every candidate on
        # every feedback row, and metric names are derived from class names with a regex.
        index = _metric_index(score.task, self.metric)
        value = score.metric[index].get() if index is not None else None
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None

    def choose(self, models: "KeyModels") -> str:
        """The candidate that serves ``models`` next."""
        if models.n < self.min_observations:
            return models.chosen
        best = models.chosen
        best_value = self.value(models.candidates[best].score) if best in models.candidates else None
        for name, state in models.candidates.items():
            value = self.value(state.score)
            if value is not None and (best_value is None or self.better(value, best_value)):
                best, best_value = name, value
        return best


@functools.lru_cache(maxsize=None)
def _metric_index(task: str, metric: str) -> int | None:
    names = [metric_key(m) for m in metrics_for(task)]
    return names.index(metric) if metric in names else None


# -- one key ----------------------------------------------------------------------------------
class KeyModels:
    """The candidates of one key, their progressive metrics and the one serving the key.

    Parameters
    ----------
    pipelines
        Candidate name -> river pipeline, in declared order.
    task
        ``"regressor"``, ``"classifier"`` or ``"anomaly"``.
    classes
        Declared class labels (classifiers).
    drift
        How the errors of what serves this key are watched for drift (None: not watched).

    """

    __slots__ = ("candidates", "served", "chosen", "n", "position", "drift")

    def __init__(self, pipelines: dict[str, Any], task: str, classes: Sequence[Any] = (),
                 drift: DriftSettings | None = None):
        if not pipelines:
            raise ValueError("a key needs at least one candidate pipeline")
        self.candidates = {name: ModelState(p, task, classes) for name, p in pipelines.items()}
        self.served = ProgressiveScore(task)
        self.chosen = next(iter(self.candidates))
        self.n = 0
        self.position = 0
        self.drift = DriftWatch(drift) if drift is not None else None

    def learn(self, x: dict, y: Any, selection: Selection) -> None:
        """Score what is served and every candidate on ``(x, y)``, teach them, then choose again."""
        if y is not None:
            # The served prediction is the chosen candidate's, before anyone learns from y.
            y_pred = self.served.update(self.candidates[self.chosen].pipeline, x, y)
            # getattr: keys stored before drift watching have no slot for it.
            watch = getattr(self, "drift", None)
            if watch is not None:
                error = float(y_pred) if self.served.task == "anomaly" else row_error(self.served.task, y_pred, y)
                if error is not None:
                    watch.update(error, self.n + 1, self.position)
        for state in self.candidates.values():
            state.apply({"type": "learn", "rows": [x], "truth": [y]})
        self.n += 1
        self.chosen = selection.choose(self)

    def predict(self, rows: list[dict]) -> tuple[list[str], list[list]]:
        return self.candidates[self.chosen].predict(rows)

    def summary(self) -> dict:
        """What is known about this key, JSON-able: choice, count, progressive metrics (and drift)."""
        out = {
            "candidate": self.chosen,
            "observations": self.n,
            "position": self.position,
            "served": self.served.values(),
            "candidates": {name: state.score.values() for name, state in self.candidates.items()},
        }
        watch = getattr(self, "drift", None)
        if watch is not None:
            out["drift"] = {"detections": watch.detections, "last_detection": watch.last_detection}
        return out


# -- where keys come from -----------------------------------------------------------------------
class Origin(Protocol):
    """The starting point of keys that have no stored state yet (a keyed model folder)."""

    candidates: tuple[str, ...]
    listed: frozenset[str]  # keys that have their own pipelines
    creates: bool  # whether any other key can start from templates

    def pipelines(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Fresh candidate pipelines for each key it can start (others are left out)."""


class Templates:
    """An origin made of templates only: every key starts from copies of the same pipelines."""

    def __init__(self, templates: dict[str, Any]):
        self.candidates = tuple(templates)
        self.listed: frozenset[str] = frozenset()
        self.creates = True
        self._blobs = {name: dumps(p) for name, p in templates.items()}

    def pipelines(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {key: {name: loads(blob) for name, blob in self._blobs.items()} for key in keys}


# -- all keys -----------------------------------------------------------------------------------
def _contribution(summary: dict) -> dict[str, float]:
    """What one key adds to the totals behind the aggregate figures."""
    n = summary["observations"]
    out = {"learned": float(n), f"keys_chosen_{summary['candidate']}": 1.0}
    drift = summary.get("drift")
    if drift is not None:
        out["drift_detections"] = float(drift["detections"])
        out["keys_with_drift"] = 1.0 if drift["detections"] else 0.0
    parts = [("", summary["served"])] + [(f"{name}_", values) for name, values in summary["candidates"].items()]
    for prefix, values in parts:
        for metric in MEAN_METRICS + ROOT_MEAN_SQUARE_METRICS:
            value = values.get(metric)
            if value is not None and n:
                out[f"w:{prefix}{metric}"] = float(n)
                out[f"s:{prefix}{metric}"] = n * (value * value if metric in ROOT_MEAN_SQUARE_METRICS else value)
    return out


class KeyedState:
    """Every key's :class:`KeyModels`, loaded on first use, stored key by key.

    Parameters
    ----------
    origin
        Where keys without stored state start (see :class:`Origin`).
    task
        ``"regressor"``, ``"classifier"`` or ``"anomaly"``.
    classes
        Declared class labels (classifiers).
    selection
        How each key's serving candidate is chosen.
    store
        Per-key checkpoint storage (:class:`~model_wrappers.log.keystore.KeyStore`); without
        one, keys live in memory only.
    capacity
        Most keys held in memory (0: no limit). The least recently used keys beyond it are
        written to ``store`` and loaded again on demand.
    position
        Log position this state stands at (the checkpoint it was restored from).
    drift
        How each key's served errors are watched for drift (None: not watched).

    """

    def __init__(self, origin: Origin, task: str, classes: Sequence[Any] = (), selection: Selection | None = None,
                 store=None, capacity: int = 0, position: int = 0, drift: DriftSettings | None = None):
        self.drift = drift
        if capacity and store is None:
            raise ValueError("a key capacity needs a key store to evict keys to")
        self.origin = origin
        self.task = task
        self.classes = tuple(classes)
        self.selection = selection or Selection.for_task(task)
        self.store = store
        self.capacity = max(0, int(capacity))
        self.position = position
        self.models: collections.OrderedDict[str, KeyModels] = collections.OrderedDict()
        self.summaries: dict[str, dict] = {}  # key -> summary, for every key with learned state
        self.stored: dict[str, int] = {}  # key -> position of its state in the store, as last seen
        self.dirty: dict[str, int] = {}  # loaded keys whose state is newer than the store's
        self.totals: collections.Counter[str] = collections.Counter()
        self.listed_fresh = len(origin.listed)  # listed keys that have not learned anything yet
        self.last_checkpoint: dict[str, float] = {}
        self._figures: dict[str, float] | None = None
        self._frozen_at = FREEZE_FROM // 2
        if store is not None:
            self._read_summaries()

    # -- restore --------------------------------------------------------------------------------
    def _read_summaries(self) -> None:
        # Only the small per-key summaries are read here; pipelines load on first use.
        for key, (position, text) in self.store.summaries().items():
            self.stored[key] = position
            self._set_summary(key, json.loads(text))

    def header(self) -> bytes:
        header = {"format": HEADER_FORMAT, "position": self.position, "keys": len(self.summaries)}
        applied = getattr(self, "applied", None)
        if applied is not None:
            header["applied"] = applied.to_text()  # the feedback ids behind the checkpoint
        return json.dumps(header).encode()

    @classmethod
    def restore(cls, blob: bytes, **kwargs) -> "KeyedState":
        """A state at the position of a checkpoint written by :meth:`snapshot`."""
        try:
            header = json.loads(blob)
            if header.get("format") != HEADER_FORMAT:
                raise ValueError(f"format {header.get('format')!r}")
        except (ValueError, AttributeError) as exc:
            raise ValueError(
                f"not a keyed-state checkpoint (expected a format {HEADER_FORMAT} header): {exc}"
            ) from None
        state = cls(position=int(header["position"]), **kwargs)
        if "applied" in header:
            state.applied = AppliedIds.from_text(header["applied"])
        return state

    # -- summaries and totals -------------------------------------------------------------------
    def _default_summary(self) -> dict:
        return {"candidate": self.origin.candidates[0], "observations": 0, "position": 0, "served": {},
                "candidates": {name: {} for name in self.origin.candidates}}

    def _set_summary(self, key: str, summary: dict) -> None:
        old = self.summaries.get(key)
        if old == summary:
            return
        if old is not None:
            self.totals.subtract(_contribution(old))
        elif key in self.origin.listed:
            self.listed_fresh -= 1
        self.summaries[key] = summary
        self.totals.update(_contribution(summary))
        self._figures = None

    def figures(self) -> dict[str, float]:
        """Figures over all keys: counts, rows learned, keys per serving candidate, overall metrics."""
        if self._figures is None:
            self._figures = self._aggregate()
        return {**self._figures, "keys_loaded": float(len(self.models))}

    def _aggregate(self) -> dict[str, float]:
        totals = self.totals
        out = {"keys": float(len(self.summaries) + self.listed_fresh), "learned": float(totals["learned"])}
        if self.drift is not None:
            out["drift_detections"] = float(round(totals["drift_detections"]))
            out["keys_with_drift"] = float(round(totals["keys_with_drift"]))
        first = self.origin.candidates[0] if self.origin.candidates else None
        for name in self.origin.candidates:
            count = totals[f"keys_chosen_{name}"] + (self.listed_fresh if name == first else 0)
            out[f"keys_chosen_{name}"] = float(round(count))
        for prefix in [""] + [f"{name}_" for name in self.origin.candidates]:
            for metric in MEAN_METRICS + ROOT_MEAN_SQUARE_METRICS:
                weight = totals[f"w:{prefix}{metric}"]
                if weight > 0.5:
                    mean = max(0.0, totals[f"s:{prefix}{metric}"]) / weight
                    out[f"{prefix}{metric}"] = math.sqrt(mean) if metric in ROOT_MEAN_SQUARE_METRICS else mean
        return out

    def known(self) -> int:
        return len(self.summaries) + self.listed_fresh

    def key_figures(self, keys: Iterable[str]) -> dict[str, dict]:
        """Per-key figures (choice, observations, progressive metrics) without loading pipelines."""
        out = {}
        for key in keys:
            summary = self.summaries.get(key)
            if summary is not None:
                out[key] = summary
            elif key in self.models:
                # Loaded but never taught: nothing measured yet (cheaper than summary()).
                models = self.models[key]
                out[key] = {"candidate": models.chosen, "observations": 0, "position": models.position,
                            "served": {}, "candidates": {name: {} for name in models.candidates}}
            elif key in self.origin.listed:
                out[key] = self._default_summary()
        return out

    def all_keys(self) -> list[str]:
        """Every key with state or listed by the origin, sorted."""
        return sorted(set(self.summaries) | self.origin.listed)

    def unknown(self, keys: Iterable[str], create: bool) -> list[str]:
        """The keys among ``keys`` this state cannot serve (or learn), in order of appearance."""
        out = []
        for key in dict.fromkeys(keys):
            if key in self.summaries or key in self.models or key in self.origin.listed:
                continue
            if create and self.origin.creates:
                continue
            out.append(key)
        return out

    # -- loading and evicting keys --------------------------------------------------------------
    def _ensure(self, keys: Iterable[str]) -> None:
        """Load the keys that are not in memory: stored state first, else from the origin."""
        models = self.models
        if self.capacity:
            for key in keys:
                if key in models:
                    models.move_to_end(key)  # least recently used go first
        missing = [k for k in keys if k not in models]
        if not missing:
            return
        with gc_paused():
            found = self.store.load(missing) if self.store is not None else {}
            for key, (position, blob) in found.items():
                self._adopt(key, position, blob)
            rest = [k for k in missing if k not in found]
            if rest:
                for key, pipelines in self.origin.pipelines(rest).items():
                    models[key] = KeyModels(pipelines, self.task, self.classes, self.drift)
        if len(models) >= 2 * self._frozen_at:
            # Tens of thousands of keys are tens of millions of objects that the cyclic collector
            # would otherwise scan again and again (seconds per full pass, stalling requests).
            # Freezing moves what exists now out of its reach; river models hold no reference
            # cycles, so reference counting still frees them when they are evicted or replaced.
            # Done when the loaded keys double, so whatever else is frozen along stays bounded.
            gc.freeze()
            self._frozen_at = len(models)

    def _adopt(self, key: str, position: int, blob: bytes) -> None:
        models = loads(blob)
        self.models[key] = models
        known = self.stored.get(key)
        if known is None or position > known or key not in self.summaries:
            # Another process stored this key ahead of what this one last saw.
            self._set_summary(key, models.summary())
            self.stored[key] = position

    def _trim(self) -> None:
        """Evict least recently used keys beyond the capacity, storing those that changed."""
        if not self.capacity or len(self.models) <= self.capacity:
            return
        victims = []
        for key in self.models:
            if len(self.models) - len(victims) <= self.capacity:
                break
            victims.append(key)
        changed = [k for k in victims if k in self.dirty]
        if changed:
            try:
                self.store.save(self._items(changed))
            except Exception as exc:  # noqa: BLE001 - an unreachable store must not lose state
                logger.warning("keeping %d changed keys in memory, the key store refused them: %s", len(changed), exc)
                victims = [k for k in victims if k not in self.dirty]
            else:
                for key in changed:
                    self.stored[key] = self.models[key].position
                    del self.dirty[key]
        for key in victims:
            del self.models[key]

    def _items(self, keys: Iterable[str]) -> Iterator[tuple[str, int, str, bytes]]:
        for key in keys:
            models = self.models[key]
            yield key, models.position, json.dumps(self.summaries[key], sort_keys=True), dumps(models)

    def preload(self, limit: int | None = None, batch: int = 1000) -> int:
        """Load stored keys in bulk (up to ``limit``, or the capacity); return how many were loaded."""
        if self.store is None:
            return 0
        limit = limit if limit is not None else (self.capacity or None)
        loaded = 0
        with gc_paused():
            for chunk in self.store.scan(batch):
                for key, position, blob in chunk:
                    if limit is not None and loaded >= limit:
                        return loaded
                    if key not in self.models:
                        self._adopt(key, position, blob)
                        loaded += 1
        return loaded

    # -- events ---------------------------------------------------------------------------------
    def apply(self, event: dict, position: int | None = None) -> None:
        """Apply one ``learn`` event: each row teaches the candidates of its key (a copy of one already applied, none)."""
        if event.get("type") != "learn":
            raise ValueError(f"KeyedState cannot apply a {event.get('type')!r} event")
        position = self.position + 1 if position is None else position
        self.position = position
        if not first_application(self, event, position):
            return  # a copy of a feedback already learned
        keys, rows, truth = event["keys"], event["rows"], event.get("truth")
        groups: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        order = list(groups)
        # Keys are independent: teach them a chunk at a time so a bounded memory holds each chunk.
        step = max(1, self.capacity // 2) if self.capacity else len(order)
        intern = sys.intern
        with gc_paused():
            for start in range(0, len(order), step):
                chunk = order[start:start + step]
                self._ensure(chunk)
                for key in chunk:
                    models = self.models.get(key)
                    if models is None:
                        # Every process meets the same unknown key the same way.
                        logger.warning("event %d: key %r has no pipelines and no templates; rows skipped",
                                       position, key)
                        continue
                    if models.position >= position:
                        continue  # its stored state already holds this event
                    for i in groups[key]:
                        x = {intern(k): v for k, v in rows[i].items()}
                        models.learn(x, truth[i] if truth is not None else None, self.selection)
                    models.position = position
                    self.dirty[key] = position
                    self._set_summary(key, models.summary())
                self._trim()

    # -- reads ----------------------------------------------------------------------------------
    def predict(self, keys: Sequence[str], rows: list[dict]) -> tuple[list[str], list[list]]:
        """Output names and one output row per input row, each from its key's serving candidate."""
        groups: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        self._ensure(groups)
        try:
            if len(groups) == 1:
                return self.models[keys[0]].predict(rows)
            outputs: list = [None] * len(rows)
            for key, indexes in groups.items():
                names, values = self.models[key].predict([rows[i] for i in indexes])
                for i, value in zip(indexes, values):
                    outputs[i] = (names, value)
        finally:
            self._trim()
        names = outputs[0][0]
        if all(out[0] == names for out in outputs):
            return names, [out[1] for out in outputs]
        # Classifiers whose keys have seen different classes: one column per class seen by any.
        columns = list(dict.fromkeys(n for out in outputs for n in out[0]))
        return columns, [[dict(zip(*out)).get(c, 0.0) for c in columns] for out in outputs]

    # -- checkpoints ----------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """Store the keys that changed since the last checkpoint; return the checkpoint header.

        The header is small: the state itself is in the key store, where each key carries the
        position it stands at.
        """
        return self.checkpoint_writer()(contextlib.nullcontext())

    def checkpoint_writer(self) -> Callable[[ContextManager], bytes]:
        """Begin a checkpoint at the current position (call it where nothing else changes the state).

        Returns ``write(hold)``, which stores the keys that changed and returns the header, like
        :meth:`snapshot`. ``hold`` is a context manager that keeps the state from changing (the
        replica's lock): ``write`` pickles :data:`SNAPSHOT_CHUNK` keys at a time inside it and
        writes them to the key store outside it, so serving goes on while a large state is stored.
        A key that learns more in between is stored as it then is, at its own later position,
        which is as good (see the module's docstring) and stays to be stored again.
        """
        if self.store is None:
            raise RuntimeError("a keyed state without a key store cannot be checkpointed")
        position, header = self.position, self.header()
        committed = self.store.committed()
        changed = [k for k, p in self.dirty.items() if p > committed]

        def write(hold: ContextManager) -> bytes:
            stored: list[tuple[str, int]] = []
            size = 0
            for start in range(0, len(changed), SNAPSHOT_CHUNK):
                with hold, gc_paused():
                    items = list(self._items(k for k in changed[start:start + SNAPSHOT_CHUNK] if k in self.models))
                self.store.save(items)
                stored += [(key, at) for key, at, _, _ in items]
                size += sum(len(blob) + len(summary) for _, _, summary, blob in items)
            self.store.save([], commit=position)
            with hold:
                for key, at in stored:
                    self.stored[key] = max(at, self.stored.get(key, at))
                # Keys that changed at or before the commit another process had made are in the
                # store already; keys stored here are clean unless they learned since.
                clean = dict(stored)
                for key in [k for k, p in self.dirty.items() if p <= committed or p <= clean.get(k, -1)]:
                    del self.dirty[key]
                self.last_checkpoint = {"position": position, "keys": len(stored), "bytes": size}
            return header

        return write
