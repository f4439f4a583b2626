"""The shape every incoming Seldon message must have before anything reads it.

JSON (REST) can hold anything: ``"meta": [1]``, a ``puid`` that is a number or not valid text
(a lone surrogate such as ``"\\ud800"``), tags nested a thousand levels deep, a tensor whose shape
claims a billion rows. Each check here refuses such a message with
:class:`~model_wrappers.errors.InvalidInput`, saying where and what, before a component reads,
records or learns anything from it. Protobuf messages (gRPC) are typed already; they pass the
same checks.

Examples
--------
>>> check_message({"data": {"ndarray": [[1]]}, "meta": {"puid": "p", "tags": {"a": 1}}})["meta"]["puid"]
'p'
>>> check_message({"meta": [1]})
Traceback (most recent call last):
...
model_wrappers.errors.InvalidInput: meta must be an object, got list [1]
>>> count_rows({"data": {"tensor": {"shape": [1000000000, 1], "values": []}}})
Traceback (most recent call last):
...
model_wrappers.errors.InvalidInput: data.tensor.shape [1000000000, 1] needs 1000000000 values, got 0

"""

from __future__ import annotations

import math
import reprlib
from typing import Any

from .errors import InvalidInput

MESSAGE_FIELDS = frozenset({"status", "meta", "data", "binData", "strData", "jsonData", "customData"})
MAX_DEPTH = 32  # nesting levels a message's meta (tags) may have
MAX_ID_LENGTH = 512  # characters of a request id or feedback id

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60
_short.maxlevel = 3


class Undecodable:
    """A request whose bytes are not the message they should be (set by the server that read them).

    It reaches a component in place of the message, and every component refuses it with
    :class:`~model_wrappers.errors.InvalidInput` (gRPC ``INVALID_ARGUMENT``) carrying ``reason``.
    """

    reward = 0.0  # read by Seldon's wrapper from every feedback before the component sees it

    def __init__(self, reason: str):
        self.reason = reason


def decode_or_undecodable(message_class, data: bytes):
    """``message_class`` parsed from ``data``, or an :class:`Undecodable` saying why it is not one."""
    try:
        return message_class.FromString(data)
    except Exception as exc:  # protobuf's DecodeError, or what a malformed nested message raises
        return Undecodable(f"the request is not a {message_class.DESCRIPTOR.full_name}: {exc}")


def describe(value: Any) -> str:
    """A short, always printable description of ``value`` for an error message (never recursing deeply)."""
    if isinstance(value, float):
        return str(value)
    return _short.repr(value)


def kind(value: Any) -> str:
    return f"{type(value).__name__} {describe(value)}"


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond any float
        return False


