"""Ports for the processes a local run starts, chosen where no outgoing connection can take them.

A port is chosen free here and bound by another process a moment later. One taken from the
kernel's ephemeral range (``net.ipv4.ip_local_port_range``) can become some connection's own
port in between, and the process then cannot listen on it. Ports below that range are only ever
taken by listeners, and the ones handed out here are not handed out again by this process.
"""

from __future__ import annotations

import random
import socket

EPHEMERAL_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"
LOWEST = 20000  # below this sit the well-known services (Redis, Kafka, Prometheus, ...)
TRIES = 200

_handed_out: set[int] = set()
# Not the module's generator: Hypothesis seeds that one, which would hand two runs the same ports.
_choose = random.SystemRandom()


def ephemeral_range() -> tuple[int, int]:
    """The ports the kernel gives outgoing connections (Linux's default when unreadable)."""
    try:
        with open(EPHEMERAL_RANGE) as fh:
            low, high = (int(p) for p in fh.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def _listenable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, outside the ephemeral range, not handed out before.

    Examples
    --------
    >>> a, b = free_port(), free_port()
    >>> a != b and not (ephemeral_range()[0] <= a <= ephemeral_range()[1])
    True

    """
    low, high = ephemeral_range()
    spans = [r for r in (range(LOWEST, low), range(high + 1, 65536)) if len(r) > 1000]
    for _ in range(TRIES if spans else 0):
        port = _choose.choice(_choose.choice(spans))
        if port not in _handed_out and _listenable(host, port):
            _handed_out.add(port)
            return port
    with socket.socket() as s:  # a machine whose ephemeral range leaves no room: the kernel's pick
        s.bind((host, 0))
        return s.getsockname()[1]
