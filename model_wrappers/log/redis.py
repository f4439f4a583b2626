"""The learning log on Redis, for components with several replicas.

Events live in a Stream whose entry ids are ``<position>-1``; a Lua script takes the next
position and appends in one atomic step, so concurrent writers never interleave out of order.
Durability is Redis's own: run it with ``appendonly yes`` and ``appendfsync always`` (as the
manifests do) for an acknowledged feedback to survive a Redis crash.

An append whose reply is lost (the connection dropped after the script was sent) is not simply
reported as failed, since Redis may have run it: the appender asks Redis what became of that
attempt, and fences it off if it has not run, so a refused feedback is never in the log.
"""

from __future__ import annotations

import os
import time
import uuid

import redis

from .base import Checkpoint, EventLog, LogOutcomeUnknown, LogUnavailable
from .records import RecordWriter

# Takes #ARGV - 1 events and appends every one in one atomic step (one fsync of the
# append-only file with appendfsync always); returns the last position. KEYS[3] names this
# attempt: it records the outcome, so the same attempt sent twice appends once, and an attempt
# fenced off (see FENCE) appends nothing even if Redis runs it late.
APPEND = """
local seen = redis.call('GET', KEYS[3])
if seen then
  return tonumber(seen)
end
local n = #ARGV - 1
local head = redis.call('INCRBY', KEYS[2], n)
for i = 1, n do
  redis.call('XADD', KEYS[1], (head - n + i) .. '-1', 'e', ARGV[i + 1])
end
redis.call('SET', KEYS[3], head, 'EX', ARGV[1])
return head
"""

# After an append whose reply was lost: its outcome (the last position), or -1 once it is
# fenced off so that it can never append.
FENCE = """
local seen = redis.call('GET', KEYS[1])
if seen then
  return tonumber(seen)
end
redis.call('SET', KEYS[1], -1, 'EX', ARGV[1])
return -1
"""
ATTEMPT_TTL = 3600  # seconds an attempt's outcome is kept: far longer than any reply can be late
RESOLVE_FOR = 10.0  # seconds an append whose reply was lost keeps asking Redis what became of it


def _maybe_sent(exc: redis.RedisError) -> bool:
    """Whether a failed call may have reached Redis (the connection failed after connecting)."""
    text = str(exc)
    return isinstance(exc, (redis.ConnectionError, redis.TimeoutError)) and "connecting to" not in text


# KEYS: the kept positions (a sorted set), their blobs (a hash), the one checkpoint of a log
# written before several were kept. ARGV: position, blob, how many to keep.
SAVE_CHECKPOINT = """
local newest = redis.call('ZREVRANGE', KEYS[1], 0, 0)
local current = tonumber(newest[1] or redis.call('HGET', KEYS[3], 'position') or '0')
if tonumber(ARGV[1]) <= current then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local dropped = redis.call('ZRANGE', KEYS[1], 0, -tonumber(ARGV[3]) - 1)
for _, position in ipairs(dropped) do
  redis.call('ZREM', KEYS[1], position)
  redis.call('HDEL', KEYS[2], position)
end
redis.call('DEL', KEYS[3])
return 1
"""

# Records expire by TTL; the order list bounds how many exist at once (all keys share the
# {name} hash tag, so the script stays within one cluster slot).
REMEMBER = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('RPUSH', KEYS[2], KEYS[1])
local excess = redis.call('LLEN', KEYS[2]) - tonumber(ARGV[3])
while excess > 0 do
  redis.call('DEL', redis.call('LPOP', KEYS[2]))
  excess = excess - 1