def valid_text(value: str) -> bool:
    """Whether ``value`` is text that can be stored and sent anywhere (no lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text_id(value: Any, where: str) -> str:
    """``value`` checked as an identifier: non-empty valid text of at most :data:`MAX_ID_LENGTH` characters."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{where} must be a non-empty string, got {kind(value)}")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidInput(f"{where} has {len(value)} characters; at most {MAX_ID_LENGTH} are allowed")
    if not valid_text(value):
        raise InvalidInput(f"{where} is not valid text: it holds a lone surrogate ({describe(value)})")
    return value


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether lists and objects inside ``value`` nest more than ``limit`` levels (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def check_meta(meta: Any, where: str = "meta") -> dict:
    """A message's ``meta`` checked: an object whose ``puid``, ``tags`` and ``routing`` have their types."""
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise InvalidInput(f"{where} must be an object, got {kind(meta)}")
    puid = meta.get("puid")
    if puid not in (None, ""):
        text_id(puid, f"{where}.puid")
    tags = meta.get("tags")
    if tags is not None:
        if not isinstance(tags, dict):
            raise InvalidInput(f"{where}.tags must be an object, got {kind(tags)}")
        if too_deep(tags):
            raise InvalidInput(f"{where}.tags nest more than {MAX_DEPTH} levels deep")
    routing = meta.get("routing")
    if routing is not None:
        if not isinstance(routing, dict):
            raise InvalidInput(f"{where}.routing must be an object of graph node names to child indexes, "
                               f"got {kind(routing)}")
        for node, index in routing.items():
            if isinstance(index, bool) or not isinstance(index, int):
                raise InvalidInput(f"{where}.routing[{node!r}] must be an integer (a child index), got {kind(index)}")
    for field in ("metrics", "requestPath"):
        value = meta.get(field)
        if value is not None and too_deep(value):
            raise InvalidInput(f"{where}.{field} nests more than {MAX_DEPTH} levels deep")
    return meta


def check_message(message: Any, where: str = "") -> dict:
    """A SeldonMessage in its JSON form checked: an object of Seldon's fields, ``data`` an object, ``meta`` typed."""
    prefix = f"{where}." if where else ""
    if isinstance(message, Undecodable):
        raise InvalidInput(message.reason)
    if not isinstance(message, dict):
        raise InvalidInput(f"expected a JSON object (a SeldonMessage){f' as {where}' if where else ''}, "
                           f"got {kind(message)}")
    unknown = sorted(set(message) - MESSAGE_FIELDS)
    if unknown:
        raise InvalidInput(f"{where or 'the message'} has unknown fields {describe(unknown)}; a SeldonMessage has "
                           f"{', '.join(sorted(MESSAGE_FIELDS))}")
    data = message.get("data")
    if data is not None and not isinstance(data, dict):
        raise InvalidInput(f"{prefix}data must be an object, got {kind(data)}")
    check_meta(message.get("meta"), f"{prefix}meta")
    return message


def meta_of(message: Any) -> dict:
    """The ``meta`` of a checked message part (an empty dict when there is none)."""
    if not isinstance(message, dict):
        return {}
    meta = message.get("meta")
    return meta if isinstance(meta, dict) else {}


def tensor_shape(tensor: Any, where: str = "data.tensor") -> tuple[list[int], list]:
    """A tensor's ``(shape as [rows, columns], values)``, the shape agreeing with the number of values."""
    if not isinstance(tensor, dict):
        raise InvalidInput(f"{where} must be an object with shape and values, got {kind(tensor)}")
    shape, values = tensor.get("shape", []), tensor.get("values", [])
    if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise InvalidInput(f"{where}.shape must be a list of non-negative integers, got {describe(shape)}")
    if not isinstance(values, list):
        raise InvalidInput(f"{where}.values must be a list of numbers, got {kind(values)}")
    if len(shape) == 1:
        shape = [1, shape[0]]
    if len(shape) != 2:
        raise InvalidInput(f"{where}.shape must have 1 or 2 dimensions, got {describe(shape)}")
    if shape[1] == 0 and shape[0] > 0:
        raise InvalidInput(f"{where}.shape {shape} makes rows without values")
    if shape[0] * shape[1] != len(values):
        raise InvalidInput(f"{where}.shape {shape} needs {shape[0] * shape[1]} values, got {len(values)}")
    return shape, values


def count_rows(message: dict) -> int | None:
    """Rows of a checked message's payload (None when it carries none), the payload's shape checked."""
    data = message.get("data")
    if isinstance(data, dict):
        if "ndarray" in data:
            array = data["ndarray"]
            if not isinstance(array, list):
                raise InvalidInput(f"data.ndarray must be a list, got {kind(array)}")
            return len(array) if array and all(isinstance(r, list) for r in array) else 1
        if "tensor" in data:
            return tensor_shape(data["tensor"])[0][0]
        if data.get("tftensor") is not None:
            return 1  # a TensorFlow tensor: one observation, whatever its shape says
    json_data = message.get("jsonData")
    if json_data is not None:
        return len(json_data) if isinstance(json_data, list) else 1
    if any(message.get(k) is not None for k in ("strData", "binData", "customData")):
        return 1
    return None


def check_reward(reward: Any) -> float:
    """A feedback's reward: a finite number in [0, 1] (the reward per row of the request)."""
    if not is_number(reward) or not finite(reward):
        raise InvalidInput(f"reward must be a finite number in [0, 1], got {describe(reward)}")
    if not 0 <= reward <= 1:
        raise InvalidInput(f"reward must be in [0, 1] (the reward per row of the request), got {describe(reward)}")
    return float(reward)
