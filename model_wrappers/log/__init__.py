"""Learning logs and the replicas they drive."""

from __future__ import annotations

from ..config import state_key
from .base import Checkpoint, EventLog, LogOutcomeUnknown, LogUnavailable

__all__ = ["Checkpoint", "EventLog", "LogOutcomeUnknown", "LogUnavailable", "open_log"]


def open_log(uri: str, name: str, *, ttl: float = 86400.0, capacity: int = 100_000,
             keep_checkpoints: int = 3) -> EventLog:
    """Open the learning log ``name`` at ``uri``.

    ``sqlite:///absolute/path.db`` is the embedded backend shared by the processes of one pod;
    ``redis://host:port/db`` serves many replicas; ``kafka://host:port[,host:port]/[prefix]`` keeps
    the log in Apache Kafka topics (see :mod:`.kafka` for ``?replication=3`` and durability). With a state key configured (see
    :func:`model_wrappers.config.state_key`) checkpoints and prediction records are authenticated.
    """
    log = _open_backend(uri, name, ttl=ttl, capacity=capacity, keep_checkpoints=keep_checkpoints)
    key = state_key()
    if key is None:
        return log
    from .authenticated import AuthenticatedLog

    return AuthenticatedLog(log, key)


def _open_backend(uri: str, name: str, *, ttl: float, capacity: int, keep_checkpoints: int = 3) -> EventLog:
    if uri.startswith("sqlite:///"):
        from .sqlite import SQLiteLog

        return SQLiteLog(uri[len("sqlite:///"):], name, ttl=ttl, capacity=capacity,
                         keep_checkpoints=keep_checkpoints)
    if uri.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisLog

        return RedisLog(uri, name, ttl=ttl, capacity=capacity, keep_checkpoints=keep_checkpoints)
    if uri.startswith("kafka://"):
        from .kafka import KafkaLog

        return KafkaLog(uri, name, ttl=ttl, capacity=capacity, keep_checkpoints=keep_checkpoints)
    raise ValueError(f"state URI must start with sqlite:///, redis:// or kafka://, got {uri!r}")
