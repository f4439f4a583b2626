"""Seldon custom metrics, kept in the serving process and exposed in Prometheus' text format.

A component reports metrics in its replies' ``meta.metrics`` (COUNTER: a delta, GAUGE: a value,
TIMER: milliseconds into a histogram). They are recorded with the arithmetic, metric names and
labels of Seldon's wrapper (the reply's tags, ``method``, the deployment labels from the
environment its operator sets, and ``worker_id``), so dashboards and alerts written for
``seldon-core-microservice`` keep working. There is no metrics process to call: recording is a
dict update in the serving process.

With several workers each one also writes its figures to a file in a folder the workers share
(a background thread, every 100 ms when they changed), and whichever worker answers a scrape
reads the others' files, so one scrape shows every worker (as Seldon's does), the others' figures
at most about 100 ms old.

Examples
--------
>>> store = CustomMetrics(worker_id="1", default_labels={})
>>> store.record([{"type": "COUNTER", "key": "rows", "value": 2}, {"type": "COUNTER", "key": "rows", "value": 3}], "predict")
>>> [line for line in exposition([store]).decode().splitlines() if not line.startswith("#")]
['rows_total{method="predict",worker_id="1"} 5.0']

"""

from __future__ import annotations

import bisect
import json
import logging
import math
import os
import threading
import time
from pathlib import Path

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.utils import floatToGoString

logger = logging.getLogger(__name__)

# Seldon's histogram buckets: 0, 50 log-spaced bounds from 1 ms to 30 s, +Inf (in seconds).
BOUNDS = [0.0] + [10 ** (-3 + i * (math.log10(30) + 3) / 49) for i in range(50)] + [math.inf]
KINDS = {"COUNTER": "counter", "GAUGE": "gauge", "TIMER": "histogram"}
FEEDBACK_KEY = "seldon_api_model_feedback"
FEEDBACK_REWARD_KEY = "seldon_api_model_feedback_reward"
NOT_SET = "NOT_IMPLEMENTED"
SHARE_EVERY = 0.1  # seconds


def seldon_labels(env=os.environ) -> dict[str, str]:
    """The labels Seldon's wrapper puts on every custom metric, from the operator's environment."""
    image = env.get("PREDICTIVE_UNIT_IMAGE", f"{NOT_SET}:{NOT_SET}")
    *name, version = image.split(":")
    try:
        predictor_version = json.loads(env.get("PREDICTOR_LABELS", "{}")).get("version", NOT_SET)
    except ValueError:
        predictor_version = NOT_SET
    labels = {
        "deployment_name": env.get("SELDON_DEPLOYMENT_ID", NOT_SET),
        "model_name": env.get("PREDICTIVE_UNIT_ID", NOT_SET),
        "model_image": ":".join(name),
        "model_version": version,
        "predictor_name": env.get("PREDICTOR_ID", NOT_SET),
        "predictor_version": str(predictor_version),
    }
    # The names Seldon kept for compatibility with its releases before 1.3.
    labels["seldon_deployment_name"] = labels["deployment_name"]
    labels["image_name"] = labels["model_image"]
    labels["image_version"] = labels["model_version"]
    return labels


