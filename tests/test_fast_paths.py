"""The shortcuts taken for speed give the same results as the long way round."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from river import tree
from seldon_core.metrics import SeldonMetrics

from model_wrappers import seldon_metrics
from model_wrappers.learning.model import MANY_FROM, ModelState
from model_wrappers.log.sqlite import SQLiteLog
from model_wrappers.server.metrics import SHARE_EVERY
from support import PHISHING_FEATURES, model_service, phishing_pipeline, phishing_stream, rows_payload, seldon_client, wait_until

UPDATES = [
    ([{"type": "COUNTER", "key": "calls", "value": 1}], "predict"),
    ([{"type": "GAUGE", "key": "accuracy", "value": 0.5}, {"type": "TIMER", "key": "took", "value": 12.5}], "predict"),
    ([{"type": "COUNTER", "key": "calls", "value": 2, "tags": {"arm": "a"}}], "feedback"),
    ([{"type": "GAUGE", "key": "accuracy", "value": 0.75}, {"type": "TIMER", "key": "took", "value": 3.0}], "predict"),
    ([{"type": "COUNTER", "key": "calls", "value": 1}], "predict"),
]


def test_one_round_trip_metrics_store_what_the_wrapper_stores():
    assert seldon_metrics.install()
    theirs, ours = SeldonMetrics(), SeldonMetrics()
    for metrics, method in UPDATES:
        seldon_metrics.original_update(theirs, [dict(m) for m in metrics], method)
        SeldonMetrics.update(ours, [dict(m) for m in metrics], method)
    assert dict(ours.data) == dict(theirs.data)
    assert list(ours.data) == [os.getpid()]
    exposed = sorted(ours.generate_metrics()[0].splitlines())
    assert exposed == sorted(theirs.generate_metrics()[0].splitlines())


def test_nothing_to_record_touches_no_shared_store():
    assert seldon_metrics.install()
    metrics = SeldonMetrics()

    class Untouchable(dict):
        def __getattribute__(self, name):
            raise AssertionError(f"the shared metrics store was used ({name})")

    metrics.data = Untouchable()
    SeldonMetrics.update(metrics, [], "predict")  # would raise on any access


def test_records_of_another_process_are_found_before_they_are_written(tmp_path):
    # Two logs on one file stand for two processes: the second recalls a record the first
    # still holds in memory (written a few milliseconds later by its background thread).
    writer = SQLiteLog(tmp_path / "state.db", "model")
    reader = SQLiteLog(tmp_path / "state.db", "model")
    writer.remember("puid-1", b'[{"x": 1.0}]')
    assert writer.recall("puid-1") == b'[{"x": 1.0}]'
    assert reader.recall("puid-1") == b'[{"x": 1.0}]'
    assert reader.recall("never-made") is None
    writer.close()
    assert SQLiteLog(tmp_path / "state.db", "model").recall("puid-1") == b'[{"x": 1.0}]'


def test_unwritable_records_do_not_fail_predictions(tmp_path, caplog):
    log = SQLiteLog(tmp_path / "state.db", "model")
    log._records.close()  # every later write of records fails
    log.remember("puid-1", b"[]")  # answered at once; the failure is the flusher's to report
    log._writer.flush()
    assert "prediction records not written" in caplog.text


def states(pipeline, learn: int):
    state = ModelState(pipeline, "classifier", [False, True])
    stream = list(phishing_stream(learn + 200))
    for x, y in stream[:learn]:
        state.apply({"type": "learn", "rows": [x], "truth": [y]})
    return state, [x for x, _ in stream[learn:]]


@pytest.mark.parametrize("make", [phishing_pipeline, tree.HoeffdingTreeClassifier], ids=["linear", "tree"])
def test_batch_predictions_equal_row_by_row(make):
    state, rows = states(make(), 300)
    reference = state.pipeline
    expected = [[reference.predict_proba_one(x).get(c, 0.0) for c in (False, True)] for x in rows[:MANY_FROM + 8]]
    batch = rows[:MANY_FROM + 8]
    columns = list(batch[0])
    table = [[x[c] for c in columns] for x in batch]
    answers = []
    for _ in range(2):  # the first batch checks the batch path, the second uses it when it agreed
        names, values = state.predict_table(columns, table)
        got = [[row[names.index("False")], row[names.index("True")]] for row in values]
        assert sum(got, []) == pytest.approx(sum(expected, []), abs=1e-9)
        answers.append(values)
    assert state._many is (make is phishing_pipeline)
    assert answers[0] == answers[1]  # the checking batch is answered the way later ones are


def test_every_worker_reports_the_learned_figures(services, phishing_folder, tmp_path):
    # Predictions repeat the gauges only when they changed: after a feedback served by one
    # worker, the next predictions of every worker must publish the new figures.
    service = model_service(services, phishing_folder, tmp_path, f"sqlite:///{tmp_path}/state.db", workers=2)
    rows = [x for x, _ in phishing_stream(5)]
    for _ in range(10):
        assert service.predict(rows_payload(rows[:1], PHISHING_FEATURES)).status_code == 200
    body = rows_payload(rows, PHISHING_FEATURES)
    feedback = {"request": body, "truth": {"data": {"ndarray": [[True]] * len(rows)}}}
    assert service.feedback(feedback).status_code == 200

    def learned():
        return [line for line in service.prometheus().splitlines()
                if line.startswith("seldon_river_learned{") and 'method="predict"' in line]

    # Each gRPC call opens its own connection, which SO_REUSEPORT hands to either worker; keep
    # predicting until both have answered since they learned (a worker sees the others' figures
    # as they were up to ~100 ms ago).
    client = seldon_client(service, "grpc")
    grpc_rows = np.array([[rows[0][name] for name in PHISHING_FEATURES]])

    def both_published():
        client.predict(data=grpc_rows, names=PHISHING_FEATURES)
        found = learned()
        return len(found) == 2 and all(line.endswith(" 5.0") for line in found)

    try:
        wait_until(both_published, 30, "every worker's learned gauge")
    except TimeoutError:
        pass
    # Once no call changes them, every worker's files are current after a few share rounds, and
    # any worker answering the scrape must then show both series at the learned figure.
    time.sleep(SHARE_EVERY * 5)
    for _ in range(6):
        found = learned()
        assert len(found) == 2, found  # one series per worker
        assert all(line.endswith(" 5.0") for line in found), found


def in_process_model(tmp_path, features, pipeline):
    from model_wrappers import RiverModel
    from model_wrappers.artifact import export_model

    folder = tmp_path / "model"
    export_model(pipeline, folder, task="regressor", features=features)
    model = RiverModel(model_uri=str(folder), state_uri=f"sqlite:///{tmp_path}/state.db")
    model.load()
    return model


@pytest.mark.parametrize("request_body", [
    {"data": {"names": ["x", "y"], "ndarray": [[1.0, 2.0], [3.0, 4.0]]}},  # numbers: kept as a table
    {"jsonData": [{"x": 1.0, "y": 2.0}, {"x": 3.0, "y": 2.5}]},
    {"data": {"names": ["y", "x"], "ndarray": [[2.0, 1.0], [4.0, 3.0]]}},  # columns in another order
], ids=["table", "json", "reordered"])
def test_label_only_feedback_finds_the_rows_of_any_request(tmp_path, request_body):
    from river import linear_model
    from seldon_core.utils import json_to_feedback

    model = in_process_model(tmp_path, ["x", "y"], linear_model.LinearRegression())
    reply = model.predict_raw(request_body)
    feedback = json_to_feedback({"response": {"meta": {"puid": reply["meta"]["puid"]}},
                                 "truth": {"data": {"ndarray": [[1.0], [2.0]]}}})
    model.send_feedback_raw(feedback)
    events = model.replica.log.read(0)
    assert len(events) == 1
    learned = json.loads(events[0][1])
    rows = {tuple(sorted(r.items())) for r in learned["rows"]}
    expected = {tuple(sorted(r.items())) for r in model.schema.read(request_body).rows}
    assert rows == expected and len(learned["rows"]) == 2


def test_a_number_beyond_any_float_is_refused_not_crashed(tmp_path):
    from river import linear_model

    from model_wrappers.errors import InvalidInput

    model = in_process_model(tmp_path, ["x", "y"], linear_model.LinearRegression())
    with pytest.raises(InvalidInput, match="finite number"):
        model.schema.read({"data": {"ndarray": [[10 ** 400, 1.0]]}})


@pytest.mark.parametrize("with_array", [True, False])
def test_a_large_table_is_given_as_an_array_only_to_who_asks(with_array):
    from model_wrappers.errors import InvalidInput
    from model_wrappers.payload import ARRAY_FROM, Feature, Schema

    schema = Schema([Feature("x"), Feature("y")])
    table = [[float(i), i] for i in range(ARRAY_FROM)]
    batch = schema.read({"data": {"names": ["y", "x"], "ndarray": [[b, a] for a, b in table]}}, with_array)
    assert batch.table == table
    if with_array:
        assert batch.array.tolist() == table
    else:
        assert batch.array is None
    assert schema.read({"data": {"ndarray": table[:ARRAY_FROM - 1]}}, with_array).array is None
    for bad in (float("inf"), float("nan"), 10 ** 400):
        with pytest.raises(InvalidInput, match="row 3, feature 'y'"):
            schema.read({"data": {"ndarray": table[:3] + [[1.0, bad]] + table[4:]}}, with_array)


MESSAGES = [
    {"data": {"names": ["a", "b"], "ndarray": [[1.0, 2.5], [3.0, -4.0]]}},
    {"data": {"ndarray": [["x", True, None, 1.5], [{"k": [1.0, "v"]}, [], "y", False]]}, "meta": {"puid": "p"}},
    {"data": {"names": ["a"], "tensor": {"shape": [2, 1], "values": [0.5, 1.5]}},
     "meta": {"tags": {"t": 1.0, "s": "x"}, "routing": {"router": 1}}},
    {"jsonData": {"a": 1.0, "b": ["x"]}},
    {"meta": {"puid": "only-meta"}},
    {"strData": "text"},
    {"data": {"ndarray": [1.0, 2.0]}, "status": {"code": 200, "status": "SUCCESS"}},
]


@pytest.mark.parametrize("message", MESSAGES)
def test_protobuf_messages_read_as_the_wrapper_reads_them(message):
    from seldon_core.utils import json_to_seldon_message, seldon_message_to_json

    from model_wrappers import payload

    proto = json_to_seldon_message(message)
    assert payload.to_dict(proto) == seldon_message_to_json(proto)


def test_feedback_reads_as_protobuf_json():
    from google.protobuf import json_format
    from seldon_core.utils import json_to_feedback

    from model_wrappers import payload

    for request, response in zip(MESSAGES, MESSAGES[1:] + MESSAGES[:1]):
        body = {"request": request, "response": response, "truth": {"data": {"ndarray": [[1.0]]}}, "reward": 0.5}
        feedback = json_to_feedback(body)
        assert payload.feedback_to_dict(feedback) == json_format.MessageToDict(feedback)
    assert payload.feedback_to_dict(json_to_feedback({})) == {}


REPLIES = [
    {"data": {"names": ["a", "b"], "tensor": {"shape": [1, 2], "values": [0.25, 0.75]}},
     "meta": {"puid": "p", "tags": {"pos": 3, "model": "m", "flag": True, "nested": {"k": [1, "x"]}},
              "metrics": [{"type": "GAUGE", "key": "g", "value": 0.5}, {"type": "GAUGE", "key": "zero", "value": 0}]}},
    {"data": {"names": ["a"], "ndarray": [[1.0], [2.0]]}, "meta": {"tags": {"t": "x"}}},
    {"jsonData": [{"a": 1.0}], "meta": {"metrics": [{"key": "c", "value": 2}]}},
    {"data": {"ndarray": []}, "meta": {"routing": {"router": 1}, "puid": "q"}},
    {"meta": {"tags": {"t": 1}}},
    {"data": {"tensor": {"shape": [2], "values": [1.0, 2.0]}}},
    {"data": {"ndarray": []}, "meta": {}},
]


@pytest.mark.parametrize("message", REPLIES)
def test_replies_built_field_by_field_equal_protobuf_parsing(message):
    from seldon_core.utils import json_to_seldon_message

    from model_wrappers import payload

    sendable = dict(message)
    if "metrics" in message.get("meta", {}):
        sendable["meta"] = {**message["meta"], "metrics": [m for m in message["meta"]["metrics"] if m["value"] != 0]}
    ours, seldons = payload.to_proto(message), json_to_seldon_message(sendable)
    # The project's message class, not seldon-core's: the same content and the same bytes.
    assert type(ours).FromString(seldons.SerializeToString()) == ours
    assert ours.SerializeToString(deterministic=True) == seldons.SerializeToString(deterministic=True)
