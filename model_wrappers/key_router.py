"""KeyRouter: a Seldon ROUTER sending each request to the shard of a keyed model that owns its key.

Run it with Seldon's wrapper::

    seldon-core-microservice model_wrappers.KeyRouter --service-type ROUTER \\
        --parameters '[{"name": "shards", "value": "2", "type": "INT"},
                       {"name": "key_feature", "value": "product_id", "type": "STRING"}]'

Its children in the graph are the shards of one keyed model in order: child ``i`` is the
:class:`~model_wrappers.keyed_model.KeyedRiverModel` with ``shards=N, shard=i``. A request goes
to child :func:`~model_wrappers.learning.shards.shard_of` of its key, read as the shards read
it (``key_feature``: a request column, the first one of a ``data.ndarray`` without names;
``key_tag``: a ``meta.tags`` entry). The router learns nothing and keeps no state.

- ``route``: ``[[shard]]``, the shard owning the request's keys. The router itself refuses
  nothing: Seldon's v1.17.1 orchestrator answers a router's error with a message of its own over
  REST (``Internal service call ... failed``) and crashes on it over gRPC, while a MODEL's 400
  reaches the client as the model worded it. So a request the router cannot read a key from goes
  to shard 0, and a request whose rows belong to several shards goes to the owner of its first
  row; that shard refuses it with 400 (gRPC ``INVALID_ARGUMENT``) saying what is wrong (which
  rows belong to which shard: Seldon sends a request to one child, so the client splits such a
  batch). :meth:`KeyRouter.keys_of` and :meth:`KeyRouter.shard_for` say it in Python.
- ``send_feedback``: acknowledged; Seldon's orchestrator calls it after the shard the response's
  ``meta.routing`` names has learned the feedback (with no routing, after every shard: the owner
  learns, the others acknowledge without learning, see ``routed``). The reply, which is what the
  client gets, names the shard.

Examples
--------
>>> router = KeyRouter(shards=2, key_feature="product_id")
>>> router.load()
>>> reply = router.route_raw({"jsonData": [{"product_id": "FOODS_1_001_CA_1", "price": 3.49}]})
>>> reply["data"]["ndarray"], reply["meta"]["tags"]["seldon_river_shard"]
([[0]], 0)
>>> router.shard_for({"data": {"ndarray": [["FOODS_1_001_CA_1", 1.0], ["HOBBIES_1_004_TX_2", 2.0]]}})
Traceback (most recent call last):
...
model_wrappers.errors.InvalidInput: the request's rows belong to 2 shards ...
>>> router.route_raw({"data": {"ndarray": [["FOODS_1_001_CA_1", 1.0], ["HOBBIES_1_004_TX_2", 2.0]]}})["data"]
{'ndarray': [[0]]}

"""

from __future__ import annotations

import collections
import logging
import os

from google.protobuf.message import Message

from . import payload, seldon_metrics
from .adapter_support import METRIC_PREFIX, Feedback, request_key, tagged_keys
from .config import unit_id
from .errors import InvalidInput, seldon_errors
from .learning.shards import Shards, shard_of
from .stock_wrapper import StockWrapperSupport

logger = logging.getLogger(__name__)

DEFAULT_UNIT = "key-router"
SHARD_TAG = "seldon_river_shard"


