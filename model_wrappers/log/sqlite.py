"""The embedded learning log: one SQLite file in WAL mode, shared by every process of a pod.

Appends commit with ``synchronous=FULL``, so an acknowledged feedback survives a crash of the
process or of the machine. Prediction records are written in batches by a background thread
(:mod:`.records`) to a second file beside it (``<name>-records.db``) with ``synchronous=NORMAL``:
losing the newest of them only means a late label cannot be joined.

Events and records are kept in rowid tables: feedback batches make events of tens of kilobytes,
and a table clustered on its key would re-read those big pages on every read.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from pathlib import Path

from .base import Checkpoint, EventLog, LogUnavailable
from .change_mark import ChangeMark
from .records import RecordWriter

SCHEMA = """
CREATE TABLE IF NOT EXISTS heads (name TEXT PRIMARY KEY, position INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    name TEXT NOT NULL, position INTEGER NOT NULL, payload BLOB NOT NULL,
    UNIQUE (name, position));
CREATE TABLE IF NOT EXISTS checkpoints (
    name TEXT PRIMARY KEY, position INTEGER NOT NULL, blob BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS kept_checkpoints (
    name TEXT NOT NULL, position INTEGER NOT NULL, blob BLOB NOT NULL, PRIMARY KEY (name, position));
"""
# `checkpoints` holds the one checkpoint of a log written before several were kept: it is read
# while the log has no kept checkpoint yet, and replaced by the first one written.

RECORDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    name TEXT NOT NULL, key TEXT NOT NULL, expires REAL NOT NULL, record BLOB NOT NULL,
    UNIQUE (name, key));
CREATE INDEX IF NOT EXISTS predictions_by_expiry ON predictions (name, expires);
"""

PRUNE_EVERY = 512  # records a process writes between two prunes, at least
RECORDS_PER_STATEMENT = 4096  # SQLite allows 32,766 parameters a statement, 4 a record


def _padded(rows: list[tuple]) -> list:
    """The parameters of ``rows`` for :func:`_insert_records`, padded with copies of the last row.

    A batch is written by one statement (one step, so one release of the GIL that the serving
    threads need, rather than one per record); padding to a power of two keeps the number of
    distinct statements, each prepared once, small. A copy replaces its original: it adds nothing.
    """
    size = _statement_rows(len(rows))
    flat = [value for row in rows for value in row]
    flat.extend(list(rows[-1]) * (size - len(rows)))
    return flat


def _statement_rows(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _insert_records(n: int) -> str:
    """The statement writing ``n`` records (padded, see :func:`_padded`)."""
    size = _statement_rows(n)
    found = _INSERT_RECORDS.get(size)
    if found is None:
        found = _INSERT_RECORDS[size] = (
            "INSERT OR REPLACE INTO predictions (name, key, expires, record) VALUES "
            + ",".join(["(?, ?, ?, ?)"] * size)
        )
    return found


_INSERT_RECORDS: dict[int, str] = {}


class SQLiteLog(EventLog):
    """Learning log in a SQLite database file.

    Parameters
    ----------
    path
        Database file; its folder is created if needed.
    name
        Log name within the file.
    ttl
        Seconds a prediction record is kept.
    capacity
        Most prediction records kept; the oldest go first.
    keep_checkpoints
        How many of the newest checkpoints are kept.

    """

    def __init__(self, path: str | os.PathLike, name: str, ttl: float = 86400.0, capacity: int = 100_000,
                 keep_checkpoints: int = 3):
        self.path = Path(path)
        # Prediction records get a file of their own: their stream of writes must not grow the
        # write-ahead log that every durable append syncs and checkpoints.
        self.records_path = self.path.with_name(f"{self.path.stem}-records{self.path.suffix}")
        self.uri = f"sqlite:///{self.path}"
        self.name = name
        self.ttl = ttl
        self.capacity = capacity
        self.keep_checkpoints = max(1, int(keep_checkpoints))
        self._remembered = 0
        # The capacity check counts this log's records: often enough that several writing
        # processes overshoot it by little, rarely enough that a large capacity costs little.
        self._prune_every = max(PRUNE_EVERY, self.capacity // 16)
        # A connection is shared by the threads of a process (gunicorn --threads, gRPC threads);
        # a transaction must not interleave with another thread's statements on it.
        self._lock = threading.Lock()
        self._records_lock = threading.Lock()
        self._writer = RecordWriter(self._write_records, self._read_record, ttl)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Switching to WAL and creating tables do not wait on SQLite's busy timeout, and
            # every process of a pod opens the file at once: take turns through a lock file.
            with open(f"{self.path}.lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                self._db = self._connect(self.path, "FULL")
                self._db.executescript(SCHEMA)
                self._records = self._connect(self.records_path, "NORMAL")
                self._records.executescript(RECORDS_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise LogUnavailable(f"cannot open the learning log {self.path}: {exc}") from None
        # Moved by every commit of every process to this file (see .change_mark).
        self._mark = ChangeMark.open(f"{self.path}.mark")

    @staticmethod
    def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        return db

    def _fail(self, action: str, exc: Exception, path: Path | None = None) -> LogUnavailable:
        return LogUnavailable(f"cannot {action} the learning log {path or self.path}: {exc}")

    def append(self, payload: bytes) -> int:
        return self.append_many([payload])[0]

    def append_many(self, payloads: list[bytes]) -> list[int]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    head = self._db.execute(
                        "INSERT INTO heads (name, position) VALUES (?, ?) "
                        "ON CONFLICT (name) DO UPDATE SET position = position + excluded.position "
                        "RETURNING position",
                        (self.name, len(payloads)),
                    ).fetchone()[0]
                    positions = list(range(head - len(payloads) + 1, head + 1))
                    self._db.executemany(
                        "INSERT INTO events (name, position, payload) VALUES (?, ?, ?)",
                        [(self.name, position, payload) for position, payload in zip(positions, payloads)],
                    )
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
                finally:
                    # Also when COMMIT failed: it may have committed all the same (readers then
                    # query once more for nothing, at worst).
                    self._mark.move()
                return positions
            except sqlite3.Error as exc:
                raise self._fail("append to", exc) from None

    def read(self, after: int, limit: int = 1000) -> list[tuple[int, bytes]]:
        with self._lock:
            try:
                return self._db.execute(
                    "SELECT position, payload FROM events WHERE name = ? AND position > ? "
                    "ORDER BY position LIMIT ?",
                    (self.name, after, limit),
                ).fetchall()
            except sqlite3.Error as exc:
                raise self._fail("read", exc) from None

    def mark(self) -> bytes | None:
        return self._mark.read()

    def head(self) -> int:
        with self._lock:
            try:
                row = self._db.execute("SELECT position FROM heads WHERE name = ?", (self.name,)).fetchone()
            except sqlite3.Error as exc:
                raise self._fail("read", exc) from None
            return row[0] if row else 0

    def save_checkpoint(self, position: int, blob: bytes) -> bool:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    newest = self._newest_position()
                    if newest is not None and position <= newest:
                        self._db.execute("ROLLBACK")
                        return False
                    self._db.execute("INSERT INTO kept_checkpoints (name, position, blob) VALUES (?, ?, ?)",
                                     (self.name, position, blob))
                    self._db.execute(
                        "DELETE FROM kept_checkpoints WHERE name = ? AND position NOT IN "
                        "(SELECT position FROM kept_checkpoints WHERE name = ? ORDER BY position DESC LIMIT ?)",
                        (self.name, self.name, self.keep_checkpoints),
                    )
                    self._db.execute("DELETE FROM checkpoints WHERE name = ?", (self.name,))
                    self._db.execute("COMMIT")
                    self._mark.move()
                    return True
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._fail("write a checkpoint to", exc) from None

    def _newest_position(self) -> int | None:
        row = self._db.execute(
            "SELECT MAX(position) FROM (SELECT position FROM kept_checkpoints WHERE name = ? "
            "UNION ALL SELECT position FROM checkpoints WHERE name = ?)", (self.name, self.name)
        ).fetchone()
        return row[0]

    def load_checkpoint(self, position: int | None = None) -> Checkpoint | None:
        with self._lock:
            try:
                where, args = ("AND position = ?", (position,)) if position is not None else ("", ())
                row = self._db.execute(
                    f"SELECT position, blob FROM (SELECT position, blob FROM kept_checkpoints WHERE name = ? "
                    f"UNION ALL SELECT position, blob FROM checkpoints WHERE name = ?) WHERE 1 {where} "
                    "ORDER BY position DESC LIMIT 1",
                    (self.name, self.name, *args),
                ).fetchone()
            except sqlite3.Error as exc:
                raise self._fail("read a checkpoint from", exc) from None
            return Checkpoint(row[0], bytes(row[1])) if row else None

    def list_checkpoints(self) -> list[int]:
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT position FROM kept_checkpoints WHERE name = ? UNION "
                    "SELECT position FROM checkpoints WHERE name = ? ORDER BY position DESC",
                    (self.name, self.name),
                ).fetchall()
            except sqlite3.Error as exc:
                raise self._fail("read a checkpoint from", exc) from None
            return [r[0] for r in rows]

    def compact(self, upto: int) -> int:
        with self._lock:
            try:
                cur = self._db.execute(
                    "DELETE FROM events WHERE name = ? AND position <= ?", (self.name, upto)
                )
                self._mark.move()
                return cur.rowcount
            except sqlite3.Error as exc:
                raise self._fail("compact", exc) from None

    def remember(self, key: str, record: bytes) -> None:
        self._writer.remember(key, record)

    def recall(self, key: str) -> bytes | None:
        return self._writer.recall(key)

    def _write_records(self, batch: list[tuple[str, float, bytes]]) -> None:
        rows = [(self.name, key, expires, record) for key, expires, record in batch]
        with self._records_lock:
            try:
                for start in range(0, len(rows), RECORDS_PER_STATEMENT):
                    chunk = rows[start:start + RECORDS_PER_STATEMENT]
                    self._records.execute(_insert_records(len(chunk)), _padded(chunk))
                before, self._remembered = self._remembered, self._remembered + len(rows)
                if before // self._prune_every != self._remembered // self._prune_every:
                    self._prune(time.time())
            except sqlite3.Error as exc:
                raise self._fail("write prediction records to", exc, self.records_path) from None

    def _prune(self, now: float) -> None:
        # Both deletes walk the expiry index from its oldest end, over the rows they delete only:
        # records share one time to live, so the oldest written are the first to expire.
        self._records.execute("DELETE FROM predictions WHERE name = ? AND expires < ?", (self.name, now))
        (count,) = self._records.execute("SELECT count(*) FROM predictions WHERE name = ?", (self.name,)).fetchone()
        if count > self.capacity:
            self._records.execute(
                "DELETE FROM predictions WHERE name = ? AND expires <= (SELECT expires FROM predictions "
                "WHERE name = ? ORDER BY expires LIMIT 1 OFFSET ?)",
                (self.name, self.name, count - self.capacity - 1),
            )

    def _read_record(self, key: str) -> bytes | None:
        with self._records_lock:
            try:
                row = self._records.execute(
                    "SELECT record FROM predictions WHERE name = ? AND key = ? AND expires >= ?",
                    (self.name, key, time.time()),
                ).fetchone()
            except sqlite3.Error as exc:
                raise self._fail("read a prediction record from", exc, self.records_path) from None
            return bytes(row[0]) if row else None

    def close(self) -> None:
        self._writer.flush()
        self._mark.close()
        self._db.close()
        self._records.close()
