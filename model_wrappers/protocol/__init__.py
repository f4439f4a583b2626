"""Seldon Core v1's protocol, owned by the project: messages, gRPC services and JSON codecs.

Bytes on the wire are the same as seldon-core's ``seldon.protos`` messages, and the JSON form is
the one Seldon's wrapper reads and writes, but nothing here imports seldon-core; the classes live
in a descriptor pool of their own (:data:`POOL`), so seldon-core may be imported alongside.

Examples
--------
>>> message = dict_to_message({"data": {"tensor": {"shape": [1, 2], "values": [0.5, 1.0]}}})
>>> decode(SeldonMessage, message.SerializeToString()) == message
True
>>> SERVICES["seldon.protos.Seldon"]["SendFeedback"].request is Feedback
True

"""

from .json_codec import dict_to_feedback, dict_to_message, feedback_to_dict, message_to_dict
from .messages import (
    POOL,
    Any,
    DataType,
    DefaultData,
    Empty,
    Feedback,
    ListValue,
    Meta,
    Metric,
    ProtocolError,
    RequestResponse,
    ResourceHandleProto,
    SeldonGraphMetadata,
    SeldonMessage,
    SeldonMessageList,
    SeldonMessageMetadata,
    SeldonModelMetadata,
    SeldonModelMetadataRequest,
    Status,
    Struct,
    Tensor,
    TensorProto,
    TensorShapeProto,
    Value,
    VariantTensorDataProto,
    decode,
)
from .services import SERVICES, Method

__all__ = [
    "POOL", "Any", "DataType", "DefaultData", "Empty", "Feedback", "ListValue", "Meta", "Method",
    "Metric", "ProtocolError", "RequestResponse", "ResourceHandleProto", "SERVICES",
    "SeldonGraphMetadata", "SeldonMessage", "SeldonMessageList", "SeldonMessageMetadata",
    "SeldonModelMetadata", "SeldonModelMetadataRequest", "Status", "Struct", "Tensor",
    "TensorProto", "TensorShapeProto", "Value", "VariantTensorDataProto", "decode",
    "dict_to_feedback", "dict_to_message", "feedback_to_dict", "message_to_dict",
]