class KeyRouter(StockWrapperSupport):
    """Seldon ROUTER choosing, for each request, the shard that owns the request's key.

    Parameters
    ----------
    shards
        Required (INT): the number of shards, which are this router's children in order.
    key_feature
        Request feature naming each row's key, as the shards' ``key_feature``.
    key_tag
        Or: the ``meta.tags`` entry naming the key (one value, or a list with one key per row).

    """

    def __init__(self, shards: int | None = None, key_feature: str = "", key_tag: str = ""):
        if shards is None:
            raise ValueError("shards is required: set the INT parameter shards to the number of children of this ROUTER")
        self.shards = Shards(shards, 0).count  # checked here, before Seldon forks its servers
        self.key_feature = key_feature or None
        self.key_tag = key_tag or None
        if bool(self.key_feature) == bool(self.key_tag):
            raise ValueError(
                "set key_feature (the request column naming the key) or key_tag (the meta.tags entry), "
                f"exactly one of them; got key_feature={key_feature!r}, key_tag={key_tag!r}"
            )
        self.unit = unit_id(DEFAULT_UNIT)
        self.routed: collections.Counter[int] = collections.Counter()

    def load(self) -> None:
        seldon_metrics.install()
        if os.environ.get("PREDICTIVE_UNIT_ID") is None:
            logger.warning("PREDICTIVE_UNIT_ID is not set: feedback replies name the shard of routing[%r]", self.unit)
        logger.info("key router %s over %d shards, key %s", self.unit, self.shards, self._source())

    # -- Seldon hooks ---------------------------------------------------------------------
    @seldon_errors
    def route_raw(self, request):
        as_proto = isinstance(request, Message)
        try:
            keys = self.keys_of(payload.to_dict(request))
        except InvalidInput as exc:
            # The shard reads the request as this router does and refuses it with the reason
            # (see the module's docstring for why the router does not).
            shard = 0
            logger.debug("routing a request the shards will refuse to shard 0: %s", exc)
        else:
            # The owner of the first row serves the request, or refuses it if other rows are not its own.
            shard = shard_of(keys[0], self.shards)
        self.routed[shard] += 1
        reply = {
            "data": {"ndarray": [[shard]]},
            "meta": {"tags": {SHARD_TAG: shard},
                     "metrics": [{"type": "COUNTER", "key": f"{METRIC_PREFIX}shard_routed", "value": 1,
                                  "tags": {"shard": str(shard)}}]},
        }
        return payload.to_proto(reply) if as_proto else reply

    @seldon_errors
    def send_feedback_raw(self, feedback):
        # Read and checked as every node checks it, so what the shards accepted is accepted here.
        read = Feedback.read(feedback)
        shard = read.routing.get(self.unit)
        tags = {"seldon_river_shards": self.shards, **({SHARD_TAG: shard} if shard is not None else {})}
        return read.reply(tags)

    def health_status_raw(self):
        return {"jsonData": self.status(), "meta": {}}

    def init_metadata(self) -> dict:
        return {
            "name": self.unit,
            "versions": [f"shards-{self.shards}"],
            "platform": "seldon-river",
            "inputs": [{"messagetype": "jsonData", "schema": {}}],
            "outputs": [{"messagetype": "ndarray", "schema": {"names": ["shard"], "shape": [1]}}],
            "custom": {"shards": str(self.shards), "key": self._source()},
        }

    def status(self) -> dict:
        """The routing rule and how many requests this process sent to each shard."""
        return {
            "router": {"unit": self.unit, "shards": self.shards, "key": self._source(),
                       "rule": f"crc32(key) % {self.shards}"},
            "routed": {str(shard): self.routed[shard] for shard in range(self.shards)},
        }

    # -- helpers --------------------------------------------------------------------------
    def shard_for(self, message: dict) -> int:
        """The shard owning every key of the request; InvalidInput if the rows belong to several."""
        keys = self.keys_of(message)
        owners: dict[int, list[int]] = {}
        for i, key in enumerate(keys):
            owners.setdefault(shard_of(key, self.shards), []).append(i)
        if len(owners) > 1:
            raise InvalidInput(self._spanning(keys, owners))
        (shard,) = owners
        return shard

    def _source(self) -> str:
        return f"feature {self.key_feature}" if self.key_feature else f"tag {self.key_tag}"

    def keys_of(self, message: dict) -> list[str]:
        """Each row's key, read from the request as the shards read it."""
        if self.key_tag:
            value = tagged_keys(message, self.key_tag)
            values = value if isinstance(value, list) else [value]
            return [self._key(v, f"meta.tags[{self.key_tag!r}]") for v in values]
        names, table, _ = payload.table(message)
        if not table:
            raise InvalidInput("the request has no rows (empty batch)")
        name = self.key_feature
        keys = []
        for i, row in enumerate(table):
            if isinstance(row, dict):
                if name not in row:
                    raise InvalidInput(f"row {i} has no key: expected the feature {name!r}, got {sorted(row)}")
                value = row[name]
            elif names is not None:
                if name not in names:
                    raise InvalidInput(f"no key: expected the feature {name!r} among data.names, got {names}")
                if len(row) != len(names):
                    raise InvalidInput(f"row {i}: expected {len(names)} columns ({', '.join(names)}), got {len(row)}")
                value = row[names.index(name)]
            else:
                # Without names the key is the first column, as the keyed model reads it.
                if not row:
                    raise InvalidInput(f"row {i} has no key: expected {name!r} as its first column, got an empty row")
                value = row[0]
            keys.append(self._key(value, f"row {i}, key feature {name!r}"))
        return keys

    _key = staticmethod(request_key)

    def _spanning(self, keys: list[str], owners: dict[int, list[int]]) -> str:
        parts = []
        for shard, rows in owners.items():  # in the order of the rows
            shown = ", ".join(str(i) for i in rows[:5]) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
            first = ", ".join(repr(k) for k in dict.fromkeys(keys[i] for i in rows[:3]))
            parts.append(f"rows {shown} (keys {first}) to shard {shard}")
        return (
            f"the request's rows belong to {len(owners)} shards ({'; '.join(parts)}): a request is routed "
            f"to one shard, so send the rows of each shard in a request of their own (a key belongs to "
            f"shard crc32(key) % {self.shards})"
        )
