"""Request ids for predictions that arrive without one.

An id names a prediction so a later feedback can find it again: it must be unique, not secret
(anyone who can send a feedback can send its request too). ``uuid.uuid4()`` asks the operating
system for randomness on every call, a system call that costs more than the rest of a small
prediction on some hosts; ids here come from a generator seeded by the system once per process
(and again in a forked child, which would otherwise repeat its parent's ids).

Examples
--------
>>> a, b = new_request_id(), new_request_id()
>>> len(a), a != b, int(a, 16) >= 0
(32, True, True)

"""

from __future__ import annotations

import os
import random

_ids = random.Random()
os.register_at_fork(after_in_child=_ids.seed)


def new_request_id() -> str:
    """128 random bits as 32 hex digits (the form of ``uuid.uuid4().hex``)."""
    return f"{_ids.getrandbits(128):032x}"
