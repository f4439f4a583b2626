"""Errors that reach the caller as HTTP 4xx/5xx over REST and as a gRPC status over gRPC.

Each error carries what both servers need: ``status_code``, ``reason`` and ``message`` (the
attributes of Seldon's ``SeldonMicroserviceException``, read by the project's server) and
:meth:`SeldonRiverError.to_dict`, the body Seldon answers an error with. Under Seldon's stock
wrapper, :mod:`model_wrappers.stock_wrapper` answers them over REST with that status. Over gRPC
every exception becomes ``UNKNOWN`` there and the raw hooks are not handed the gRPC context:
:func:`seldon_errors` closes that gap: it finds the gRPC ``ServicerContext`` of the call in
progress (the wrapper's servicer holds it as ``context``) and aborts with the matching status
code and the same message.

Examples
--------
>>> error = InvalidInput("row 0: expected 2 columns")
>>> error.status_code, error.to_dict()["status"]["reason"]
(400, 'MICROSERVICE_BAD_DATA')
"""

from __future__ import annotations

import functools

import grpc

from .request_context import _grpc_context


class SeldonRiverError(Exception):
    """Base class: an HTTP status, a gRPC status and a message that says what was wrong."""

    status_code = 500
    grpc_code = grpc.StatusCode.INTERNAL
    reason = "MICROSERVICE_INTERNAL_ERROR"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict:
        """The reply body, as Seldon's wrapper words an error."""
        return {"status": {"status": 1, "info": self.message, "code": -1, "reason": self.reason}}


class InvalidInput(SeldonRiverError):
    """The request or feedback cannot be used as sent; nothing was learned from it."""

    status_code = 400
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "MICROSERVICE_BAD_DATA"


class NotFound(SeldonRiverError):
    """The request refers to something unknown, e.g. an expired prediction id."""

    status_code = 404
    grpc_code = grpc.StatusCode.NOT_FOUND
    reason = "MICROSERVICE_NOT_FOUND"


class StateUnavailable(SeldonRiverError):
    """The learning log cannot be written, so feedback is refused rather than acknowledged and lost."""

    status_code = 503
    grpc_code = grpc.StatusCode.UNAVAILABLE
    reason = "MICROSERVICE_STATE_UNAVAILABLE"


class OutcomeUnknown(SeldonRiverError):
    """The learning log took a feedback and could not confirm it: it may or may not be logged."""

    status_code = 504
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "MICROSERVICE_STATE_OUTCOME_UNKNOWN"


class NotLearned(SeldonRiverError):
    """A logged event the state could not apply: a fault of the component, not of the caller."""


def seldon_errors(method):
    """Decorate a raw Seldon hook so our errors get the right status over REST and gRPC."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except SeldonRiverError as error:
            context = _grpc_context()
            if context is None:
                raise
            context.abort(error.grpc_code, error.message)

    return wrapper
