"""Seldon messages to and from the JSON form of Seldon's REST API.

The JSON form is protobuf's JSON mapping of the messages, as Seldon Core v1.17.1's wrapper reads
(``json_format.ParseDict``) and writes it (``json_format.MessageToJson``, with the protobuf 3.20
that seldon-core pins): ``binData`` is base64, enums are names, zero values are left out, and a
NaN or infinite number is written as the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``.

The shapes sent on every request (``data`` with ``names``/``tensor``/``ndarray``, ``jsonData``,
``strData``, ``meta``, ``status``) are converted field by field, which costs a fraction of
protobuf's generic conversion. When reading, anything else (``binData``, ``customData``,
``tftensor``, values of unusual types, and every malformed dict) goes through ``json_format``,
which then also words the error; both paths give the same message. When writing, only
``customData`` and ``tftensor`` do.

Differences from Seldon's wrapper: input that is not a JSON object (including ``None``, which
Seldon reads as an empty message) is refused; errors are :class:`ProtocolError` rather than
``SeldonMicroserviceException``; a NaN or infinity inside ``ndarray``/``jsonData`` is written as a
string whatever the protobuf version (newer protobuf refuses to write it at all); a
``customData`` can hold the protocol's messages and protobuf's well-known types, not an
application's own messages (Seldon looks those up in protobuf's default pool).

Examples
--------
>>> message = dict_to_message({"data": {"names": ["a"], "ndarray": [[1.5]]}, "meta": {"puid": "p1"}})
>>> message.data.ndarray.values[0].list_value.values[0].number_value
1.5
>>> message_to_dict(message)
{'meta': {'puid': 'p1'}, 'data': {'names': ['a'], 'ndarray': [[1.5]]}}
>>> dict_to_message({"data": {"tensor": {"values": ["x"]}}})
Traceback (most recent call last):
...
model_wrappers.protocol.messages.ProtocolError: not a valid seldon.protos.SeldonMessage: ...float: x...

"""

from __future__ import annotations

import base64
import math
import struct
from typing import Any, Callable

from google.protobuf import json_format
from google.protobuf.message import Message

from .messages import POOL, Feedback, Metric, ProtocolError, SeldonMessage, Status


def message_to_dict(message: Message) -> dict:
    """A ``SeldonMessage`` (this package's or seldon-core's) as its JSON form."""
    _expect_message(message, "seldon.protos.SeldonMessage")
    return _message_out(message)


def feedback_to_dict(feedback: Message) -> dict:
    """A ``Feedback`` (this package's or seldon-core's) as its JSON form."""
    _expect_message(feedback, "seldon.protos.Feedback")
    out: dict = {}
    for name in ("request", "response"):
        if feedback.HasField(name):
            out[name] = _message_out(getattr(feedback, name))
    if feedback.reward:
        out["reward"] = _float32_out(feedback.reward)
    if feedback.HasField("truth"):
        out["truth"] = _message_out(feedback.truth)
    return out


def dict_to_message(message: dict) -> Message:
    """A ``SeldonMessage`` from its JSON form; :class:`ProtocolError` says what does not fit."""
    return _parse(message, SeldonMessage, _fill_message)


def dict_to_feedback(feedback: dict) -> Message:
    """A ``Feedback`` from its JSON form; :class:`ProtocolError` says what does not fit."""
    return _parse(feedback, Feedback, _fill_feedback)


def _expect_message(message: Any, full_name: str) -> None:
    if not isinstance(message, Message) or message.DESCRIPTOR.full_name != full_name:
        raise ProtocolError(f"expected a {full_name}, got {type(message).__name__}")


# -- protobuf to JSON ------------------------------------------------------------------------

def _message_out(message: Message) -> dict:
    out: dict = {}
    if message.HasField("status"):
        out["status"] = _status_out(message.status)
    if message.HasField("meta"):
        out["meta"] = _meta_out(message.meta)
    kind = message.WhichOneof("data_oneof")
    if kind == "data":
        out["data"] = _data_out(message.data)
    elif kind == "jsonData":
        out["jsonData"] = _value_out(message.jsonData)
    elif kind == "strData":
        out["strData"] = message.strData
    elif kind == "binData":
        out["binData"] = base64.b64encode(message.binData).decode("ascii")
    elif kind == "customData":
        out["customData"] = _generic_out(message.customData, kind)
    return out


def _status_out(status: Message) -> dict:
    out: dict = {}
    if status.code:
        out["code"] = status.code
    if status.info:
        out["info"] = status.info
    if status.reason:
        out["reason"] = status.reason
    if status.status:
        out["status"] = _enum_out(Status.StatusFlag, status.status)
    return out


def _meta_out(meta: Message) -> dict:
    out: dict = {}
    if meta.puid:
        out["puid"] = meta.puid
    if meta.tags:
        out["tags"] = {key: _value_out(value) for key, value in meta.tags.items()}
    if meta.routing:
        out["routing"] = dict(meta.routing)
    if meta.requestPath:
        out["requestPath"] = dict(meta.requestPath)
    if meta.metrics:
        out["metrics"] = [_metric_out(metric) for metric in meta.metrics]
    return out


