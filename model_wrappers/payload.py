"""Seldon messages to validated rows, and rows back to Seldon messages.

Every payload kind a Seldon client sends is accepted: ``data.ndarray`` (with or without
``data.names``), ``data.tensor`` and ``jsonData`` (one object or a list of objects). The whole
batch is validated before anything uses it, and every problem is reported as
:class:`~model_wrappers.errors.InvalidInput` with the row, the column and what was expected.

Examples
--------
>>> from model_wrappers.artifact import Feature
>>> schema = Schema([Feature("x"), Feature("y")])
>>> batch = schema.read({"data": {"names": ["y", "x"], "ndarray": [[1, 2], [3, 4]]}})
>>> batch.rows
[{'x': 2, 'y': 1}, {'x': 4, 'y': 3}]
>>> schema.read({"jsonData": {"x": 1.5, "y": 0}}).rows
[{'x': 1.5, 'y': 0}]
>>> schema.read({"data": {"ndarray": [[1, "a"]]}})
Traceback (most recent call last):
...
model_wrappers.errors.InvalidInput: row 0, feature 'y': expected a number, got 'a'

"""

from __future__ import annotations

import itertools
import math
from typing import Any, Iterable, Sequence

import numpy as np
from google.protobuf import json_format
from google.protobuf.message import Message
from .artifact import Feature
from .checks import Undecodable, check_message, describe, finite, is_number, kind, tensor_shape, valid_text
from .errors import InvalidInput
from .protocol import Metric, SeldonMessage, dict_to_message, message_to_dict

MAX_REPORTED = 5
ARRAY_FROM = 32  # rows from which a table of numbers is also read as a float array (models answer it at once)
_NUMBER_TYPES = frozenset({int, float})


def to_dict(message: Any) -> dict:
    """A Seldon message as a JSON-style dict, whether it came over REST (dict) or gRPC (proto).

    The protobuf may be :mod:`model_wrappers.protocol`'s or seldon-core's (Seldon's stock wrapper
    hands over its own).
    """
    if isinstance(message, Message):
        return _data_to_dict(message) or message_to_dict(message)
    return check_message(message)


FEEDBACK_FIELDS = ("request", "response", "truth", "reward")


def feedback_to_dict(feedback: Any) -> dict:
    """A Seldon ``Feedback`` (protobuf, or its JSON form) as a JSON-style dict.

    The dict has ``request``, ``response`` and ``truth`` (SeldonMessages as dicts) and ``reward``
    (a number), each only when present.
    """
    if isinstance(feedback, dict):
        return _checked_feedback(feedback)
    if isinstance(feedback, Undecodable):
        raise InvalidInput(feedback.reason)
    if not isinstance(feedback, Message):
        raise InvalidInput(f"expected a JSON object (a Feedback), got {type(feedback).__name__}")
    out: dict = {}
    for field in ("request", "response", "truth"):
        if feedback.HasField(field):
            out[field] = to_dict(getattr(feedback, field))
    if feedback.reward:
        out["reward"] = feedback.reward
    return out


def _checked_feedback(feedback: dict) -> dict:
    unknown = sorted(set(feedback) - set(FEEDBACK_FIELDS))
    if unknown:
        raise InvalidInput(f"expected a Feedback with fields {', '.join(FEEDBACK_FIELDS)}, got unknown fields {unknown}")
    for field in ("request", "response", "truth"):
        part = feedback.get(field)
        if part is not None:
            check_message(part, f"feedback {field}")
    reward = feedback.get("reward")
    if reward is not None and (not is_number(reward) or not finite(reward)):
        raise InvalidInput(f"feedback reward must be a finite number, got {describe(reward)}")
    out = {k: v for k, v in feedback.items() if v is not None}
    if not out.get("reward"):
        out.pop("reward", None)  # as protobuf: a zero reward is no reward
    return out


