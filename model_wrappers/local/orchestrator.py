"""Walk a predictor's graph per request, the way Seldon's service orchestrator does.

Prediction (for each node, recursively from the root):

1. the node's input call (``/transform-input`` or ``/predict``) turns the message into the next;
2. with children, the node's ``/route`` (or ``RANDOM_ABTEST``) picks one child; ``-1`` means
   all of them, whose outputs ``/aggregate`` combines (or the first one is kept);
   ``-2`` stops there and returns the message as it is;
3. ``/transform-output`` on the way back.

``meta.routing`` records every decision (``{"router": 1, "model-b": -1, ...}``) and is put into
the response only when the predictor's ``svcOrchSpec.env`` sets
``SELDON_ENABLE_ROUTING_INJECTION``, as in a cluster. Components are called over the client's
transport (:mod:`.transport`): a REST client's request goes to their REST paths with the request
id in the ``Seldon-Puid`` header, a gRPC client's to their gRPC services with it in the
``seldon-puid`` metadata; nothing is added to the body.

Feedback goes down the recorded path: at each node with children, ``response.meta.routing[node]``
names the child (all children when it is missing), children first, then the node itself when it
takes feedback (see :mod:`.graph`). Every component gets the whole feedback message (request,
response, reward, truth). The client gets the root's own reply, as from Seldon's orchestrator.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import random
import uuid

from . import graph
from .manifest import Node, Predictor
from .supervisor import Supervisor
from .transport import PUID_HEADER, GraphError, GrpcTransport, RestTransport, status_body

__all__ = ["PUID_HEADER", "GraphError", "Orchestrator", "Request", "new_puid", "status_body"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0


@dataclasses.dataclass(frozen=True)
class Request:
    """What every component call of one client request shares: its id and the client's transport."""

    puid: str
    transport: str  # "rest" or "grpc"


def new_puid() -> str:
    """A request id in the orchestrator's format (a UUID)."""
    return str(uuid.uuid4())


