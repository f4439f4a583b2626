"""Seldon Core v1's wire format written down as data: the ``seldon.protos`` messages and services.

The definitions follow the protocol of Seldon Core v1.17.1 (``prediction.proto``) field for
field: the same package, message, enum and field names, field numbers, types, oneofs and packing,
so a message serializes to the same bytes as Seldon's own. ``DefaultData.tftensor`` carries a
TensorFlow ``TensorProto``; the ``tensorflow`` messages it needs are defined here too, with
TensorFlow's names and numbers, so a tftensor payload is read and re-encoded intact rather than
kept as unknown bytes.

:func:`files` turns the tables into ``FileDescriptorProto`` messages, ready for a descriptor pool.

Examples
--------
>>> [f.name for f in files()]
['tensorflow/core/framework/tensor.proto', 'seldon/protos/prediction.proto']
>>> [m.name for m in files()[1].message_type][:3]
['SeldonMessage', 'DefaultData', 'Tensor']

"""

from __future__ import annotations

import dataclasses

from google.protobuf import any_pb2, descriptor_pb2, empty_pb2, struct_pb2

_FieldProto = descriptor_pb2.FieldDescriptorProto

# The well-known types the Seldon messages use, as the protobuf runtime ships them.
WELL_KNOWN = (any_pb2, struct_pb2, empty_pb2)

_SCALARS = {
    "double": _FieldProto.TYPE_DOUBLE,
    "float": _FieldProto.TYPE_FLOAT,
    "int32": _FieldProto.TYPE_INT32,
    "int64": _FieldProto.TYPE_INT64,
    "uint32": _FieldProto.TYPE_UINT32,
    "uint64": _FieldProto.TYPE_UINT64,
    "bool": _FieldProto.TYPE_BOOL,
    "string": _FieldProto.TYPE_STRING,
    "bytes": _FieldProto.TYPE_BYTES,
}


@dataclasses.dataclass(frozen=True)
class Field:
    """One field. ``kind`` is written as in a .proto file.

    ``"string"``, ``"repeated double"``, ``"map<string,int32>"``, ``"Meta"`` (a message of the same
    package, or nested in the message), ``"enum MetricType"``, ``"google.protobuf.Value"`` (a
    name with a dot is absolute).
    """

    name: str
    number: int
    kind: str
    oneof: str | None = None
    packed: bool = False  # only where the protocol says [packed = true]


@dataclasses.dataclass(frozen=True)
class Message:
    name: str
    fields: tuple[Field, ...]
    enums: tuple[tuple[str, tuple[tuple[str, int], ...]], ...] = ()
    nested: tuple["Message", ...] = ()
    reserved: tuple[int, ...] = ()


def _m(name: str, *fields: Field, **extra) -> Message:
    return Message(name, fields, **extra)


F = Field

# TensorFlow's DataType: each type n has a reference type n + 100.
_DATA_TYPES = (
    "FLOAT", "DOUBLE", "INT32", "UINT8", "INT16", "INT8", "STRING", "COMPLEX64", "INT64", "BOOL",
    "QINT8", "QUINT8", "QINT32", "BFLOAT16", "QINT16", "QUINT16", "UINT16", "COMPLEX128", "HALF",
    "RESOURCE", "VARIANT", "UINT32", "UINT64", "FLOAT8_E5M2", "FLOAT8_E4M3FN",
)
DATA_TYPE = (
    (("DT_INVALID", 0),)
    + tuple((f"DT_{name}", n) for n, name in enumerate(_DATA_TYPES, 1))
    + tuple((f"DT_{name}_REF", n + 100) for n, name in enumerate(_DATA_TYPES, 1))
)

TENSORFLOW = (
    _m(
        "TensorShapeProto",
        F("dim", 2, "repeated Dim"),
        F("unknown_rank", 3, "bool"),
        nested=(_m("Dim", F("size", 1, "int64"), F("name", 2, "string")),),
    ),
    _m(
        "ResourceHandleProto",
        F("device", 1, "string"),
        F("container", 2, "string"),
        F("name", 3, "string"),
        F("hash_code", 4, "uint64"),
        F("maybe_type_name", 5, "string"),
        F("dtypes_and_shapes", 6, "repeated DtypeAndShape"),
        nested=(_m("DtypeAndShape", F("dtype", 1, "enum DataType"), F("shape", 2, "TensorShapeProto")),),
        reserved=(7,),
    ),
    # Fields in TensorFlow's declaration order (half_val, 13, comes fifth).
    _m(
        "TensorProto",
        F("dtype", 1, "enum DataType"),
        F("tensor_shape", 2, "TensorShapeProto"),
        F("version_number", 3, "int32"),
        F("tensor_content", 4, "bytes"),
        F("half_val", 13, "repeated int32", packed=True),
        F("float_val", 5, "repeated float", packed=True),
        F("double_val", 6, "repeated double", packed=True),
        F("int_val", 7, "repeated int32", packed=True),
        F("string_val", 8, "repeated bytes"),
        F("scomplex_val", 9, "repeated float", packed=True),
        F("int64_val", 10, "repeated int64", packed=True),
        F("bool_val", 11, "repeated bool", packed=True),
        F("dcomplex_val", 12, "repeated double", packed=True),
        F("resource_handle_val", 14, "repeated ResourceHandleProto"),
        F("variant_val", 15, "repeated VariantTensorDataProto"),
        F("uint32_val", 16, "repeated uint32", packed=True),
        F("uint64_val", 17, "repeated uint64", packed=True),
        F("float8_val", 18, "bytes"),
    ),
    _m(
        "VariantTensorDataProto",
        F("type_name", 1, "string"),
        F("metadata", 2, "bytes"),
        F("tensors", 3, "repeated TensorProto"),
    ),
)

