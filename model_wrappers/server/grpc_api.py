"""Seldon's v1 gRPC services of one component, on ``grpc.aio``.

Every ``seldon.protos`` service is served (Generic, Model, Router, Transformer,
OutputTransformer, Combiner, Seldon), as Seldon's wrapper does: the orchestrator sends a
feedback to ``Model/SendFeedback`` whatever the node's type. The request id comes as
``seldon-puid`` metadata. A component's error becomes the matching status code (400 is
``INVALID_ARGUMENT``, 404 ``NOT_FOUND``, 503 ``UNAVAILABLE``) with the same message, and
bytes that are not the expected message are ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import grpc

from ..checks import Undecodable, decode_or_undecodable
from ..request_context import PUID_METADATA, Call
from . import wire
from .component import Component, ComponentError, as_component_error

logger = logging.getLogger(__name__)


def _decoder(message_class):
    return lambda data: decode_or_undecodable(message_class, data)


def _encode(message) -> bytes:
    return message.SerializeToString()


class GrpcApi:
    """The generic handler serving every Seldon gRPC method for one component."""

    def __init__(self, component: Component, pool: ThreadPoolExecutor):
        self.component = component
        self.pool = pool
        self.handlers = {
            rpc.path: grpc.unary_unary_rpc_method_handler(
                self._handler(rpc.method), request_deserializer=_decoder(rpc.request),
                response_serializer=_encode)
            for rpc in wire.rpc_methods()
        }

    def service(self, handler_call_details):
        return self.handlers.get(handler_call_details.method)

    def _handler(self, method: str):
        async def handle(request, rpc_context):
            if isinstance(request, Undecodable):
                await rpc_context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
            try:
                return await self._serve(method, request, rpc_context)
            except ComponentError as error:
                if error.status >= 500:
                    logger.error("gRPC %s: %s", method, error.message)
                await rpc_context.abort(getattr(grpc.StatusCode, error.grpc_code), error.message)

        return handle

    async def _serve(self, method: str, request, rpc_context):
        if method == "metadata":
            try:
                return wire.metadata_message(self.component.metadata())
            except ComponentError:
                raise
            except Exception as exc:
                raise as_component_error(exc) from None
        if method == "graph-metadata":
            raise ComponentError("GraphMetadata is not served by a single component", 501)
        puid = None
        for key, value in rpc_context.invocation_metadata() or ():
            if key == PUID_METADATA:
                puid = value
        reply = await self.component.serve(method, request, Call(puid=puid or None), self.pool)
        try:
            return wire.to_message(reply)
        except Exception as exc:
            raise as_component_error(exc) from None


class _Generic(grpc.GenericRpcHandler):
    def __init__(self, api: GrpcApi):
        self.api = api

    def service(self, handler_call_details):
        return self.api.service(handler_call_details)


def generic_handler(api: GrpcApi) -> grpc.GenericRpcHandler:
    return _Generic(api)
