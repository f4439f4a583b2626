"""Seldon's v1 protobuf messages and gRPC services, as this server decodes and encodes them."""

from __future__ import annotations

import dataclasses

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from ..protocol import SERVICES, SeldonMessage, SeldonModelMetadata, message_to_dict

# gRPC method names to the Seldon method they serve ("metadata" is answered by the server).
GRPC_METHODS = {
    "Predict": "predict",
    "TransformInput": "transform-input",
    "TransformOutput": "transform-output",
    "Route": "route",
    "Aggregate": "aggregate",
    "SendFeedback": "send-feedback",
    "Metadata": "metadata",
    "ModelMetadata": "metadata",
    "GraphMetadata": "graph-metadata",
}


@dataclasses.dataclass(frozen=True)
class RpcMethod:
    path: str  # /seldon.protos.Model/Predict
    method: str  # the Seldon method, a key of GRPC_METHODS' values
    request: type
    response: type


def rpc_methods() -> list[RpcMethod]:
    """Every method of every ``seldon.protos`` service (Model, Router, Transformer, Seldon, ...)."""
    return [RpcMethod(m.path, GRPC_METHODS[m.name], m.request, m.response)
            for service in SERVICES.values() for m in service.values()]


def to_message(reply) -> Message:
    """A component's reply (protobuf, or its JSON form) as a ``SeldonMessage``."""
    if isinstance(reply, Message):
        return reply
    from ..payload import to_proto

    return to_proto(reply)


def to_json(reply):
    """A component's reply (protobuf, or its JSON form) as its JSON form."""
    if not isinstance(reply, Message):
        return reply
    if reply.DESCRIPTOR.full_name == SeldonMessage.DESCRIPTOR.full_name:
        return message_to_dict(reply)  # also writes a NaN, which newer protobuf refuses to
    return json_format.MessageToDict(reply)


def metadata_message(metadata: dict) -> Message:
    return json_format.ParseDict(metadata, SeldonModelMetadata(), ignore_unknown_fields=True)


__all__ = ["DecodeError", "RpcMethod", "SeldonMessage", "metadata_message", "rpc_methods", "to_json", "to_message"]
