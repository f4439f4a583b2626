"""Learning logs and the replicas they drive."""

from __future__ import annotations

from .base import Checkpoint, EventLog, LogUnavailable

__all__ = ["Checkpoint", "EventLog", "LogUnavailable", "open_log"]


def open_log(uri: str, name: str, *, ttl: float = 86400.0, capacity: int = 100_000) -> EventLog:
    """Open the learning log ``name`` at ``uri``.

    ``sqlite:///absolute/path.db`` is the embedded backend shared by the processes of one pod;
    ``redis://host:port/db`` serves many replicas.
    """
    if uri.startswith("sqlite:///"):
        from .sqlite import SQLiteLog

        return SQLiteLog(uri[len("sqlite:///"):], name, ttl=ttl, capacity=capacity)
    if uri.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisLog

        return RedisLog(uri, name, ttl=ttl, capacity=capacity)
    raise ValueError(f"state URI must start with sqlite:/// or redis://, got {uri!r}")
