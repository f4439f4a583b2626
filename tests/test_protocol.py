"""The project's own Seldon protocol against seldon-core's: descriptors, bytes, JSON and errors.

The comparisons with seldon-core need it installed (CI has it); everything else runs with any
protobuf, including an install without seldon-core.
"""

from __future__ import annotations

import base64
import math
import os
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, json_format
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from model_wrappers import protocol
from model_wrappers.protocol import (
    SERVICES,
    Feedback,
    ProtocolError,
    SeldonMessage,
    decode,
    dict_to_feedback,
    dict_to_message,
    feedback_to_dict,
    message_to_dict,
)
from model_wrappers.protocol import json_codec
from support import require

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = settings(
    max_examples=int(os.environ.get("PROTOCOL_EXAMPLES", "200")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def seldon():
    """seldon-core's generated messages and JSON helpers."""
    try:
        from seldon_core import utils
        from seldon_core.proto import prediction_pb2
    except ImportError:
        require("seldon-core", False, "pip install 'seldon-core==1.17.1'")
    return prediction_pb2, utils


# -- strategies: the JSON form of messages, valid and not -------------------------------------

INT32 = st.integers(-(2**31), 2**31 - 1)
TEXT = st.text(max_size=8)
NON_FINITE = st.sampled_from(["NaN", "Infinity", "-Infinity"])
JSON_SCALAR = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
JSON = st.recursive(
    JSON_SCALAR, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
NUMBERS = st.lists(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**60), 2**60), max_size=8)
TENSOR = st.fixed_dictionaries(
    {}, optional={"shape": st.lists(INT32, max_size=3), "values": NUMBERS | st.lists(NON_FINITE, max_size=2)}
)
ROWS = st.lists(st.lists(st.floats() | st.integers(-(2**60), 2**60), max_size=4), max_size=4)
NDARRAY = ROWS | st.lists(JSON, max_size=4)
TFTENSOR = st.fixed_dictionaries(
    {"dtype": st.sampled_from(["DT_FLOAT", "DT_INT64", "DT_STRING", "DT_DOUBLE_REF"])},
    optional={
        "tensorShape": st.fixed_dictionaries(
            {"dim": st.lists(st.fixed_dictionaries({"size": st.integers(0, 9).map(str)}), max_size=3)}
        ),
        "floatVal": st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), max_size=4),
        "int64Val": st.lists(st.integers(-(2**63), 2**63 - 1).map(str), max_size=3),
        "stringVal": st.lists(st.binary(max_size=6).map(lambda b: base64.b64encode(b).decode()), max_size=3),
        "halfVal": st.lists(st.integers(0, 2**16 - 1), max_size=3),
        "tensorContent": st.binary(max_size=8).map(lambda b: base64.b64encode(b).decode()),
    },
)
DATA = st.fixed_dictionaries(
    {}, optional={"names": st.lists(TEXT, max_size=4), "tensor": TENSOR, "ndarray": NDARRAY}
) | st.fixed_dictionaries({"tftensor": TFTENSOR})
METRIC = st.fixed_dictionaries(
    {},
    optional={
        "key": TEXT,
        "type": st.sampled_from(["COUNTER", "GAUGE", "TIMER"]),
        "value": st.floats(width=32, allow_nan=False, allow_infinity=False) | st.integers(-1000, 1000) | NON_FINITE,
        "tags": st.dictionaries(TEXT, TEXT, max_size=2),
    },
)
META = st.fixed_dictionaries(
    {},
    optional={
        "puid": TEXT,
        "tags": st.dictionaries(TEXT, JSON, max_size=3),
        "routing": st.dictionaries(TEXT, INT32, max_size=3),
        "requestPath": st.dictionaries(TEXT, TEXT, max_size=2),
        "metrics": st.lists(METRIC, max_size=3),
    },
)
STATUS = st.fixed_dictionaries(
    {},
    optional={"code": INT32, "info": TEXT, "reason": TEXT, "status": st.sampled_from(["SUCCESS", "FAILURE"])},
)
CUSTOM = st.builds(
    lambda shape: {"@type": "type.googleapis.com/seldon.protos.Tensor", "shape": shape, "values": [1.5]},
    st.lists(INT32, max_size=2),
)
PAYLOAD = st.one_of(
    st.fixed_dictionaries({"data": DATA}),
    st.fixed_dictionaries({"jsonData": JSON}),
    st.fixed_dictionaries({"strData": TEXT}),
    st.fixed_dictionaries({"binData": st.binary(max_size=12).map(lambda b: base64.b64encode(b).decode())}),
    st.fixed_dictionaries({"customData": CUSTOM}),
    st.just({}),
)
MESSAGE = st.builds(
    lambda payload, rest: {**payload, **rest},
    PAYLOAD,
    st.fixed_dictionaries({}, optional={"meta": META, "status": STATUS}),
)
FEEDBACK = st.fixed_dictionaries(
    {},
    optional={
        "request": MESSAGE,
        "response": MESSAGE,
        "truth": MESSAGE,
        "reward": st.floats(width=32, allow_nan=False, allow_infinity=False) | st.integers(-5, 5),
    },
)

