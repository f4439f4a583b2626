"""Seldon's external gRPC API (``seldon.protos.Seldon/Predict`` and ``/SendFeedback``).

``SeldonClient(transport="grpc")`` sends the metadata ``seldon=<deployment>`` (and
``namespace=<namespace>``) through an ambassador or istio gateway and none through
``gateway="seldon"``: both are accepted, a different deployment is NOT_FOUND. The messages are
converted to JSON and go through the same orchestrator as REST, which calls the components over
gRPC, as Seldon's orchestrator does for a gRPC client. The request id comes back as the
``seldon-puid`` initial metadata and, from a RiverModel, in ``meta.puid``.
"""

from __future__ import annotations

import concurrent.futures

import grpc

from ..protocol import SERVICES, ProtocolError, decode, dict_to_message, feedback_to_dict, message_to_dict
from .gateway import Api, Token

STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    501: grpc.StatusCode.UNIMPLEMENTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
SERVICE = "seldon.protos.Seldon"


def _info(body: dict) -> str:
    status = body.get("status") if isinstance(body, dict) else None
    return (status or {}).get("info") or str(body)[:500]


class SeldonGateway:
    """The gRPC servicer: checks the token and the deployment, then calls :class:`Api`.

    Requests arrive as bytes and are decoded here, so that bytes which are not the method's
    message are the caller's mistake (INVALID_ARGUMENT) rather than gRPC's INTERNAL.
    """

    def __init__(self, api: Api, token: Token):
        self.api = api
        self.token = token

    def _serve(self, kind: str, message: dict, context: grpc.ServicerContext):
        metadata = {k.lower(): v for k, v in context.invocation_metadata()}
        if not self.token.accepts(metadata.get("authorization"), metadata.get("x-auth-token")):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token: send metadata "
                          "authorization: Bearer <token>")
        refused = self.api.serves(metadata.get("seldon"), metadata.get("namespace"))
        if refused:
            context.abort(grpc.StatusCode.NOT_FOUND, refused)
        status, body, puid = self.api.handle(kind, message, metadata.get("seldon-puid"), "grpc")
        context.send_initial_metadata((("seldon-puid", puid),))
        if status != 200:
            context.abort(STATUS.get(status, grpc.StatusCode.INTERNAL), _info(body))
        try:
            return dict_to_message(body)
        except ProtocolError as exc:  # a component's JSON that is no SeldonMessage
            context.abort(grpc.StatusCode.INTERNAL, f"the graph's reply is not a SeldonMessage: {exc}")

    @staticmethod
    def _decoded(method: str, data: bytes, context: grpc.ServicerContext):
        try:
            return decode(SERVICES[SERVICE][method].request, data)
        except ProtocolError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    def Predict(self, request: bytes, context):  # noqa: N802 - gRPC's method name
        return self._serve("predict", message_to_dict(self._decoded("Predict", request, context)), context)

    def SendFeedback(self, request: bytes, context):  # noqa: N802 - gRPC's method name
        return self._serve("feedback", feedback_to_dict(self._decoded("SendFeedback", request, context)), context)

    def handler(self) -> grpc.GenericRpcHandler:
        """Predict and SendFeedback of ``seldon.protos.Seldon`` (its other methods are UNIMPLEMENTED)."""
        methods = {name: grpc.unary_unary_rpc_method_handler(getattr(self, name), response_serializer=_encode)
                   for name in ("Predict", "SendFeedback")}
        return grpc.method_handlers_generic_handler(SERVICE, methods)


def _encode(message) -> bytes:
    return message.SerializeToString()


class GrpcServer:
    """A gRPC server for the gateway on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, api: Api, token: Token, host: str, port: int, workers: int = 8):
        self.started = False
        # gRPC sets SO_REUSEPORT by default: a second run on the same port would share it silently.
        self.server = grpc.server(
            concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="seldon-river-grpc"),
            options=[("grpc.so_reuseport", 0)],
        )
        self.server.add_generic_rpc_handlers((SeldonGateway(api, token).handler(),))
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            self.port = self.server.add_insecure_port(address)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {address} for gRPC: {exc} (choose another with --grpc-port)") from None
        if self.port == 0:
            raise OSError(f"cannot listen on {address} for gRPC (choose another with --grpc-port)")

    def start(self) -> None:
        self.server.start()
        self.started = True

    def stop(self) -> None:
        if self.started:
            self.server.stop(grace=2).wait(5)
