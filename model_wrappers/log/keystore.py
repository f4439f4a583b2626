"""Per-key checkpoints: the state of each key stored on its own, next to the learning log.

A keyed state (tens of thousands of small models) is too big to write whole at every
checkpoint and too slow to unpickle whole at every start. A :class:`KeyStore` keeps one row
per key: the key's pickled state, a small JSON summary (read in bulk at start, so figures over
all keys need no unpickling) and the log position the state stands at. Writes are conditional
per key (a row is only replaced by a state at a newer position), so any process may write any
key at any time and the store only ever moves forward. A checkpoint stores the keys that
changed, then records its position as *committed*: every key changed at or before a committed
position is in the store.

Backends share the learning log's URI and name: ``sqlite:///abs/path.db`` (tables in the same
file as the log) and ``redis://host:port/db`` (hashes under the log's ``{name}`` hash tag).

:class:`~model_wrappers.log.replica.Replica` hands every state the log position of each event,
which is how a key stored ahead of the newest checkpoint knows not to learn an event twice.

Examples
--------
>>> import tempfile
>>> store = open_keystore(f"sqlite:///{tempfile.mkdtemp()}/state.db", "demo")
>>> store.save([("a", 3, "{}", b"state at 3"), ("b", 3, "{}", b"b")], commit=3)
2
>>> store.save([("a", 2, "{}", b"older")])  # never goes back
0
>>> store.load(["a", "c"]), store.committed()
({'a': (3, b'state at 3')}, 3)

"""

from __future__ import annotations

import abc
import fcntl
import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ..config import state_key
from .base import LogUnavailable
from .replica import Replica, decode

logger = logging.getLogger(__name__)

Item = tuple[str, int, str, bytes]  # key, position, summary (JSON), state blob
CHUNK_ITEMS = 1000
CHUNK_BYTES = 8 << 20
LOOKUP_CHUNK = 500


def chunks(items: Iterable[Item]) -> Iterator[list[Item]]:
    """Items in groups small enough for one transaction (by count and by bytes)."""
    chunk: list[Item] = []
    size = 0
    for item in items:
        chunk.append(item)
        size += len(item[3]) + len(item[2])
        if len(chunk) >= CHUNK_ITEMS or size >= CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


class KeyStore(abc.ABC):
    """Per-key state storage for one keyed component (named like its learning log)."""

    uri: str
    name: str

    @abc.abstractmethod
    def committed(self) -> int:
        """Position of the newest completed checkpoint (0 if none)."""

    @abc.abstractmethod
    def summaries(self) -> dict[str, tuple[int, str]]:
        """Every stored key's position and JSON summary (no state blobs)."""

    @abc.abstractmethod
    def load(self, keys: Sequence[str]) -> dict[str, tuple[int, bytes]]:
        """Position and state blob of the stored keys among ``keys``."""

    @abc.abstractmethod
    def save(self, items: Iterable[Item], commit: int | None = None) -> int:
        """Store each item unless the key is stored at a newer or equal position.

        With ``commit``, record that position as committed once every item is stored.
        Returns how many items were written.
        """

    @abc.abstractmethod
    def scan(self, batch: int = 1000) -> Iterator[list[tuple[str, int, bytes]]]:
        """Every stored key's (key, position, blob), ``batch`` at a time."""

    @abc.abstractmethod
    def usage(self) -> dict[str, int]:
        """How many keys are stored and how many bytes their state takes."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""

    def describe(self) -> str:
        return f"{self.uri} (keys of {self.name!r})"


# -- SQLite -------------------------------------------------------------------------------------
SCHEMA = """
CREATE TABLE IF NOT EXISTS keyed_states (
    name TEXT NOT NULL, key TEXT NOT NULL, position INTEGER NOT NULL, summary TEXT NOT NULL,
    blob BLOB NOT NULL, UNIQUE (name, key));