def _metric_out(metric: Message) -> dict:
    out: dict = {}
    if metric.key:
        out["key"] = metric.key
    if metric.type:
        out["type"] = _enum_out(Metric.MetricType, metric.type)
    if metric.value:
        out["value"] = _float32_out(metric.value)
    if metric.tags:
        out["tags"] = dict(metric.tags)
    return out


def _data_out(data: Message) -> dict:
    out: dict = {}
    if data.names:
        out["names"] = list(data.names)
    kind = data.WhichOneof("data_oneof")
    if kind == "tensor":
        tensor: dict = {}
        if data.tensor.shape:
            tensor["shape"] = list(data.tensor.shape)
        if data.tensor.values:
            tensor["values"] = _doubles_out(data.tensor.values)
        out["tensor"] = tensor
    elif kind == "ndarray":
        out["ndarray"] = _list_out(data.ndarray)
    elif kind == "tftensor":
        out["tftensor"] = _generic_out(data.tftensor, kind)
    return out


def _value_out(value: Message) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return _double_out(value.number_value)
    if kind == "string_value":
        return value.string_value
    if kind == "list_value":
        return _list_out(value.list_value)
    if kind == "struct_value":
        return {key: _value_out(item) for key, item in value.struct_value.fields.items()}
    if kind == "bool_value":
        return value.bool_value
    return None  # null_value, or no kind at all


def _list_out(values: Message) -> list:
    return [_value_out(item) for item in values.values]


def _doubles_out(values) -> list:
    values = list(values)
    if math.isfinite(sum(values)):  # the common case, checked in one pass
        return values
    return [_double_out(v) for v in values]