_DATA = "data_oneof"
_METADATA = "repeated SeldonMessageMetadata"

SELDON = (
    _m(
        "SeldonMessage",
        F("status", 1, "Status"),
        F("meta", 2, "Meta"),
        F("data", 3, "DefaultData", _DATA),
        F("binData", 4, "bytes", _DATA),
        F("strData", 5, "string", _DATA),
        F("jsonData", 6, "google.protobuf.Value", _DATA),
        F("customData", 7, "google.protobuf.Any", _DATA),
    ),
    _m(
        "DefaultData",
        F("names", 1, "repeated string"),
        F("tensor", 2, "Tensor", _DATA),
        F("ndarray", 3, "google.protobuf.ListValue", _DATA),
        F("tftensor", 4, "tensorflow.TensorProto", _DATA),
    ),
    _m(
        "Tensor",
        F("shape", 1, "repeated int32", packed=True),
        F("values", 2, "repeated double", packed=True),
    ),
    _m(
        "Meta",
        F("puid", 1, "string"),
        F("tags", 2, "map<string,google.protobuf.Value>"),
        F("routing", 3, "map<string,int32>"),
        F("requestPath", 4, "map<string,string>"),
        F("metrics", 5, "repeated Metric"),
    ),
    _m(
        "Metric",
        F("key", 1, "string"),
        F("type", 2, "enum MetricType"),
        F("value", 3, "float"),
        F("tags", 4, "map<string,string>"),
        enums=(("MetricType", (("COUNTER", 0), ("GAUGE", 1), ("TIMER", 2))),),
    ),
    _m("SeldonMessageList", F("seldonMessages", 1, "repeated SeldonMessage")),
    _m(
        "Status",
        F("code", 1, "int32"),
        F("info", 2, "string"),
        F("reason", 3, "string"),
        F("status", 4, "enum StatusFlag"),
        enums=(("StatusFlag", (("SUCCESS", 0), ("FAILURE", 1))),),
    ),
    _m(
        "Feedback",
        F("request", 1, "SeldonMessage"),
        F("response", 2, "SeldonMessage"),
        F("reward", 3, "float"),
        F("truth", 4, "SeldonMessage"),
    ),
    _m("RequestResponse", F("request", 1, "SeldonMessage"), F("response", 2, "SeldonMessage")),
    _m("SeldonModelMetadataRequest", F("name", 1, "string")),
    _m(
        "SeldonMessageMetadata",
        F("messagetype", 1, "string"),
        F("schema", 2, "google.protobuf.Value"),
        F("name", 3, "string"),
        F("datatype", 4, "string"),
        F("shape", 5, "repeated int64"),
    ),
    _m(
        "SeldonModelMetadata",
        F("name", 1, "string"),
        F("versions", 2, "repeated string"),
        F("platform", 3, "string"),
        F("inputs", 4, _METADATA),
        F("outputs", 5, _METADATA),
        F("custom", 6, "map<string,string>"),
    ),
    _m(
        "SeldonGraphMetadata",
        F("name", 1, "string"),
        F("models", 2, "map<string,SeldonModelMetadata>"),
        F("inputs", 3, _METADATA),
        F("outputs", 4, _METADATA),
    ),
)

_FEEDBACK = ("SendFeedback", "Feedback", "SeldonMessage")
_TRANSFORM_INPUT = ("TransformInput", "SeldonMessage", "SeldonMessage")
_TRANSFORM_OUTPUT = ("TransformOutput", "SeldonMessage", "SeldonMessage")
_ROUTE = ("Route", "SeldonMessage", "SeldonMessage")
_AGGREGATE = ("Aggregate", "SeldonMessageList", "SeldonMessage")
_PREDICT = ("Predict", "SeldonMessage", "SeldonMessage")

