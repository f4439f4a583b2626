"""The newest status of one source, read in a thread while someone watches, fanned out to streams.

Reading a component's status takes its replica's lock and may read its learning log, so it is
never done on the event loop that serves predictions: one thread per feed reads it every
``interval`` seconds, only while at least one stream is open, however many streams there are.
Each stream keeps only the newest event, so a slow reader costs no memory and never holds up the
others: it simply skips to the newest figures.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
from typing import Any, Callable

logger = logging.getLogger(__name__)

HEARTBEAT = 1.0  # seconds: an event at least this often, changed or not


class FeedFull(Exception):
    """Every stream a feed serves is taken."""


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None, as JSON (and a browser) has neither.

    >>> finite({"mae": float("nan"), "rows": [1.0, float("inf")]})
    {'mae': None, 'rows': [1.0, None]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


class Stream:
    """One reader of a feed: the newest event, and a way to wait for the next one."""

    def __init__(self, feed: "StatusFeed", loop: asyncio.AbstractEventLoop):
        self.feed = feed
        self.loop = loop
        self.latest: dict | None = None
        self.closed = False
        self._ready = asyncio.Event()

    def offer(self, event: dict | None) -> None:
        """From the feed's thread: make ``event`` the newest (None ends the stream)."""
        if event is None:
            self.closed = True
        else:
            self.latest = event
        self.loop.call_soon_threadsafe(self._ready.set)

    async def next(self, gone: asyncio.Future | None = None) -> dict | None:
        """The next event, or None once the feed closed (or ``gone`` finished first)."""
        while not self.closed:
            if self._ready.is_set():
                self._ready.clear()
                event, self.latest = self.latest, None
                if event is not None:
                    return event
                continue
            waiter = asyncio.ensure_future(self._ready.wait())
            waiting = {waiter} if gone is None else {waiter, gone}
            try:
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            if gone is not None and gone.done():
                return None
        return None

    def close(self) -> None:
        self.feed.leave(self)

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StatusFeed:
    """Events of one status source for up to ``max_streams`` streams at once.

    Parameters
    ----------
    read
        Returns what an event carries (a JSON-style dict); called in the feed's thread. If it
        raises, the event carries ``error`` instead.
    interval
        Seconds between two reads while a stream is open. An event goes out when what ``read``
        returns changed, and at least every second.
    max_streams
        Streams served at once; :meth:`join` refuses more with :class:`FeedFull`.

    Examples
    --------
    >>> import asyncio, itertools
    >>> count = itertools.count()
    >>> feed = StatusFeed(lambda: {"learned": next(count)}, interval=0.01, max_streams=1)
    >>> async def two_events():
    ...     with feed.join(asyncio.get_running_loop()) as stream:
    ...         try:
    ...             feed.join(asyncio.get_running_loop())
    ...         except FeedFull:
    ...             pass  # one stream at most
    ...         return [(await stream.next())["learned"] for _ in range(2)]
    >>> first, second = asyncio.run(two_events())
    >>> second > first
    True
    >>> feed.close()

    """

    def __init__(self, read: Callable[[], dict], interval: float = 0.25, max_streams: int = 8):
        self.read = read
        self.interval = interval
        self.max_streams = max_streams
        self._streams: set[Stream] = set()
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._last: dict | None = None
        self._sequence = 0

    @property
    def streams(self) -> int:
        """Streams open now."""
        with self._lock:
            return len(self._streams)

    def join(self, loop: asyncio.AbstractEventLoop) -> Stream:
        """A new stream whose events are delivered on ``loop``; the newest event comes first."""
        with self._lock:
            if self._closed:
                raise FeedFull("the live view is shutting down")
            if len(self._streams) >= self.max_streams:
                raise FeedFull(f"the live view serves at most {self.max_streams} streams at once and all are "
                               "open: close a page, or retry later")
            stream = Stream(self, loop)
            self._streams.add(stream)
            if self._last is not None:
                stream.offer(self._last)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="seldon-river-live", daemon=True)
                self._thread.start()
            self._lock.notify_all()
            return stream

    def leave(self, stream: Stream) -> None:
        with self._lock:
            self._streams.discard(stream)

    def close(self) -> None:
        """End every stream and stop reading."""
        with self._lock:
            self._closed = True
            streams, self._streams = list(self._streams), set()
            self._lock.notify_all()
        for stream in streams:
            stream.offer(None)

    def _run(self) -> None:
        sent_at, sent_body = 0.0, None
        while True:
            with self._lock:
                while not self._streams and not self._closed:
                    self._lock.wait()
                    sent_body = None  # a stream joining after a pause gets fresh figures at once
                if self._closed:
                    return
            try:
                body = self.read()
            except Exception as exc:  # the source is down or broken: the page says so and keeps going
                body = {"error": f"{type(exc).__name__}: {exc}"}
            text = json.dumps(body, sort_keys=True, default=str)
            now = time.time()
            if text != sent_body or now - sent_at >= HEARTBEAT:
                sent_at, sent_body = now, text
                self._publish(finite({"time": now, **body}))
            time.sleep(self.interval)

    def _publish(self, event: dict) -> None:
        with self._lock:
            self._sequence += 1
            event["sequence"] = self._sequence
            self._last = event
            streams = list(self._streams)
        for stream in streams:
            try:
                stream.offer(event)
            except RuntimeError:  # its event loop is gone
                self.leave(stream)
