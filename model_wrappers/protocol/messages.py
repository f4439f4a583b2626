"""The ``seldon.protos`` message classes, in a descriptor pool of their own.

seldon-core registers the same names in protobuf's default pool; keeping these in a private
pool lets both be imported in one process (no "duplicate symbol"). The classes are distinct from
seldon-core's, but a message of either kind parses the other's bytes to the same content.

Examples
--------
>>> message = SeldonMessage(strData="hello")
>>> decode(SeldonMessage, message.SerializeToString()).strData
'hello'
>>> decode(SeldonMessage, b"\\x2a\\x05ab")
Traceback (most recent call last):
...
model_wrappers.protocol.messages.ProtocolError: cannot read the bytes as a seldon.protos.SeldonMessage: ...

"""

from __future__ import annotations

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.internal import enum_type_wrapper
from google.protobuf.message import Message

from . import schema


class ProtocolError(ValueError):
    """A message that does not fit Seldon's protocol; the text says what was wrong."""


POOL = descriptor_pool.DescriptorPool()
for _module in schema.WELL_KNOWN:
    POOL.AddSerializedFile(_module.DESCRIPTOR.serialized_pb)
for _file in schema.files():
    POOL.AddSerializedFile(_file.SerializeToString())


def message_class(full_name: str) -> type[Message]:
    """The class of a message of :data:`POOL`, e.g. ``"seldon.protos.Meta"``."""
    descriptor = POOL.FindMessageTypeByName(full_name)
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.21
        return message_factory.GetMessageClass(descriptor)
    return _FACTORY.GetPrototype(descriptor)  # protobuf 3.20, which seldon-core 1.17.1 pins


_FACTORY = None if hasattr(message_factory, "GetMessageClass") else message_factory.MessageFactory(POOL)

SeldonMessage = message_class("seldon.protos.SeldonMessage")
DefaultData = message_class("seldon.protos.DefaultData")
Tensor = message_class("seldon.protos.Tensor")
Meta = message_class("seldon.protos.Meta")
Metric = message_class("seldon.protos.Metric")
SeldonMessageList = message_class("seldon.protos.SeldonMessageList")
Status = message_class("seldon.protos.Status")
Feedback = message_class("seldon.protos.Feedback")
RequestResponse = message_class("seldon.protos.RequestResponse")
SeldonModelMetadataRequest = message_class("seldon.protos.SeldonModelMetadataRequest")
SeldonMessageMetadata = message_class("seldon.protos.SeldonMessageMetadata")
SeldonModelMetadata = message_class("seldon.protos.SeldonModelMetadata")
SeldonGraphMetadata = message_class("seldon.protos.SeldonGraphMetadata")

TensorProto = message_class("tensorflow.TensorProto")
TensorShapeProto = message_class("tensorflow.TensorShapeProto")
ResourceHandleProto = message_class("tensorflow.ResourceHandleProto")
VariantTensorDataProto = message_class("tensorflow.VariantTensorDataProto")
DataType = enum_type_wrapper.EnumTypeWrapper(POOL.FindEnumTypeByName("tensorflow.DataType"))

# The well-known types as this pool's classes (a field of these types takes only these).
Value = message_class("google.protobuf.Value")
ListValue = message_class("google.protobuf.ListValue")
Struct = message_class("google.protobuf.Struct")
Any = message_class("google.protobuf.Any")
Empty = message_class("google.protobuf.Empty")


def decode(cls: type[Message], data: bytes) -> Message:
    """Parse ``data`` as a message of class ``cls``; :class:`ProtocolError` when it does not decode.

    Fields the protocol does not define are kept (and re-encoded) as protobuf always does.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"expected bytes for a {cls.DESCRIPTOR.full_name}, got {type(data).__name__}")
    message = cls()
    try:
        message.ParseFromString(bytes(data))
    # Corrupt input makes the pure-Python parser fail in several ways besides DecodeError
    # (IndexError, struct.error, UnicodeDecodeError, RecursionError ...): all mean "does not decode".
    except Exception as error:  # noqa: BLE001
        raise ProtocolError(
            f"cannot read the bytes as a {cls.DESCRIPTOR.full_name}: {error or type(error).__name__}"
        ) from None
    return message