# Dicts of the right keys with values of any JSON type: mostly invalid, sometimes not.
LOOSE = st.fixed_dictionaries(
    {},
    optional={
        "data": st.dictionaries(st.sampled_from(["names", "tensor", "ndarray", "tftensor", "bogus"]), JSON, max_size=3)
        | st.fixed_dictionaries({"tensor": st.dictionaries(st.sampled_from(["shape", "values"]), JSON)}),
        "meta": st.dictionaries(
            st.sampled_from(["puid", "tags", "routing", "requestPath", "metrics", "x"]), JSON, max_size=3
        )
        | st.fixed_dictionaries(
            {"metrics": st.lists(st.dictionaries(st.sampled_from(["key", "type", "value", "tags"]), JSON))}
        ),
        "jsonData": JSON,
        "strData": JSON,
        "binData": JSON | TEXT,
        "status": st.dictionaries(st.sampled_from(["code", "info", "reason", "status"]), JSON),
        "bogus": JSON,
    },
)


def _seldon_parse(parse, source):
    """seldon-core's result for a dict, or None when it refuses it (whatever it raises)."""
    try:
        return parse(source)
    except Exception:  # noqa: BLE001 - Seldon raises its own exception, or protobuf's
        return None


def _ours(parse, source):
    try:
        return parse(source)
    except ProtocolError as error:
        assert str(error), "a ProtocolError must say what was wrong"
        return None


def _truncated(source: dict) -> bytes:
    """A valid message's bytes less the last one (b"" for a dict that is no message)."""
    try:
        return dict_to_message(source).SerializeToString()[:-1]
    except ProtocolError:
        return b""


def _bytes(message) -> bytes:
    return message.SerializeToString(deterministic=True)


def _assert_read_alike(theirs: type, ours: type, raw: bytes) -> None:
    """Both classes read the bytes to the same content (compared as bytes: == fails on NaN)."""
    assert _bytes(decode(ours, raw)) == _bytes(theirs.FromString(raw))


# -- the descriptors are Seldon's ------------------------------------------------------------

def _reachable(descriptor, seen: dict) -> dict:
    """Every message type a message uses, by full name (nested types and field types)."""
    if descriptor.full_name in seen:
        return seen
    seen[descriptor.full_name] = descriptor
    for nested in descriptor.nested_types:
        _reachable(nested, seen)
    for field in descriptor.fields:
        if field.message_type is not None:
            _reachable(field.message_type, seen)
    return seen


def _definition(descriptor) -> descriptor_pb2.DescriptorProto:
    """A message's definition as its file declares it, without json_name (compared apart)."""
    file = descriptor_pb2.FileDescriptorProto.FromString(descriptor.file.serialized_pb)
    path = descriptor.full_name[len(file.package) + 1:].split(".")
    found = next(m for m in file.message_type if m.name == path[0])
    for name in path[1:]:
        found = next(m for m in found.nested_type if m.name == name)
    stack = [found]
    while stack:
        message = stack.pop()
        for field in message.field:
            field.ClearField("json_name")
        stack.extend(message.nested_type)
    return found