def _data_to_dict(message: Message) -> dict | None:
    """A SeldonMessage holding ``data.tensor`` or ``data.ndarray`` read field by field, else None.

    Requests and feedback arrive as protobuf (gRPC, and every feedback over REST too); protobuf's
    generic JSON conversion costs more than the prediction with the pure-Python protobuf that
    seldon-core pins.
    """
    if message.DESCRIPTOR.full_name != "seldon.protos.SeldonMessage":
        return None
    which = message.WhichOneof("data_oneof")
    if which is None:
        out: dict = {}
    elif which != "data":
        return None
    else:
        data = message.data
        kind = data.WhichOneof("data_oneof")
        if kind == "tensor":
            body = {"tensor": {"shape": list(data.tensor.shape), "values": list(data.tensor.values)}}
        elif kind == "ndarray":
            body = {"ndarray": _list_value(data.ndarray)}
        else:
            return None
        if data.names:
            body["names"] = list(data.names)
        out = {"data": body}
    if message.HasField("meta"):
        out["meta"] = json_format.MessageToDict(message.meta)
    if message.HasField("status"):
        out["status"] = json_format.MessageToDict(message.status)
    return out


def _list_value(values) -> list:
    return [_value(v) for v in values.values]


def _value(value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return value.number_value
    if kind == "list_value":
        return _list_value(value.list_value)
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return json_format.MessageToDict(value.struct_value)
    return None


def to_proto(message: dict):
    """A JSON-style SeldonMessage as the protobuf the gRPC server must return.

    A tensor, and meta's puid, tags and metrics, are set field by field: protobuf's generic
    conversion costs more than a prediction with the pure-Python protobuf seldon-core pins.
    Metrics whose value is 0 are left out: protobuf does not encode a zero value, and Seldon's
    wrapper then fails reading the metric back (``KeyError: 'value'``) and the call with it.
    """
    meta = message.get("meta") or {}
    body = {k: v for k, v in message.items() if k != "meta"}
    out = _tensor_message(body) or dict_to_message(body)
    if "meta" in message:
        out.meta.SetInParent()  # an empty meta is still sent, as protobuf parsing would
    other = {k: v for k, v in meta.items() if k not in ("puid", "tags", "metrics")}
    if other:
        json_format.ParseDict(other, out.meta)
    _set_meta(out, meta)
    return out


def _tensor_message(body: dict) -> SeldonMessage | None:
    """``{"data": {"names": ..., "tensor": ...}}`` as protobuf, field by field (None for anything else)."""
    data = body.get("data")
    if set(body) != {"data"} or not isinstance(data, dict) or "tensor" not in data or set(data) - {"names", "tensor"}:
        return None
    out = SeldonMessage()
    out.data.names.extend(data.get("names") or [])
    out.data.tensor.shape.extend(data["tensor"]["shape"])
    out.data.tensor.values.extend(data["tensor"]["values"])
    return out


class Batch:
    """Validated rows of one request and how they were sent (so the reply can mirror it).

    ``table`` holds the same rows as lists in the schema's column order (``names``) when every
    value is a finite number; the rows as dicts are then built only if asked for. ``array`` is
    that table as a float array when it was checked as one (a large table), else None.
    """

    __slots__ = ("kind", "table", "names", "array", "_rows")

    def __init__(self, kind: str, rows: list[dict] | None = None, table: list[list] | None = None,
                 names: list[str] | None = None, array=None):
        self.kind = kind  # "ndarray", "tensor" or "jsonData"
        self.table = table
        self.names = names
        self.array = array
        self._rows = rows

    @property
    def rows(self) -> list[dict]:
        if self._rows is None:
            self._rows = [dict(zip(self.names, row)) for row in self.table]
        return self._rows


def _check_value(value: Any, feature: Feature | None) -> str | None:
    """Return what is wrong with one cell, or None when it is usable."""
    if value is None:
        return "missing value (null)"
    if is_number(value):
        if not finite(value):
            return f"expected a finite number, got {describe(value)}"
        return None
    if feature is not None and feature.type == "number":
        return f"expected a number, got {describe(value)}"
    if isinstance(value, str):
        return None if valid_text(value) else f"not valid text: it holds a lone surrogate ({describe(value)})"
    if isinstance(value, bool):
        return None
    return f"expected a number or a string, got {kind(value)}"


def _table(message: dict) -> tuple[list[str] | None, list, str]:
    """(names or None, list of rows as lists or dicts, kind) from a message dict."""
    data = message.get("data")
    json_data = message.get("jsonData")
    other = [k for k in ("strData", "binData", "customData") if message.get(k) is not None]
    if data is not None and json_data is not None:
        raise InvalidInput("expected either data or jsonData, got both")
    if data is None and json_data is None:
        found = f"; got {', '.join(other)}" if other else ""
        raise InvalidInput(f"expected data.ndarray, data.tensor or jsonData{found}")
    if json_data is not None:
        if isinstance(json_data, dict):
            json_data = [json_data]
        if not isinstance(json_data, list) or not all(isinstance(r, dict) for r in json_data):
            raise InvalidInput("jsonData must be an object of feature values or a list of such objects")
        return None, json_data, "jsonData"
    if not isinstance(data, dict):
        raise InvalidInput(f"data must be an object, got {kind(data)}")
    names = data.get("names") or None
    if names is not None and (
        not isinstance(names, list) or not all(isinstance(n, str) and valid_text(n) for n in names)
    ):
        raise InvalidInput(f"data.names must be a list of strings (valid text), got {describe(names)}")
    if "ndarray" in data:
        array = data["ndarray"]
        if not isinstance(array, list):
            raise InvalidInput(f"data.ndarray must be a list, got {type(array).__name__}")
        kinds = set(map(type, array))
        if array and list not in kinds and not any(isinstance(r, list) for r in array):
            array = [array]  # a 1-D ndarray is one row
        elif kinds != {list} and not all(isinstance(r, list) for r in array):
            raise InvalidInput("data.ndarray must be a list of rows (lists), not a mix of rows and values")
        return names, array, "ndarray"
    if "tensor" in data:
        shape, values = tensor_shape(data["tensor"])
        width = shape[1]
        rows = [values[i * width : (i + 1) * width] for i in range(shape[0])]
        return names, rows, "tensor"
    raise InvalidInput("expected data.ndarray or data.tensor in data")


def table(message: dict) -> tuple[list[str] | None, list, str]:
    """A request's rows as sent, unchecked: ``(data.names or None, rows as lists or dicts, kind)``.

    For components that read one column and no model schema (the KeyRouter reads the key).
    """
    return _table(message)


class Schema:
    """The features a model expects; reads and validates request batches against them.

    Parameters
    ----------
    features
        Features in column order. Empty means unknown: then requests must name their features
        (``data.names`` or ``jsonData``) and any names are accepted.

    """

    def __init__(self, features: Iterable[Feature] = ()):
        self.features = tuple(features)
        self.by_name = {f.name: f for f in self.features}
        self.names = [f.name for f in self.features]

    def read(self, message: Any, with_array: bool = False) -> Batch:
        """Validated rows from a Seldon message (dict or protobuf).

        ``with_array`` also gives a table of numbers of :data:`ARRAY_FROM` rows or more as a float
        array (``Batch.array``), for a model that reads a batch at once.
        """
        names, table, kind = _table(to_dict(message))
        if not table:
            raise InvalidInput("the request has no rows (empty batch)")
        numeric = self._numeric_table(names, table, with_array)
        if numeric is not None:
            return Batch(kind, table=numeric[0], names=self.names, array=numeric[1])
        rows = [self._row(i, names, r) for i, r in enumerate(table)]
        problems = []
        for i, row in enumerate(rows):
            for name, value in row.items():
                problem = _check_value(value, self.by_name.get(name))
                if problem:
                    problems.append(f"row {i}, feature {name!r}: {problem}")
        if problems:
            more = len(problems) - MAX_REPORTED
            suffix = f" (and {more} more)" if more > 0 else ""
            raise InvalidInput("; ".join(problems[:MAX_REPORTED]) + suffix)
        return Batch(kind, rows=rows)

    def _numeric_table(self, names: list[str] | None, table: list, with_array: bool) -> tuple[list[list], Any] | None:
        """The table in schema column order if it holds only finite numbers in known columns, else None.

        With it, when ``with_array`` and for a table of :data:`ARRAY_FROM` rows or more, the same
        values as a float array.

        Checked in bulk; None sends the batch through the cell-by-cell checks, which also say
        what is wrong.
        """
        if not self.names:
            return None
        columns = names or self.names
        width = len(self.names)
        if len(columns) != width or (columns != self.names and set(columns) != self.by_name.keys()):
            return None
        if set(map(type, table)) != {list} or set(map(len, table)) != {width}:
            return None
        if not _NUMBER_TYPES.issuperset(map(type, itertools.chain.from_iterable(table))):
            return None
        if columns != self.names:
            order = [columns.index(n) for n in self.names]
            table = [[row[j] for j in order] for row in table]
        if with_array and len(table) >= ARRAY_FROM:
            # A large table is checked as the float array the model may then read at once.
            try:
                # fromiter, as every cell is known to be an int or a float: faster than np.array.
                array = np.fromiter(itertools.chain.from_iterable(table), float, len(table) * width)
            except OverflowError:  # an integer beyond any float
                return None
            array = array.reshape(len(table), width)
            return (table, array) if np.isfinite(array).all() else None
        # inf or nan anywhere makes the sum non-finite (an overflowing sum only costs the slow path)
        try:
            if not math.isfinite(sum(map(sum, table))):
                return None
        except OverflowError:
            return None
        return table, None

    def _row(self, i: int, names: list[str] | None, raw: Sequence | dict) -> dict:
        if isinstance(raw, dict):
            self._check_names(i, list(raw))
            return {name: raw[name] for name in (self.names or raw)}
        if names is None:
            if not self.names:
                raise InvalidInput(
                    "this model's feature names are unknown, so the request must name its columns "
                    "(data.names or jsonData)"
                )
            names = self.names
        if len(raw) != len(names):
            expected = f"{len(names)} columns ({', '.join(names)})"
            raise InvalidInput(f"row {i}: expected {expected}, got {len(raw)}")
        self._check_names(i, names)
        row = dict(zip(names, raw))
        return {name: row[name] for name in (self.names or names)}

    def _check_names(self, i: int, names: list[str]) -> None:
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise InvalidInput(f"row {i}: duplicate feature names {dupes}")
        if not self.names:
            return
        missing = [n for n in self.names if n not in names]
        unknown = [n for n in names if n not in self.by_name]
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing features {missing}")
            if unknown:
                parts.append(f"unknown features {unknown}")
            raise InvalidInput(f"row {i}: {' and '.join(parts)}; expected {self.names}")


def read_values(message: Any, what: str) -> list:
    """A flat list of values (one per row) from a Seldon message such as a feedback's truth."""
    message = to_dict(message)
    if message.get("jsonData") is not None:
        values = message["jsonData"]
        return values if isinstance(values, list) else [values]
    data = message.get("data")
    if not data:
        raise InvalidInput(f"{what} has no data: expected data.ndarray, data.tensor or jsonData")
    _, table, _ = _table(message)
    if all(isinstance(r, list) for r in table):
        widths = {len(r) for r in table}
        if widths != {1} and len(table) != 1:
            raise InvalidInput(f"{what} must have one value per row, got rows of width {sorted(widths)}")
        return [v for r in table for v in r] if widths == {1} else list(table[0])
    return list(table)


def reply(kind: str, names: list[str], values: list[list], meta: dict, as_proto: bool):
    """A SeldonMessage holding ``values`` (rows x names) in the same payload kind as the request.

    ``meta["metrics"]`` may be None (nothing to record): the key is then left out.
    """
    meta = {k: v for k, v in meta.items() if v is not None}
    if kind == "jsonData":
        message = {"jsonData": [dict(zip(names, row)) for row in values]}
    elif kind == "tensor":
        flat = [v for row in values for v in row]
        message = {"data": {"names": names, "tensor": {"shape": [len(values), len(names)], "values": flat}}}
    else:
        message = {"data": {"names": names, "ndarray": values}}
    message["meta"] = meta
    return to_proto(message) if as_proto else message


def ack(meta: dict, as_proto: bool = True):
    """The feedback reply ``{"data": {"ndarray": []}, "meta": meta}``, as a protobuf or a dict."""
    if not as_proto:
        return {"data": {"ndarray": []}, "meta": {k: v for k, v in meta.items() if v}}
    out = SeldonMessage()
    out.data.ndarray.SetInParent()
    _set_meta(out, meta)
    return out


def _set_meta(out, meta: dict) -> None:
    if meta.get("puid"):
        out.meta.puid = meta["puid"]
    for key, value in (meta.get("tags") or {}).items():
        _set_value(out.meta.tags[key], value)
    for metric in meta.get("metrics") or ():
        if metric["value"] != 0:  # see to_proto: a zero value breaks Seldon's wrapper
            out.meta.metrics.add(key=metric["key"], type=Metric.MetricType.Value(metric.get("type", "COUNTER")),
                                 value=metric["value"], tags=metric.get("tags", {}))


def _set_value(target, value) -> None:
    """Set a ``google.protobuf.Value`` from a JSON-style value (scalars directly: the common tags)."""
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, (int, float)) and math.isfinite(value):
        target.number_value = value
    elif isinstance(value, str):
        target.string_value = value
    else:
        json_format.ParseDict(value, target)
