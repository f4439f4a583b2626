"""HMAC-SHA256 seals for blobs kept in a shared store (checkpoints, prediction records).

A sealed blob is ``tag || blob`` where ``tag`` is the 32-byte HMAC-SHA256 of ``context || blob``.
The context names what the blob is (e.g. ``b"checkpoint:<log>:<position>"``), so a valid blob
cannot be replayed as another kind or under another name. Verification happens before anything
is unpickled: a store writer who lacks the key cannot make a process load their bytes.

>>> seal = Seal(b"k" * 32)
>>> sealed = seal.seal(b"state", b"checkpoint:x:1")
>>> seal.open(sealed, b"checkpoint:x:1", "checkpoint 1 of log 'x'")
b'state'
>>> seal.open(b"\\0" + sealed[1:], b"checkpoint:x:1", "checkpoint 1 of log 'x'")
Traceback (most recent call last):
...
model_wrappers.log.seal.TamperedState: refused checkpoint 1 of log 'x': its HMAC-SHA256 tag does not verify under the configured state key (written without the key, with another key, or altered)
"""

from __future__ import annotations

import hashlib
import hmac

TAG_SIZE = 32


class TamperedState(Exception):
    """A stored blob failed authentication; the message names the blob and why it was refused."""


class Seal:
    """Seals and opens blobs under one secret key."""

    def __init__(self, key: bytes):
        if len(key) < 16:
            raise ValueError(f"the state key must be at least 16 bytes, got {len(key)}")
        self._key = key

    def _tag(self, blob: bytes, context: bytes) -> bytes:
        return hmac.new(self._key, context + b"\0" + blob, hashlib.sha256).digest()

    def seal(self, blob: bytes, context: bytes) -> bytes:
        """``blob`` prefixed with its tag under ``context``."""
        return self._tag(blob, context) + blob

    def open(self, sealed: bytes, context: bytes, what: str) -> bytes:
        """The blob inside ``sealed``; raises :class:`TamperedState` naming ``what`` if it does not verify."""
        tag, blob = sealed[:TAG_SIZE], sealed[TAG_SIZE:]
        if len(sealed) < TAG_SIZE or not hmac.compare_digest(tag, self._tag(blob, context)):
            raise TamperedState(
                f"refused {what}: its HMAC-SHA256 tag does not verify under the configured state key "
                "(written without the key, with another key, or altered)"
            )
        return blob
