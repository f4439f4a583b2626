"""Group commit: concurrent appends of one process share one durable transaction.

A durable append costs one ``fsync`` (SQLite) or one append-only-file sync (Redis), far more
than encoding the event. When several threads of a process submit feedback at once, the first
one to arrive writes every event waiting at that moment in one ``append_many`` call; the
others wait for it, and each caller returns only once the transaction holding its own event
is durable. Calls on an event loop (:meth:`GroupCommit.append_async`) join the same batches:
a thread of the commit's own writes for them, and the loop goes on serving meanwhile. A failed
transaction fails every caller in it, and none of its events was written.

Examples
--------
>>> import asyncio, tempfile
>>> from model_wrappers.log.sqlite import SQLiteLog
>>> log = SQLiteLog(tempfile.mkdtemp() + "/state.db", "demo")
>>> commits = GroupCommit(log)
>>> commits.append(b'{"n":1}'), commits.append(b'{"n":2}')
(1, 2)
>>> commits.transactions
2
>>> async def three_at_once():
...     return await asyncio.gather(*(commits.append_async(b'{"n":3}') for _ in range(3)))
>>> asyncio.run(three_at_once())
[3, 4, 5]

"""

from __future__ import annotations

import asyncio
import threading
from typing import Callable

from .base import EventLog


class _Pending:
    __slots__ = ("payload", "position", "error", "done", "future")

    def __init__(self, payload: bytes, future: asyncio.Future | None = None):
        self.payload = payload
        self.position: int | None = None
        self.error: BaseException | None = None
        self.done = False
        self.future = future  # set for a caller on an event loop


class GroupCommit:
    """Batches the concurrent ``append`` calls of one process into ``log.append_many``.

    Parameters
    ----------
    log
        The learning log to append to.
    max_batch
        Most events in one transaction.
    on_durable
        Called with the positions and payloads of each transaction once it is durable, before
        its callers return (the replica applies its own events from there, not from the log).

    """

    def __init__(self, log: EventLog, max_batch: int = 256,
                 on_durable: Callable[[list[int], list[bytes]], None] | None = None):
        self.log = log
        self.max_batch = max_batch
        self.on_durable = on_durable
        self.transactions = 0
        self._cond = threading.Condition(threading.Lock())
        self._waiting: list[_Pending] = []
        self._writing = False
        self._writer: threading.Thread | None = None

    def append(self, payload: bytes) -> int:
        """Durably append one event (with whatever else is waiting); return its position."""
        mine = _Pending(payload)
        with self._cond:
            self._waiting.append(mine)
            while not mine.done:
                if self._writing:
                    self._cond.wait()
                    continue
                self._write_next()
        if mine.error is not None:
            raise mine.error
        return mine.position

    async def append_async(self, payload: bytes) -> int:
        """:meth:`append` for a caller on an event loop, which is not blocked while it waits."""
        mine = _Pending(payload, asyncio.get_running_loop().create_future())
        with self._cond:
            self._waiting.append(mine)
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_for_loops, name="seldon-river-commit",
                                                daemon=True)
                self._writer.start()
            self._cond.notify_all()
        return await mine.future

    def _write_for_loops(self) -> None:
        # Lives as long as the process once a loop caller has come: writes whatever waits
        # (threads' events too, which then find theirs written).
        with self._cond:
            while True:
                if self._writing or not self._waiting:
                    self._cond.wait()
                    continue
                self._write_next()

    def _write_next(self) -> None:
        """With the lock held and no write in progress: write the next batch, then wake everyone."""
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

    def _write(self, batch: list[_Pending]) -> None:
        payloads = [p.payload for p in batch]
        try:
            positions = self.log.append_many(payloads)
        except BaseException as exc:  # every caller in the transaction learns why it failed
            for pending in batch:
                pending.error, pending.done = exc, True
        else:
            self.transactions += 1
            if self.on_durable is not None:
                self.on_durable(positions, payloads)
            for pending, position in zip(batch, positions):
                pending.position, pending.done = position, True
        by_loop: dict = {}
        for pending in batch:
            if pending.future is not None:
                by_loop.setdefault(pending.future.get_loop(), []).append(pending)
        for loop, pendings in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, pendings)
            except RuntimeError:  # that loop has closed: nobody is waiting any more
                pass


def _settle(pendings: list[_Pending]) -> None:
    for pending in pendings:
        if pending.future.done():  # the caller was cancelled
            continue
        if pending.error is not None:
            pending.future.set_exception(pending.error)
        else:
            pending.future.set_result(pending.position)
