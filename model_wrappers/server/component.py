"""One Seldon component class as the server calls it: its hooks, its errors, its metrics.

The class is used exactly as Seldon's wrapper uses it, so any class written for
``seldon-core-microservice`` (and the project's four) runs unchanged: it is built with the
graph node's ``parameters``, ``load()`` runs once, and each call goes to the ``*_raw`` hook of
the Seldon method (``predict_raw``, ``transform_input_raw``, ``route_raw``, ...). As in the
wrapper, the metrics a reply carries in ``meta.metrics`` are recorded and taken out of it,
unless ``INCLUDE_METRICS_IN_CLIENT_RESPONSE`` is ``true``.

Messages are JSON-style dicts over REST and protobuf over gRPC, as the wrapper hands them over.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import importlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from ..log import steps
from ..request_context import Call, current
from .metrics import CustomMetrics

logger = logging.getLogger(__name__)

PARAMETER_TYPES = {"INT": int, "FLOAT": float, "DOUBLE": float, "STRING": str, "BOOL": None}
TRUE_WORDS = {"y", "yes", "t", "true", "on", "1"}
FALSE_WORDS = {"n", "no", "f", "false", "off", "0"}


@dataclasses.dataclass(frozen=True)
class Method:
    """A Seldon method: the hook that serves it and the ``method`` label of its metrics."""

    hook: str
    label: str
    passes_through: bool = False  # without a hook, the message goes on unchanged


# Predictions and routing only read the learned state; the others may write it (feedback, and
# transforms, which may learn from what passes). A feedback written as steps runs on the loop too.
ON_LOOP = frozenset({"predict", "route"})

METHODS = {
    "predict": Method("predict_raw", "predict"),
    "transform-input": Method("transform_input_raw", "inputtransform", passes_through=True),
    "transform-output": Method("transform_output_raw", "outputtransform", passes_through=True),
    "route": Method("route_raw", "router"),
    "aggregate": Method("aggregate_raw", "aggregate"),
    "send-feedback": Method("send_feedback_raw", "feedback"),
}


class ComponentError(Exception):
    """A call the component cannot serve: an HTTP status, a gRPC status name and a message.

    Seldon components raise their own errors with ``status_code``, ``message`` and ``reason``
    (Seldon's ``SeldonMicroserviceException``); :func:`as_component_error` reads any of them.
    """

    def __init__(self, message: str, status: int = 500, reason: str = "MICROSERVICE_INTERNAL_ERROR",
                 grpc_code: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason
        self.grpc_code = grpc_code or GRPC_CODES.get(status, "INTERNAL")

    def body(self) -> dict:
        """The error reply Seldon's wrapper sends."""
        return {"status": {"status": 1, "info": self.message, "code": -1, "reason": self.reason}}


GRPC_CODES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 413: "RESOURCE_EXHAUSTED", 501: "UNIMPLEMENTED",
              503: "UNAVAILABLE"}


def as_component_error(exc: BaseException) -> ComponentError:
    """The error to answer for an exception a hook raised."""
    if isinstance(exc, ComponentError):
        return exc
    status = getattr(exc, "status_code", None)
    message = getattr(exc, "message", None)
    if isinstance(status, int) and isinstance(message, str):
        code = getattr(exc, "grpc_code", None)
        return ComponentError(message, status, getattr(exc, "reason", "MICROSERVICE_BAD_DATA"),
                              getattr(code, "name", None))
    logger.error("unexpected error in the component", exc_info=exc)
    return ComponentError(f"{type(exc).__name__}: {exc}")


def parse_parameters(parameters: list) -> dict[str, Any]:
    """Seldon's ``[{"name", "value", "type"}]`` parameters as keyword arguments."""
    if not isinstance(parameters, list):
        raise ValueError(f"parameters must be a JSON list of {{name, value, type}}, got {parameters!r}")
    out = {}
    for item in parameters:
        if not isinstance(item, dict) or not {"name", "value", "type"} <= set(item):
            raise ValueError(f"each parameter needs name, value and type, got {item!r}")
        name, value, kind = item["name"], str(item["value"]), item["type"]
        if kind not in PARAMETER_TYPES:
            raise ValueError(f"parameter {name!r} has type {kind!r}; expected one of {', '.join(PARAMETER_TYPES)}")
        if kind == "BOOL":
            word = value.lower()
            if word not in TRUE_WORDS | FALSE_WORDS:
                raise ValueError(f"parameter {name!r}: {value!r} is not a BOOL (true or false)")
            out[name] = word in TRUE_WORDS
            continue
        try:
            out[name] = PARAMETER_TYPES[kind](value)
        except ValueError:
            raise ValueError(f"parameter {name!r}: {value!r} cannot be read as {kind}") from None
    return out


def import_class(interface_name: str):
    """``package.module.Class`` (or ``module.Class``, or a module named like its class) to the class."""
    module_name, _, class_name = interface_name.rpartition(".")
    if not module_name:
        module_name = class_name = interface_name
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r} for {interface_name!r}: {exc}") from None
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no class {class_name!r}") from None


