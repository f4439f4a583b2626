"""Seldon's v1 REST API of one component, as a bare ASGI application.

Paths, body forms and replies are those of Seldon's wrapper (``seldon-core-microservice``),
which Seldon's orchestrator calls: ``POST /predict``, ``/transform-input``, ``/transform-output``,
``/route``, ``/aggregate``, ``/send-feedback`` and their external names
(``/api/v1.0/predictions``, ``/api/v1.0/feedback``), ``GET /health/ping``, ``/health/status``,
``/metadata``. A body is a JSON ``SeldonMessage`` (whatever its Content-Type), a form field
``json=`` or a query parameter ``json=``. Errors are Seldon's ``{"status": {...}}`` replies with the
component's HTTP status.

Calls that only read the learned state (predict, route) run on the event loop; the others (the
feedback, and transforms, which may learn) run on a thread pool so that durable appends of
concurrent calls can share one transaction (see :mod:`model_wrappers.log.group_commit`).
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import orjson

from ..checks import kind
from ..request_context import Call, current
from . import wire
from .component import Component, ComponentError
from .metrics import exposition

logger = logging.getLogger(__name__)

ROUTES = {
    "/predict": "predict",
    "/api/v1.0/predictions": "predict",
    "/api/v0.1/predictions": "predict",
    "/send-feedback": "send-feedback",
    "/api/v1.0/feedback": "send-feedback",
    "/api/v0.1/feedback": "send-feedback",
    "/transform-input": "transform-input",
    "/transform-output": "transform-output",
    "/route": "route",
    "/aggregate": "aggregate",
}
STATUS_PATHS = ("/health/status", "/api/v1.0/health/status")
METADATA_PATHS = ("/metadata", "/api/v1.0/metadata")
JSON_HEADERS = [(b"content-type", b"application/json")]
TEXT_HEADERS = [(b"content-type", b"text/html; charset=utf-8")]
DUMP_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class BadRequest(ComponentError):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message, status, "MICROSERVICE_BAD_DATA")


def dumps(body) -> bytes:
    try:
        return orjson.dumps(body, option=DUMP_OPTIONS)
    except TypeError:  # a reply holding values JSON has no type for: written as Python's json would
        return json.dumps(body, default=str).encode()


def parse_body(body: bytes, content_type: str, query: dict[str, list[str]]):
    """The JSON message of a request, from its query, its form field ``json`` or its body."""
    text = (query.get("json") or [None])[0]
    if text is None and content_type.startswith("application/x-www-form-urlencoded"):
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        text = (form.get("json") or [None])[0]
    if text is None and content_type.startswith("multipart/form-data"):
        raise BadRequest("multipart/form-data bodies are not read: send the message as JSON", 415)
    raw = text.encode() if text is not None else body
    if not raw.strip():
        raise BadRequest("the request has no JSON message: send a SeldonMessage as the JSON body "
                         "(or as the form field or query parameter json=)")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        # Python's reader also takes NaN and Infinity, as Seldon's wrapper does: the component
        # then says which value of which row it refuses.
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None


class _App:
    """An ASGI application answering HTTP only (no lifespan work, no websockets)."""

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        status, headers, body = await self._serve(scope, receive)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _serve(self, scope, receive):  # pragma: no cover - defined by subclasses
        raise NotImplementedError


class RestApp(_App):
    """The ASGI application for one component.

    Parameters
    ----------
    component
        The component it serves.
    pool
        Threads for the calls that may write the learning log.
    max_body
        Largest request body in bytes (a larger one is answered 413).

    """

    def __init__(self, component: Component, pool: ThreadPoolExecutor, max_body: int):
        self.component = component
        self.pool = pool
        self.max_body = max_body

    async def _serve(self, scope, receive):
        path = scope["path"]
        try:
            method = ROUTES.get(path)
            if method is not None:
                if scope["method"] not in ("POST", "GET"):
                    raise BadRequest(f"{path} takes POST (or GET with ?json=), not {scope['method']}", 405)
                return await self._call(method, scope, receive)
            if scope["method"] != "GET":
                raise BadRequest(f"no {scope['method']} {path} here", 404 if path not in _GET_PATHS else 405)
            if path == "/health/ping":
                return 200, TEXT_HEADERS, b"pong"
            if path in STATUS_PATHS:
                query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
                token = current.set(Call(query=query))
                try:
                    reply = wire.to_json(self.component.health_status())
                finally:
                    current.reset(token)
                return 200, JSON_HEADERS, dumps(reply)
            if path in METADATA_PATHS:
                return 200, JSON_HEADERS, dumps(self.component.metadata())
            raise BadRequest(f"no such path {path}: see the Seldon v1 component API", 404)
        except ComponentError as error:
            if error.status >= 500:
                logger.error("%s %s: %s", scope["method"], path, error.message)
            return error.status, JSON_HEADERS, dumps(error.body())

    async def _call(self, method: str, scope, receive):
        body = await _read_body(receive, self.max_body)
        headers = dict(scope["headers"])
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        message = parse_body(body, headers.get(b"content-type", b"").decode("latin-1").lower(), query)
        if method == "send-feedback" and not isinstance(message, dict):
            raise BadRequest(f"expected a Feedback (a JSON object), got {kind(message)}")
        puid = headers.get(b"seldon-puid")
        call = Call(puid=puid.decode("latin-1") if puid else None, query=query)
        reply = wire.to_json(await self.component.serve(method, message, call, self.pool))
        status = 200
        if method == "predict" and isinstance(reply, dict):
            # As Seldon's wrapper: a reply carrying a status code is answered with it.
            code = (reply.get("status") or {}).get("code") if isinstance(reply.get("status"), dict) else None
            if isinstance(code, int) and 100 <= code <= 599:
                status = code
        return status, JSON_HEADERS, dumps(reply)


_GET_PATHS = ("/health/ping", *STATUS_PATHS, *METADATA_PATHS)


async def _read_body(receive, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            raise BadRequest("the client went away before sending the whole request")
        chunk = event.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"the request body is larger than {limit} bytes", 413)
        chunks.append(chunk)
        if not event.get("more_body"):
            return b"".join(chunks)


async def _lifespan(receive, send):
    while True:
        event = await receive()
        if event["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif event["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class MetricsApp(_App):
    """Prometheus' scrape endpoint: ``/prometheus`` and ``/metrics`` (and the operator's path),
    and the live view (``/live``, ``/live/events``: see :mod:`model_wrappers.live`) when given."""

    def __init__(self, stores, paths: tuple[str, ...], live=None):
        self.stores = stores
        self.paths = paths
        self.live = live

    async def __call__(self, scope, receive, send):
        if self.live is not None and self.live.serves(scope):
            await self.live(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def _serve(self, scope, receive):
        if scope["path"] in self.paths:
            return 200, [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")], exposition(self.stores)
        return 404, TEXT_HEADERS, b"metrics are at " + " ".join(self.paths).encode()
