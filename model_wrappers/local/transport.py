"""How the local orchestrator calls one component: over REST or over gRPC, as Seldon's does.

Seldon's orchestrator calls components over the transport its client used: a REST client's
request goes to the components' REST paths with the ``Seldon-Puid`` header, a gRPC client's to
their ``seldon.protos`` services with the ``seldon-puid`` metadata (and nothing in the body).
Both transports take and give messages as JSON dicts, so the graph walk is the same for both.

Examples
--------
>>> GRPC_METHODS["/send-feedback"].path
'/seldon.protos.Model/SendFeedback'
>>> http_status(grpc.StatusCode.INVALID_ARGUMENT), http_status(grpc.StatusCode.DEADLINE_EXCEEDED)
(400, 504)

"""

from __future__ import annotations

import json
import threading

import grpc
import urllib3

from ..protocol import (
    SERVICES,
    ProtocolError,
    SeldonMessageList,
    dict_to_feedback,
    dict_to_message,
    message_to_dict,
)

PUID_HEADER = "Seldon-Puid"

# The services Seldon's orchestrator calls for each step (feedback goes to Model for every node type).
GRPC_METHODS = {
    "/predict": SERVICES["seldon.protos.Model"]["Predict"],
    "/transform-input": SERVICES["seldon.protos.Transformer"]["TransformInput"],
    "/transform-output": SERVICES["seldon.protos.OutputTransformer"]["TransformOutput"],
    "/route": SERVICES["seldon.protos.Router"]["Route"],
    "/aggregate": SERVICES["seldon.protos.Combiner"]["Aggregate"],
    "/send-feedback": SERVICES["seldon.protos.Model"]["SendFeedback"],
}

_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status that stands for a gRPC status code (500 for the rest)."""
    return _HTTP_STATUS.get(code, 500)


class GraphError(Exception):
    """A request failed in the graph; ``status`` is the HTTP status to answer with.

    ``body`` is the component's own error reply when it answered one (Seldon's orchestrator
    passes that through unchanged), else a Seldon status message built from ``message``.
    """

    def __init__(self, status: int, message: str, node: str | None = None, body: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.node = node
        self.body = body or status_body(status, message, "GRAPH_ERROR" if node is None else "NODE_ERROR")


def status_body(code: int, info: str, reason: str) -> dict:
    """A Seldon ``status`` reply, the shape Seldon's wrapper and orchestrator use for errors."""
    return {"status": {"code": code, "info": info, "reason": reason, "status": "FAILURE"}}


class RestTransport:
    """POSTs JSON to the components' REST paths.

    Parameters
    ----------
    supervisor
        Where the components run (``supervisor[name]`` gives a child with ``url`` and ``failure()``).
    timeout
        Seconds to wait for one call.

    """

    name = "rest"

    def __init__(self, supervisor, timeout: float):
        self.supervisor = supervisor
        self.timeout = timeout
        self._http = urllib3.PoolManager(maxsize=16, block=False, retries=False)

    def call(self, node: str, path: str, body: dict, puid: str) -> dict:
        """``body`` posted to ``path`` of component ``node``; its JSON reply, or GraphError."""
        child = _running(self.supervisor, node)
        try:
            response = self._http.request(
                "POST", child.url + path, body=json.dumps(body).encode(),
                headers={"Content-Type": "application/json", PUID_HEADER: puid},
                timeout=urllib3.Timeout(connect=min(5.0, self.timeout), read=self.timeout),
            )
        except urllib3.exceptions.ReadTimeoutError:
            raise _timed_out(node, path, self.timeout) from None
        except urllib3.exceptions.HTTPError as exc:
            raise _unreachable(child, node, path, _reason(exc)) from None
        try:
            reply = json.loads(response.data) if response.data else {}
        except ValueError:
            reply = None
        if response.status != 200:
            info = ((reply or {}).get("status") or {}).get("info") if isinstance(reply, dict) else None
            raise GraphError(
                response.status,
                f"graph node {node!r} answered {path} with HTTP {response.status}: "
                f"{info or response.data[:300].decode(errors='replace')}",
                node, body=reply if isinstance(reply, dict) and reply else None,
            )
        if not isinstance(reply, dict):
            raise GraphError(502, f"graph node {node!r} answered {path} with something that is not a JSON "
                             f"object: {response.data[:200]!r}", node)
        return reply

    def close(self) -> None:
        self._http.clear()


class GrpcTransport:
    """Calls the components' ``seldon.protos`` services, one channel per component."""

    name = "grpc"

    def __init__(self, supervisor, timeout: float):
        self.supervisor = supervisor
        self.timeout = timeout
        self._channels: dict[str, grpc.Channel] = {}
        self._stubs: dict[tuple[str, str], grpc.UnaryUnaryMultiCallable] = {}
        self._lock = threading.Lock()

    def _stub(self, node: str, port: int, path: str):
        """The call of ``path`` on ``node``, made once per component and path."""
        with self._lock:
            stub = self._stubs.get((node, path))
            if stub is None:
                channel = self._channels.get(node)
                if channel is None:
                    channel = self._channels[node] = grpc.insecure_channel(
                        f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", -1),
                                                      ("grpc.max_send_message_length", -1)])
                method = GRPC_METHODS[path]
                stub = self._stubs[(node, path)] = channel.unary_unary(
                    method.path, request_serializer=method.request.SerializeToString,
                    response_deserializer=method.response.FromString)
            return stub

    def call(self, node: str, path: str, body: dict, puid: str) -> dict:
        """The gRPC call standing for ``path`` on component ``node``; its reply as JSON, or GraphError."""
        child = _running(self.supervisor, node)
        method = GRPC_METHODS[path]
        try:
            if path == "/aggregate":
                request = SeldonMessageList(seldonMessages=[dict_to_message(m) for m in body["seldonMessages"]])
            elif path == "/send-feedback":
                request = dict_to_feedback(body)
            else:
                request = dict_to_message(body)
        except ProtocolError as exc:
            raise GraphError(400, f"the message for graph node {node!r} is not a {method.request.DESCRIPTOR.name}: "
                             f"{exc}", node) from None
        try:
            reply = self._stub(node, child.grpc_port, path)(request, timeout=self.timeout, metadata=(("seldon-puid", puid),))
        except grpc.RpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise _timed_out(node, path, self.timeout) from None
            if code == grpc.StatusCode.UNAVAILABLE:
                raise _unreachable(child, node, path, exc.details() or "unavailable") from None
            status = http_status(code)
            # The component's own message, unchanged, as Seldon's orchestrator passes it on.
            raise GraphError(status, exc.details() or code.name, node,
                             body=status_body(status, exc.details() or code.name, code.name)) from None
        return message_to_dict(reply)

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
            self._stubs.clear()


def _running(supervisor, node: str):
    child = supervisor[node]
    down = child.failure()
    if down:
        raise GraphError(503, down, node)
    return child


def _timed_out(node: str, path: str, timeout: float) -> GraphError:
    return GraphError(504, f"graph node {node!r} did not answer {path} within {timeout:g} s", node)


def _unreachable(child, node: str, path: str, reason: str) -> GraphError:
    down = child.failure()
    if down:
        return GraphError(503, down, node)
    return GraphError(502, f"graph node {node!r} could not be reached for {path}: {reason}", node)


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None) or exc
    return str(reason).split(": ", 1)[-1] if isinstance(reason, Exception) else str(reason)
