"""One corpus of calls sent to a component under both servers, in this order, by tests/test_conformance.py.

Each component below is started twice, once under the project's ``seldon-river-microservice``
and once under Seldon's ``seldon-core-microservice`` 1.17.1, each with its own learning log;
both get the same calls in the same order, so both learn the same things. Every reply (HTTP
status and body, or gRPC status code and reply message) must be the same on both once the ids
are normalised (generated puids, worker ids, timings: see the test), except for the calls
listed in :data:`DIFFERENCES`, where each server's answer is the one recorded there.

A call is a :class:`Rest` or a :class:`Grpc`. Request ids are fixed (``Seldon-Puid`` headers,
``seldon-puid`` metadata) so that label-only feedback can name the prediction it labels.
"""

from __future__ import annotations

import dataclasses
from typing import Any

UNIT = "conformed"  # PREDICTIVE_UNIT_ID: the router's entry in meta.routing

# The environment both servers run with. Seldon's wrapper 1.17.1 leaves the custom metrics in
# every reply's meta.metrics unless told not to; the project's server takes them out unless told
# to keep them (a recorded difference of defaults, see DEFAULTS). Both are told the same here, so
# that the replies compare.
SETTINGS = {"INCLUDE_METRICS_IN_CLIENT_RESPONSE": "false"}


@dataclasses.dataclass(frozen=True)
class Rest:
    """One REST call.

    ``send`` is how the message travels: ``json`` (body with Content-Type application/json),
    ``bare`` (the same body without Content-Type), ``form`` (form field ``json=``), ``query``
    (GET with ``?json=``) or ``raw`` (``text`` sent as the body, with Content-Type JSON).
    """

    name: str
    path: str
    body: Any = None
    send: str = "json"
    text: str | None = None
    method: str = "POST"
    puid: str | None = None
    query: str = ""


@dataclasses.dataclass(frozen=True)
class Grpc:
    """One gRPC call: ``body`` as protobuf of ``kind`` (``SeldonMessage`` or ``Feedback``), or ``raw`` bytes."""

    name: str
    rpc: str
    body: Any = None
    kind: str = "SeldonMessage"
    raw: bytes | None = None
    puid: str | None = None


def deep(levels: int) -> str:
    return "[" * levels + "1" + "]" * levels


def _common_bad(path: str, good: dict) -> list[Rest]:
    """Bad bodies every component refuses the same way, on its serving ``path``."""
    return [
        Rest("bad JSON", path, send="raw", text='{"data": {"ndarray": [[1, 2]]'),
        Rest("empty body", path, send="raw", text=""),
        Rest("not an object", path, send="raw", text="[1, 2]"),
        Rest("JSON null", path, send="raw", text="null"),
        Rest("data null", path, {"data": None}),
        Rest("ndarray null", path, {"data": {"ndarray": None}}),
        Rest("ndarray not a list", path, {"data": {"ndarray": "1,2"}}),
        Rest("deep nesting", path, send="raw", text='{"data": {"ndarray": ' + deep(5000) + "}}"),
        Rest("nesting past the recursion limit", path, send="raw", text=deep(100_000)),
        Rest("NaN", path, send="raw", text='{"data": {"ndarray": [[NaN, 1]]}}'),
        Rest("meta not an object", path, {**good, "meta": [1]}),
        Rest("puid not text", path, {**good, "meta": {"puid": 5}}),
        Rest("tensor shape too large", path, {"data": {"tensor": {"shape": [1000000000, 1], "values": []}}}),
        Rest("tensor shape mismatch", path, {"data": {"tensor": {"shape": [2, 2], "values": [1.0, 2.0]}}}),
        Rest("strData", path, {"strData": "hello"}),
        Rest("binData", path, {"binData": "aGVsbG8="}),
    ]


def _bad_feedback(path: str) -> list[Rest]:
    return [
        Rest("feedback bad JSON", path, send="raw", text='{"truth": '),
        Rest("feedback a list", path, [1, 2]),
        Rest("feedback a number", path, send="raw", text="17"),
        Rest("feedback truth a number", path, {"truth": 1.5}),
        Rest("feedback request a number", path, {"request": 1, "truth": {"data": {"ndarray": [[1]]}}}),
        Rest("feedback unknown field", path, {"verdict": 1, "truth": {"data": {"ndarray": [[1]]}}}),
    ]


def _probes() -> list[Rest]:
    return [
        Rest("ping", "/health/ping", method="GET"),
        Rest("status", "/health/status", method="GET"),
        Rest("metadata", "/metadata", method="GET"),
    ]


