"""Prediction records written in the background, many per write.

A prediction record (the features of a prediction, by request id) is only needed if a label-only
feedback for it comes later, usually seconds to days later. Writing it on the request path costs a
transaction (SQLite) or a round trip (Redis) per prediction; instead :class:`RecordWriter` keeps it
in the process for :data:`RECORD_DELAY` and a background thread writes everything that gathered
meanwhile in one go. A record can therefore be lost if its process dies within that delay: its
prediction was answered, only a label-only feedback for it will not find it (404). Learned state
is never involved.

A label-only feedback may reach another process before the record is written: :meth:`recall`
looks again for up to :data:`RECALL_WAIT` before answering that nothing is known.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

from ..checks import valid_text

logger = logging.getLogger(__name__)

# Seconds a record waits to share a write with others. Longer waits make larger writes, which
# cost the writing thread less per record (at ~2,700 predictions/s: ~14 us at 0.05 s, ~23 us at 0.01 s).
RECORD_DELAY = 0.05
RECALL_WAIT = 0.25  # seconds a recall keeps looking for a record another process may still hold
RECALL_POLL = 0.01  # seconds between two looks

Write = Callable[[list[tuple[str, float, bytes]]], None]
Read = Callable[[str], "bytes | None"]


class RecordWriter:
    """Records kept in this process until a background thread writes them in one batch.

    Parameters
    ----------
    write
        Writes ``(key, expires, record)`` triples; raises on failure (logged; the batch is halved
        until the failing records are found, and only they are dropped).
    read
        Reads one stored record that has not expired, or None.
    ttl
        Seconds a record is kept.

    Examples
    --------
    >>> stored = {}
    >>> writer = RecordWriter(lambda batch: stored.update({k: r for k, _, r in batch}), stored.get, ttl=60)
    >>> writer.remember("puid-1", b"[1, 2]")
    >>> writer.recall("puid-1")  # still in this process
    b'[1, 2]'
    >>> writer.flush(); stored
    {'puid-1': b'[1, 2]'}

    """

    def __init__(self, write: Write, read: Read, ttl: float):
        self._write = write
        self._read = read
        self.ttl = ttl
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[float, bytes]] = {}
        self._wake = threading.Event()
        self._thread_pid: int | None = None
        self._failing = False

    def remember(self, key: str, record: bytes) -> None:
        # Checked here, on the request path, so that no record can make the write of its batch fail.
        if not isinstance(key, str) or not key or not valid_text(key):
            raise ValueError(f"a prediction record needs a request id that is valid text, got {key!r}")
        if not isinstance(record, bytes):
            raise ValueError(f"a prediction record must be bytes, got {type(record).__name__}")
        with self._lock:
            self._pending[key] = (time.time() + self.ttl, record)
            if self._thread_pid != os.getpid():
                # One thread per process: a forked child does not inherit its parent's thread.
                self._thread_pid = os.getpid()
                threading.Thread(target=self._run, name="prediction-records", daemon=True).start()
        # Once per batch: the record is pending before this check, and the thread clears the
        # flag before it waits out the delay, so the flush after it takes the record along.
        if not self._wake.is_set():
            self._wake.set()

    def recall(self, key: str) -> bytes | None:
        with self._lock:
            waiting = self._pending.get(key)
        if waiting is not None:
            return waiting[1] if waiting[0] >= time.time() else None
        deadline = time.monotonic() + RECALL_WAIT
        while True:
            found = self._read(key)
            if found is not None or time.monotonic() >= deadline:
                return found
            time.sleep(RECALL_POLL)

    def flush(self) -> None:
        """Write the records waiting in this process now."""
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return
        lost, error = self._write_isolating([(key, expires, record) for key, (expires, record) in batch.items()])
        if lost:
            # The predictions were answered; only label-only feedback for them will fail.
            if not self._failing:
                logger.warning("%d prediction records not written (label-only feedback for them will fail): %s",
                               lost, error)
            self._failing = True
        else:
            if self._failing:
                logger.info("prediction records are written again")
            self._failing = False

    def _attempt(self, batch: list) -> Exception | None:
        try:
            self._write(batch)
        except Exception as exc:  # noqa: BLE001 - any store error: the records are what is lost
            return exc
        return None

    def _write_isolating(self, batch: list) -> tuple[int, Exception | None]:
        """Write ``batch``; return how many records were lost and the last error.

        A failed batch is split in halves and each is tried, down to the record that fails, so a
        record that cannot be written loses only itself. When both halves fail, the store itself
        is failing (down, full) and the batch is given up on: a few attempts, not one per record.
        """
        error = self._attempt(batch)
        while error is not None:
            if len(batch) == 1:
                return 1, error
            middle = len(batch) // 2
            halves = [batch[:middle], batch[middle:]]
            failed = [(half, e) for half in halves if (e := self._attempt(half)) is not None]
            if len(failed) == 2:
                return len(batch), failed[1][1]
            if not failed:
                return 0, None
            batch, error = failed[0]
        return 0, None

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            time.sleep(RECORD_DELAY)
            self.flush()
