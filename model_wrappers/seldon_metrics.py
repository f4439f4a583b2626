"""One round trip per request for Seldon's custom-metrics bookkeeping.

Seldon's wrapper keeps every serving process's custom metrics in a ``multiprocessing.Manager``
dict that its metrics server reads. ``SeldonMetrics.update`` runs on every request and makes six
round trips to the Manager process (lock, read, unlock, lock, write, unlock) whether or not there
is anything to record; on a small machine those round trips cost more than the model.

:func:`install` replaces ``update`` in the calling process with one that keeps the process's
metrics in a local copy, merges new values with the wrapper's own arithmetic, and writes the copy
with a single round trip, only when there is something to record. The wrapper keys each entry by
the pid of the process that writes it and only that process writes it, so the local copy is the
whole truth: Prometheus sees the same series and values as with the wrapper's own method.
If the Manager process dies, the wrapper's own method fails every call that records metrics (a
feedback then answers 500 after it was logged); this one logs a warning and the call goes on.

The replacement is made only for the seldon-core version it was written against
(:data:`SUPPORTED`); any other version keeps its own method. Where seldon-core is not installed
(the project's own server needs none) there is nothing to replace.
"""

from __future__ import annotations

import importlib.util
import logging
import threading

logger = logging.getLogger(__name__)

SUPPORTED = "1.17.1"

_lock = threading.Lock()
_installed: bool | None = None
original_update = None  # the wrapper's own method, kept for comparison


def _merge(data: dict, custom_metrics: list[dict], method: str, cls, bins) -> None:
    # The arithmetic of seldon-core 1.17.1's SeldonMetrics.update, on a plain dict.
    for metric in custom_metrics:
        kind = metric.get("type", "COUNTER")
        tags = metric.get("tags", {})
        tags["method"] = method
        key = (kind, metric["key"], cls._generate_tags_key(tags))
        if kind == "COUNTER":
            data[key] = {"value": data.get(key, {}).get("value", 0) + metric["value"], "tags": tags}
        elif kind == "TIMER":
            vals, sumv = data.get(key, {}).get("value", ([0.0] * (len(bins) - 1), 0))
            data[key] = {"value": cls._update_hist(metric["value"] / 1000, vals, sumv), "tags": tags}
        elif kind == "GAUGE":
            data[key] = {"value": metric["value"], "tags": tags}
        else:
            logger.error("unknown metric type %s", kind)


def install() -> bool:
    """Use the one-round-trip ``SeldonMetrics.update`` in this process; True if it is in use.

    Examples
    --------
    >>> with_seldon_core = importlib.util.find_spec("seldon_core") is not None
    >>> install() == with_seldon_core
    True
    >>> install() == with_seldon_core  # once per process
    True

    """
    global _installed, original_update
    with _lock:
        if _installed is not None:
            return _installed
        if importlib.util.find_spec("seldon_core") is None:
            _installed = False
            return False
        from seldon_core import metrics as seldon_metrics
        from seldon_core.version import __version__

        if __version__ != SUPPORTED:
            logger.warning("seldon-core %s is not %s: its own metrics bookkeeping stays", __version__, SUPPORTED)
            _installed = False
            return False
        cls, bins = seldon_metrics.SeldonMetrics, seldon_metrics.BINS
        local_lock = threading.Lock()
        local = {"owner": None, "data": {}}

        def update(self, custom_metrics, method):
            if not custom_metrics:
                return
            with local_lock:
                owner = self.worker_id_func()
                try:
                    if local["owner"] != owner:
                        # First write of this process (the wrapper forks its servers after import).
                        local["owner"], local["data"] = owner, dict(self.data.get(owner, {}))
                    _merge(local["data"], custom_metrics, method, cls, bins)
                    self.data[owner] = dict(local["data"])
                except (OSError, EOFError) as exc:
                    # The wrapper's Manager process is gone: the call (and a feedback already
                    # logged) must still be answered; only these metrics are lost.
                    if not local.get("failing"):
                        logger.warning("Seldon's metrics store is unreachable, custom metrics are not recorded: %s", exc)
                    local["failing"] = True
                else:
                    local["failing"] = False

        original_update = cls.update
        cls.update = update
        _installed = True
        return True