def test_every_message_has_seldons_definition(seldon):
    prediction_pb2, _ = seldon
    theirs: dict = {}
    for message in prediction_pb2.DESCRIPTOR.message_types_by_name.values():
        _reachable(message, theirs)
    assert {"seldon.protos.SeldonMessage", "tensorflow.TensorProto", "google.protobuf.ListValue"} <= set(theirs)
    assert len([n for n in theirs if n.startswith("seldon.protos.")]) >= 13
    for name, descriptor in theirs.items():
        ours = protocol.POOL.FindMessageTypeByName(name)
        assert _definition(ours) == _definition(descriptor), name
        assert [f.json_name for f in ours.fields] == [f.json_name for f in descriptor.fields], name
        enums = [(e.full_name, [(v.name, v.number) for v in e.values]) for e in descriptor.enum_types]
        assert [(e.full_name, [(v.name, v.number) for v in e.values]) for e in ours.enum_types] == enums
    tftensor = prediction_pb2.DefaultData.DESCRIPTOR.fields_by_name["tftensor"].message_type
    data_type = tftensor.fields_by_name["dtype"].enum_type
    assert [(v.name, v.number) for v in protocol.POOL.FindEnumTypeByName("tensorflow.DataType").values] == [
        (v.name, v.number) for v in data_type.values
    ]


def test_services_are_seldons(seldon):
    prediction_pb2, _ = seldon
    theirs = {
        service.full_name: {m.name: (m.input_type.full_name, m.output_type.full_name) for m in service.methods}
        for service in prediction_pb2.DESCRIPTOR.services_by_name.values()
    }
    ours = {
        service: {name: (m.request.DESCRIPTOR.full_name, m.response.DESCRIPTOR.full_name) for name, m in methods.items()}
        for service, methods in SERVICES.items()
    }
    assert ours == theirs
    assert ours["seldon.protos.Model"]["Metadata"] == ("google.protobuf.Empty", "seldon.protos.SeldonModelMetadata")


def test_service_paths_are_what_seldons_stubs_call(seldon):
    from seldon_core.proto import prediction_pb2_grpc

    source = Path(prediction_pb2_grpc.__file__).read_text()
    paths = [m.path for methods in SERVICES.values() for m in methods.values()]
    assert len(paths) == 17
    for path in paths:
        assert f"'{path}'" in source, path


