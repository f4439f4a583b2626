"""KeyedRiverModel: one small set of river models per key, served as one Seldon MODEL.

Run it with Seldon's wrapper::

    seldon-core-microservice model_wrappers.keyed_model.KeyedRiverModel --service-type MODEL \\
        --parameters '[{"name": "model_uri", "value": "/mnt/models", "type": "STRING"},
                       {"name": "key_feature", "value": "product_id", "type": "STRING"}]'

The model folder is a keyed folder (:mod:`model_wrappers.keyed_artifact`). Each request row
belongs to a key, named by a feature (``key_feature``) or by a ``meta.tags`` entry
(``key_tag``; one key for the whole request, or a list with one key per row). A batch may mix
keys. Each row is predicted by its key's serving candidate; feedback teaches exactly the models
of each row's key (progressive metrics first, then ``learn_one``), through the learning log that
every process applies in the same order.

- ``predict``: as :class:`~model_wrappers.river_model.RiverModel` (same outputs, ``meta.puid``
  for label-only feedback), plus ``meta.tags.seldon_river_keys``: for each key of the request,
  its serving candidate, observations and progressive metrics.
- ``send_feedback``: truth for each row, with the request (features and keys) or only the
  ``puid`` of the prediction.
- ``/health/status``: figures over all keys; ``/health/status?key=A&key=B`` answers the figures
  of those keys and ``/health/status?keys=all&offset=0&limit=1000`` pages through every key
  (also :meth:`KeyedRiverModel.key_figures` in Python).
- Custom metrics (Prometheus, via Seldon): ``seldon_river_keys``, ``seldon_river_keys_loaded``,
  ``seldon_river_learned``, ``seldon_river_keys_chosen_<candidate>``, the served ``mae``/``rmse``
  over all keys and each candidate's (``seldon_river_<candidate>_mae``); never one series per key.

A key that is missing from a request, or unknown while creating keys is switched off, is
refused with 400 (gRPC ``INVALID_ARGUMENT``) before anything is predicted or learned.

Sharded (``shards`` > 1, ``shard`` its index): the component holds, learns and checkpoints only
the keys it owns (:mod:`model_wrappers.learning.shards`), under a learning log of its own, and
refuses a request, or a feedback routed to it, that names another shard's key, saying which
shard owns it. A :class:`~model_wrappers.key_router.KeyRouter` in front of the shards sends each
request to its owner.
"""

from __future__ import annotations

import gc
import logging

from . import payload, seldon_metrics
from .adapter_support import (
    ALREADY_LEARNED_TAG, LEARNED_TAG, Feedback, GaugeReport, encode_record, gauges, recall_prediction, request_key,
    request_puid, tagged_keys,
)
from .artifact import Feature, read_metadata
from .checks import meta_of
from .config import StateSettings, fingerprint, unit_id
from .errors import InvalidInput, NotFound, StateUnavailable, seldon_errors
from .keyed_artifact import KeyedModel, load_keyed, read_keyed_metadata
from .learning.drift import DriftSettings
from .learning.keyed import KeyedState, Selection
from .learning.model import ModelState
from .learning.shards import ShardOrigin, Shards, refusal
from .log import LogUnavailable
from .log.keystore import open_keystore
from .log.replica import Replica, state_hint
from .request_context import current_query
from .stock_wrapper import StockWrapperSupport

logger = logging.getLogger(__name__)

KEYS_TAG = "seldon_river_keys"
SHARD_TAG = "seldon_river_shard"
DEFAULT_PAGE = 1000


