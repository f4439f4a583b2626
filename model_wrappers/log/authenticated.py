"""A learning log whose checkpoints and prediction records carry HMAC-SHA256 tags.

Events stay as they are: they are JSON and never unpickled, so a forged event can teach wrong
data (as a forged feedback could) but cannot run code. Checkpoints are unpickled, so one whose
tag does not verify is refused before it is read; a record whose tag does not verify is treated
as absent, with a logged warning.
"""

from __future__ import annotations

import logging

from .base import Checkpoint, EventLog
from .seal import Seal, TamperedState

logger = logging.getLogger(__name__)


class AuthenticatedLog(EventLog):
    """Wraps ``inner`` so that what it stores for checkpoints and records is sealed under ``key``."""

    def __init__(self, inner: EventLog, key: bytes):
        self.inner = inner
        self.uri, self.name = inner.uri, inner.name
        self._seal = Seal(key)

    def _checkpoint_context(self, position: int) -> bytes:
        return f"checkpoint:{self.name}:{position}".encode()

    def append(self, payload: bytes) -> int:
        return self.inner.append(payload)

    def append_many(self, payloads: list[bytes]) -> list[int]:
        # The inner log's own transaction: a group commit stays all or none.
        return self.inner.append_many(payloads)

    def read(self, after: int, limit: int = 1000) -> list[tuple[int, bytes]]:
        return self.inner.read(after, limit)

    def mark(self) -> bytes | None:
        return self.inner.mark()

    def head(self) -> int:
        return self.inner.head()

    def save_checkpoint(self, position: int, blob: bytes) -> bool:
        return self.inner.save_checkpoint(position, self._seal.seal(blob, self._checkpoint_context(position)))

    def list_checkpoints(self) -> list[int]:
        return self.inner.list_checkpoints()

    def load_checkpoint(self, position: int | None = None) -> Checkpoint | None:
        found = self.inner.load_checkpoint(position)
        if found is None:
            return None
        what = f"checkpoint at position {found.position} of log {self.name!r} in {self.inner.uri}"
        return Checkpoint(found.position, self._seal.open(found.blob, self._checkpoint_context(found.position), what))

    def compact(self, upto: int) -> int:
        return self.inner.compact(upto)

    def remember(self, key: str, record: bytes) -> None:
        self.inner.remember(key, self._seal.seal(record, f"record:{self.name}:{key}".encode()))

    def recall(self, key: str) -> bytes | None:
        sealed = self.inner.recall(key)
        if sealed is None:
            return None
        try:
            return self._seal.open(sealed, f"record:{self.name}:{key}".encode(), f"prediction record {key!r}")
        except TamperedState as exc:
            logger.warning("%s of log %r; treating it as absent", exc, self.name)
            return None

    def close(self) -> None:
        self.inner.close()

    def describe(self) -> str:
        return self.inner.describe() + ", authenticated"
