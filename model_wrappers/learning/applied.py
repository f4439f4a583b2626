"""Which feedbacks a state has already learned: the ids of the newest events it applied.

An event may carry an ``id`` naming the feedback it comes from (an explicit feedback id, or the
request id of the prediction it is about). The same feedback can reach the log twice: a client
retrying after a lost reply, a graph fanning a feedback out, a replayed stream, two processes
appending it at the same time. Every state checks the id in ``apply``, in log order, so every
process and replica skips the same copies and learns each feedback once. The ids live inside
the state, so a checkpoint carries them and a restart still recognises a late copy.

Only the newest :data:`WINDOW` ids are kept (about 16 bytes each in a checkpoint): a copy that
arrives after that many newer feedbacks is learned again.

Examples
--------
>>> applied = AppliedIds(capacity=2)
>>> applied.add("a", 1), applied.add("a", 2)
(True, False)
>>> applied.position("a")
1
>>> applied.add("b", 3), applied.add("c", 4)
(True, True)
>>> applied.position("a") is None  # pushed out by newer ids
True
>>> AppliedIds.from_text(applied.to_text()).position("c")
4

"""

from __future__ import annotations

import array
import base64
import collections
import hashlib
from typing import Any

WINDOW = 100_000


def _digest(feedback_id: str) -> int:
    # 64 bits: two different ids among the kept ones collide with odds of about 1 in 10^9.
    return int.from_bytes(hashlib.blake2b(feedback_id.encode("utf-8"), digest_size=8).digest(), "big", signed=True)


class AppliedIds:
    """The newest ``capacity`` feedback ids applied, each with the log position that applied it.

    Parameters
    ----------
    capacity
        How many ids are kept; the oldest go first.

    """

    def __init__(self, capacity: int = WINDOW):
        self.capacity = int(capacity)
        self._positions: dict[int, int] = {}
        self._order: collections.deque[int] = collections.deque()

    def __len__(self) -> int:
        return len(self._positions)

    def position(self, feedback_id: str) -> int | None:
        """The log position that applied ``feedback_id``, if it is among the kept ones."""
        return self._positions.get(_digest(feedback_id))

    def add(self, feedback_id: str, position: int | None) -> bool:
        """Record ``feedback_id`` as applied at ``position``; False if it already was (a copy)."""
        key = _digest(feedback_id)
        if key in self._positions:
            return False
        self._positions[key] = int(position or 0)
        self._order.append(key)
        while len(self._order) > self.capacity:
            del self._positions[self._order.popleft()]
        return True

    # -- checkpoints: two packed arrays rather than a pickled dict of Python ints ---------------
    def __getstate__(self) -> dict:
        keys = array.array("q", self._order)
        positions = array.array("q", (self._positions[k] for k in self._order))
        return {"capacity": self.capacity, "keys": keys.tobytes(), "positions": positions.tobytes()}

    def __setstate__(self, packed: dict) -> None:
        keys, positions = array.array("q"), array.array("q")
        keys.frombytes(packed["keys"])
        positions.frombytes(packed["positions"])
        self.capacity = packed["capacity"]
        self._order = collections.deque(keys)
        self._positions = dict(zip(keys, positions))

    def to_text(self) -> dict:
        """A JSON-able form (for checkpoints that are JSON headers)."""
        packed = self.__getstate__()
        return {"capacity": self.capacity, "keys": base64.b64encode(packed["keys"]).decode(),
                "positions": base64.b64encode(packed["positions"]).decode()}

    @classmethod
    def from_text(cls, text: dict) -> "AppliedIds":
        out = cls.__new__(cls)
        out.__setstate__({"capacity": int(text["capacity"]), "keys": base64.b64decode(text["keys"]),
                          "positions": base64.b64decode(text["positions"])})
        return out


def first_application(state: Any, event: dict, position: int | None) -> bool:
    """Whether ``event`` is the first with its id that ``state`` applies (events without one always are).

    The ids are kept in ``state.applied``, made on first use: checkpoints written before ids
    existed, and states that never see one (the per-key models inside a keyed state), have none.
    """
    feedback_id = event.get("id")
    if feedback_id is None:
        return True
    applied = getattr(state, "applied", None)
    if applied is None:
        applied = state.applied = AppliedIds()
    return applied.add(feedback_id, position)


def applied_at(state: Any, feedback_id: str | None) -> int | None:
    """The log position at which ``state`` applied ``feedback_id`` (None if it did not, or forgot)."""
    applied = getattr(state, "applied", None)
    if feedback_id is None or applied is None:
        return None
    return applied.position(feedback_id)