class KeyedRiverModel(StockWrapperSupport):
    """Seldon MODEL serving per-key river pipelines from a keyed model folder.

    Parameters
    ----------
    model_uri
        The keyed model folder.
    key_feature
        Request feature that names each row's key (default: the folder's).
    key_tag
        ``meta.tags`` entry that names the key instead (a value, or a list with one per row).
    create_keys
        Whether a key never seen before starts from the templates (default: when the folder has
        templates). Switched off, unknown keys are refused.
    max_keys_in_memory
        Bounded-memory mode: at most this many keys in memory per process, the least recently
        used written to the key store and loaded again on demand (0: all keys stay).
    preload
        Load every stored key (up to ``max_keys_in_memory``) at start instead of on first use.
    min_observations, selection_metric
        Override the folder's selection rule (see :class:`~model_wrappers.learning.keyed.Selection`).
    key_tags
        Whether predict and feedback replies describe the request's keys in ``meta.tags``.
    shards, shard
        Sharding: the keys are split over ``shards`` components, and this one serves the keys of
        index ``shard`` (0 to ``shards - 1``) only; its learning log is named after it
        (``<state name>-shard-<shard>-of-<shards>``). Default: one shard, every key.
    drift_detector, drift_options
        A ``river.drift`` detector watching each key's served errors, as for
        :class:`~model_wrappers.river_model.RiverModel` (reaction: alert; each key's candidate
        choice already follows the errors). Default ``none``: a detector per key costs memory
        and time at tens of thousands of keys; ``PageHinkley`` is the smallest.
    state_uri, state_name, checkpoint_every, max_staleness_ms, label_ttl_seconds, label_capacity, routed
        As for :class:`~model_wrappers.river_model.RiverModel`. Under a
        :class:`~model_wrappers.key_router.KeyRouter`, set ``routed``: a feedback that reaches
        every shard (it names no routing) is then acknowledged without learning by the shards
        that own none of its keys.

    """

    def __init__(
        self,
        model_uri: str = "/mnt/models",
        key_feature: str = "",
        key_tag: str = "",
        create_keys: bool | None = None,
        max_keys_in_memory: int = 0,
        preload: bool = False,
        min_observations: int = -1,
        selection_metric: str = "",
        key_tags: bool = True,
        state_uri: str | None = None,
        state_name: str | None = None,
        checkpoint_every: int = 1000,
        max_staleness_ms: int = 0,
        label_ttl_seconds: int = 86400,
        label_capacity: int = 100_000,
        routed: bool = False,
        shards: int = 1,
        shard: int = 0,
        drift_detector: str = "none",
        drift_options: str = "{}",
    ):
        # Connections and learned state are made in load(), which runs in every forked process.
        self.model_uri = model_uri
        self.key_feature = key_feature or None
        self.key_tag = key_tag or None
        self.create_keys = create_keys
        self.capacity = int(max_keys_in_memory)
        self.preload = bool(preload)
        self.min_observations = None if int(min_observations) < 0 else int(min_observations)
        self.selection_metric = selection_metric or None
        self.key_tags = bool(key_tags)
        self.state_options = dict(
            state_uri=state_uri,
            state_name=state_name,
            checkpoint_every=checkpoint_every,
            max_staleness_ms=max_staleness_ms,
        )
        self.label_ttl = float(label_ttl_seconds)
        self.label_capacity = int(label_capacity)
        self.routed = bool(routed)
        self.shards = Shards(shards, shard)
        self.drift_options = dict(detector=drift_detector or "none", options=drift_options or "{}")
        self.replica: Replica | None = None
        self._gauges = GaugeReport()
        if self.key_feature and self.key_tag:
            raise ValueError(f"set key_feature or key_tag, not both (got {self.key_feature!r} and {self.key_tag!r})")
        if self.capacity < 0:
            raise ValueError(f"max_keys_in_memory must be 0 (no limit) or more, got {self.capacity}")

    # -- lifecycle ------------------------------------------------------------------------
    def load(self) -> None:
        model = load_keyed(self.model_uri)
        self.model: KeyedModel = model
        meta, keyed = model.metadata, model.keyed
        self.metadata = meta
        if not self.key_tag:
            self.key_feature = self.key_feature or keyed.key_feature
            if not self.key_feature:
                raise RuntimeError(
                    "no key: set the key_feature or key_tag parameter (the model folder names no key feature)"
                )
        if self.create_keys is None:
            self.create_keys = model.creates
        elif self.create_keys and not model.creates:
            raise RuntimeError("create_keys is on but the model folder has no templates to start new keys from")
        if not self.create_keys and not model.listed:
            raise RuntimeError("creating keys is switched off and the model folder lists no keys: nothing to serve")
        selection = Selection.for_task(
            meta.task,
            self.selection_metric or keyed.selection_metric,
            keyed.min_observations if self.min_observations is None else self.min_observations,
        )
        self.selection = selection
        features = tuple(meta.features)
        if self.key_feature and features:
            features = (Feature(self.key_feature, "category"), *features)
        self.schema = payload.Schema(features)
        self.truth_check = ModelState(None, meta.task, meta.classes)
        # The log starts over when what the state is built from changes: the folder or the rule.
        try:
            drift = DriftSettings.for_task(meta.task, self.drift_options["detector"], self.drift_options["options"])
        except ValueError as exc:
            raise RuntimeError(f"drift parameters: {exc}") from None
        version_of = {"model": meta.sha256, "keys": keyed.keys_sha256,
                      "metric": selection.metric, "min_observations": selection.min_observations}
        if drift is not None:  # unwatched keys keep the log they had before drift watching
            version_of["drift"] = [drift.detector, drift.options]
        version = fingerprint(version_of)
        options = dict(self.state_options)
        if self.shards.sharded:
            # One log per shard: a shard replays only its own events after losing its pod.
            options["state_name"] = (options["state_name"] or unit_id(meta.name)) + self.shards.state_suffix()
        settings = StateSettings.resolve(meta.name, version, **options)
        try:
            store = open_keystore(settings.uri, settings.name)
        except LogUnavailable as exc:
            raise RuntimeError(state_hint(exc)) from None
        origin = ShardOrigin(model, self.shards) if self.shards.sharded else model
        self.origin = origin
        options = dict(origin=origin, task=meta.task, classes=meta.classes, selection=selection,
                       store=store, capacity=self.capacity, drift=drift)
        self.store = store
        self.replica = Replica.started(
            lambda: KeyedState(**options),
            lambda blob: KeyedState.restore(blob, **options),
            settings, ttl=self.label_ttl, capacity=self.label_capacity,
        )
        seldon_metrics.install()
        preloaded = self.replica.read(lambda s: s.preload()) if self.preload else 0
        # Keys restored or replayed at start stay for the life of the process: keep the cyclic
        # collector from scanning them on every full pass (see KeyedState._ensure).
        gc.collect()
        gc.freeze()
        logger.info(
            "loaded keyed %s (%s, %d listed keys, candidates %s) at log position %d, %d events replayed, "
            "%d keys preloaded", meta.name, meta.task, len(origin.listed), ", ".join(model.candidates),
            self.replica.position, self.replica.replayed, preloaded,
        )

    # -- Seldon hooks ---------------------------------------------------------------------
    @seldon_errors
    def predict_raw(self, request):
        as_proto = not isinstance(request, dict)
        message = payload.to_dict(request)
        batch = self.schema.read(message)
        keys, rows = self._split(message, batch.rows)
        foreign = self.shards.foreign(keys)
        if foreign:
            raise InvalidInput(refusal(foreign, self.shards, "prediction refused", len(foreign) < len(set(keys))))
        puid = request_puid(message)

        def read(state: KeyedState):
            self._check_keys(state, keys)
            names, values = state.predict(keys, rows)
            described = state.key_figures(dict.fromkeys(keys)) if self.key_tags else None
            return names, values, state.figures(), described, self.replica.position

        try:
            names, values, figures, described, position = self.replica.read(read)
        except LogUnavailable as exc:
            raise StateUnavailable(f"the state of a requested key cannot be loaded: {exc}") from None
        self._remember(puid, keys, rows)
        # Keep the tags earlier graph nodes added (e.g. the outlier detector's), as Seldon's
        # wrapper does for components without raw hooks.
        tags = {**(meta_of(message).get("tags") or {}), **self._tags(position, described)}
        meta = {"puid": puid, "tags": tags, "metrics": self._gauges.changed(figures)}
        return payload.reply(batch.kind, names, values, meta, as_proto)

    @seldon_errors
    def send_feedback_raw(self, feedback):
        read = Feedback.read(feedback, self.routed)
        read.require_truth(self.metadata.task)
        earlier = self.replica.applied_at(read.id)
        if earlier is not None:
            return self._ack(earlier, read, [], {ALREADY_LEARNED_TAG: True})
        try:
            keys, rows = self._feedback_rows(read.message)
        except NotFound:
            if not read.for_a_sibling():
                raise
            return self._ack(self.replica.position, read, [], {LEARNED_TAG: 0})
        foreign = self.shards.foreign(keys)
        if foreign:
            if read.for_a_sibling() and len(foreign) == len(set(keys)):
                # Sent to every shard (it names no routing): the shard owning the keys learns it.
                return self._ack(self.replica.position, read, [], {LEARNED_TAG: 0})
            raise InvalidInput(refusal(foreign, self.shards, "feedback refused, nothing was learned",
                                       len(foreign) < len(set(keys))))
        truth = read.truth
        values = self.truth_check.check_truth(payload.read_values(truth, "truth"), len(rows)) if read.has_truth else None
        self.replica.read(lambda state: self._check_keys(state, keys))
        event = read.event({"type": "learn", "keys": keys, "rows": rows, "truth": values})
        position, already = self.replica.submit_once(event)
        return self._ack(position, read, keys, {ALREADY_LEARNED_TAG: True} if already else {})

    def _ack(self, position: int, read: Feedback, keys: list[str], tags: dict):
        def figures(state: KeyedState):
            return state.figures(), state.key_figures(dict.fromkeys(keys)) if self.key_tags else None

        found, described = self.replica.read(figures)
        return read.reply({**self._tags(position, described), **tags}, gauges(found))

    @seldon_errors
    def health_status_raw(self):
        query = current_query()
        if "key" in query or "keys" in query:
            try:
                offset = int((query.get("offset") or ["0"])[0])
                limit = int((query.get("limit") or [str(DEFAULT_PAGE)])[0])
            except ValueError:
                raise InvalidInput("offset and limit must be integers") from None
            body = self.key_figures(query.get("key") or None, offset=offset, limit=limit)
        else:
            body = self.status()
        return {"jsonData": body, "meta": {}}

    def init_metadata(self) -> dict:
        # Called by the wrapper before load(): the metadata files alone are enough.
        meta = read_metadata(self.model_uri)
        keyed = read_keyed_metadata(self.model_uri)
        key_feature = None if self.key_tag else (self.key_feature or keyed.key_feature)
        names = ([key_feature] if key_feature else []) + [f.name for f in meta.features]
        outputs = {"regressor": ["prediction"], "anomaly": ["score"]}.get(meta.task, [str(c) for c in meta.classes])
        return {
            "name": meta.name,
            "versions": [meta.sha256[:12]],
            "platform": f"river-{meta.river_version}",
            "inputs": [{"messagetype": "ndarray" if key_feature else "tensor",
                        "schema": {"names": names, "shape": [len(names)]}}],
            "outputs": [{"messagetype": "tensor", "schema": {"names": outputs, "shape": [len(outputs)]}}],
            "custom": {
                "task": meta.task, "sha256": meta.sha256, "keyed": "true",
                "candidates": ",".join(keyed.candidates), "keys": str(keyed.keys_count),
                "key": f"feature {key_feature}" if key_feature else f"tag {self.key_tag}",
                "shards": str(self.shards.count), "shard": str(self.shards.index),
            },
        }

    # -- queries --------------------------------------------------------------------------
    def status(self) -> dict:
        """Figures over all keys, the key settings and where the log stands."""
        figures, checkpoint = self.replica.read(lambda s: (s.figures(), dict(s.last_checkpoint)))
        return {
            "model": {"name": self.metadata.name, "task": self.metadata.task, "sha256": self.metadata.sha256},
            "keyed": {
                "key": {"feature": self.key_feature} if self.key_feature else {"tag": self.key_tag},
                "candidates": list(self.model.candidates),
                "listed_keys": len(self.origin.listed),
                "create_keys": self.create_keys,
                "max_keys_in_memory": self.capacity,
                "selection": {"metric": self.selection.metric, "min_observations": self.selection.min_observations},
                "last_checkpoint": checkpoint,
                "store": self.store.describe(),
                "drift": self.drift_options if self.drift_options["detector"] != "none" else None,
                **self.shards.describe(),
            },
            "metrics": figures,
            "replica": self.replica.status(),
        }

    def key_figures(self, keys=None, offset: int = 0, limit: int | None = DEFAULT_PAGE) -> dict:
        """Per-key figures: serving candidate, observations, progressive metrics.

        Parameters
        ----------
        keys
            The keys to describe; None pages through every key (sorted).
        offset, limit
            The page, when ``keys`` is None.

        Returns
        -------
        dict
            ``{"keys": {key: figures}, "unknown": [...]}`` for given keys;
            ``{"keys": {...}, "total": n, "offset": o, "next_offset": o2 or None}`` for a page.

        """
        if keys is not None:
            wanted = [self._key(k, "key") for k in keys]

            def some(state: KeyedState):
                found = state.key_figures(wanted)
                return {"keys": found, "unknown": [k for k in wanted if k not in found]}

            return self.replica.read(some)
        if offset < 0 or (limit is not None and limit < 1):
            raise InvalidInput(f"expected offset >= 0 and limit >= 1, got offset={offset}, limit={limit}")

        def page(state: KeyedState):
            everything = state.all_keys()
            end = len(everything) if limit is None else offset + limit
            chosen = everything[offset:end]
            return {"keys": state.key_figures(chosen), "total": len(everything), "offset": offset,
                    "next_offset": end if end < len(everything) else None}

        return self.replica.read(page)

    # -- helpers --------------------------------------------------------------------------
    _key = staticmethod(request_key)

    def _split(self, message: dict, rows: list[dict]) -> tuple[list[str], list[dict]]:
        """Each row's key, and the rows without the key feature."""
        if self.key_feature:
            name = self.key_feature
            keys = []
            for i, row in enumerate(rows):
                if name not in row:
                    raise InvalidInput(f"row {i} has no key: expected the feature {name!r}, got {sorted(row)}")
                keys.append(self._key(row[name], f"row {i}, key feature {name!r}"))
            return keys, [{k: v for k, v in row.items() if k != name} for row in rows]
        value = tagged_keys(message, self.key_tag)
        if isinstance(value, list):
            if len(value) != len(rows):
                raise InvalidInput(
                    f"meta.tags[{self.key_tag!r}] has {len(value)} keys but the request has {len(rows)} rows"
                )
            return [self._key(v, f"meta.tags[{self.key_tag!r}][{i}]") for i, v in enumerate(value)], rows
        return [self._key(value, f"meta.tags[{self.key_tag!r}]")] * len(rows), rows

    def _check_keys(self, state: KeyedState, keys: list[str]) -> None:
        unknown = state.unknown(keys, self.create_keys)
        if unknown:
            shown = ", ".join(repr(k) for k in unknown[:5])
            if len(unknown) > 5:
                shown += f" (and {len(unknown) - 5} more)"
            source = f"feature {self.key_feature!r}" if self.key_feature else f"meta.tags[{self.key_tag!r}]"
            why = ("creating keys is switched off (create_keys=false)" if self.model.creates
                   else "the model folder has no templates to start new keys from")
            raise InvalidInput(
                f"unknown key {shown} ({source}): this model serves the {state.known()} keys it knows and {why}"
            )

    def _tags(self, position: int, described: dict | None) -> dict:
        tags = {"seldon_river_model": self.metadata.name, "seldon_river_position": position}
        if self.shards.sharded:
            tags[SHARD_TAG] = self.shards.index
        if described is not None:
            tags[KEYS_TAG] = described
        return tags

    def _remember(self, puid: str, keys: list[str], rows: list[dict]) -> None:
        # Written in the background; a failure is logged there and only affects label-only feedback.
        self.replica.log.remember(puid, encode_record({"keys": keys, "rows": rows}))

    def _feedback_rows(self, message: dict) -> tuple[list[str], list[dict]]:
        request = message.get("request") or {}
        if request.get("data") is not None or request.get("jsonData") is not None:
            return self._split(request, self.schema.read(request).rows)
        puid, remembered = recall_prediction(message, self.replica.log, self.label_ttl, self.label_capacity)
        if not isinstance(remembered, dict) or "keys" not in remembered:
            raise NotFound(f"the prediction with puid {puid!r} was not made by a keyed model")
        return remembered["keys"], remembered["rows"]