class Orchestrator:
    """Runs predictions and feedback through the graph of ``predictor``.

    Parameters
    ----------
    predictor
        The predictor (graph and orchestrator env) to serve.
    supervisor
        Where the components run; consulted to name a dead component instead of waiting on it.
    timeout
        Seconds to wait for one component call.
    seed
        Seeds the draws of ``RANDOM_ABTEST`` nodes.

    """

    def __init__(self, predictor: Predictor, supervisor: Supervisor, timeout: float = DEFAULT_TIMEOUT,
                 seed: int | None = None):
        self.predictor = predictor
        self.supervisor = supervisor
        self.timeout = timeout
        self.routing_injection = predictor.routing_injection
        self.transports = {"rest": RestTransport(supervisor, timeout), "grpc": GrpcTransport(supervisor, timeout)}
        self._random = random.Random(seed)
        self._warned_no_routing = False

    def close(self) -> None:
        for transport in self.transports.values():
            transport.close()

    # -- component calls ------------------------------------------------------------------
    def call(self, node: Node, path: str, body: dict, request: "Request") -> dict:
        """``body`` sent to one component over the request's transport; its reply, or GraphError."""
        return self.transports[request.transport].call(node.name, path, body, request.puid)

    # -- prediction -----------------------------------------------------------------------
    def predict(self, message: dict, puid: str, transport: str = "rest") -> dict:
        """The graph's response to ``message``; ``puid`` goes to every component over ``transport``."""
        routing: dict[str, int] = {}
        return self._predict(self.predictor.graph, message, Request(puid, transport), routing)

    def _predict(self, node: Node, message: dict, request: Request, routing: dict) -> dict:
        path = graph.input_call(node)
        if path:
            routing[node.name] = -1
            message = self.call(node, path, message, request)
        if node.children:
            message = self._children(node, message, request, routing)
        if graph.transforms_output(node):
            message = self.call(node, "/transform-output", message, request)
        if self.routing_injection:
            message = {**message, "meta": {**(message.get("meta") or {}), "routing": dict(routing)}}
        return message

    def _route(self, node: Node, message: dict, request: Request) -> int:
        if graph.routes(node):
            return _child_index(node, self.call(node, "/route", message, request))
        if graph.abtest(node):
            ratio = float(node.parameter("ratioA") or 0.5)
            return 0 if self._random.random() < ratio else 1
        return -1

    def _children(self, node: Node, message: dict, request: Request, routing: dict) -> dict:
        route = self._route(node, message, request)
        if route == -2:
            routing[node.name] = -2
            return message
        if route == -1:
            outputs = self._all(
                [lambda child=child: self._predict(child, message, request, routing) for child in node.children]
            )
            routing[node.name] = -1
        else:
            _check_index(node, route)
            routing[node.name] = route
            outputs = [self._predict(node.children[route], message, request, routing)]
        if graph.aggregates(node):
            routing[node.name] = -1
            return self.call(node, "/aggregate", {"seldonMessages": outputs}, request)
        return outputs[0]

    @staticmethod
    def _all(calls: list) -> list:
        """Run calls concurrently (as the orchestrator does); the first error wins.

        A pool per fan-out, not a shared one: a fan-out below a fan-out would otherwise wait for
        threads its own parent holds.
        """
        if len(calls) == 1:
            return [calls[0]()]
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(calls)) as pool:
            futures = [pool.submit(c) for c in calls]
            return [f.result() for f in futures]

    # -- feedback -------------------------------------------------------------------------
    def feedback(self, message: dict, puid: str, transport: str = "rest") -> dict:
        """Send ``message`` (a Seldon Feedback) along the path its response's routing recorded.

        The answer is the root's own feedback reply, as Seldon's orchestrator gives it. A root
        that takes no feedback has none: over REST the orchestrator then echoes the feedback
        back, over gRPC it fails (after the nodes below have learned), and so does this.
        """
        routing = ((message.get("response") or {}).get("meta") or {}).get("routing") or {}
        root = self.predictor.graph
        reply = self._feedback(root, message, Request(puid, transport), routing)
        if reply is not None:
            return reply
        if transport == "grpc":
            raise GraphError(500, f"graph root {root.name!r} takes no feedback, so there is no reply to give: "
                             "list SEND_FEEDBACK in its methods", root.name)
        return message

    def _feedback(self, node: Node, message: dict, request: Request, routing: dict) -> dict | None:
        """Children first, then the node itself; the node's own reply (None when it takes no feedback)."""
        if node.children:
            route = routing.get(node.name, -1)
            if route == -1 and (graph.routes(node) or graph.abtest(node)):
                self._warn_no_routing(node)
            if route == -1:
                self._all([lambda child=child: self._feedback(child, message, request, routing)
                           for child in node.children])
            elif route >= 0:
                _check_index(node, int(route), "response.meta.routing")
                self._feedback(node.children[int(route)], message, request, routing)
        if graph.takes_feedback(node):
            return self.call(node, "/send-feedback", message, request)
        return None

    def _warn_no_routing(self, node: Node) -> None:
        if self._warned_no_routing:
            return
        self._warned_no_routing = True
        logger.warning(
            "feedback without response.meta.routing[%r]: sent to every child of %r, as Seldon's "
            "orchestrator does; the router gets no routing and cannot learn which child answered",
            node.name, node.name,
        )


def _child_index(node: Node, reply: dict) -> int:
    """The child index in a router's reply (``data.ndarray [[i]]`` or a tensor), like the orchestrator."""
    data = reply.get("data") or {}
    values = None
    if isinstance(data.get("ndarray"), list) and data["ndarray"]:
        first = data["ndarray"][0]
        values = first[0] if isinstance(first, list) and first else first
    elif isinstance(data.get("tensor"), dict) and data["tensor"].get("values"):
        values = data["tensor"]["values"][0]
    if isinstance(values, bool) or not isinstance(values, (int, float)) or values != int(values):
        raise GraphError(
            500, f"router {node.name!r} answered /route without a child index: expected data.ndarray "
            f"[[index]], got {json.dumps(reply)[:300]}", node.name,
        )
    return int(values)


def _check_index(node: Node, index: int, source: str = "/route") -> None:
    if not 0 <= index < len(node.children):
        names = [c.name for c in node.children]
        raise GraphError(
            500, f"{source} chose child {index} of {node.name!r}, which has {len(names)} children {names}",
            node.name,
        )