# A body without a JSON Content-Type is sent to the model only: the other two learn (or draw a
# random number) from every call they accept, and this one call is answered differently (see
# DIFFERENCES), so both servers would no longer see the same sequence.

# -- RiverModel (MODEL), a regressor on x1, x2 ----------------------------------------------------
ROW = {"x1": 1.0, "x2": 2.0}
NDARRAY = {"data": {"names": ["x1", "x2"], "ndarray": [[1.0, 2.0]]}}
TRUTH = {"data": {"ndarray": [[3.0]]}}


def _feedback_id(text: str) -> dict:
    return {"meta": {"tags": {"seldon_river_feedback_id": text}}}


MODEL = [
    *_probes(),
    Rest("unknown path", "/no-such-path", method="GET"),
    Rest("ndarray with names", "/predict", NDARRAY),
    Rest("ndarray without names", "/api/v1.0/predictions", {"data": {"ndarray": [[1.0, 2.0], [3.0, 4.0]]}}),
    Rest("tensor", "/predict", {"data": {"names": ["x1", "x2"], "tensor": {"shape": [1, 2], "values": [1.0, 2.0]}}}),
    Rest("tftensor", "/predict", {"data": {"tftensor": {"dtype": "DT_FLOAT", "tensorShape": {"dim": [{"size": "1"}, {"size": "2"}]},
                                                        "floatVal": [1.0, 2.0]}}}),
    Rest("jsonData object", "/predict", {"jsonData": ROW}),
    Rest("jsonData list", "/api/v1.0/predictions", {"jsonData": [ROW, {"x1": 0.0, "x2": 0.0}]}),
    Rest("no Content-Type", "/predict", NDARRAY, send="bare"),
    Rest("form json=", "/predict", NDARRAY, send="form"),
    Rest("query json=", "/predict", NDARRAY, send="query"),
    Rest("Seldon-Puid header", "/predict", NDARRAY, puid="conform-1"),
    Rest("meta.puid in the body", "/predict", {**NDARRAY, "meta": {"puid": "conform-2"}}),
    Rest("unknown top-level field", "/predict", {**NDARRAY, "colour": "red"}),
    Rest("wrong width", "/predict", {"data": {"ndarray": [[1.0, 2.0, 3.0]]}}),
    Rest("unknown feature", "/predict", {"data": {"names": ["x1", "colour"], "ndarray": [[1.0, 2.0]]}}),
    Rest("missing feature", "/predict", {"jsonData": {"x1": 1.0}}),
    Rest("null value", "/predict", {"data": {"names": ["x1", "x2"], "ndarray": [[1.0, None]]}}),
    Rest("text value", "/predict", {"data": {"names": ["x1", "x2"], "ndarray": [[1.0, "two"]]}}),
    Rest("empty batch", "/predict", {"data": {"ndarray": []}}),
    *_common_bad("/predict", NDARRAY),
    Rest("route on a model", "/route", NDARRAY),
    Rest("transform-input on a model", "/transform-input", NDARRAY),
    # Feedback: with truth, the same id twice, reward only, label-only by body puid and by header.
    Rest("feedback with truth", "/send-feedback", {"request": NDARRAY, "truth": TRUTH, "response": _feedback_id("fb-1")}),
    Rest("feedback repeated id", "/api/v1.0/feedback", {"request": NDARRAY, "truth": TRUTH, "response": _feedback_id("fb-1")}),
    Rest("feedback tensor truth", "/send-feedback",
         {"request": NDARRAY, "truth": {"data": {"tensor": {"shape": [1], "values": [3.0]}}}, "response": _feedback_id("fb-2")}),
    Rest("feedback jsonData truth", "/send-feedback",
         {"request": {"jsonData": [ROW]}, "truth": {"jsonData": [3.0]}, "response": _feedback_id("fb-3")}),
    Rest("feedback reward only", "/send-feedback", {"request": NDARRAY, "reward": 1.0}),
    Rest("feedback no truth", "/send-feedback", {"request": NDARRAY}),
    Rest("feedback text truth", "/send-feedback", {"request": NDARRAY, "truth": {"jsonData": ["ten"]}}),
    Rest("feedback truth length", "/send-feedback", {"request": {"data": {"ndarray": [[1.0, 2.0], [1.0, 2.0]]}}, "truth": TRUTH}),
    Rest("label-only by response puid", "/api/v1.0/feedback", {"response": {"meta": {"puid": "conform-1"}}, "truth": TRUTH}),
    Rest("label-only by header", "/send-feedback", {"truth": TRUTH}, puid="conform-2"),
    Rest("label-only unknown puid", "/send-feedback", {"response": {"meta": {"puid": "never-seen"}}, "truth": TRUTH}),
    Rest("label-only no puid", "/send-feedback", {"truth": TRUTH}),
    *_bad_feedback("/send-feedback"),
    Rest("prediction after learning", "/predict", NDARRAY),
    Rest("status after learning", "/health/status", method="GET"),
    # gRPC: the same kinds of call.
    Grpc("grpc ndarray", "/seldon.protos.Model/Predict", NDARRAY),
    Grpc("grpc tensor", "/seldon.protos.Model/Predict",
         {"data": {"names": ["x1", "x2"], "tensor": {"shape": [1, 2], "values": [1.0, 2.0]}}}),
    Grpc("grpc jsonData", "/seldon.protos.Model/Predict", {"jsonData": ROW}),
    Grpc("grpc puid metadata", "/seldon.protos.Seldon/Predict", NDARRAY, puid="conform-3"),
    Grpc("grpc strData", "/seldon.protos.Model/Predict", {"strData": "hello"}),
    Grpc("grpc wrong width", "/seldon.protos.Model/Predict", {"data": {"ndarray": [[1.0, 2.0, 3.0]]}}),
    Grpc("grpc undecodable", "/seldon.protos.Model/Predict", raw=b"\xff\xfe\x00"),
    Grpc("grpc feedback with truth", "/seldon.protos.Model/SendFeedback",
         {"request": NDARRAY, "truth": TRUTH, "response": _feedback_id("fb-4")}, kind="Feedback"),
    Grpc("grpc feedback repeated id", "/seldon.protos.Seldon/SendFeedback",
         {"request": NDARRAY, "truth": TRUTH, "response": _feedback_id("fb-4")}, kind="Feedback"),
    Grpc("grpc label-only by metadata", "/seldon.protos.Model/SendFeedback", {"truth": TRUTH}, kind="Feedback",
         puid="conform-3"),
    Grpc("grpc feedback reward only", "/seldon.protos.Model/SendFeedback", {"request": NDARRAY, "reward": 1.0},
         kind="Feedback"),
    Grpc("grpc feedback undecodable", "/seldon.protos.Model/SendFeedback", kind="Feedback", raw=b"\x80" * 16),
    Grpc("grpc metadata", "/seldon.protos.Model/Metadata", {}),
    Rest("status at the end", "/health/status", method="GET"),
]