def _double_out(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")


def _float32_out(value: float) -> float | str:
    """The shortest decimal that reads back as the same 32-bit float (as protobuf writes a float)."""
    if not math.isfinite(value):
        return _double_out(value)
    for digits in range(6, 10):  # 9 significant digits always round-trip a float32
        candidate = float(f"{value:.{digits}g}")
        if struct.unpack("<f", struct.pack("<f", candidate))[0] == value:
            return candidate
    return value


def _enum_out(enum, number: int) -> str | int:
    try:
        return enum.Name(number)
    except ValueError:  # an open (proto3) enum keeps numbers it has no name for
        return number


def _generic_out(message: Message, field: str) -> dict:
    """A rarely used field's message, through protobuf's generic conversion.

    A ``customData`` resolves against :data:`POOL`: it may hold any message of the protocol or a
    well-known type (the same when reading).
    """
    try:
        return json_format.MessageToDict(message, descriptor_pool=POOL)
    except Exception as error:  # noqa: BLE001 - json_format raises several types
        raise ProtocolError(f"cannot write {field} as JSON: {error}") from None


# -- JSON to protobuf ------------------------------------------------------------------------

class _Unusual(Exception):
    """A shape the field-by-field path leaves to json_format."""


# Raised by the field-by-field path on input it does not take; json_format then decides.
_LEAVE_TO_JSON_FORMAT = (_Unusual, TypeError, ValueError, OverflowError, KeyError)
_MESSAGE_ONEOF = frozenset({"data", "binData", "strData", "jsonData", "customData"})
_DATA_ONEOF = frozenset({"tensor", "ndarray", "tftensor"})
_NUMBER = frozenset({int, float})
_INT32 = (-(2**31), 2**31 - 1)
_FLOAT32_MAX = float.fromhex("0x1.fffffep+127")
_METRIC_TYPES = {name: number for name, number in Metric.MetricType.items()}
_STATUS_FLAGS = {name: number for name, number in Status.StatusFlag.items()}


def _parse(source: Any, cls: type[Message], fill: Callable[[Message, dict], None]) -> Message:
    name = cls.DESCRIPTOR.full_name
    if not isinstance(source, dict):
        raise ProtocolError(f"expected a JSON object (a {name}), got {_json_type(source)}")
    out = cls()
    try:
        fill(out, source)
        return out
    except _LEAVE_TO_JSON_FORMAT:
        out = cls()
    try:
        json_format.ParseDict(source, out, descriptor_pool=POOL)
    # ParseError for most bad input, but the field setters underneath let TypeError, ValueError,
    # OverflowError ... through: all mean the dict does not fit the message.
    except Exception as error:  # noqa: BLE001
        raise ProtocolError(f"not a valid {name}: {error or type(error).__name__}") from None
    return out


def _json_type(value: Any) -> str:
    names = {type(None): "null", list: "an array", str: "a string", bool: "a boolean"}
    return names.get(type(value), "a number" if type(value) in _NUMBER else type(value).__name__)


def _fill_message(out: Message, source: dict) -> None:
    if len(source.keys() & _MESSAGE_ONEOF) > 1:
        raise _Unusual
    for key, value in source.items():
        if key == "data":
            _fill_data(out.data, value)
        elif key == "meta":
            _fill_meta(out.meta, value)
        elif key == "jsonData":
            _set_value(out.jsonData, value)
        elif key == "strData":
            out.strData = _string(value)
        elif key == "status":
            _fill_status(out.status, value)
        else:
            raise _Unusual


def _fill_data(data: Message, source: Any) -> None:
    if len(_dict(source).keys() & _DATA_ONEOF) > 1:
        raise _Unusual
    data.SetInParent()
    for key, value in source.items():
        if key == "names":
            data.names.extend(_strings(value))
        elif key == "tensor":
            _fill_tensor(data.tensor, value)
        elif key == "ndarray":
            data.ndarray.SetInParent()
            _fill_list(data.ndarray, _list(value))
        else:
            raise _Unusual


def _fill_tensor(tensor: Message, source: Any) -> None:
    tensor.SetInParent()
    for key, value in _dict(source).items():
        if key == "shape":
            tensor.shape.extend(_ints32(value))
        elif key == "values":
            tensor.values.extend(_doubles(value))
        else:
            raise _Unusual


def _fill_list(target: Message, items: list) -> None:
    add = target.values.add
    for item in items:
        kind = type(item)
        if kind is float or kind is int:  # most cells: one call instead of two
            add(number_value=item)
        else:
            _set_value(add(), item)


def _set_value(target: Message, value: Any) -> None:
    kind = type(value)
    if kind is float or kind is int:
        target.number_value = value
    elif kind is str:
        target.string_value = value
    elif kind is list:
        target.list_value.SetInParent()
        _fill_list(target.list_value, value)
    elif kind is dict:
        target.struct_value.SetInParent()
        fields = target.struct_value.fields
        for key, item in value.items():
            _set_value(fields[_string(key)], item)
    elif kind is bool:
        target.bool_value = value
    elif value is None:
        target.null_value = 0
    else:
        raise _Unusual


def _fill_meta(meta: Message, source: Any) -> None:
    meta.SetInParent()
    for key, value in _dict(source).items():
        if key == "puid":
            meta.puid = _string(value)
        elif key == "tags":
            for name, tag in _dict(value).items():
                _set_value(meta.tags[_string(name)], tag)
        elif key == "routing":
            for name, branch in _dict(value).items():
                meta.routing[_string(name)] = _int32(branch)
        elif key == "requestPath":
            for name, image in _dict(value).items():
                meta.requestPath[_string(name)] = _string(image)
        elif key == "metrics":
            for metric in _list(value):
                _fill_metric(meta.metrics.add(), metric)
        else:
            raise _Unusual


def _fill_metric(metric: Message, source: Any) -> None:
    for key, value in _dict(source).items():
        if key == "key":
            metric.key = _string(value)
        elif key == "type":
            metric.type = _METRIC_TYPES[_string(value)]
        elif key == "value":
            metric.value = _float32(value)
        elif key == "tags":
            for name, tag in _dict(value).items():
                metric.tags[_string(name)] = _string(tag)
        else:
            raise _Unusual


def _fill_status(status: Message, source: Any) -> None:
    status.SetInParent()
    for key, value in _dict(source).items():
        if key == "code":
            status.code = _int32(value)
        elif key in ("info", "reason"):
            setattr(status, key, _string(value))
        elif key == "status":
            status.status = _STATUS_FLAGS[_string(value)]
        else:
            raise _Unusual


def _fill_feedback(out: Message, source: dict) -> None:
    for key, value in source.items():
        if key in ("request", "response", "truth"):
            target = getattr(out, key)
            target.SetInParent()
            _fill_message(target, _dict(value))
        elif key == "reward":
            out.reward = _float32(value)
        else:
            raise _Unusual


def _dict(value: Any) -> dict:
    if type(value) is not dict:
        raise _Unusual
    return value


def _list(value: Any) -> list:
    if type(value) is not list:
        raise _Unusual
    return value


def _string(value: Any) -> str:
    if type(value) is not str:
        raise _Unusual
    return value


def _strings(value: Any) -> list:
    if not all(type(item) is str for item in _list(value)):
        raise _Unusual
    return value


def _int32(value: Any) -> int:
    if type(value) is not int or not _INT32[0] <= value <= _INT32[1]:
        raise _Unusual
    return value


def _ints32(value: Any) -> list:
    if _list(value) and (set(map(type, value)) != {int} or min(value) < _INT32[0] or max(value) > _INT32[1]):
        raise _Unusual
    return value


def _doubles(value: Any) -> list:
    # NaN or infinity anywhere makes the sum non-finite; json_format has its own rules for them
    if _list(value) and (not set(map(type, value)) <= _NUMBER or not math.isfinite(sum(value))):
        raise _Unusual
    return value


def _float32(value: Any) -> float:
    if type(value) not in _NUMBER or not -_FLOAT32_MAX <= value <= _FLOAT32_MAX:
        raise _Unusual
    return value
