"""Generated bad input against every component, over REST and gRPC: never a 5xx, never a hang,
never a change to what was learned.

Each component is started once per test through the ``services`` fixture (whichever server it
runs) and sent a bounded number of generated cases (hypothesis: ``FUZZ_EXAMPLES`` per strategy,
``REQUEST_TIMEOUT`` seconds per call):

- arbitrary JSON built from Seldon's field names and awkward values (NaN, huge integers,
  lone surrogates, wrong types), raw bytes, and valid messages with one part replaced;
- over gRPC, the same messages as protobuf, random bytes and valid bytes cut or flipped.

Every answer must be 2xx or a 4xx whose message says what was wrong (gRPC: OK or a client-error
code with details); after every refused call that could learn, the log position must be the one
before it, and when nothing was accepted the predictions for a fixed probe must be unchanged.
"""

from __future__ import annotations

import copy
import json
import os

import grpc
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model_wrappers import protocol
from model_wrappers.keyed_artifact import export_keyed
from model_wrappers.synthetic import FEATURES, candidates
from support import SERVERS, export_regressor

FUZZ_EXAMPLES = int(os.environ.get("SELDON_RIVER_FUZZ_EXAMPLES", "60"))
REQUEST_TIMEOUT = 15.0
REST_OK = {200}
REST_REFUSED = {400, 404, 405, 413, 415, 422}
GRPC_REFUSED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED}
UNIT = "fuzzed"
KEY = "product_id"

# -- generated values --------------------------------------------------------------------------
FIELD_NAMES = ["data", "ndarray", "tensor", "shape", "values", "names", "jsonData", "strData", "binData",
               "customData", "meta", "puid", "tags", "routing", "metrics", "request", "response", "truth",
               "reward", "status", "x1", "x2", KEY, UNIT, "seldon_river_feedback_id"]
AWKWARD_TEXT = ["", "\ud800", "a\udfffb", "x" * 600, "0", "true", "NaN", "\x00", "é", "🙂"]
scalars = (
    st.none() | st.booleans()
    | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(AWKWARD_TEXT) | st.text(max_size=6)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=4), inner, max_size=4),
    max_leaves=16,
)

# Request ids as the orchestrator passes them (a header, gRPC metadata: printable ASCII).
request_ids = st.none() | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=700)


def deep(levels: int, opening: str = "[", closing: str = "]") -> str:
    return opening * levels + "1" + closing * levels


# Inputs the issue tracker and earlier fuzzing found, sent to every endpoint first.
KNOWN_BAD_TEXT = [
    '{"data": {"tensor": {"shape": [1000000000, 1], "values": []}}}',
    '{"data": {"names": ["a", "b", "c"], "ndarray": [[0.1, 0.2, 0.3]]}, "meta": [1]}',
    '{"data": {"ndarray": [[1, 2]]}, "meta": {"puid": "\\ud800"}}',
    '{"data": {"ndarray": [[1, 2]]}, "meta": {"tags": ' + deep(600) + '}}',
    '{"data": {"ndarray": ' + deep(5000) + '}}',
    deep(100_000),
    '{"data": {"ndarray": [[NaN, Infinity]]}}',
    '{"request": 1, "truth": {"data": {"ndarray": [[1]]}}}',
    '{"truth": 1.5}',
    '{"response": {"meta": {"routing": {"' + UNIT + '": 1}}}, "reward": 1.5}',
    '{"request": {"data": {"tensor": {"shape": [1000000000, 1], "values": []}}},'
    ' "response": {"meta": {"routing": {"' + UNIT + '": 1}}}, "reward": 1}',
    '{"response": {"meta": {"puid": "\\ud800"}}, "truth": {"data": {"ndarray": [[1]]}}}',
    '{"response": {"meta": {"tags": {"seldon_river_feedback_id": ["x"]}}}, "truth": {"data": {"ndarray": [[1]]}}}',
    '[1, 2]', '"text"', '17', 'null', '{}', '{"data": null}', '{"jsonData": [1, 2]}',
]
KNOWN_BAD_BYTES = [b"", b"\xff\xfe\x00", b"{", b'{"data": {"ndarray": [[1e999]]}}', b"\x80" * 64]