CREATE TABLE IF NOT EXISTS keyed_commits (name TEXT PRIMARY KEY, position INTEGER NOT NULL);
"""

UPSERT = (
    "INSERT INTO keyed_states (name, key, position, summary, blob) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (name, key) DO UPDATE SET position = excluded.position, summary = excluded.summary, "
    "blob = excluded.blob WHERE excluded.position > keyed_states.position"
)
COMMIT = (
    "INSERT INTO keyed_commits (name, position) VALUES (?, ?) "
    "ON CONFLICT (name) DO UPDATE SET position = excluded.position WHERE excluded.position > keyed_commits.position"
)


class SQLiteKeyStore(KeyStore):
    """Keys in the learning log's SQLite file.

    Writes use ``synchronous=NORMAL``: the log's own checkpoint, written right after with
    ``synchronous=FULL`` to the same write-ahead log, makes them durable before any event they
    cover is compacted away; keys evicted between checkpoints that a power cut loses are
    rebuilt from events that are still in the log.

    A checkpoint is written from its own thread while requests load and evict keys, so the
    connection is used by one statement or transaction at a time.
    """

    def __init__(self, path: str | os.PathLike, name: str):
        self.path = Path(path)
        self.uri = f"sqlite:///{self.path}"
        self.name = name
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Schema changes do not wait on SQLite's busy timeout; every process of a pod opens
            # the file at once, so they take turns (the same lock file the log uses).
            with open(f"{self.path}.lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise LogUnavailable(f"cannot open the key store {self.path}: {exc}") from None

    def _fail(self, action: str, exc: Exception) -> LogUnavailable:
        return LogUnavailable(f"cannot {action} the key store {self.path}: {exc}")

    def committed(self) -> int:
        try:
            with self._lock:
                row = self._db.execute("SELECT position FROM keyed_commits WHERE name = ?", (self.name,)).fetchone()
        except sqlite3.Error as exc:
            raise self._fail("read", exc) from None
        return row[0] if row else 0

    def summaries(self) -> dict[str, tuple[int, str]]:
        try:
            with self._lock:
                rows = self._db.execute(
                    "SELECT key, position, summary FROM keyed_states WHERE name = ?", (self.name,)
                ).fetchall()
        except sqlite3.Error as exc:
            raise self._fail("read", exc) from None
        return {key: (position, summary) for key, position, summary in rows}

    def load(self, keys: Sequence[str]) -> dict[str, tuple[int, bytes]]:
        out = {}
        try:
            for start in range(0, len(keys), LOOKUP_CHUNK):
                part = keys[start:start + LOOKUP_CHUNK]
                marks = ",".join("?" * len(part))
                with self._lock:
                    rows = self._db.execute(
                        f"SELECT key, position, blob FROM keyed_states WHERE name = ? AND key IN ({marks})",
                        (self.name, *part),
                    ).fetchall()
                for key, position, blob in rows:
                    out[key] = (position, bytes(blob))
        except sqlite3.Error as exc:
            raise self._fail("read", exc) from None
        return out

    def save(self, items: Iterable[Item], commit: int | None = None) -> int:
        written = 0
        try:
            # One transaction per chunk: log appends from other processes get their turn
            # between chunks instead of waiting for a whole checkpoint.
            for chunk in chunks(items):
                with self._transaction():
                    before = self._db.total_changes
                    self._db.executemany(UPSERT, [(self.name, k, p, s, b) for k, p, s, b in chunk])
                    written += self._db.total_changes - before
            if commit is not None:
                with self._transaction():
                    self._db.execute(COMMIT, (self.name, commit))
        except sqlite3.Error as exc:
            raise self._fail("write", exc) from None
        return written

    def _transaction(self):
        db, lock = self._db, self._lock

        class Transaction:
            def __enter__(self):
                lock.acquire()
                try:
                    db.execute("BEGIN IMMEDIATE")
                except BaseException:
                    lock.release()
                    raise

            def __exit__(self, kind, exc, tb):
                try:
                    if kind is None:
                        db.execute("COMMIT")
                    elif db.in_transaction:
                        db.execute("ROLLBACK")
                finally:
                    lock.release()
                return False

        return Transaction()

    def scan(self, batch: int = 1000) -> Iterator[list[tuple[str, int, bytes]]]:
        after = ""
        while True:
            try:
                with self._lock:
                    rows = self._db.execute(
                        "SELECT key, position, blob FROM keyed_states WHERE name = ? AND key > ? ORDER BY key LIMIT ?",
                        (self.name, after, batch),
                    ).fetchall()
            except sqlite3.Error as exc:
                raise self._fail("read", exc) from None
            if not rows:
                return
            yield [(k, p, bytes(b)) for k, p, b in rows]
            after = rows[-1][0]

    def usage(self) -> dict[str, int]:
        try:
            with self._lock:
                count, size = self._db.execute(
                    "SELECT count(*), coalesce(sum(length(blob) + length(summary)), 0) FROM keyed_states WHERE name = ?",
                    (self.name,),
                ).fetchone()
        except sqlite3.Error as exc:
            raise self._fail("read", exc) from None
        return {"keys": count, "bytes": size}

    def close(self) -> None:
        self._db.close()


# -- Redis --------------------------------------------------------------------------------------
# ARGV[1] is the position to commit (-1: none), then (key, position, summary, blob) per item.
SAVE = """
local written = 0
for i = 2, #ARGV, 4 do
  local current = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '-1')
  if tonumber(ARGV[i + 1]) > current then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 3])
    written = written + 1
  end