class CustomMetrics:
    """One process's custom metrics.

    Parameters
    ----------
    worker_id
        The ``worker_id`` label (the process id).
    default_labels
        Labels added to every metric (:func:`seldon_labels`).
    share_dir
        With several workers: the folder where each writes its figures for the others.

    """

    def __init__(self, worker_id: str, default_labels: dict[str, str], share_dir: str | None = None):
        self.worker_id = worker_id
        self.default_labels = default_labels
        self.share_dir = Path(share_dir) if share_dir else None
        self._data: dict[tuple, dict] = {}
        self._lock = threading.Lock()
        self._version = 0
        self._shared_version = 0
        if self.share_dir is not None:
            threading.Thread(target=self._share_often, name="seldon-river-metrics", daemon=True).start()

    def record(self, metrics: list, method: str) -> None:
        """Add a reply's ``meta.metrics`` (Seldon's dicts) under ``method``; malformed ones are logged and skipped."""
        if not metrics:
            return
        with self._lock:
            for metric in metrics:
                try:
                    self._record(metric, method)
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    logger.warning("custom metric %r not recorded: %s", metric, exc)
            self._version += 1

    def record_reward(self, reward: float) -> None:
        """Seldon's two feedback counters, counted for every feedback with a non-zero reward."""
        if reward:
            self.record([{"type": "COUNTER", "key": FEEDBACK_KEY, "value": 1},
                         {"type": "COUNTER", "key": FEEDBACK_REWARD_KEY, "value": reward}], "feedback")

    def _record(self, metric: dict, method: str) -> None:
        kind = metric.get("type", "COUNTER")
        if kind not in KINDS:
            raise ValueError(f"unknown metric type {kind!r}")
        name = str(metric["key"])
        value = float(metric["value"])
        tags = {str(k): str(v) for k, v in (metric.get("tags") or {}).items()}
        tags["method"] = method
        key = (kind, name, tuple(sorted(tags.items())))
        entry = self._data.get(key)
        if kind == "GAUGE":
            self._data[key] = {"value": value, "tags": tags}
        elif kind == "COUNTER":
            self._data[key] = {"value": (entry["value"] if entry else 0.0) + value, "tags": tags}
        else:
            counts, total = entry["value"] if entry else ([0] * (len(BOUNDS) - 1), 0.0)
            seconds = value / 1000
            counts = list(counts)
            # np.histogram's bins: [a, b) except the last, and a value past every bound is dropped.
            index = bisect.bisect_right(BOUNDS, seconds) - 1
            if 0 <= index < len(counts):
                counts[index] += 1
            self._data[key] = {"value": (counts, total + seconds), "tags": tags}

    def snapshot(self) -> list:
        with self._lock:
            return [[kind, name, entry] for (kind, name, _), entry in self._data.items()]

    # -- several workers ------------------------------------------------------------------
    def _share_often(self) -> None:
        while True:
            time.sleep(SHARE_EVERY)
            self.share()

    def share(self) -> None:
        """Write this worker's figures for the others (only when they changed)."""
        if self.share_dir is None or self._shared_version == self._version:
            return
        self._shared_version = self._version
        path = self.share_dir / f"{self.worker_id}.json"
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self.snapshot()))
            os.replace(tmp, path)
        except OSError as exc:
            logger.warning("metrics of worker %s not shared: %s", self.worker_id, exc)

    def others(self) -> list[tuple[str, list]]:
        """(worker id, snapshot) of every other worker that shared its figures."""
        if self.share_dir is None:
            return []
        found = []
        for path in sorted(self.share_dir.glob("*.json")):
            if path.stem == self.worker_id:
                continue
            try:
                found.append((path.stem, json.loads(path.read_text())))
            except (OSError, ValueError):
                continue  # a worker being replaced
        return found


def _families(worker_id: str, snapshot: list, labels: dict[str, str], families: dict) -> None:
    for kind, name, entry in snapshot:
        family = families.get(name)
        if family is None:
            family = families[name] = Metric(name, "", KINDS[kind])
        sample_labels = {**entry["tags"], **labels, "worker_id": worker_id}
        if kind == "COUNTER":
            family.add_sample(name + "_total", sample_labels, entry["value"])
        elif kind == "GAUGE":
            family.add_sample(name, sample_labels, entry["value"])
        else:
            counts, total = entry["value"]
            cumulative = 0
            for bound, count in zip(BOUNDS[1:], counts):
                cumulative += count
                family.add_sample(name + "_bucket", {**sample_labels, "le": floatToGoString(bound)}, cumulative)
            family.add_sample(name + "_count", sample_labels, cumulative)
            family.add_sample(name + "_sum", sample_labels, total)


class _Collector:
    def __init__(self, stores: list[CustomMetrics]):
        self.stores = stores

    def collect(self):
        families: dict[str, Metric] = {}
        for store in self.stores:
            _families(store.worker_id, store.snapshot(), store.default_labels, families)
            for worker_id, snapshot in store.others():
                _families(worker_id, snapshot, store.default_labels, families)
        return list(families.values())


def exposition(stores: list[CustomMetrics]) -> bytes:
    """Prometheus' text format for the stores' metrics (and their workers')."""
    return generate_latest(_Collector(stores))