# -- the components ----------------------------------------------------------------------------
def keyed_folder(folder):
    export_keyed(folder, templates=candidates(), features=FEATURES, key_feature=KEY, name="m5", min_observations=2)
    return folder


def keyed_row(value: float = 1.0) -> dict:
    return {KEY: "p1", **{f: value for f in FEATURES}}


COMPONENTS = {
    "model": dict(
        class_path="model_wrappers.RiverModel", service_type="MODEL",
        parameters=lambda tmp: {"model_uri": str(export_regressor(tmp / "model"))},
        learn="/send-feedback", serve="/predict", grpc_serve="/seldon.protos.Model/Predict",
        request={"data": {"names": ["x1", "x2"], "ndarray": [[1.0, 2.0]]}},
        feedback={"request": {"data": {"names": ["x1", "x2"], "ndarray": [[1.0, 2.0]]}},
                  "truth": {"data": {"ndarray": [[3.0]]}}},
    ),
    "keyed": dict(
        class_path="model_wrappers.KeyedRiverModel", service_type="MODEL",
        parameters=lambda tmp: {"model_uri": str(keyed_folder(tmp / "keyed"))},
        learn="/send-feedback", serve="/predict", grpc_serve="/seldon.protos.Model/Predict",
        request={"jsonData": [keyed_row()]},
        feedback={"request": {"jsonData": [keyed_row()]}, "truth": {"jsonData": [2.0]}},
    ),
    "router": dict(
        class_path="model_wrappers.BanditRouter", service_type="ROUTER",
        parameters=lambda tmp: {"n_arms": 2, "seed": 1},
        learn="/send-feedback", serve="/route", grpc_serve="/seldon.protos.Router/Route",
        request={"data": {"ndarray": [[1.0, 2.0]]}},
        feedback={"request": {"data": {"ndarray": [[1.0, 2.0]]}},
                  "response": {"meta": {"routing": {UNIT: 1}}}, "reward": 1.0},
    ),
    "detector": dict(
        class_path="model_wrappers.OutlierDetector", service_type="TRANSFORMER",
        parameters=lambda tmp: {"warm_up": 20, "n_trees": 5, "seed": 1},
        learn="/transform-input", serve="/transform-input", grpc_serve="/seldon.protos.Transformer/TransformInput",
        request={"data": {"names": ["a", "b"], "ndarray": [[0.1, 0.2]]}},
        feedback={"request": {"data": {"names": ["a", "b"], "ndarray": [[0.1, 0.2]]}}, "reward": 1.0},
    ),
}


@pytest.fixture(params=[(name, server) for name in sorted(COMPONENTS) for server in SERVERS],
                ids=lambda p: "-".join(p))
def component(request, services, tmp_path):
    """Each component on each server: the project's own, and Seldon's seldon-core-microservice."""
    name, server = request.param
    spec = COMPONENTS[name]
    parameters = {"state_uri": f"sqlite:///{tmp_path}/state.db", **spec["parameters"](tmp_path)}
    service = services.start(spec["class_path"], spec["service_type"], parameters, tmp_path,
                             env={"PREDICTIVE_UNIT_ID": UNIT}, name=name, server=server)
    return Fuzzed(service, spec)


