"""A token in a small file of its own that every writer of a log file changes after each commit.

A reader that sees the token it saw when it last read the log to its end may skip its next
query: nothing was committed since. Reading the token is a read of shared memory: no
system call, and the GIL is kept. A query of SQLite releases the GIL for each step, and under
load another thread takes it, so the query costs several times its own work.

The file is never SQLite's: SQLite keeps POSIX locks on its own files, and a process that opens
and closes any of them drops those locks (POSIX ties them to the process and the file, not to the
descriptor), which lets another process reset them under a running connection. This file is
opened once, only ever grown to :data:`SIZE`, and no lock is ever taken on it.

Writers need no lock either: each writes a fresh random token after its own commit. A counter
read and written plus one would need one: a writer that read it before another's move and wrote
after it could set it back to a value a reader already holds, and that reader would skip a
commit. A random token is never one a reader holds (but with chance 2**-64), whatever the order
of the writes, and a torn read is just another value, which makes the reader query.

Examples
--------
>>> import tempfile
>>> mark = ChangeMark.open(tempfile.mkdtemp() + "/state.db.mark")
>>> before = mark.read()
>>> mark.move()
>>> mark.read() != before
True
>>> mark.close(); mark.read() is None
True

"""

from __future__ import annotations

import mmap
import os

SIZE = 8  # bytes of the token


class ChangeMark:
    """The token of ``path``, mapped for reading and moving."""

    __slots__ = ("path", "_map")

    def __init__(self, path: str, mapped: mmap.mmap | None):
        self.path = path
        self._map = mapped

    @classmethod
    def open(cls, path: str) -> "ChangeMark":
        """The mark at ``path`` (created if missing); one that cannot be mapped reads None (every read then queries)."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return cls(path, None)
        try:
            if os.fstat(fd).st_size < SIZE:
                os.ftruncate(fd, SIZE)  # grows it only; a map past the end of a file would fault
            return cls(path, mmap.mmap(fd, SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE))
        except (OSError, ValueError):
            return cls(path, None)
        finally:
            os.close(fd)  # the map stays; no lock is held on this file, so closing drops none

    def read(self) -> bytes | None:
        """The token, or None when unmapped or closed."""
        mapped = self._map
        if mapped is None:
            return None
        try:
            return mapped[:SIZE]
        except ValueError:  # closed by another thread meanwhile
            return None

    def move(self) -> None:
        """Write a new token; call it after a commit, before answering for it."""
        mapped = self._map
        if mapped is None:
            return
        try:
            # Not the random module: tests seed it (Hypothesis does), and processes seeded alike
            # would write the same tokens.
            mapped[:SIZE] = os.urandom(SIZE)
        except ValueError:  # closed by another thread meanwhile
            pass

    def close(self) -> None:
        mapped, self._map = self._map, None
        if mapped is not None:
            mapped.close()