end
"""


# The password sent to Redis when the URI carries none (a Kubernetes Secret reaches a container
# as an environment variable, and the URI is a graph parameter anyone reading the deployment sees).
PASSWORD_ENV = "SELDON_RIVER_REDIS_PASSWORD"


class RedisLog(EventLog):
    """Learning log in a Redis server.

    Parameters
    ----------
    url
        ``redis://host:port/db``; a password in it (``redis://:password@host:port/db``) wins
        over the environment variable ``SELDON_RIVER_REDIS_PASSWORD``.
    name
        Log name; keys are ``seldon-river:{name}:*``.
    ttl
        Seconds a prediction record is kept.
    capacity
        Most prediction records kept (oldest go first).

    """

    def __init__(self, url: str, name: str, ttl: float = 86400.0, capacity: int = 100_000,
                 keep_checkpoints: int = 3):
        self.uri = url
        self.keep_checkpoints = max(1, int(keep_checkpoints))
        self.name = name
        self.ttl = ttl
        self.capacity = capacity
        prefix = self._prefix = f"seldon-river:{{{name}}}"
        self._events = f"{prefix}:events"
        self._head = f"{prefix}:head"
        self._checkpoint = f"{prefix}:checkpoint"  # written before several checkpoints were kept
        self._kept = f"{prefix}:checkpoints"
        self._kept_blobs = f"{prefix}:checkpoint-blobs"
        self._records = f"{prefix}:predictions"
        self._record_order = f"{prefix}:prediction-order"
        self._redis = redis.Redis.from_url(
            url, password=os.environ.get(PASSWORD_ENV) or None,
            socket_timeout=5.0, socket_connect_timeout=2.0, health_check_interval=10,
        )
        self._append = self._redis.register_script(APPEND)
        self._fence = self._redis.register_script(FENCE)
        self._save = self._redis.register_script(SAVE_CHECKPOINT)
        self._remember = self._redis.register_script(REMEMBER)
        self._writer = RecordWriter(self._write_records, self._read_record, ttl)

    def _fail(self, action: str, exc: Exception) -> LogUnavailable:
        return LogUnavailable(f"cannot {action} the learning log at {self.uri}: {exc}")

    def append(self, payload: bytes) -> int:
        return self.append_many([payload])[0]

    def append_many(self, payloads: list[bytes]) -> list[int]:
        """Append ``payloads`` atomically, or raise: :class:`LogUnavailable` when none was logged
        (nor ever will be), :class:`LogOutcomeUnknown` when Redis could not say."""
        attempt = f"{self._prefix}:attempt:{uuid.uuid4().hex}"
        try:
            head = int(self._append(keys=[self._events, self._head, attempt], args=[ATTEMPT_TTL, *payloads]))
        except redis.RedisError as exc:
            if not _maybe_sent(exc):
                raise self._fail("append to", exc) from None
            head = self._resolve(attempt, exc)
        return list(range(head - len(payloads) + 1, head + 1))

    def _resolve(self, attempt: str, lost: Exception) -> int:
        """The outcome of an attempt whose reply was lost: its last position, having fenced it off if it had not run."""
        deadline = time.monotonic() + RESOLVE_FOR
        pause = 0.05
        while True:
            try:
                head = int(self._fence(keys=[attempt], args=[ATTEMPT_TTL]))
            except redis.RedisError as exc:
                if time.monotonic() + pause > deadline:
                    raise LogOutcomeUnknown(
                        f"the learning log at {self.uri} took an append and did not answer ({lost}); asked again "
                        f"for {RESOLVE_FOR:g} s, it could not say whether the append was logged ({exc})"
                    ) from None
                time.sleep(pause)
                pause = min(1.0, pause * 2)
                continue
            if head < 0:
                raise self._fail("append to", lost)
            return head

    def read(self, after: int, limit: int = 1000) -> list[tuple[int, bytes]]:
        try:
            entries = self._redis.xrange(self._events, min=f"({after}-1", max="+", count=limit)
        except redis.RedisError as exc:
            raise self._fail("read", exc) from None
        return [(int(entry_id.split(b"-")[0]), fields[b"e"]) for entry_id, fields in entries]

    def head(self) -> int:
        try:
            return int(self._redis.get(self._head) or 0)
        except redis.RedisError as exc:
            raise self._fail("read", exc) from None

    def save_checkpoint(self, position: int, blob: bytes) -> bool:
        try:
            return bool(self._save(keys=[self._kept, self._kept_blobs, self._checkpoint],
                                   args=[position, blob, self.keep_checkpoints]))
        except redis.RedisError as exc:
            raise self._fail("write a checkpoint to", exc) from None

    def load_checkpoint(self, position: int | None = None) -> Checkpoint | None:
        try:
            kept = self.list_checkpoints()
            if kept and (position is None or position in kept):
                chosen = kept[0] if position is None else position
                blob = self._redis.hget(self._kept_blobs, str(chosen))
                return Checkpoint(chosen, bytes(blob)) if blob is not None else None
            found = self._redis.hmget(self._checkpoint, ["position", "blob"])
        except redis.RedisError as exc:
            raise self._fail("read a checkpoint from", exc) from None
        if found[0] is None or (position is not None and int(found[0]) != position):
            return None
        return Checkpoint(int(found[0]), bytes(found[1]))

    def list_checkpoints(self) -> list[int]:
        try:
            kept = [int(p) for p in self._redis.zrevrange(self._kept, 0, -1)]
            if not kept:
                legacy = self._redis.hget(self._checkpoint, "position")
                kept = [int(legacy)] if legacy is not None else []
        except redis.RedisError as exc:
            raise self._fail("read a checkpoint from", exc) from None
        return kept

    def compact(self, upto: int) -> int:
        try:
            return int(self._redis.xtrim(self._events, minid=f"{upto + 1}-0", approximate=False))
        except redis.RedisError as exc:
            raise self._fail("compact", exc) from None

    def remember(self, key: str, record: bytes) -> None:
        self._writer.remember(key, record)

    def recall(self, key: str) -> bytes | None:
        return self._writer.recall(key)

    def _write_records(self, batch: list[tuple[str, float, bytes]]) -> None:
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                for key, _, record in batch:
                    self._remember(
                        keys=[f"{self._records}:{key}", self._record_order],
                        args=[record, max(1, int(self.ttl)), self.capacity],
                        client=pipe,
                    )
                pipe.execute()
        except redis.RedisError as exc:
            raise self._fail("write prediction records to", exc) from None

    def _read_record(self, key: str) -> bytes | None:
        try:
            return self._redis.get(f"{self._records}:{key}")
        except redis.RedisError as exc:
            raise self._fail("read a prediction record from", exc) from None

    def close(self) -> None:
        self._writer.flush()
        self._redis.close()
