"""A key store whose per-key state blobs carry HMAC-SHA256 tags, like authenticated checkpoints.

Each blob is sealed under a context naming the store, the key and the position it stands at, so
a genuine blob cannot be moved to another key or claim a newer position (which would make the
key skip events). A blob whose tag does not verify is refused before it is unpickled, as a
:class:`~model_wrappers.log.base.LogUnavailable` that names the key: the replica stops before the
event that needs the key and says why in ``/health/status``; a prediction for the key answers 503
with the same message. Summaries stay as they are: they are JSON, never unpickled, and only
feed figures.
"""

from __future__ import annotations

import json
from typing import Iterable, Iterator, Sequence

from .base import LogUnavailable
from .keystore import Item, KeyStore
from .seal import Seal, TamperedState


class SealedKeyStore(KeyStore):
    """Wraps ``inner`` so that every state blob it stores is sealed under ``key``."""

    def __init__(self, inner: KeyStore, key: bytes):
        self.inner = inner
        self.uri, self.name = inner.uri, inner.name
        self._seal = Seal(key)

    def _context(self, key: str, position: int) -> bytes:
        # JSON keeps a key holding ':' from reading as another key and position.
        return json.dumps(["keyed-state", self.name, key, int(position)]).encode()

    def _open(self, key: str, position: int, sealed: bytes) -> bytes:
        what = f"the stored state of key {key!r} at position {position} of {self.name!r} in {self.inner.describe()}"
        try:
            return self._seal.open(sealed, self._context(key, position), what)
        except TamperedState as exc:
            raise LogUnavailable(str(exc)) from None

    def committed(self) -> int:
        return self.inner.committed()

    def summaries(self) -> dict[str, tuple[int, str]]:
        return self.inner.summaries()

    def load(self, keys: Sequence[str]) -> dict[str, tuple[int, bytes]]:
        return {key: (position, self._open(key, position, blob))
                for key, (position, blob) in self.inner.load(keys).items()}

    def save(self, items: Iterable[Item], commit: int | None = None) -> int:
        sealed = ((key, position, summary, self._seal.seal(blob, self._context(key, position)))
                  for key, position, summary, blob in items)
        return self.inner.save(sealed, commit=commit)

    def scan(self, batch: int = 1000) -> Iterator[list[tuple[str, int, bytes]]]:
        for rows in self.inner.scan(batch):
            yield [(key, position, self._open(key, position, blob)) for key, position, blob in rows]

    def usage(self) -> dict[str, int]:
        return self.inner.usage()

    def close(self) -> None:
        self.inner.close()

    def describe(self) -> str:
        return self.inner.describe() + ", authenticated"