# -- BanditRouter (ROUTER), two arms ----------------------------------------------------------
ROUTE = {"data": {"ndarray": [[1.0, 2.0]]}}


def _reward(arm: int, reward: Any, tag: str | None = None) -> dict:
    meta: dict = {"routing": {UNIT: arm}}
    if tag:
        meta["tags"] = {"seldon_river_feedback_id": tag}
    return {"request": ROUTE, "response": {"meta": meta}, "reward": reward}


ROUTER = [
    *_probes(),
    Rest("route ndarray", "/route", ROUTE),
    Rest("route tensor", "/route", {"data": {"tensor": {"shape": [1, 2], "values": [1.0, 2.0]}}}),
    Rest("route jsonData", "/route", {"jsonData": {"a": 1}}),
    Rest("route strData", "/route", {"strData": "hello"}),
    Rest("route form json=", "/route", ROUTE, send="form"),
    Rest("route query json=", "/route", ROUTE, send="query"),
    Rest("route Seldon-Puid header", "/route", ROUTE, puid="route-1"),
    *_common_bad("/route", ROUTE),
    Rest("predict on a router", "/predict", ROUTE),
    Rest("reward", "/send-feedback", _reward(1, 1.0, "r-1")),
    Rest("reward repeated id", "/api/v1.0/feedback", _reward(1, 1.0, "r-1")),
    Rest("reward zero", "/send-feedback", _reward(0, 0.0, "r-2")),
    Rest("reward with truth", "/send-feedback", {**_reward(0, 1.0, "r-3"), "truth": {"data": {"ndarray": [[1]]}}}),
    Rest("reward out of range", "/send-feedback", _reward(1, 1.5)),
    Rest("reward unknown arm", "/send-feedback", _reward(7, 1.0)),
    Rest("reward no routing", "/send-feedback", {"request": ROUTE, "reward": 1.0}),
    Rest("reward routing for another unit", "/send-feedback",
         {"request": ROUTE, "response": {"meta": {"routing": {"other": 1}}}, "reward": 1.0}),
    Rest("truth only", "/send-feedback", {"request": ROUTE, "response": {"meta": {"routing": {UNIT: 1}}},
                                          "truth": {"data": {"ndarray": [[1]]}}}),
    *_bad_feedback("/send-feedback"),
    Rest("status after rewards", "/health/status", method="GET"),
    Grpc("grpc route", "/seldon.protos.Router/Route", ROUTE),
    Grpc("grpc route puid metadata", "/seldon.protos.Router/Route", ROUTE, puid="route-2"),
    Grpc("grpc route undecodable", "/seldon.protos.Router/Route", raw=b"\xff\xfe\x00"),
    Grpc("grpc reward", "/seldon.protos.Model/SendFeedback", _reward(1, 1.0, "r-4"), kind="Feedback"),
    Grpc("grpc reward repeated id", "/seldon.protos.Router/SendFeedback", _reward(1, 1.0, "r-4"), kind="Feedback"),
    Grpc("grpc reward out of range", "/seldon.protos.Model/SendFeedback", _reward(1, 2.0), kind="Feedback"),
    Grpc("grpc metadata", "/seldon.protos.Model/Metadata", {}),
    Rest("status at the end", "/health/status", method="GET"),
]