class Component:
    """A component object and the calls the server makes to it.

    Parameters
    ----------
    obj
        The user object (built with its parameters).
    service_type
        Seldon's service type (MODEL, ROUTER, TRANSFORMER, ...), for messages.
    metrics
        Where the replies' custom metrics are recorded.
    include_metrics
        Leave ``meta.metrics`` in replies (``INCLUDE_METRICS_IN_CLIENT_RESPONSE``).

    """

    def __init__(self, obj, service_type: str, metrics: CustomMetrics, include_metrics: bool = False):
        self.obj = obj
        self.service_type = service_type
        self.metrics = metrics
        self.include_metrics = include_metrics
        self.name = type(obj).__name__
        self._hooks = {name: getattr(obj, method.hook, None) for name, method in METHODS.items()}
        # A feedback written as steps (see model_wrappers.log.steps) runs on the event loop, and
        # only its durable wait elsewhere: a handoff to a thread costs more than its work.
        self._steps = getattr(obj, "send_feedback_steps", None) if self._hooks["send-feedback"] else None

    @classmethod
    def create(cls, interface_name: str, service_type: str, parameters: list, metrics: CustomMetrics,
               include_metrics: bool = False) -> "Component":
        user_class = import_class(interface_name)
        return cls(user_class(**parse_parameters(parameters)), service_type, metrics, include_metrics)

    def load(self) -> None:
        if hasattr(self.obj, "load"):
            self.obj.load()

    def has(self, method: str) -> bool:
        return self._hooks[method] is not None

    async def serve(self, method: str, message, call: Call, pool: ThreadPoolExecutor):
        """:meth:`call` with ``call`` as the request context: on the event loop for the methods
        that only read the learned state (:data:`ON_LOOP`), else on ``pool``, where durable
        appends of concurrent calls share one transaction."""
        if method in ON_LOOP:
            token = current.set(call)
            try:
                return self.call(method, message)
            finally:
                current.reset(token)
        if method == "send-feedback" and self._steps is not None:
            token = current.set(call)
            try:
                return await self._feedback_on_loop(message, pool)
            finally:
                current.reset(token)
        context = contextvars.copy_context()
        context.run(current.set, call)
        return await asyncio.get_running_loop().run_in_executor(pool, context.run, self.call, method, message)

    def call(self, method: str, message):
        """Serve one call of ``method``; returns the reply (same kind as ``message``) or raises ComponentError."""
        hook = self._hooks[method]
        if hook is None:
            if METHODS[method].passes_through:
                return message
            # A call of a method the class lacks is the caller's mistake: 400, as Seldon's wrapper
            # answers an undefined route (never a 5xx for what the client sent).
            raise ComponentError(f"{self.name} ({self.service_type}) does not serve {method}", 400,
                                 "MICROSERVICE_BAD_DATA")
        try:
            reply = hook(message)
        except Exception as exc:
            raise as_component_error(exc) from None
        return self._answered(method, message, reply)

    async def _feedback_on_loop(self, message, pool: ThreadPoolExecutor):
        try:
            reply = await steps.run_async(self._steps(message), pool)
        except Exception as exc:
            raise as_component_error(exc) from None
        return self._answered("send-feedback", message, reply)

    def _answered(self, method: str, message, reply):
        self._take_metrics(reply, METHODS[method].label)
        if method == "send-feedback":
            reward = message.get("reward") if isinstance(message, dict) else message.reward
            if isinstance(reward, (int, float)):
                self.metrics.record_reward(reward)
        return reply

    def _take_metrics(self, reply, label: str) -> None:
        if isinstance(reply, dict):
            meta = reply.get("meta")
            if isinstance(meta, dict) and meta.get("metrics"):
                self.metrics.record(meta["metrics"], label)
                if not self.include_metrics:
                    reply["meta"] = {k: v for k, v in meta.items() if k != "metrics"}
        elif isinstance(reply, Message) and reply.HasField("meta") and len(reply.meta.metrics):
            self.metrics.record([json_format.MessageToDict(m) for m in reply.meta.metrics], label)
            if not self.include_metrics:
                del reply.meta.metrics[:]

    def health_status(self):
        hook = getattr(self.obj, "health_status_raw", None)
        if hook is None:
            return {"data": {"names": [], "ndarray": []}, "meta": {}}
        try:
            return hook()
        except Exception as exc:
            raise as_component_error(exc) from None

    def metadata(self) -> dict:
        hook = getattr(self.obj, "init_metadata", None)
        try:
            found = hook() if hook else {}
        except Exception as exc:
            raise as_component_error(exc) from None
        if not isinstance(found, dict):
            raise ComponentError("init_metadata must return a dict", 500, "MICROSERVICE_BAD_METADATA")
        # Seldon's defaults, then the class's metadata, then MODEL_METADATA from the environment.
        *image, version = os.environ.get("PREDICTIVE_UNIT_IMAGE", ":").split(":")
        defaults = {"name": ":".join(image), "versions": [version], "platform": "", "inputs": [], "outputs": [],
                    "custom": {}}
        return {**defaults, **found, **_environment_metadata()}


def _environment_metadata() -> dict:
    text = os.environ.get("MODEL_METADATA")
    if not text:
        return {}
    try:
        import yaml

        found = yaml.safe_load(text)
    except Exception as exc:  # YAML's errors, or no YAML: the variable is then ignored, as in Seldon
        logger.error("MODEL_METADATA not read: %s", exc)
        return {}
    return found if isinstance(found, dict) else {}
