"""Whether Seldon Core's operator knows each graph node's ``implementation``.

The operator looks an ``implementation`` up in ``predictor_servers``, a JSON entry of its
``seldon-config`` ConfigMap, for every node whose implementation is not one of the orchestrator's
built-in units. The API server stores a SeldonDeployment naming an unregistered one; only the
operator refuses it, when it reconciles (its log says "No entry in predictors map"), and the
deployment is Failed ("Failed to get server config for ..."). :func:`check_implementations`
reads the same ConfigMap first and says what is missing.

Examples
--------
>>> sdep = {"apiVersion": "machinelearning.seldon.io/v1", "kind": "SeldonDeployment",
...         "metadata": {"name": "g"}, "spec": {"predictors": [{"graph": {"name": "r",
...         "implementation": "RANDOM_ABTEST", "children": [{"name": "m", "implementation": "RIVER_SERVER"}]}}]}}
>>> needed_implementations([sdep])
[('g', 'm', 'RIVER_SERVER')]
"""

from __future__ import annotations

import json

from .kube import Cluster, ClusterError, Ref
from .manifest import is_seldon_deployment

CONFIG_MAP = "seldon-config"
DEFAULT_OPERATOR_NAMESPACE = "seldon-system"
# The orchestrator's own units, which the operator never looks up (its IsPrepack).
BUILT_IN = frozenset({"UNKNOWN_IMPLEMENTATION", "SIMPLE_MODEL", "SIMPLE_ROUTER", "RANDOM_ABTEST", "AVERAGE_COMBINER"})


def _nodes(node):
    if isinstance(node, dict):
        yield node
        for child in node.get("children") or []:
            yield from _nodes(child)


def needed_implementations(objects: list[dict]) -> list[tuple[str, str, str]]:
    """(SeldonDeployment, node, implementation) for each node the operator must find registered."""
    needed = []
    for obj in objects:
        if not is_seldon_deployment(obj):
            continue
        for predictor in (obj.get("spec") or {}).get("predictors") or []:
            for node in _nodes((predictor or {}).get("graph")):
                implementation = node.get("implementation")
                if isinstance(implementation, str) and implementation and implementation not in BUILT_IN:
                    needed.append((obj["metadata"]["name"], node.get("name"), implementation))
    return needed


def check_implementations(cluster: Cluster, objects: list[dict], operator_namespace: str) -> str | None:
    """Refuses a manifest naming an implementation the operator's ``predictor_servers`` lacks.

    Parameters
    ----------
    cluster
        The cluster the manifest goes to.
    objects
        The manifest's objects.
    operator_namespace
        The namespace of the operator's ``seldon-config`` ConfigMap.

    Returns
    -------
    str or None
        A note when the ConfigMap may not be read (permission denied), so nothing was checked.

    Raises
    ------
    ClusterError
        An implementation is not registered, the ConfigMap does not exist, or its
        ``predictor_servers`` is not a JSON object.
    """
    needed = needed_implementations(objects)
    if not needed:
        return None
    where = f"ConfigMap {CONFIG_MAP} in namespace {operator_namespace}"
    ref = Ref(cluster.resource("v1", "ConfigMap"), CONFIG_MAP, operator_namespace)
    try:
        config = cluster.get(ref)
    except ClusterError as exc:
        if getattr(exc, "status", None) == 403:
            return (
                f"note: cannot read {where} (permission denied), so whether Seldon Core's operator knows "
                f"implementation {needed[0][2]} was not checked"
            )
        raise
    if config is None:
        raise ClusterError(
            f"{where} not found: Seldon Core's operator keeps its predictor_servers there, which must "
            f"register implementation {needed[0][2]} (pass --operator-namespace if the operator runs elsewhere)"
        )
    try:
        servers = json.loads((config.get("data") or {}).get("predictor_servers") or "{}")
    except ValueError as exc:
        raise ClusterError(f"predictor_servers of {where} is not JSON: {exc}") from None
    if not isinstance(servers, dict):
        raise ClusterError(f"predictor_servers of {where} is not a JSON object")
    for sdep, node, implementation in needed:
        if implementation not in servers:
            raise ClusterError(
                f"SeldonDeployment {sdep}: graph node {node!r} has implementation {implementation}, which "
                f"Seldon Core's operator does not know: register it in predictor_servers of {where} "
                f"(it has {', '.join(sorted(servers)) or 'none'}); the operator would fail the deployment "
                f"(\"Failed to get server config for {implementation}\")"
            )
    return None
