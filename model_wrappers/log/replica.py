"""A learned state kept in step with its learning log.

Each serving process owns one :class:`Replica`. Reads first catch up with the log (so a
prediction reflects every acknowledged feedback, unless ``max_staleness`` allows a bounded lag);
writes append an event, then apply the log up to and including it. Every ``checkpoint_every``
positions the process that appended that position writes a checkpoint and drops the events
behind it, so a restart loads the checkpoint and replays only the tail. A state is anything with
``apply(event, position)``, ``snapshot()`` and a ``restore(blob)`` to build it again.

Examples
--------
>>> import tempfile
>>> from model_wrappers.log.sqlite import SQLiteLog
>>> class Counter:
...     def __init__(self): self.total = 0
...     def apply(self, event, position): self.total += event["add"]
...     def snapshot(self): return str(self.total).encode()
...     @staticmethod
...     def restore(blob):
...         state = Counter(); state.total = int(blob); return state
>>> path = tempfile.mkdtemp() + "/state.db"
>>> a = Replica(Counter, Counter.restore, SQLiteLog(path, "demo"), checkpoint_every=2)
>>> b = Replica(Counter, Counter.restore, SQLiteLog(path, "demo"), checkpoint_every=2)
>>> a.start(); b.start()
>>> for n in (1, 2, 3):
...     _ = a.submit({"add": n})
>>> b.read(lambda state: state.total)
6
>>> c = Replica(Counter, Counter.restore, SQLiteLog(path, "demo"), checkpoint_every=2)
>>> c.start(); (c.read(lambda state: state.total), c.replayed)
(6, 1)

"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from typing import Any, Callable

import orjson

from ..config import without_password
from ..errors import NotLearned, OutcomeUnknown, StateUnavailable
from ..learning.applied import applied_at
from . import open_log, steps
from .base import Checkpoint, EventLog, LogOutcomeUnknown, LogUnavailable
from .group_commit import GroupCommit

logger = logging.getLogger(__name__)

READ_BATCH = 1000
# Seconds a read trusts an unmoved mark before querying anyway: a writer that died between its
# commit and moving the mark, or one that does not move it, is then seen this late at most.
MARK_TRUSTED_FOR = 1.0
UNLEARNED_KEPT = 100


def encode(event: dict) -> bytes:
    # Compact, key-sorted JSON: floats round-trip exactly and the bytes are the same everywhere.
    return json.dumps(event, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


def decode(payload: bytes) -> dict:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:  # not what encode() writes; Python's reader says why
        return json.loads(payload)


def checkpoint_at(log: EventLog, position: int) -> Checkpoint:
    """The checkpoint ``log`` keeps at ``position``."""
    found = log.load_checkpoint(position)
    if found is None:
        raise LogUnavailable(f"log {log.name!r} keeps no checkpoint at position {position}: {reachable(log)}")
    return found


def reachable(log: EventLog) -> str:
    """Which past states ``log`` can still give: a position is rebuilt from a kept checkpoint at or
    before it (or from the start) when the log still holds every event in between."""
    kept = log.list_checkpoints()
    held = log.read(0, 1)
    head = log.head()
    first = held[0][0] if held else head + 1
    starts = [s for s in (0, *kept) if s >= first - 1]
    alone = [c for c in kept if c < first - 1]
    can = f"positions {min(starts)}..{head}" if starts else "no position"
    if alone:
        can += f" and the checkpoints at {alone}"
    events = f"events {first}..{head}" if held else "no events"
    return f"it keeps checkpoints at {kept or 'no position'} and {events}, so {can} can be pulled"


def state_hint(exc: Exception) -> str:
    """The message a component stops with when its state backend cannot be opened."""
    return f"{exc}; set the state_uri parameter or SELDON_RIVER_STATE_URI"


class Replica:
    """One process's copy of a learned state, driven by a shared :class:`EventLog`.

    Parameters
    ----------
    fresh
        Builds the initial state (e.g. from the model folder) when there is no checkpoint.
    restore
        Builds a state from a checkpoint blob written by the state's ``snapshot()``.
    log
        The learning log.
    checkpoint_every
        Write a checkpoint (and compact the log behind it) every this many positions.
    max_staleness
        Seconds a read may go without checking the log for new events; 0 checks on every read.

    """

    def __init__(
        self,
        fresh: Callable[[], Any],
        restore: Callable[[bytes], Any],
        log: EventLog,
        checkpoint_every: int = 1000,
        max_staleness: float = 0.0,
    ):
        self._fresh = fresh
        self._from_checkpoint = restore
        self.log = log
        # Events this process logged, by position, until applied: the replica applies them from
        # here rather than reading back what it has just written.
        self._written: dict[int, bytes] = {}
        self._commits = GroupCommit(log, on_durable=self._logged)
        self.checkpoint_every = max(1, int(checkpoint_every))
        self.max_staleness = max_staleness
        self.state: Any = None
        self.position = 0
        self.replayed = 0
        self.restored_from = 0
        self.last_error: str | None = None
        self.unlearned: dict[int, str] = {}  # newest positions whose event could not be applied, and why
        self._checked = 0.0
        self._mark: bytes | None = None  # the log's mark when it was last read to its end
        self._mark_taken = 0.0  # when (monotonic) that read began
        self._lock = threading.RLock()
        self._writing = threading.Lock()  # held while a checkpoint is being written

    # -- lifecycle ------------------------------------------------------------------------
    @classmethod
    def started(cls, fresh, restore, settings, **log_options) -> "Replica":
        """Open the log that ``settings`` (a :class:`~model_wrappers.config.StateSettings`)
        names, then build and start a replica on it: a component's ``load()`` in one call."""
        try:
            log = open_log(settings.uri, settings.name, keep_checkpoints=settings.keep_checkpoints, **log_options)
        except LogUnavailable as exc:
            raise RuntimeError(state_hint(exc)) from None
        replica = cls(fresh, restore, log, checkpoint_every=settings.checkpoint_every,
                      max_staleness=settings.max_staleness)
        replica.start()
        return replica

    def start(self) -> None:
        """Load the newest checkpoint (or a fresh state) and replay the log after it."""
        with self._lock:
            self._restore()
            self.replayed = self._catch_up()

    def start_at(self, position: int) -> None:
        """Hold the state just after event ``position``, as every replica held it then.

        It starts from the newest kept checkpoint at or before ``position`` (or a fresh state)
        and replays the events after it up to ``position``; a replica started so is for reading
        (pulling a learned state out), not for serving.
        """
        with self._lock:
            head = self.log.head()
            if not 0 <= position <= head:
                raise LogUnavailable(f"log {self.log.name!r} has positions 0..{head}, not {position}")
            kept = self.log.list_checkpoints()
            start = next((c for c in kept if c <= position), None)
            if start is None:
                self.state, self.position = self._fresh(), 0
            else:
                self.state, self.position = self._from_checkpoint(checkpoint_at(self.log, start).blob), start
            self.restored_from = self.position
            while self.position < position:
                entries = self.log.read(self.position, min(READ_BATCH, position - self.position))
                if not entries or entries[0][0] != self.position + 1:
                    raise LogUnavailable(
                        f"log {self.log.name!r} no longer holds the events after position {self.position}: "
                        f"{reachable(self.log)}"
                    )
                for at, payload in entries:
                    self._apply(at, payload)
            self.replayed = self.position - self.restored_from

    def _restore(self) -> None:
        checkpoint = self.log.load_checkpoint()
        if checkpoint is None:
            self.state, self.position = self._fresh(), 0
        else:
            self.state = self._from_checkpoint(checkpoint.blob)
            self.position = checkpoint.position
        self.restored_from = self.position

    def _logged(self, positions: list[int], payloads: list[bytes]) -> None:
        # Called by the thread that committed them, outside the lock: dict updates are atomic.
        self._written.update(zip(positions, payloads))

    def _catch_up(self, upto: int | None = None) -> int:
        """Apply the log's new events (or at least those up to ``upto``); returns how many."""
        applied = 0
        while True:
            if upto is not None and self.position >= upto:
                break
            payload = self._written.pop(self.position + 1, None)
            if payload is not None:
                self._apply(self.position + 1, payload)
                applied += 1
                continue
            mark, now = self.log.mark(), time.monotonic()
            if (upto is None and mark is not None and mark == self._mark
                    and now - self._mark_taken < MARK_TRUSTED_FOR):
                break  # nothing was committed to the log since it was last read to its end
            entries = self.log.read(self.position, READ_BATCH)
            if not entries:
                self._mark, self._mark_taken = mark, now
                break
            if entries[0][0] != self.position + 1:
                # Compacted past us: the events we miss are inside a newer checkpoint.
                logger.info("log %s moved past position %d; reloading its checkpoint", self.log.name, self.position)
                self._restore()
                if self.position + 1 < entries[0][0]:
                    raise LogUnavailable(
                        f"log {self.log.name!r} has no events {self.position + 1}..{entries[0][0] - 1} "
                        "and no checkpoint covering them"
                    )
                continue
            for position, payload in entries:
                self._apply(position, payload)
                applied += 1
        if self._written:
            # Our events applied from the log's copy (another process wrote before them), or
            # skipped by a reload of a newer checkpoint.
            for position in [p for p in list(self._written) if p <= self.position]:
                self._written.pop(position, None)
        return applied

    def _apply(self, position: int, payload: bytes) -> None:
        try:
            # The position lets a state tell copies of one feedback apart (see learning.applied)
            # and, stored in parts (per key), record where each part stands.
            self.state.apply(decode(payload), position)
        except LogUnavailable:
            # The state could not reach its own store: stop before this event, retry on next read.
            raise
        except Exception as exc:
            # Every replica meets the same event in the same state, so each skips it alike.
            logger.exception("event %d of log %s could not be applied; skipped", position, self.log.name)
            self.unlearned[position] = f"{type(exc).__name__}: {exc}"
            while len(self.unlearned) > UNLEARNED_KEPT:
                del self.unlearned[next(iter(self.unlearned))]
        self.position = position

    # -- reads and writes -----------------------------------------------------------------
    def sync(self, upto: int | None = None) -> None:
        """Apply any new events (or those up to ``upto``). If the log cannot be read, keep serving the last state."""
        with self._lock:
            try:
                self._catch_up(upto)
                self.last_error = None
            except LogUnavailable as exc:
                if self.last_error is None:
                    logger.warning("serving the last learned state: %s", exc)
                self.last_error = str(exc)
            self._checked = time.monotonic()

    def read(self, fn: Callable[[Any], Any]) -> Any:
        """Call ``fn(state)`` on a state no staler than ``max_staleness``."""
        with self._lock:
            if self.max_staleness <= 0 or time.monotonic() - self._checked >= self.max_staleness:
                self.sync()
            return fn(self.state)

    def submit(self, event: dict) -> int:
        """Durably log ``event``, apply the log up to it, and return its position.

        Threads submitting at the same time share one durable transaction (see
        :mod:`.group_commit`); each returns once its own event is durable and applied.
        """
        return steps.run(self.submit_steps(event))

    def submit_steps(self, event: dict) -> steps.Steps:
        """:meth:`submit` as :mod:`.steps`, for a caller that may run on an event loop."""
        payload = encode(event)
        try:
            position = yield steps.Durable(self._commits, payload)
        except LogOutcomeUnknown as exc:
            raise OutcomeUnknown(f"{exc}. Resend it: with its feedback id or puid it is learned at most once") from None
        except LogUnavailable as exc:
            raise StateUnavailable(f"not logged, so nothing was learned: {exc}") from None
        with self._lock:
            self.sync(upto=position)
            pending = None
            if position % self.checkpoint_every == 0 and self.position >= position:
                pending = self._begin_checkpoint()
        if pending is not None:
            yield steps.Blocking(functools.partial(self._write_checkpoint, *pending))
        return position

    def applied_at(self, feedback_id: str | None) -> int | None:
        """The log position at which the state learned ``feedback_id``, if it has (see :mod:`..learning.applied`)."""
        return self.read(lambda state: applied_at(state, feedback_id)) if feedback_id else None

    def submit_once(self, event: dict) -> tuple[int, bool]:
        """:meth:`submit` for an event whose ``id`` names a feedback: ``(position, already)``.

        ``already`` is True when an earlier event with the same id had been learned, at
        ``position``: found before logging (nothing is appended), or found when the log was
        applied, a copy logged by another process at the same time (the state skipped ours).
        """
        return steps.run(self.submit_once_steps(event))

    def submit_once_steps(self, event: dict) -> steps.Steps:
        """:meth:`submit_once` as :mod:`.steps`."""
        feedback_id = event.get("id")
        earlier = self.applied_at(feedback_id)
        if earlier is not None:
            return earlier, True
        position = yield from self.submit_steps(event)
        if position in self.unlearned:
            raise NotLearned(f"the feedback was logged at position {position} of {self.log.name!r} but could "
                             f"not be learned ({self.unlearned[position]}); every replica skips it alike")
        learned = self.applied_at(feedback_id)
        if learned is not None and learned != position:
            return learned, True
        return position, False

    def _begin_checkpoint(self) -> tuple[int, Callable[[Any], bytes]] | None:
        """Under the lock: the position and the writer of a checkpoint of the state as it is now.

        A state with a ``checkpoint_writer()`` (see :meth:`KeyedState.checkpoint_writer
        <model_wrappers.learning.keyed.KeyedState.checkpoint_writer>`) copies what it needs in
        parts, each under the lock, and stores them outside it; any other state is snapshot here
        and its blob written outside the lock. None while an earlier checkpoint is still being
        written: the next one covers what this one would have.
        """
        if not self._writing.acquire(blocking=False):
            logger.info("checkpoint at %d skipped: the previous one is still being written", self.position)
            return None
        try:
            begin = getattr(self.state, "checkpoint_writer", None)
            if begin is not None:
                return self.position, begin()
            blob = self.state.snapshot()
            return self.position, lambda hold: blob
        except LogUnavailable as exc:
            self._writing.release()
            logger.warning("checkpoint at %d not written: %s", self.position, exc)
            return None
        except BaseException:
            self._writing.release()
            raise

    def _write_checkpoint(self, position: int, write: Callable[[Any], bytes]) -> None:
        """Outside the lock: store a checkpoint begun by :meth:`_begin_checkpoint`, so reads and
        other feedback are served while it is written."""
        try:
            blob = write(self._lock)
            if self.log.save_checkpoint(position, blob):
                # Events since the oldest kept checkpoint stay, so that any position from there
                # on can be rebuilt (`seldon-river pull`); that checkpoint's own event stays too,
                # so a lagging reader can tell it has been compacted past.
                self.log.compact(min(self.log.list_checkpoints()) - 1)
        except LogUnavailable as exc:
            logger.warning("checkpoint at %d not written: %s", position, exc)
        finally:
            self._writing.release()

    def status(self) -> dict:
        with self._lock:
            return {
                "pid": os.getpid(),
                "log": self.log.describe(),
                "log_name": self.log.name,
                "state_uri": without_password(self.log.uri),
                "position": self.position,
                "restored_from": self.restored_from,
                "replayed_at_start": self.replayed,
                "log_error": self.last_error,
            }