class Fuzzed:
    """One running component and what is checked after each generated call."""

    def __init__(self, service, spec: dict):
        self.service = service
        self.spec = spec
        self.channel = grpc.insecure_channel(f"127.0.0.1:{service.grpc}")
        self.accepted = 0
        self.calls = 0
        self.learned = self.state()
        self.position = self.learned[0]

    def current_position(self) -> int:
        return self.service.status()["replica"]["position"]

    def state(self):
        """The log position, the published figures and (where serving learns nothing) a probe's answer."""
        status = self.service.status()
        probe = None
        if self.spec["learn"] != self.spec["serve"]:
            reply = requests.post(f"{self.service.rest_url}{self.spec['serve']}", json=self.spec["request"],
                                  timeout=REQUEST_TIMEOUT)
            assert reply.status_code == 200, reply.text
            body = reply.json()
            probe = body.get("data"), body.get("jsonData")
        # Keys a keyed model holds in memory follow the predictions it served, not what it learned.
        figures = {k: v for k, v in (status.get("metrics") or {}).items() if k != "keys_loaded"}
        return status["replica"]["position"], figures, status.get("arms"), probe

    def learns(self, path: str) -> bool:
        """Whether a call of ``path`` (REST or gRPC) may change the learned state."""
        if path.endswith(("/send-feedback", "/SendFeedback")):
            return True
        return self.spec["learn"] == self.spec["serve"] and path in (self.spec["serve"], self.spec["grpc_serve"])

    def after(self, status_ok: bool, path: str, what: str) -> None:
        """Check the learned state after one call: moved only if the call was accepted."""
        if not self.learns(path):
            return
        position = self.current_position()
        if status_ok:
            self.accepted += int(position != self.position)
            self.position = position
            return
        assert position == self.position, f"a refused call changed the log ({self.position} -> {position}): {what}"

    # -- REST --------------------------------------------------------------------------------
    def rest(self, path: str, body: bytes, puid: str | None = None) -> None:
        what = f"POST {path} {body[:300]!r} Seldon-Puid {puid!r}"
        self.calls += 1
        headers = {"Content-Type": "application/json", **({"Seldon-Puid": puid} if puid is not None else {})}
        try:
            reply = requests.post(f"{self.service.rest_url}{path}", data=body, headers=headers,
                                  timeout=REQUEST_TIMEOUT)
        except requests.Timeout:
            pytest.fail(f"no answer within {REQUEST_TIMEOUT} s: {what}")
        assert reply.status_code in REST_OK | REST_REFUSED, f"HTTP {reply.status_code} {reply.text[:500]}: {what}"
        if reply.status_code != 200:
            info = (reply.json().get("status") or {}).get("info")
            assert isinstance(info, str) and info, f"a refusal without a message: {reply.text[:300]}: {what}"
        self.after(reply.status_code == 200, path, what)

    # -- gRPC --------------------------------------------------------------------------------
    def grpc(self, path: str, body: bytes, puid: str | None = None) -> None:
        what = f"gRPC {path} {body[:300]!r} seldon-puid {puid!r}"
        self.calls += 1
        call = self.channel.unary_unary(path, request_serializer=None, response_deserializer=None)
        try:
            call(body, timeout=REQUEST_TIMEOUT, metadata=[("seldon-puid", puid)] if puid is not None else None)
            ok = True
        except grpc.RpcError as error:
            assert error.code() != grpc.StatusCode.DEADLINE_EXCEEDED, f"no answer within {REQUEST_TIMEOUT} s: {what}"
            assert error.code() in GRPC_REFUSED, f"{error.code()} {error.details()}: {what}"
            assert error.details(), f"a refusal without a message: {what}"
            ok = False
        self.after(ok, path, what)

    def finish(self, node) -> None:
        node.user_properties.append(("fuzz_cases", self.calls))  # how many calls were checked (--junitxml)
        assert self.calls >= FUZZ_EXAMPLES, self.calls
        if self.accepted == 0:
            assert self.state() == self.learned, "the learned state changed though every learning call was refused"
        self.channel.close()


def text(value) -> bytes:
    return json.dumps(value).encode()


