"""What a component may know of the call it is serving, beyond the message itself.

Seldon's orchestrator sends the request id only out of band: the ``Seldon-Puid`` HTTP header
over REST, ``seldon-puid`` metadata over gRPC. Keyed components also read query parameters
(``?keys=...`` on ``/health/status``). Each server fills this in its own way:

- the project's server (:mod:`model_wrappers.server`) sets :data:`current` for each call;
- under Seldon's ``seldon-core-microservice``, Flask's request (REST) or the gRPC servicer's
  ``context`` (found on the call stack, as the wrapper does not pass it on) are read instead.

Examples
--------
>>> current_puid() is None
True
>>> with serving(Call(puid="abc", query={"keys": ["a"]})):
...     current_puid(), current_query()
('abc', {'keys': ['a']})

"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import inspect

PUID_HEADER = "Seldon-Puid"
PUID_METADATA = "seldon-puid"


@dataclasses.dataclass(frozen=True)
class Call:
    """The out-of-band parts of one call: its request id and its query parameters."""

    puid: str | None = None
    query: dict[str, list[str]] = dataclasses.field(default_factory=dict)


current: contextvars.ContextVar[Call | None] = contextvars.ContextVar("seldon_river_call", default=None)


@contextlib.contextmanager
def serving(call: Call):
    """Make ``call`` the one :func:`current_puid` and :func:`current_query` describe."""
    token = current.set(call)
    try:
        yield call
    finally:
        current.reset(token)


def current_puid() -> str | None:
    """The request id the orchestrator sent with the call being served, if any."""
    call = current.get()
    if call is not None:
        return call.puid
    request = _flask_request()
    if request is not None:
        return request.headers.get(PUID_HEADER) or None
    context = _grpc_context()
    if context is not None:
        for key, value in context.invocation_metadata() or ():
            if key == PUID_METADATA and value:
                return value
    return None


def current_query() -> dict[str, list[str]]:
    """The query parameters of the REST call being served (empty over gRPC)."""
    call = current.get()
    if call is not None:
        return call.query
    request = _flask_request()
    if request is not None:
        return {k: request.args.getlist(k) for k in request.args}
    return {}


def _flask_request():
    try:
        import flask
    except ImportError:
        return None
    return flask.request if flask.has_request_context() else None


def _grpc_context():
    """The servicer context of the gRPC call on this thread's stack (Seldon's wrapper names it ``context``)."""
    try:
        import grpc
    except ImportError:
        return None
    frame = inspect.currentframe()
    try:
        while frame is not None:
            candidate = frame.f_locals.get("context")
            if isinstance(candidate, grpc.ServicerContext):
                return candidate
            frame = frame.f_back
        return None
    finally:
        del frame
