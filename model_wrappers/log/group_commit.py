"""Group commit: concurrent appends of one process share one durable transaction.

A durable append costs one ``fsync`` (SQLite) or one append-only-file sync (Redis), far more
than encoding the event. When several threads of a process submit feedback at once, the first
one to arrive writes every event waiting at that moment in one ``append_many`` call; the
others wait for it, and each caller returns only once the transaction holding its own event
is durable. A failed transaction fails every caller in it, and none of its events was written.

Examples
--------
>>> import tempfile
>>> from model_wrappers.log.sqlite import SQLiteLog
>>> log = SQLiteLog(tempfile.mkdtemp() + "/state.db", "demo")
>>> commits = GroupCommit(log)
>>> commits.append(b'{"n":1}'), commits.append(b'{"n":2}')
(1, 2)
>>> commits.transactions
2

"""

from __future__ import annotations

import threading

from .base import EventLog


class _Pending:
    __slots__ = ("payload", "position", "error", "done")

    def __init__(self, payload: bytes):
        self.payload = payload
        self.position: int | None = None
        self.error: BaseException | None = None
        self.done = False


class GroupCommit:
    """Batches the concurrent ``append`` calls of one process into ``log.append_many``.

    Parameters
    ----------
    log
        The learning log to append to.
    max_batch
        Most events in one transaction.

    """

    def __init__(self, log: EventLog, max_batch: int = 256):
        self.log = log
        self.max_batch = max_batch
        self.transactions = 0
        self._cond = threading.Condition(threading.Lock())
        self._waiting: list[_Pending] = []
        self._writing = False

    def append(self, payload: bytes) -> int:
        """Durably append one event (with whatever else is waiting); return its position."""
        mine = _Pending(payload)
        with self._cond:
            self._waiting.append(mine)
            while not mine.done:
                if self._writing:
                    self._cond.wait()
                    continue
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
                self._writing = True
                self._cond.release()
                try:
                    self._write(batch)
                finally:
                    self._cond.acquire()
                    self._writing = False
                    self._cond.notify_all()
        if mine.error is not None:
            raise mine.error
        return mine.position

    def _write(self, batch: list[_Pending]) -> None:
        try:
            positions = self.log.append_many([p.payload for p in batch])
        except BaseException as exc:  # every caller in the transaction learns why it failed
            for pending in batch:
                pending.error, pending.done = exc, True
            return
        self.transactions += 1
        for pending, position in zip(batch, positions):
            pending.position, pending.done = position, True
