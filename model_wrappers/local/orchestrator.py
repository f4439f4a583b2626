"""Walk a predictor's graph per request, the way Seldon's service orchestrator does.

Prediction (for each node, recursively from the root):

1. the node's input call (``/transform-input`` or ``/predict``) turns the message into the next;
2. with children, the node's ``/route`` (or ``RANDOM_ABTEST``) picks one child; ``-1`` means
   all of them, whose outputs ``/aggregate`` combines (or the first one is kept);
   ``-2`` stops there and returns the message as it is;
3. ``/transform-output`` on the way back.

``meta.routing`` records every decision (``{"router": 1, "model-b": -1, ...}``) and is put into
the response only when the predictor's ``svcOrchSpec.env`` sets
``SELDON_ENABLE_ROUTING_INJECTION``, as in a cluster. Each component gets the request id in the
``Seldon-Puid`` header and nothing in the body, like the orchestrator's REST calls.

Feedback goes down the recorded path: at each node with children, ``response.meta.routing[node]``
names the child (all children when it is missing), children first, then the node itself when it
takes feedback (see :mod:`.graph`). Every component gets the whole feedback message (request,
response, reward, truth). The reply merges the components' tags and metrics and keeps the
prediction's puid.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import random
import uuid

import urllib3

from . import graph
from .manifest import Node, Predictor
from .supervisor import Supervisor

logger = logging.getLogger(__name__)

PUID_HEADER = "Seldon-Puid"
DEFAULT_TIMEOUT = 30.0


class GraphError(Exception):
    """A request failed in the graph; ``status`` is the HTTP status to answer with.

    ``body`` is the component's own error reply when it answered one (Seldon's orchestrator
    passes that through), else a Seldon status message built from ``message``.
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
        self._http = urllib3.PoolManager(maxsize=16, block=False, retries=False)
        self._random = random.Random(seed)
        self._warned_no_routing = False

    def close(self) -> None:
        self._http.clear()

    # -- component calls ------------------------------------------------------------------
    def call(self, node: Node, path: str, body: dict, puid: str) -> dict:
        """POST ``body`` to one component and return its JSON reply, or raise GraphError."""
        child = self.supervisor[node.name]
        down = child.failure()
        if down:
            raise GraphError(503, down, node.name)
        try:
            response = self._http.request(
                "POST", child.url + path, body=json.dumps(body).encode(),
                headers={"Content-Type": "application/json", PUID_HEADER: puid},
                timeout=urllib3.Timeout(connect=min(5.0, self.timeout), read=self.timeout),
            )
        except urllib3.exceptions.ReadTimeoutError:
            raise GraphError(
                504, f"graph node {node.name!r} did not answer {path} within {self.timeout:g} s", node.name
            ) from None
        except urllib3.exceptions.HTTPError as exc:
            down = child.failure()
            if down:
                raise GraphError(503, down, node.name) from None
            raise GraphError(
                502, f"graph node {node.name!r} could not be reached for {path}: {_reason(exc)}", node.name
            ) from None
        try:
            reply = json.loads(response.data) if response.data else {}
        except ValueError:
            reply = None
        if response.status != 200:
            raise GraphError(response.status, _component_error(node.name, path, response.status, reply,
                                                               response.data), node.name,
                             body=_named(reply, node.name) if isinstance(reply, dict) and reply else None)
        if not isinstance(reply, dict):
            raise GraphError(
                502, f"graph node {node.name!r} answered {path} with something that is not a JSON object: "
                f"{response.data[:200]!r}", node.name,
            )
        return reply

    # -- prediction -----------------------------------------------------------------------
    def predict(self, message: dict, puid: str) -> dict:
        """The graph's response to ``message``; ``puid`` goes to every component."""
        routing: dict[str, int] = {}
        return self._predict(self.predictor.graph, message, puid, routing)

    def _predict(self, node: Node, message: dict, puid: str, routing: dict) -> dict:
        path = graph.input_call(node)
        if path:
            routing[node.name] = -1
            message = self.call(node, path, message, puid)
        if node.children:
            message = self._children(node, message, puid, routing)
        if graph.transforms_output(node):
            message = self.call(node, "/transform-output", message, puid)
        if self.routing_injection:
            message = {**message, "meta": {**(message.get("meta") or {}), "routing": dict(routing)}}
        return message

    def _route(self, node: Node, message: dict, puid: str) -> int:
        if graph.routes(node):
            return _child_index(node, self.call(node, "/route", message, puid))
        if graph.abtest(node):
            ratio = float(node.parameter("ratioA") or 0.5)
            return 0 if self._random.random() < ratio else 1
        return -1

    def _children(self, node: Node, message: dict, puid: str, routing: dict) -> dict:
        route = self._route(node, message, puid)
        if route == -2:
            routing[node.name] = -2
            return message
        if route == -1:
            outputs = self._all(
                [lambda child=child: self._predict(child, message, puid, routing) for child in node.children]
            )
            routing[node.name] = -1
        else:
            _check_index(node, route)
            routing[node.name] = route
            outputs = [self._predict(node.children[route], message, puid, routing)]
        if graph.aggregates(node):
            routing[node.name] = -1
            return self.call(node, "/aggregate", {"seldonMessages": outputs}, puid)
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
    def feedback(self, message: dict, puid: str) -> dict:
        """Send ``message`` (a Seldon Feedback) along the path its response's routing recorded."""
        routing = ((message.get("response") or {}).get("meta") or {}).get("routing") or {}
        replies = self._feedback(self.predictor.graph, message, puid, routing)
        tags, metrics = {}, []
        for reply in replies:
            meta = reply.get("meta") or {}
            tags.update(meta.get("tags") or {})
            metrics.extend(meta.get("metrics") or [])
        meta = {"puid": prediction_puid(message) or puid}
        if tags:
            meta["tags"] = tags
        if metrics:
            meta["metrics"] = metrics
        return {"data": {"ndarray": []}, "meta": meta}

    def _feedback(self, node: Node, message: dict, puid: str, routing: dict) -> list[dict]:
        replies: list[dict] = []
        if node.children:
            route = routing.get(node.name, -1)
            if route == -1 and (graph.routes(node) or graph.abtest(node)):
                self._warn_no_routing(node)
            if route == -1:
                for part in self._all(
                    [lambda child=child: self._feedback(child, message, puid, routing) for child in node.children]
                ):
                    replies.extend(part)
            elif route >= 0:
                _check_index(node, int(route), "response.meta.routing")
                replies.extend(self._feedback(node.children[int(route)], message, puid, routing))
        if graph.takes_feedback(node):
            replies.append(self.call(node, "/send-feedback", message, puid))
        return replies

    def _warn_no_routing(self, node: Node) -> None:
        if self._warned_no_routing:
            return
        self._warned_no_routing = True
        logger.warning(
            "feedback without response.meta.routing[%r]: sent to every child of %r, as Seldon's "
            "orchestrator does; the router gets no routing and cannot learn which child answered",
            node.name, node.name,
        )


def prediction_puid(feedback: dict) -> str | None:
    """The puid of the prediction a feedback message is about, if it carries one."""
    for part in ("response", "request"):
        puid = ((feedback.get(part) or {}).get("meta") or {}).get("puid")
        if puid:
            return puid
    return None


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


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None) or exc
    return str(reason).split(": ", 1)[-1] if isinstance(reason, Exception) else str(reason)


def _component_error(name: str, path: str, status: int, reply, raw: bytes) -> str:
    info = ((reply or {}).get("status") or {}).get("info") if isinstance(reply, dict) else None
    return f"graph node {name!r} answered {path} with HTTP {status}: {info or raw[:300].decode(errors='replace')}"


def _named(reply: dict, name: str) -> dict:
    """The component's error reply with the node's name in front of its message."""
    status = reply.get("status")
    if isinstance(status, dict) and isinstance(status.get("info"), str):
        return {**reply, "status": {**status, "info": f"graph node {name!r}: {status['info']}"}}
    return reply
