"""``GET /live`` (the page) and ``GET /live/events`` (server-sent events), as an ASGI application.

The page is package data (``page.html``): one file holding its script, style and charts, served
with a Content-Security-Policy that lets it talk to its own server only. Each event is one
``event: status`` frame whose ``data`` is the JSON of the feed's newest event. A stream ends when
the client goes away (its stream is then dropped from the feed at once) or the server stops;
streams beyond the feed's ``max_streams`` are answered 503 with a ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.resources
import json
from typing import Callable

from .feed import FeedFull, StatusFeed

PAGE_PATH = "/live"
EVENTS_PATH = "/live/events"
RETRY_MS = 2000  # how long a browser waits before reconnecting a dropped stream
# The page may only reach its own server: no script, style, font or image from anywhere else.
PAGE_POLICY = (b"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
               b"connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'")


@functools.lru_cache(maxsize=1)
def page() -> bytes:
    """The live page's HTML (``model_wrappers/live/page.html``)."""
    return importlib.resources.files(__package__).joinpath("page.html").read_bytes()


def frame(event: dict) -> bytes:
    """One server-sent event holding ``event`` as JSON.

    >>> frame({"sequence": 3, "learned": 1})
    b'id: 3\\nevent: status\\ndata: {"sequence": 3, "learned": 1}\\n\\n'
    """
    data = json.dumps(event, allow_nan=False, default=str)  # one line: JSON escapes newlines
    return f"id: {event.get('sequence', 0)}\nevent: status\ndata: {data}\n\n".encode()


class LiveApp:
    """The live view of one status feed, as an ASGI application.

    Parameters
    ----------
    feed
        Where the events come from.
    allowed
        Called with the request's headers (lowercase ``bytes`` names) before the stream is
        opened; returns None, or why the request is refused (answered 401).

    Examples
    --------
    >>> app = LiveApp(StatusFeed(lambda: {"status": {}}))
    >>> app.serves({"type": "http", "path": "/live/events"}), app.serves({"type": "http", "path": "/predict"})
    (True, False)

    """

    def __init__(self, feed: StatusFeed, allowed: Callable[[dict], str | None] | None = None):
        self.feed = feed
        self.allowed = allowed

    @staticmethod
    def serves(scope) -> bool:
        return scope.get("type") == "http" and scope.get("path") in (PAGE_PATH, PAGE_PATH + "/", EVENTS_PATH)

    async def __call__(self, scope, receive, send):
        if scope["method"] not in ("GET", "HEAD"):
            await _respond(send, 405, b"application/json", _message(f"{scope['path']} takes GET, not {scope['method']}"),
                           [(b"allow", b"GET")])
        elif scope["path"] == EVENTS_PATH:
            await self._events(scope, receive, send)
        else:
            await _respond(send, 200, b"text/html; charset=utf-8", page(),
                           [(b"content-security-policy", PAGE_POLICY), (b"cache-control", b"no-cache")])

    async def _events(self, scope, receive, send):
        headers = dict(scope.get("headers") or [])
        refused = self.allowed(headers) if self.allowed else None
        if refused:
            await _respond(send, 401, b"application/json", _message(refused), [(b"www-authenticate", b"Bearer")])
            return
        try:
            stream = self.feed.join(asyncio.get_running_loop())
        except FeedFull as exc:
            await _respond(send, 503, b"application/json", _message(str(exc)), [(b"retry-after", b"5")])
            return
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no"),  # a proxy in front must not hold events back
            ]})
            await send({"type": "http.response.body", "body": f"retry: {RETRY_MS}\n\n".encode(), "more_body": True})
            while True:
                event = await stream.next(gone)
                if event is None:
                    break
                await send({"type": "http.response.body", "body": frame(event), "more_body": True})
            if not gone.done():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the connection broke while writing
            pass
        finally:
            stream.close()
            gone.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await gone


async def _disconnected(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _message(text: str) -> bytes:
    return json.dumps({"status": {"status": 1, "info": text, "code": -1, "reason": "LIVE_VIEW"}}).encode()


async def _respond(send, status: int, content_type: bytes, body: bytes, headers: list | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
