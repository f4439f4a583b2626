"""Seldon's v1 protobuf messages and gRPC services, as this server decodes and encodes them."""

from __future__ import annotations

import dataclasses

from google.protobuf import empty_pb2, json_format
from google.protobuf.message import DecodeError, Message
from seldon_core.proto import prediction_pb2

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


def _message_class(descriptor) -> type:
    if descriptor.full_name == "google.protobuf.Empty":
        return empty_pb2.Empty
    return getattr(prediction_pb2, descriptor.name)


def rpc_methods() -> list[RpcMethod]:
    """Every method of every ``seldon.protos`` service (Model, Router, Transformer, Seldon, ...)."""
    out = []
    for service in prediction_pb2.DESCRIPTOR.services_by_name.values():
        for m in service.methods:
            out.append(RpcMethod(f"/{service.full_name}/{m.name}", GRPC_METHODS[m.name],
                                 _message_class(m.input_type), _message_class(m.output_type)))
    return out


SeldonMessage = prediction_pb2.SeldonMessage
SeldonModelMetadata = prediction_pb2.SeldonModelMetadata


def to_message(reply) -> Message:
    """A component's reply (protobuf, or its JSON form) as a ``SeldonMessage``."""
    if isinstance(reply, Message):
        return reply
    from ..payload import to_proto

    return to_proto(reply)


def to_json(reply):
    """A component's reply (protobuf, or its JSON form) as its JSON form."""
    if isinstance(reply, Message):
        return json_format.MessageToDict(reply)
    return reply


def metadata_message(metadata: dict) -> Message:
    return json_format.ParseDict(metadata, SeldonModelMetadata(), ignore_unknown_fields=True)


__all__ = ["DecodeError", "RpcMethod", "SeldonMessage", "metadata_message", "rpc_methods", "to_json", "to_message"]