# -- OutlierDetector (TRANSFORMER): every transform-input also learns ----------------------------
POINT = {"data": {"names": ["a", "b"], "ndarray": [[0.1, 0.2]]}}

DETECTOR = [
    *_probes(),
    Rest("transform ndarray", "/transform-input", POINT),
    Rest("transform ndarray without names", "/transform-input", {"data": {"ndarray": [[0.1, 0.2], [0.3, 0.1]]}}),
    Rest("transform tensor", "/transform-input",
         {"data": {"names": ["a", "b"], "tensor": {"shape": [1, 2], "values": [0.1, 0.2]}}}),
    Rest("transform jsonData", "/transform-input", {"jsonData": {"a": 0.1, "b": 0.2}}),
    Rest("transform form json=", "/transform-input", POINT, send="form"),
    Rest("transform query json=", "/transform-input", POINT, send="query"),
    Rest("transform Seldon-Puid header", "/transform-input", POINT, puid="detect-1"),
    Rest("transform text value", "/transform-input", {"data": {"names": ["a", "b"], "ndarray": [[0.1, "x"]]}}),
    Rest("transform null value", "/transform-input", {"data": {"names": ["a", "b"], "ndarray": [[0.1, None]]}}),
    *_common_bad("/transform-input", POINT),
    Rest("predict on a transformer", "/predict", POINT),
    Rest("feedback to a detector", "/send-feedback", {"request": POINT, "reward": 1.0}),
    Rest("feedback reward out of range", "/send-feedback", {"request": POINT, "reward": 3.0}),
    *_bad_feedback("/send-feedback"),
    Rest("status after transforms", "/health/status", method="GET"),
    Grpc("grpc transform", "/seldon.protos.Transformer/TransformInput", POINT),
    Grpc("grpc transform jsonData", "/seldon.protos.Transformer/TransformInput", {"jsonData": {"a": 0.1, "b": 0.2}}),
    Grpc("grpc transform text value", "/seldon.protos.Transformer/TransformInput",
         {"data": {"names": ["a", "b"], "ndarray": [[0.1, "x"]]}}),
    Grpc("grpc transform undecodable", "/seldon.protos.Transformer/TransformInput", raw=b"\xff\xfe\x00"),
    Grpc("grpc feedback", "/seldon.protos.Model/SendFeedback", {"request": POINT, "reward": 1.0}, kind="Feedback"),
    Grpc("grpc metadata", "/seldon.protos.Model/Metadata", {}),
    Rest("status at the end", "/health/status", method="GET"),
]

# -- KeyedRiverModel (MODEL): one model per product_id -----------------------------------------
KEY = "product_id"
KEYED_FEATURES = ("wday", "price", "discount", "event", "snap", "lag_7", "mean_7", "mean_28")


def keyed_row(key: str, value: float = 1.0) -> dict:
    return {KEY: key, **{f: value for f in KEYED_FEATURES}}