def replaced(template: dict, path: list, value):
    """``template`` with the part at ``path`` (keys or list indexes, as far as they go) replaced."""
    out = copy.deepcopy(template)
    node = out
    for i, key in enumerate(path):
        if isinstance(node, dict) and node:
            key = sorted(node)[key % len(node)]
        elif isinstance(node, list) and node:
            key = key % len(node)
        else:
            break
        if i == len(path) - 1 or not isinstance(node[key], (dict, list)):
            node[key] = value
            return out
        node = node[key]
    return value if node is out else out


def as_proto(kind, message) -> bytes | None:
    """``message`` as protobuf bytes of ``kind``, if protobuf's JSON parser takes it."""
    from google.protobuf import json_format

    try:
        return json_format.ParseDict(message, kind()).SerializeToString()
    except Exception:  # noqa: BLE001 - what protobuf cannot represent is sent over REST only
        return None


FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# -- the tests ---------------------------------------------------------------------------------
def test_rest_refuses_bad_input_without_a_5xx_or_a_change(component, request):
    spec = component.spec
    paths = sorted({spec["serve"], spec["learn"], "/send-feedback"})
    templates = {spec["serve"]: spec["request"], spec["learn"]: spec["request"], "/send-feedback": spec["feedback"]}
    for path in paths:
        for case in KNOWN_BAD_TEXT:
            component.rest(path, case.encode())
        for case in KNOWN_BAD_BYTES:
            component.rest(path, case)

    @FUZZ
    @given(path=st.sampled_from(paths), value=json_values)
    def arbitrary(path, value):
        component.rest(path, text(value))

    @FUZZ
    @given(path=st.sampled_from(paths), where=st.lists(st.integers(0, 7), min_size=1, max_size=5), value=json_values,
           puid=request_ids)
    def mutated(path, where, value, puid):
        component.rest(path, text(replaced(templates[path], where, value)), puid)

    @FUZZ
    @given(path=st.sampled_from(paths), body=st.binary(max_size=80))
    def raw(path, body):
        component.rest(path, body)

    arbitrary()
    mutated()
    raw()
    component.finish(request.node)


def test_grpc_refuses_bad_input_without_internal_errors_or_a_change(component, request):
    spec = component.spec
    serve, feedback = spec["grpc_serve"], "/seldon.protos.Model/SendFeedback"
    valid = {serve: as_proto(protocol.SeldonMessage, spec["request"]),
             feedback: as_proto(protocol.Feedback, spec["feedback"])}
    kinds = {serve: protocol.SeldonMessage, feedback: protocol.Feedback}
    for path in valid:
        for case in KNOWN_BAD_BYTES:
            component.grpc(path, case)
        for case in KNOWN_BAD_TEXT:
            try:
                parsed = json.loads(case)
            except (ValueError, RecursionError):
                continue
            encoded = as_proto(kinds[path], parsed) if isinstance(parsed, dict) else None
            if encoded is not None:
                component.grpc(path, encoded)

    @FUZZ
    @given(path=st.sampled_from(sorted(valid)), where=st.lists(st.integers(0, 7), min_size=1, max_size=5),
           value=json_values, puid=request_ids)
    def mutated(path, where, value, puid):
        template = spec["request"] if path == serve else spec["feedback"]
        encoded = as_proto(kinds[path], replaced(template, where, value))
        if encoded is not None:
            component.grpc(path, encoded, puid)

    @FUZZ
    @given(path=st.sampled_from(sorted(valid)), body=st.binary(max_size=80))
    def raw(path, body):
        component.grpc(path, body)

    @FUZZ
    @given(path=st.sampled_from(sorted(valid)), cut=st.integers(0, 200), flip=st.integers(0, 200),
           bit=st.integers(0, 7))
    def damaged(path, cut, flip, bit):
        data = bytearray(valid[path])
        if data:
            data[flip % len(data)] ^= 1 << bit
        component.grpc(path, bytes(data[: max(1, len(data) - cut % len(data))]))

    mutated()
    raw()
    damaged()
    component.finish(request.node)