end
local commit = tonumber(ARGV[1])
if commit >= 0 and commit > tonumber(redis.call('GET', KEYS[4]) or '0') then
  redis.call('SET', KEYS[4], ARGV[1])
end
return written
"""


class RedisKeyStore(KeyStore):
    """Keys in three Redis hashes (positions, summaries, state blobs) under the log's hash tag."""

    def __init__(self, url: str, name: str):
        import redis

        self._errors = redis.RedisError
        self.uri = url
        self.name = name
        prefix = f"seldon-river:{{{name}}}:keyed"
        self._positions = f"{prefix}:positions"
        self._summaries = f"{prefix}:summaries"
        self._blobs = f"{prefix}:blobs"
        self._committed = f"{prefix}:committed"
        self._redis = redis.Redis.from_url(url, socket_timeout=30.0, socket_connect_timeout=2.0,
                                           health_check_interval=10)
        self._save = self._redis.register_script(SAVE)

    def _fail(self, action: str, exc: Exception) -> LogUnavailable:
        return LogUnavailable(f"cannot {action} the key store at {self.uri}: {exc}")

    def committed(self) -> int:
        try:
            return int(self._redis.get(self._committed) or 0)
        except self._errors as exc:
            raise self._fail("read", exc) from None

    def summaries(self) -> dict[str, tuple[int, str]]:
        try:
            with self._redis.pipeline(transaction=True) as pipe:
                positions, summaries = pipe.hgetall(self._positions).hgetall(self._summaries).execute()
        except self._errors as exc:
            raise self._fail("read", exc) from None
        return {
            key.decode(): (int(position), summaries[key].decode())
            for key, position in positions.items() if key in summaries
        }

    def load(self, keys: Sequence[str]) -> dict[str, tuple[int, bytes]]:
        out = {}
        try:
            for start in range(0, len(keys), LOOKUP_CHUNK):
                part = list(keys[start:start + LOOKUP_CHUNK])
                with self._redis.pipeline(transaction=True) as pipe:
                    positions, blobs = pipe.hmget(self._positions, part).hmget(self._blobs, part).execute()
                for key, position, blob in zip(part, positions, blobs):
                    if position is not None and blob is not None:
                        out[key] = (int(position), blob)
        except self._errors as exc:
            raise self._fail("read", exc) from None
        return out

    def save(self, items: Iterable[Item], commit: int | None = None) -> int:
        keys = [self._positions, self._summaries, self._blobs, self._committed]
        written = 0
        try:
            for chunk in chunks(items):
                args: list = [-1]
                for key, position, summary, blob in chunk:
                    args += [key, position, summary, blob]
                written += int(self._save(keys=keys, args=args))
            if commit is not None:
                self._save(keys=keys, args=[commit])
        except self._errors as exc:
            raise self._fail("write", exc) from None
        return written

    def scan(self, batch: int = 1000) -> Iterator[list[tuple[str, int, bytes]]]:
        cursor = 0
        while True:
            try:
                cursor, positions = self._redis.hscan(self._positions, cursor, count=batch)
                names = list(positions)
                blobs = self._redis.hmget(self._blobs, names) if names else []
            except self._errors as exc:
                raise self._fail("read", exc) from None
            rows = [(k.decode(), int(positions[k]), b) for k, b in zip(names, blobs) if b is not None]
            if rows:
                yield rows
            if cursor == 0:
                return

    def usage(self) -> dict[str, int]:
        try:
            count = int(self._redis.hlen(self._positions))
            size = sum(int(self._redis.memory_usage(k, samples=0) or 0) for k in (self._blobs, self._summaries))
        except self._errors as exc:
            raise self._fail("read", exc) from None
        return {"keys": count, "bytes": size}

    def close(self) -> None:
        self._redis.close()


def open_keystore(uri: str, name: str) -> KeyStore:
    """The key store that goes with the learning log ``name`` at ``uri``.

    With a state key configured (see :func:`model_wrappers.config.state_key`) its state blobs
    are authenticated, as the log's checkpoints are.
    """
    if uri.startswith("sqlite:///"):
        store: KeyStore = SQLiteKeyStore(uri[len("sqlite:///"):], name)
    elif uri.startswith(("redis://", "rediss://", "unix://")):
        store = RedisKeyStore(uri, name)
    else:
        raise ValueError(f"state URI must start with sqlite:/// or redis://, got {uri!r}")
    key = state_key()
    if key is None:
        return store
    from .sealed_keys import SealedKeyStore

    return SealedKeyStore(store, key)
