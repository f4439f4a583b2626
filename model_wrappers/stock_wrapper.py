"""Bad input answered 400 / INVALID_ARGUMENT under Seldon's own ``seldon-core-microservice``.

Seldon's wrapper reads and decodes a request before a component's hook sees it, and answers
whatever fails there with HTTP 500 or gRPC ``INTERNAL``: a feedback body that is a number or a
list (``'int' object is not iterable``), JSON nested past Python's recursion limit, protobuf
bytes that do not decode (``Exception deserializing request!``), a body too large for memory.
The components close those gaps for that server (the project's own server,
:mod:`model_wrappers.server`, answers them itself):

- REST: every component class carries :data:`REST_ERRORS` as ``model_error_handler``, a Flask
  blueprint the wrapper registers on its app. It answers a
  :class:`~model_wrappers.errors.SeldonRiverError` with its status (the wrapper would answer
  500: the project's errors are not seldon-core's exception class), checks each call's JSON before the wrapper
  reads it (a feedback must also be a ``Feedback``), limits bodies to
  ``SELDON_RIVER_MAX_BODY_BYTES`` (the project server's default, 64 MiB; larger is 413) and
  answers Flask's own HTTP errors with their status instead of 500.
- gRPC: :func:`install` makes the wrapper's gRPC services encode the components' replies, and
  decode requests so that bytes which
  are not the expected message reach the component as an :class:`~model_wrappers.checks.Undecodable`,
  which every component refuses with ``INVALID_ARGUMENT``. It is done only in a process that
  runs Seldon's wrapper (``seldon_core.microservice`` imported): elsewhere Seldon's stubs and
  services keep protobuf's own decoding.
"""

from __future__ import annotations

import os
import sys

from .checks import decode_or_undecodable, kind
from .errors import InvalidInput, SeldonRiverError

MAX_BODY_ENV = "SELDON_RIVER_MAX_BODY_BYTES"
CALL_PATHS = frozenset({"/predict", "/api/v1.0/predictions", "/api/v0.1/predictions", "/send-feedback",
                        "/api/v1.0/feedback", "/api/v0.1/feedback", "/transform-input", "/transform-output",
                        "/route", "/aggregate"})
FEEDBACK_PATHS = frozenset({"/send-feedback", "/api/v1.0/feedback", "/api/v0.1/feedback"})


def _error_reply(error: SeldonRiverError):
    from seldon_core.flask_utils import jsonify

    reply = jsonify(error.to_dict())
    reply.status_code = error.status_code
    return reply


def _checked_request():
    """Refuse a call whose body the wrapper could not read or (for feedback) parse, before it tries."""
    from flask import request
    from seldon_core.flask_utils import SeldonMicroserviceException, get_request
    from seldon_core.utils import json_to_feedback

    from .payload import feedback_to_dict

    if request.path not in CALL_PATHS or request.method != "POST":
        return None
    try:
        message = get_request()
    except (SeldonMicroserviceException, RecursionError, ValueError):
        return _unreadable(request)
    if request.path in FEEDBACK_PATHS:
        if not isinstance(message, dict):
            return _error_reply(InvalidInput(f"expected a Feedback (a JSON object), got {kind(message)}"))
        try:
            feedback_to_dict(message)  # the project server's own checks, with its messages
        except InvalidInput as exc:
            return _error_reply(exc)
        try:
            json_to_feedback(message)
        except Exception as exc:  # protobuf's ParseError, or the TypeError of a wrongly typed field
            return _error_reply(InvalidInput(f"the request is not a Seldon Feedback: {exc}"))
    return None


def _unreadable(request):
    """The project server's answer to a body the wrapper cannot read; None where it reads it.

    Both servers then say the same thing about the same bad body, where the wrapper would only
    say "Can't find JSON in data". A body the project's server reads but the wrapper does not (JSON
    without a JSON Content-Type) is left to the wrapper's own 400.
    """
    from .checks import check_message
    from .server.rest import BadRequest, parse_body

    query = {k: request.args.getlist(k) for k in request.args}
    try:
        message = parse_body(request.get_data(), (request.content_type or "").lower(), query)
        if message is None:
            check_message(message)
    except BadRequest as exc:
        return _error_reply(InvalidInput(exc.message))
    except InvalidInput as exc:
        return _error_reply(exc)
    return None


def _http_error(error):
    """Flask's own HTTP errors (413 for a body over the limit, 405, ...) with their status, in Seldon's form."""
    from seldon_core.flask_utils import jsonify

    reply = jsonify({"status": {"status": 1, "info": error.description, "code": -1, "reason": "MICROSERVICE_BAD_DATA"}})
    reply.status_code = error.code
    return reply


def _rest_errors():
    from flask import Blueprint
    from werkzeug.exceptions import HTTPException

    from .server.main import DEFAULT_MAX_BODY

    blueprint = Blueprint("seldon_river_errors", __name__)

    @blueprint.record_once
    def limit_bodies(state):
        state.app.config["MAX_CONTENT_LENGTH"] = int(os.environ.get(MAX_BODY_ENV) or DEFAULT_MAX_BODY)

    blueprint.before_app_request(_checked_request)
    blueprint.app_errorhandler(HTTPException)(_http_error)
    blueprint.app_errorhandler(SeldonRiverError)(_error_reply)
    return blueprint


class _RestErrors:
    """The blueprint, made on first use (only Seldon's wrapper asks for it)."""

    def __get__(self, obj, owner=None):
        global _blueprint
        if _blueprint is None:
            _blueprint = _rest_errors()
        return _blueprint


_blueprint = None
REST_ERRORS = _RestErrors()


class _TolerantMessage:
    """A protobuf message class whose ``FromString`` gives an :class:`~model_wrappers.checks.Undecodable` instead of raising.

    Its ``SerializeToString`` takes any message of the same name: the components reply with
    :mod:`model_wrappers.protocol`'s classes, whose bytes are seldon-core's.
    """

    def __init__(self, message_class):
        self._class = message_class

    @staticmethod
    def SerializeToString(message) -> bytes:  # noqa: N802 - protobuf's name
        return message.SerializeToString()

    def FromString(self, data: bytes):  # noqa: N802 - protobuf's name
        return decode_or_undecodable(self._class, data)

    def __getattr__(self, name):
        return getattr(self._class, name)


class _TolerantMessages:
    """Seldon's ``prediction_pb2`` module as its gRPC services see it: every message class tolerant."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        found = getattr(self._module, name)
        return _TolerantMessage(found) if isinstance(found, type) and hasattr(found, "FromString") else found


def install() -> bool:
    """Make Seldon's wrapper hand undecodable gRPC requests to the component; True if it applies here."""
    if "seldon_core.microservice" not in sys.modules:
        return False
    from seldon_core.proto import prediction_pb2, prediction_pb2_grpc

    if not isinstance(prediction_pb2_grpc.proto_dot_prediction__pb2, _TolerantMessages):
        # The wrapper builds its services from this module global when its gRPC server starts,
        # after the component object is made (where this runs).
        prediction_pb2_grpc.proto_dot_prediction__pb2 = _TolerantMessages(prediction_pb2)
    return True


class StockWrapperSupport:
    """Base of the component classes: the REST blueprint above, and :func:`install` when one is made.

    Seldon's wrapper makes the component object before it starts its servers, so the gRPC
    services it builds afterwards decode requests as :func:`install` arranges.
    """

    model_error_handler = REST_ERRORS

    def __new__(cls, *args, **kwargs):
        install()
        return super().__new__(cls)
