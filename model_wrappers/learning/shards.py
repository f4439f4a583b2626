"""Which shard of a keyed model owns a key.

A keyed model split over ``N`` shards serves each key from exactly one of them: key ``k``
belongs to shard ``crc32(k) % N``, where ``crc32`` is zlib's CRC-32 of the key's text in UTF-8
(keys are text, see :func:`~model_wrappers.keyed_artifact.key_text`). The rule depends on the
key and ``N`` only: every process, every replica, the router in front of the shards and a
restarted shard agree on it without asking anyone, and it is the same on every Python (unlike
``hash()``, which is salted per process).

A shard holds, learns and checkpoints its own keys only, under a learning log of its own
(:meth:`Shards.state_suffix`); changing ``N`` moves keys between shards, so each shard then
starts a new log from the model folder.

Examples
--------
>>> shard_of("FOODS_1_001_CA_1", 2), shard_of("FOODS_1_001_CA_1", 4)
(0, 2)
>>> shards = Shards(count=4, index=2)
>>> shards.owns("FOODS_1_001_CA_1"), shards.owns("HOBBIES_1_004_TX_2")
(True, False)
>>> shards.foreign(["FOODS_1_001_CA_1", "HOBBIES_1_004_TX_2"])
{'HOBBIES_1_004_TX_2': 3}
>>> shards.state_suffix()
'-shard-2-of-4'
>>> Shards().owns("anything"), Shards().state_suffix()
(True, '')

"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any, Iterable, Sequence


def shard_of(key: str, shards: int) -> int:
    """The index (0 to ``shards - 1``) of the shard that owns ``key``."""
    # surrogatepass: a key is checked to be valid text before it gets here, but the rule must
    # never raise on whatever text it is given.
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % shards


@dataclasses.dataclass(frozen=True)
class Shards:
    """One shard's place among the shards of a keyed model.

    Parameters
    ----------
    count
        How many shards the keys are split over (1: not sharded, every key is owned).
    index
        Which of them this one is, from 0 to ``count - 1``.

    """

    count: int = 1
    index: int = 0

    def __post_init__(self):
        for name in ("count", "index"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"shards and shard must be integers, got {name}={value!r}")
        if self.count < 1:
            raise ValueError(f"shards must be 1 (not sharded) or more, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard must be from 0 to shards - 1 = {self.count - 1}, got {self.index}")

    @property
    def sharded(self) -> bool:
        return self.count > 1

    def owner(self, key: str) -> int:
        """The shard that owns ``key``."""
        return shard_of(key, self.count) if self.sharded else 0

    def owns(self, key: str) -> bool:
        return not self.sharded or shard_of(key, self.count) == self.index

    def foreign(self, keys: Iterable[str]) -> dict[str, int]:
        """The keys among ``keys`` owned by another shard, in order of appearance, with their owner."""
        if not self.sharded:
            return {}
        out = {}
        for key in dict.fromkeys(keys):
            owner = shard_of(key, self.count)
            if owner != self.index:
                out[key] = owner
        return out

    def state_suffix(self) -> str:
        """What the shard's learning-log name ends with, so that each shard keeps a log of its own."""
        return f"-shard-{self.index}-of-{self.count}" if self.sharded else ""

    def describe(self) -> dict:
        return {"shards": self.count, "shard": self.index}


def refusal(foreign: dict[str, int], shards: Shards, where: str, mixed: bool = False) -> str:
    """The message a shard refuses keys of other shards with: which keys, and who owns them.

    ``mixed``: the request also has keys of this shard (its rows belong to several shards).
    """
    shown = ", ".join(f"{key!r} belongs to shard {owner}" for key, owner in list(foreign.items())[:5])
    if len(foreign) > 5:
        shown += f" (and {len(foreign) - 5} more keys of other shards)"
    rule = f"this is shard {shards.index} of {shards.count} (a key belongs to shard crc32(key) % {shards.count})"
    if mixed:
        return (
            f"{where}: the request's rows belong to several shards: {shown}; {rule}. A request is served "
            "by the one shard that owns its keys: send the rows of each shard in a request of their own"
        )
    return (
        f"{where}: {shown}; {rule}. Send each key to the shard that owns it, or send requests through "
        "the KeyRouter in front of the shards"
    )


class ShardOrigin:
    """A keyed model folder seen by one shard: only the keys the shard owns start from it.

    Wraps an :class:`~model_wrappers.learning.keyed.Origin` (the folder): ``listed`` keeps the
    shard's own keys, and ``pipelines`` loads nothing for another shard's key, so a shard never
    holds or counts keys it does not serve.

    Examples
    --------
    >>> from model_wrappers.learning.keyed import Templates
    >>> origin = ShardOrigin(Templates({"m": None}), Shards(2, 1))
    >>> sorted(origin.pipelines(["a", "b", "c", "d"]))
    ['a', 'b', 'c']

    """

    def __init__(self, origin: Any, shards: Shards):
        self.origin = origin
        self.shards = shards
        self.candidates = origin.candidates
        self.creates = origin.creates
        self.listed = frozenset(k for k in origin.listed if shards.owns(k))

    def pipelines(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        return self.origin.pipelines([k for k in keys if self.shards.owns(k)])
