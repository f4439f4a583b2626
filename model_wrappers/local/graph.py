"""What Seldon's orchestrator calls on each graph node.

These rules are those of the v1.17 service orchestrator (the Go "executor"): a node's ``type``
decides its calls, and its ``methods`` add more. A node that ends up with no call at all (no
type, no methods, no children to route) passes messages through and needs no process.

==========================  ======================================================
call                        made on a node that is
==========================  ======================================================
``/transform-input``        a TRANSFORMER, or lists ``TRANSFORM_INPUT``
``/predict``                a MODEL (unless it lists ``TRANSFORM_INPUT``)
``/route``                  a ROUTER, or lists ``ROUTE``
``/aggregate``              a COMBINER, or lists ``AGGREGATE``
``/transform-output``       an OUTPUT_TRANSFORMER, or lists ``TRANSFORM_OUTPUT``
``/send-feedback``          a MODEL or ROUTER, or lists ``SEND_FEEDBACK``
==========================  ======================================================

A TRANSFORMER therefore gets feedback only when its node lists ``SEND_FEEDBACK``.
``implementation: RANDOM_ABTEST`` is a router the orchestrator runs itself (parameter ``ratioA``).
"""

from __future__ import annotations

from .manifest import Node

RANDOM_ABTEST = "RANDOM_ABTEST"


def input_call(node: Node) -> str | None:
    """The path called on the way in (``/transform-input`` or ``/predict``), if any."""
    if node.type == "TRANSFORMER" or "TRANSFORM_INPUT" in node.methods:
        return "/transform-input"
    if node.type == "MODEL":
        return "/predict"
    return None


def routes(node: Node) -> bool:
    """Whether the node's component chooses the child (``/route``)."""
    return node.type == "ROUTER" or "ROUTE" in node.methods


def abtest(node: Node) -> bool:
    """Whether the orchestrator itself picks the child at random (``RANDOM_ABTEST``)."""
    return not routes(node) and node.implementation == RANDOM_ABTEST


def aggregates(node: Node) -> bool:
    """Whether the node's component combines its children's outputs (``/aggregate``)."""
    return node.type == "COMBINER" or "AGGREGATE" in node.methods


def transforms_output(node: Node) -> bool:
    """Whether the node's component is called on the way out (``/transform-output``)."""
    return node.type == "OUTPUT_TRANSFORMER" or "TRANSFORM_OUTPUT" in node.methods


def takes_feedback(node: Node) -> bool:
    """Whether the node's component gets ``/send-feedback``."""
    return node.type in ("MODEL", "ROUTER") or "SEND_FEEDBACK" in node.methods


def needs_process(node: Node) -> bool:
    """Whether the node is a component that must run (rather than a pass-through)."""
    return bool(
        input_call(node) or routes(node) or aggregates(node) or transforms_output(node)
        or takes_feedback(node)
    )
