"""Configuration read in one place: Seldon ``parameters`` first, then the environment.

=============================  ===========================================  =====================================
Setting                        Seldon parameter / environment variable      Default
=============================  ===========================================  =====================================
learning-log URI               ``state_uri`` / ``SELDON_RIVER_STATE_URI``   ``sqlite:////var/lib/seldon-river/state.db``
log name                       ``state_name`` / ``PREDICTIVE_UNIT_ID``      the component's class name
checkpoint interval (events)   ``checkpoint_every``                         1000
read staleness bound (ms)      ``max_staleness_ms``                         0 (every read catches up)
checkpoints kept               ``SELDON_RIVER_KEEP_CHECKPOINTS``            3 (events since the oldest are kept)
live view: streams at once     ``SELDON_RIVER_LIVE_MAX_STREAMS``            8 (``/live/events``; more get 503)
live view: status read every   ``SELDON_RIVER_LIVE_INTERVAL_MS``            250 (an event on change, else every 1 s)
=============================  ===========================================  =====================================

``PREDICTIVE_UNIT_ID`` is set by Seldon's operator to the graph node's name, so each node of a
graph keeps its own log even when several share one backend.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import urllib.parse

DEFAULT_STATE_URI = "sqlite:////var/lib/seldon-river/state.db"
STATE_URI_ENV = "SELDON_RIVER_STATE_URI"
KEEP_CHECKPOINTS_ENV = "SELDON_RIVER_KEEP_CHECKPOINTS"
UNIT_ID_ENV = "PREDICTIVE_UNIT_ID"
STATE_KEY_ENV = "SELDON_RIVER_STATE_KEY"
STATE_KEY_FILE_ENV = "SELDON_RIVER_STATE_KEY_FILE"
LIVE_MAX_STREAMS_ENV = "SELDON_RIVER_LIVE_MAX_STREAMS"
LIVE_INTERVAL_ENV = "SELDON_RIVER_LIVE_INTERVAL_MS"


def state_key() -> bytes | None:
    """The key that authenticates shared state, or None when none is configured.

    ``SELDON_RIVER_STATE_KEY_FILE`` names a file (e.g. a mounted Kubernetes Secret) and wins
    over ``SELDON_RIVER_STATE_KEY``, so the key need not sit in the pod's environment.
    """
    path = os.environ.get(STATE_KEY_FILE_ENV)
    if path:
        try:
            with open(path, "rb") as handle:
                key = handle.read().strip()
        except OSError as exc:
            raise ValueError(f"cannot read the state key from {STATE_KEY_FILE_ENV}={path!r}: {exc}") from None
        if not key:
            raise ValueError(f"the state key file {STATE_KEY_FILE_ENV}={path!r} is empty")
        return key
    key = os.environ.get(STATE_KEY_ENV)
    return key.encode() if key else None


def without_password(uri: str) -> str:
    """``uri`` with any password replaced by ``***`` (for status replies and provenance).

    >>> without_password("redis://:secret@redis:6379/0")
    'redis://:***@redis:6379/0'
    """
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def unit_id(default: str) -> str:
    """The graph node's name as Seldon's operator sets it, or ``default``."""
    return os.environ.get(UNIT_ID_ENV) or default


@dataclasses.dataclass(frozen=True)
class StateSettings:
    """Where and how a component keeps its learned state."""

    uri: str
    name: str
    checkpoint_every: int = 1000
    max_staleness: float = 0.0
    keep_checkpoints: int = 3

    @classmethod
    def resolve(
        cls,
        component: str,
        version: str,
        *,
        state_uri: str | None = None,
        state_name: str | None = None,
        checkpoint_every: int = 1000,
        max_staleness_ms: int = 0,
    ) -> "StateSettings":
        """Settings for one component.

        ``version`` identifies what the state starts from (e.g. the model's sha256, or the
        router's policy settings); it is part of the log name, so deploying a different model
        or policy starts a new log instead of replaying old events into it.
        """
        if int(checkpoint_every) < 1:
            raise ValueError(f"checkpoint_every must be at least 1, got {checkpoint_every}")
        if int(max_staleness_ms) < 0:
            raise ValueError(f"max_staleness_ms must be 0 or more, got {max_staleness_ms}")
        keep = os.environ.get(KEEP_CHECKPOINTS_ENV) or "3"
        if not keep.isdigit() or int(keep) < 1:
            raise ValueError(f"{KEEP_CHECKPOINTS_ENV} must be a whole number of at least 1, got {keep!r}")
        base = state_name or unit_id(component)
        return cls(
            uri=state_uri or os.environ.get(STATE_URI_ENV) or DEFAULT_STATE_URI,
            name=f"{base}-{version[:12]}",
            checkpoint_every=int(checkpoint_every),
            max_staleness=int(max_staleness_ms) / 1000.0,
            keep_checkpoints=int(keep),
        )


def fingerprint(settings: dict) -> str:
    """A short stable digest of the settings a state is built from."""
    text = repr(sorted(settings.items()))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class LiveSettings:
    """How the live view (``/live``) streams: streams served at once, and how often status is read.

    >>> LiveSettings.from_env({"SELDON_RIVER_LIVE_MAX_STREAMS": "2"})
    LiveSettings(max_streams=2, interval=0.25)
    """

    max_streams: int = 8
    interval: float = 0.25

    @classmethod
    def from_env(cls, env=os.environ) -> "LiveSettings":
        values = {}
        for name, default, least in ((LIVE_MAX_STREAMS_ENV, "8", 1), (LIVE_INTERVAL_ENV, "250", 10)):
            text = env.get(name) or default
            if not text.isdigit() or int(text) < least:
                raise ValueError(f"{name} must be a whole number of at least {least}, got {text!r}")
            values[name] = int(text)
        return cls(max_streams=values[LIVE_MAX_STREAMS_ENV], interval=values[LIVE_INTERVAL_ENV] / 1000.0)
