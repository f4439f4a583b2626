"""What a live-view event carries: one component's status, or every node's of a local graph.

A component's event::

    {"time": 1767000000.1, "sequence": 7, "name": "classifier", "service_type": "MODEL",
     "class": "RiverModel", "status": {...what /health/status serves...}}

A graph's event (``seldon-river run``) holds one such entry per node under ``nodes``, read from
each node's ``/health/status`` over its REST port; a node that is down or does not answer carries
``error`` instead of ``status``.
"""

from __future__ import annotations

import json
import os
from typing import Callable

NODE_TIMEOUT = 2.0  # seconds for one node's status; a slow node delays only the graph's events


def component_source(component) -> Callable[[], dict]:
    """The event body of a :class:`model_wrappers.server.component.Component` (read in the feed's thread)."""
    from ..request_context import Call, serving
    from ..server import wire

    name = os.environ.get("PREDICTIVE_UNIT_ID") or component.name

    def read() -> dict:
        with serving(Call()):
            reply = wire.to_json(component.health_status())
        status = reply.get("jsonData", reply) if isinstance(reply, dict) else reply
        return {"name": name, "service_type": component.service_type, "class": component.name, "status": status}

    return read


def graph_source(deployment: str, nodes: dict[str, dict], failure: Callable[[str], str | None],
                 timeout: float = NODE_TIMEOUT) -> Callable[[], dict]:
    """The event body of a local graph.

    Parameters
    ----------
    deployment
        The deployment's name.
    nodes
        Node name to ``{"url": REST base URL, "service_type": ..., "class": ...}``, in graph order.
    failure
        Node name to why it is not running, or None when it runs.
    timeout
        Seconds to wait for one node's status.

    """
    import urllib3

    http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=timeout, read=timeout))

    def node(name: str, info: dict) -> dict:
        entry = {"name": name, "service_type": info.get("service_type"), "class": info.get("class")}
        down = failure(name)
        if down:
            return {**entry, "error": down}
        try:
            response = http.request("GET", info["url"] + "/health/status")
            body = json.loads(response.data or b"{}")
        except (urllib3.exceptions.HTTPError, ValueError) as exc:
            return {**entry, "error": f"graph node {name!r} did not answer /health/status: {exc}"}
        if response.status != 200:
            info_text = (body.get("status") or {}).get("info") if isinstance(body, dict) else None
            return {**entry, "error": f"graph node {name!r} answered {response.status}: {info_text or body}"}
        return {**entry, "status": body.get("jsonData", body) if isinstance(body, dict) else body}

    def read() -> dict:
        return {"deployment": deployment, "nodes": {name: node(name, info) for name, info in nodes.items()}}

    return read