# service name -> (method, request, response), in the protocol's order.
SERVICES = {
    "Generic": (_TRANSFORM_INPUT, _TRANSFORM_OUTPUT, _ROUTE, _AGGREGATE, _FEEDBACK),
    "Model": (_PREDICT, _FEEDBACK, ("Metadata", "google.protobuf.Empty", "SeldonModelMetadata")),
    "Router": (_ROUTE, _FEEDBACK),
    "Transformer": (_TRANSFORM_INPUT,),
    "OutputTransformer": (_TRANSFORM_OUTPUT,),
    "Combiner": (_AGGREGATE,),
    "Seldon": (
        _PREDICT,
        _FEEDBACK,
        ("ModelMetadata", "SeldonModelMetadataRequest", "SeldonModelMetadata"),
        ("GraphMetadata", "google.protobuf.Empty", "SeldonGraphMetadata"),
    ),
}


def files() -> list[descriptor_pb2.FileDescriptorProto]:
    """The TensorFlow and Seldon definitions as file descriptors, dependencies first."""
    tensorflow = _file("tensorflow/core/framework/tensor.proto", "tensorflow", TENSORFLOW, ())
    tensorflow.enum_type.add(name="DataType").value.extend(
        descriptor_pb2.EnumValueDescriptorProto(name=n, number=v) for n, v in DATA_TYPE
    )
    seldon = _file(
        "seldon/protos/prediction.proto",
        "seldon.protos",
        SELDON,
        [m.DESCRIPTOR.name for m in WELL_KNOWN] + [tensorflow.name],
    )
    for service, methods in SERVICES.items():
        target = seldon.service.add(name=service)
        for name, request, response in methods:
            target.method.add(
                name=name,
                input_type=_absolute(request, "seldon.protos"),
                output_type=_absolute(response, "seldon.protos"),
            )
    return [tensorflow, seldon]


def _file(name: str, package: str, messages, dependencies) -> descriptor_pb2.FileDescriptorProto:
    out = descriptor_pb2.FileDescriptorProto(name=name, package=package, syntax="proto3")
    out.dependency.extend(dependencies)
    for message in messages:
        _message(out.message_type.add(), message, package, package)
    return out


def _message(out: descriptor_pb2.DescriptorProto, message: Message, package: str, scope: str) -> None:
    out.name = message.name
    scope = f"{scope}.{message.name}"
    local = {n.name for n in message.nested} | {name for name, _ in message.enums}
    for nested in message.nested:
        _message(out.nested_type.add(), nested, package, scope)
    for name, values in message.enums:
        out.enum_type.add(name=name).value.extend(
            descriptor_pb2.EnumValueDescriptorProto(name=n, number=v) for n, v in values
        )
    oneofs: list[str] = []
    for field in message.fields:
        target = out.field.add(name=field.name, number=field.number)
        if field.kind.startswith("map<"):
            _map_field(out, target, field, scope, package)
        else:
            _set_kind(target, field.kind, lambda n: f".{scope}.{n}" if n in local else _absolute(n, package))
        if field.packed:
            target.options.packed = True
        if field.oneof is not None:
            if field.oneof not in oneofs:
                oneofs.append(field.oneof)
                out.oneof_decl.add(name=field.oneof)
            target.oneof_index = oneofs.index(field.oneof)
    for number in message.reserved:
        out.reserved_range.add(start=number, end=number + 1)


def _map_field(out, target, field: Field, scope: str, package: str) -> None:
    """A map is a repeated nested ``<Name>Entry`` message with a key (1) and a value (2)."""
    key, value = field.kind[len("map<"):-1].split(",")
    entry = out.nested_type.add(name="".join(p[:1].upper() + p[1:] for p in field.name.split("_")) + "Entry")
    entry.options.map_entry = True
    _set_kind(entry.field.add(name="key", number=1), key, None)
    _set_kind(entry.field.add(name="value", number=2), value, lambda name: _absolute(name, package))
    target.label = _FieldProto.LABEL_REPEATED
    target.type = _FieldProto.TYPE_MESSAGE
    target.type_name = f".{scope}.{entry.name}"


def _set_kind(target, kind: str, resolve) -> None:
    words = kind.split()
    target.label = _FieldProto.LABEL_REPEATED if words[0] == "repeated" else _FieldProto.LABEL_OPTIONAL
    name = words[-1]
    if name in _SCALARS:
        target.type = _SCALARS[name]
        return
    target.type = _FieldProto.TYPE_ENUM if "enum" in words else _FieldProto.TYPE_MESSAGE
    target.type_name = resolve(name)


def _absolute(name: str, package: str) -> str:
    return f".{name}" if "." in name else f".{package}.{name}"