KEYED = [
    *_probes(),
    Rest("keyed predict", "/predict", {"jsonData": [keyed_row("p1")]}, puid="keyed-1"),
    Rest("keyed predict two keys", "/predict", {"jsonData": [keyed_row("p1"), keyed_row("p2", 2.0)]}),
    Rest("keyed ndarray with names", "/predict",
         {"data": {"names": [KEY, *KEYED_FEATURES], "ndarray": [["p1", *[1.0] * len(KEYED_FEATURES)]]}}),
    Rest("keyed missing key", "/predict", {"jsonData": [{f: 1.0 for f in KEYED_FEATURES}]}),
    Rest("keyed key not text", "/predict", {"jsonData": [{**keyed_row("p1"), KEY: [1]}]}),
    Rest("keyed feedback", "/send-feedback",
         {"request": {"jsonData": [keyed_row("p1")]}, "truth": {"jsonData": [2.0]}, "response": _feedback_id("k-1")}),
    Rest("keyed feedback repeated id", "/send-feedback",
         {"request": {"jsonData": [keyed_row("p1")]}, "truth": {"jsonData": [2.0]}, "response": _feedback_id("k-1")}),
    Rest("keyed label-only", "/send-feedback", {"response": {"meta": {"puid": "keyed-1"}}, "truth": {"jsonData": [2.0]}}),
    Rest("keyed reward only", "/send-feedback", {"request": {"jsonData": [keyed_row("p1")]}, "reward": 1.0}),
    Rest("keyed status of a key", "/health/status", method="GET", query="key=p1"),
    Grpc("grpc keyed predict", "/seldon.protos.Model/Predict", {"jsonData": [keyed_row("p2")]}),
    Grpc("grpc keyed missing key", "/seldon.protos.Model/Predict", {"jsonData": [{f: 1.0 for f in KEYED_FEATURES}]}),
    Rest("status at the end", "/health/status", method="GET"),
]

CORPUS = {"model": MODEL, "router": ROUTER, "detector": DETECTOR, "keyed": KEYED}



def _refusal(info: str, reason: str = "MICROSERVICE_BAD_DATA", status: int = 400) -> dict:
    return {"status": status, "body": {"status": {"status": 1, "info": info, "code": -1, "reason": reason}}}


# Calls the two servers answer differently on purpose: (component, call name) -> what each
# server answers and why. "seldon-core" is the stock wrapper's answer, recorded exactly; an
# entry here is checked on both sides, so a change on either shows up.
NOT_FOUND = ("The requested URL was not found on the server. If you entered the URL manually please check "
             "your spelling and try again.")
DIFFERENCES: dict[tuple[str, str], dict] = {
    ("model", "unknown path"): {
        "why": "the project's 404 names the path; the wrapper's is Flask's generic page text",
        "seldon-river": _refusal("no such path /no-such-path: see the Seldon v1 component API", status=404),
        "seldon-core": _refusal(NOT_FOUND, status=404),
    },
    ("model", "no Content-Type"): {
        "why": "a JSON body is read whatever its Content-Type (curl -d sends a form type); the wrapper "
               "reads JSON only under a JSON Content-Type",
        "seldon-river": {"status": 200, "body": {"data": {"names": ["prediction"], "ndarray": [[0.0]]}, "meta": {
            "puid": "<generated>", "tags": {"seldon_river_model": "linear", "seldon_river_position": 0,
                                            "seldon_river_drift_detections": 0,
                                            "seldon_river_drift_warning": False}}}},
        "seldon-core": _refusal("Can't find JSON in data"),
    },
    ("model", "route on a model"): {
        "why": "both refuse with 400; the project's message says which class lacks which method",
        "seldon-river": _refusal("RiverModel (MODEL) does not serve route"),
        "seldon-core": _refusal("Route not defined"),
    },
    ("model", "transform-input on a model"): {
        "why": "a class without the hook passes the message through unchanged; the wrapper renames "
               "its columns t:0.. and adds a NOT_IMPLEMENTED requestPath",
        "seldon-river": {"status": 200, "body": {"data": {"names": ["x1", "x2"], "ndarray": [[1.0, 2.0]]}}},
        "seldon-core": {"status": 200, "body": {"data": {"names": ["t:0", "t:1"], "ndarray": [[1.0, 2.0]]},
                                                "meta": {"requestPath": {UNIT: "NOT_IMPLEMENTED:NOT_IMPLEMENTED"}}}},
    },
    ("router", "predict on a router"): {
        "why": "a method the class does not serve is refused with 400; the wrapper answers an empty "
               "200, which a client takes for a prediction",
        "seldon-river": _refusal("BanditRouter (ROUTER) does not serve predict"),
        "seldon-core": {"status": 200, "body": {"data": {"names": [], "ndarray": []},
                                                "meta": {"requestPath": {UNIT: "NOT_IMPLEMENTED:NOT_IMPLEMENTED"}}}},
    },
}

# Defaults that differ, each checked by tests/test_conformance.py with both servers left to it.
DEFAULTS = {
    "INCLUDE_METRICS_IN_CLIENT_RESPONSE": {
        "why": "custom metrics go to Prometheus, not to every client: the project's server takes them "
               "out of replies unless told to keep them; the wrapper 1.17.1 keeps them unless told not to",
        "seldon-river": False,  # whether a prediction's reply carries meta.metrics
        "seldon-core": True,
    },
}