def test_seldons_grpc_stub_talks_to_a_server_built_from_the_table(seldon):
    """Over a real gRPC channel: seldon-core's stub sends its bytes, our classes read and answer."""
    import grpc
    from seldon_core.proto import prediction_pb2_grpc

    prediction_pb2, _ = seldon
    predict = SERVICES["seldon.protos.Model"]["Predict"]
    seen = []

    def handle(raw: bytes, context) -> bytes:
        request = decode(predict.request, raw)
        seen.append(message_to_dict(request))
        reply = dict_to_message({"data": {"ndarray": [[2.5]]}, "meta": {"puid": request.meta.puid}})
        return reply.SerializeToString()

    handler = grpc.method_handlers_generic_handler(
        predict.service, {predict.name: grpc.unary_unary_rpc_method_handler(handle)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = prediction_pb2_grpc.ModelStub(channel)
            request = prediction_pb2.SeldonMessage()
            request.meta.puid = "p-1"
            request.data.tensor.shape.extend([1, 2])
            request.data.tensor.values.extend([0.5, -1.0])
            reply = stub.Predict(request, timeout=10)
    finally:
        server.stop(None)
    assert seen == [{"meta": {"puid": "p-1"}, "data": {"tensor": {"shape": [1, 2], "values": [0.5, -1.0]}}}]
    assert reply.meta.puid == "p-1"
    assert reply.data.ndarray.values[0].list_value.values[0].number_value == 2.5


# -- bytes on the wire are Seldon's ----------------------------------------------------------

@EXAMPLES
@given(MESSAGE)
def test_bytes_equal_seldons_and_parse_both_ways(seldon, source):
    prediction_pb2, utils = seldon
    theirs = _seldon_parse(utils.json_to_seldon_message, source)
    ours = _ours(dict_to_message, source)
    assert (ours is None) == (theirs is None), source
    assume(ours is not None)
    assert _bytes(ours) == _bytes(theirs)
    assert ours.SerializeToString() == theirs.SerializeToString()
    _assert_read_alike(prediction_pb2.SeldonMessage, SeldonMessage, ours.SerializeToString())


@EXAMPLES
@given(FEEDBACK)
def test_feedback_bytes_equal_seldons(seldon, source):
    prediction_pb2, utils = seldon
    theirs = _seldon_parse(utils.json_to_feedback, source)
    ours = _ours(dict_to_feedback, source)
    assert (ours is None) == (theirs is None), source
    assume(ours is not None)
    assert _bytes(ours) == _bytes(theirs)
    _assert_read_alike(prediction_pb2.Feedback, Feedback, ours.SerializeToString())


@EXAMPLES
@given(st.lists(MESSAGE, max_size=3), st.text(max_size=5))
def test_other_messages_bytes_equal_seldons(seldon, messages, name):
    prediction_pb2, _ = seldon
    listed = {"seldonMessages": messages}
    theirs = prediction_pb2.SeldonMessageList()
    ours = protocol.SeldonMessageList()
    try:
        json_format.ParseDict(listed, theirs)
    except Exception:  # noqa: BLE001
        assume(False)
    json_format.ParseDict(listed, ours, descriptor_pool=protocol.POOL)
    assert _bytes(ours) == _bytes(theirs)
    inputs = [{"messagetype": "tensor", "shape": ["2", "-1"], "schema": {"names": [name]}}]
    metadata = {"name": name, "versions": [name], "inputs": inputs, "custom": {name: "x"}}
    graph = {"name": name, "models": {name: metadata}, "outputs": metadata["inputs"]}
    for cls_name, source in (("SeldonModelMetadata", metadata), ("SeldonGraphMetadata", graph)):
        theirs = json_format.ParseDict(source, getattr(prediction_pb2, cls_name)())
        ours = json_format.ParseDict(source, getattr(protocol, cls_name)(), descriptor_pool=protocol.POOL)
        assert _bytes(ours) == _bytes(theirs)


@EXAMPLES
@given(st.binary(max_size=64) | MESSAGE.map(_truncated))
def test_bytes_that_seldon_cannot_read_are_a_protocol_error(seldon, raw):
    prediction_pb2, _ = seldon
    try:
        theirs = prediction_pb2.SeldonMessage.FromString(raw)
    except Exception:  # noqa: BLE001 - the decoder raises several types
        theirs = None
    try:
        ours = decode(SeldonMessage, raw)
    except ProtocolError as error:
        assert "seldon.protos.SeldonMessage" in str(error)
        ours = None
    assert (ours is None) == (theirs is None)
    if ours is not None:
        assert ours.SerializeToString() == theirs.SerializeToString()


# -- the JSON form is Seldon's ---------------------------------------------------------------

@EXAMPLES
@given(MESSAGE | LOOSE)
def test_json_codecs_equal_seldons(seldon, source):
    _, utils = seldon
    theirs = _seldon_parse(utils.json_to_seldon_message, source)
    ours = _ours(dict_to_message, source)
    assert (ours is None) == (theirs is None), source
    assume(ours is not None)
    assert _bytes(ours) == _bytes(theirs)
    assert message_to_dict(ours) == utils.seldon_message_to_json(theirs)
    assert message_to_dict(theirs) == utils.seldon_message_to_json(theirs)  # seldon-core's classes too


@EXAMPLES
@given(FEEDBACK | st.fixed_dictionaries({}, optional={"request": LOOSE, "truth": LOOSE, "reward": JSON}))
def test_feedback_codecs_equal_seldons(seldon, source):
    _, utils = seldon
    theirs = _seldon_parse(utils.json_to_feedback, source)
    ours = _ours(dict_to_feedback, source)
    assert (ours is None) == (theirs is None), source
    assume(ours is not None)
    assert _bytes(ours) == _bytes(theirs)
    assert feedback_to_dict(ours) == utils.feedback_to_json(theirs)


def test_non_finite_numbers_are_written_as_seldon_writes_them(seldon):
    _, utils = seldon
    source = {
        "data": {"tensor": {"shape": [3], "values": ["NaN", "Infinity", 1.0]}},
        "meta": {"metrics": [{"key": "k", "value": "-Infinity"}], "tags": {"t": float("nan")}},
    }
    expected = utils.seldon_message_to_json(utils.json_to_seldon_message(source))
    assert expected["data"]["tensor"]["values"] == ["NaN", "Infinity", 1.0]
    assert message_to_dict(dict_to_message(source)) == expected


# -- without seldon-core ---------------------------------------------------------------------

COMMON = [
    {"data": {"names": ["a", "b"], "tensor": {"shape": [2, 2], "values": [1.0, 2, -3.5, 0.0]}}, "meta": {"puid": "x"}},
    {"data": {"names": ["a"], "ndarray": [[1.5, "s", True, None, {"k": [1]}]]}},
    {"data": {"ndarray": []}, "meta": {"tags": {"model": "m", "n": 2}, "routing": {"r": 1}, "requestPath": {"m": "i"}}},
    {
        "jsonData": {"x": 1, "y": [None, False]},
        "meta": {"metrics": [{"key": "c", "type": "GAUGE", "value": 2.5, "tags": {"a": "b"}}]},
    },
    {"strData": "text", "status": {"code": 400, "info": "bad", "reason": "r", "status": "FAILURE"}},
    {"data": {}, "meta": {}},
    {},
]


@pytest.mark.parametrize("source", COMMON)
def test_common_shapes_are_converted_field_by_field(source, monkeypatch):
    expected_message = json_format.ParseDict(source, SeldonMessage(), descriptor_pool=protocol.POOL)
    expected = json_format.MessageToDict(expected_message)

    def refuse(*args, **kwargs):
        raise AssertionError("the common shapes must not need json_format")

    monkeypatch.setattr(json_codec.json_format, "ParseDict", refuse)
    monkeypatch.setattr(json_codec.json_format, "MessageToDict", refuse)
    message = dict_to_message(source)
    assert message == expected_message
    assert message_to_dict(message) == expected
    feedback = dict_to_feedback({"request": source, "truth": source, "reward": 1})
    assert feedback.truth == expected_message and feedback.reward == 1.0
    assert feedback_to_dict(feedback) == {"request": expected, "truth": expected, "reward": 1.0}


def _json_format_result(source):
    try:
        return json_format.ParseDict(source, SeldonMessage(), descriptor_pool=protocol.POOL)
    except Exception:  # noqa: BLE001
        return None


@EXAMPLES
@given(MESSAGE | LOOSE)
def test_field_by_field_equals_json_format(source):
    """The fast path against the installed protobuf's own conversion (any protobuf version)."""
    expected = _json_format_result(source)
    ours = _ours(dict_to_message, source)
    assert (ours is None) == (expected is None), source
    assume(ours is not None)
    assert _bytes(ours) == _bytes(expected)
    # (not as bytes: the pure-Python decoder reads every NaN as the one canonical NaN)
    assert message_to_dict(decode(SeldonMessage, ours.SerializeToString())) == message_to_dict(ours)
    try:
        written = json_format.MessageToDict(ours, descriptor_pool=protocol.POOL)
    except (ValueError, json_format.Error):  # newer protobuf refuses to write NaN/infinity inside a Value
        assume(False)
    assert message_to_dict(ours) == written


@pytest.mark.parametrize(
    "source, words",
    [
        ([{"data": {}}], "JSON object"),
        (None, "got null"),
        ("text", "got a string"),
        ({"data": {"tensor": {"values": ["x"]}}}, "x"),
        ({"data": {"tensor": {"values": [float("nan")]}}}, "NaN"),
        ({"data": {"tensor": {"shape": [2**31]}}}, "shape"),
        ({"data": {"ndarray": 5}}, "ndarray"),
        ({"data": {"ndarray": [[1]], "tensor": {}}}, "oneof"),
        ({"data": {"ndarray": [[1]]}, "jsonData": {}}, "oneof"),
        ({"data": {"names": [1]}}, "names"),
        ({"meta": {"routing": {"a": 1.5}}}, "routing"),
        ({"meta": {"metrics": [{"key": "k", "type": "HISTOGRAM", "value": 1}]}}, "HISTOGRAM"),
        ({"meta": {"metrics": [{"value": 1e39}]}}, "value"),
        ({"meta": {"puid": 7}}, "puid"),
        ({"meta": "x"}, "meta"),
        ({"strData": "\ud800"}, "surrogate"),
        ({"binData": "a"}, "binData"),
        ({"customData": {"@type": "type.googleapis.com/no.Such"}}, "no.Such"),
        ({"unknown": 1}, "unknown"),
        ({"status": {"status": "MAYBE"}}, "MAYBE"),
    ],
)
def test_bad_dicts_say_what_is_wrong(source, words):
    with pytest.raises(ProtocolError) as raised:
        dict_to_message(source)
    assert words in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_bad_feedback_says_what_is_wrong():
    with pytest.raises(ProtocolError, match="reward"):
        dict_to_feedback({"reward": "lots"})
    with pytest.raises(ProtocolError, match="truth"):
        dict_to_feedback({"truth": {"data": {"tensor": {"values": ["x"]}}}})
    with pytest.raises(ProtocolError, match="seldon.protos.Feedback"):
        feedback_to_dict(SeldonMessage())
    with pytest.raises(ProtocolError, match="seldon.protos.SeldonMessage"):
        message_to_dict({"data": {}})


@pytest.mark.parametrize(
    "raw",
    [b"\x1a\x05\x12\x03", b"\xff" * 12, b"\x2a\x02\xc3\x28", b"\x0a", "text", None],
    ids=["truncated", "bad-varint", "bad-utf8", "truncated-tag", "str", "none"],
)
def test_bad_bytes_are_a_protocol_error(raw):
    with pytest.raises(ProtocolError, match="seldon.protos.SeldonMessage"):
        decode(SeldonMessage, raw)


def test_tftensor_is_kept_and_written():
    tensor = {"dtype": "DT_FLOAT", "tensorShape": {"dim": [{"size": "2"}]}, "floatVal": [1.5, 2.0]}
    source = {"data": {"tftensor": tensor}}
    message = dict_to_message(source)
    assert message.data.tftensor.dtype == protocol.DataType.Value("DT_FLOAT")
    assert list(message.data.tftensor.float_val) == [1.5, 2.0]
    assert message_to_dict(decode(SeldonMessage, message.SerializeToString())) == source


def test_custom_data_holds_any_message_of_the_protocol():
    source = {"customData": {"@type": "type.googleapis.com/seldon.protos.Tensor", "shape": [1], "values": [2.0]}}
    message = dict_to_message(source)
    inner = protocol.Tensor()
    assert message.customData.Unpack(inner) and list(inner.values) == [2.0]
    assert message_to_dict(message) == source
    message.customData.type_url = "type.googleapis.com/app.Own"
    with pytest.raises(ProtocolError, match="customData.*app.Own"):
        message_to_dict(message)


def test_bin_data_is_base64_both_alphabets():
    raw = bytes(range(250, 256)) + b"\x00\xfb"
    for text in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("=")):
        message = dict_to_message({"binData": text})
        assert message.binData == raw
    assert message_to_dict(message) == {"binData": base64.b64encode(raw).decode()}


def test_metric_values_are_written_as_the_shortest_float32():
    message = dict_to_message({"meta": {"metrics": [{"key": "k", "value": 0.1}, {"key": "z", "value": 0}]}})
    assert message.meta.metrics[0].value != 0.1  # a float32 is stored...
    metrics = message_to_dict(message)["meta"]["metrics"]
    assert metrics == [{"key": "k", "value": 0.1}, {"key": "z"}]  # ...and written back short
    assert math.isclose(metrics[0]["value"], message.meta.metrics[0].value, rel_tol=1e-7)


BLOCKER = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "seldon_core":
            raise ImportError("seldon_core is blocked")

sys.meta_path.insert(0, Block())
try:
    import seldon_core
except ImportError:
    pass
else:
    raise SystemExit("the blocker does not block")
import model_wrappers.protocol as p

message = p.dict_to_message({"data": {"ndarray": [[1, 2]]}, "meta": {"puid": "a"}})
assert p.decode(p.SeldonMessage, message.SerializeToString()) == message
assert p.message_to_dict(message) == {"meta": {"puid": "a"}, "data": {"ndarray": [[1.0, 2.0]]}}
assert p.SERVICES["seldon.protos.Seldon"]["Predict"].path == "/seldon.protos.Seldon/Predict"
assert not [m for m in sys.modules if m.split(".")[0] == "seldon_core"]
print("imported without seldon_core")
"""

BOTH = """
import model_wrappers.protocol as p
from seldon_core.proto import prediction_pb2
from seldon_core.utils import json_to_seldon_message

ours = p.dict_to_message({"strData": "x"})
theirs = json_to_seldon_message({"strData": "x"})
assert ours.SerializeToString() == theirs.SerializeToString()
assert type(ours) is not type(theirs)
print("both")
"""


def _run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_imports_without_seldon_core():
    done = _run(BLOCKER)
    assert done.returncode == 0, done.stderr
    assert "imported without seldon_core" in done.stdout


def test_imports_before_seldon_core_in_one_process(seldon):
    done = _run(BOTH)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "both"
