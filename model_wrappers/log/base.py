"""The learning log: an ordered, durable sequence of events plus the newest checkpoint.

Every serving process of a component (REST worker, gRPC process, replica) applies the same
events in the same order, so all of them hold the same learned state. Positions are integers
starting at 1; ``append`` returns only once the event is durable.

A backend also keeps *prediction records* (features seen at predict time, by request id) so that
a feedback carrying only a request id and the truth can be joined back to its features by any
process. Records expire after a time to live and are bounded in number. They are written in the
background, a few milliseconds after the prediction (see :mod:`.records`).
"""

from __future__ import annotations

import abc
from typing import NamedTuple


class LogUnavailable(Exception):
    """The backend cannot be reached or written; the message says which and why."""


class LogOutcomeUnknown(LogUnavailable):
    """An append reached the backend but its outcome could not be learned: it may be logged."""


class Checkpoint(NamedTuple):
    position: int
    blob: bytes


class EventLog(abc.ABC):
    """One component's log, named so that several components can share a backend."""

    uri: str
    name: str

    @abc.abstractmethod
    def append(self, payload: bytes) -> int:
        """Durably append one event; return its position."""

    def append_many(self, payloads: list[bytes]) -> list[int]:
        """Durably append several events at once, all or none; return their positions.

        Backends make this one transaction (one ``fsync``): the group commit of concurrent
        feedbacks in :class:`~model_wrappers.log.replica.Replica` relies on it.
        """
        return [self.append(payload) for payload in payloads]

    @abc.abstractmethod
    def read(self, after: int, limit: int = 1000) -> list[tuple[int, bytes]]:
        """Events with position > ``after``, oldest first, at most ``limit``."""

    def mark(self) -> bytes | None:
        """A token that changes whenever the log may have changed, or None if the backend cannot tell.

        A reader that took a token, then read to the end of the log, may skip its next read while
        the token stays the same: nothing was committed in between. None, the default, means
        read every time.
        """
        return None

    @abc.abstractmethod
    def head(self) -> int:
        """Position of the newest event ever appended (0 for an empty log)."""

    @abc.abstractmethod
    def save_checkpoint(self, position: int, blob: bytes) -> bool:
        """Store a checkpoint unless a newer one exists; True when stored."""

    @abc.abstractmethod
    def load_checkpoint(self, position: int | None = None) -> Checkpoint | None:
        """The newest checkpoint (``position`` None), or the kept one at ``position``; None if absent."""

    @abc.abstractmethod
    def list_checkpoints(self) -> list[int]:
        """Positions of the kept checkpoints, newest first."""

    @abc.abstractmethod
    def compact(self, upto: int) -> int:
        """Drop events with position <= ``upto``; return how many were dropped."""

    @abc.abstractmethod
    def remember(self, key: str, record: bytes) -> None:
        """Keep a prediction record for the configured time to live (written in the background)."""

    @abc.abstractmethod
    def recall(self, key: str) -> bytes | None:
        """A prediction record that has not expired, or None (after a short wait for other processes)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""

    def describe(self) -> str:
        return f"{self.uri} (log {self.name!r})"
