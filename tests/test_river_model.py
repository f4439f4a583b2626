"""RiverModel served by the real seldon-core-microservice, called over REST and gRPC."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import requests
from river import evaluate, metrics
from seldon_core.proto import prediction_pb2, prediction_pb2_grpc
from seldon_core.utils import json_to_feedback, json_to_seldon_message

from support import (
    PHISHING_FEATURES,
    SERVERS,
    as_dict,
    truth,
    export_regressor,
    model_service,
    phishing_pipeline,
    phishing_stream,
    rows_payload,
    seldon_client,
)

X = dict(next(phishing_stream(1))[0])
ROW = [X[f] for f in PHISHING_FEATURES]


@pytest.fixture(params=SERVERS)
def served(request, services, phishing_folder, tmp_path):
    """The model behind each server: the project's own and Seldon's seldon-core-microservice."""
    return model_service(services, phishing_folder, tmp_path, f"sqlite:///{tmp_path}/state.db",
                         server=request.param)


def p_true(reply: dict) -> float:
    data = reply["data"]
    values = data["ndarray"] if "ndarray" in data else data["tensor"]["values"]
    row = values[0] if isinstance(values[0], list) else values
    return row[data["names"].index("True")]


def grpc_stub(service):
    return prediction_pb2_grpc.SeldonStub(grpc.insecure_channel(f"127.0.0.1:{service.grpc}"))


@pytest.mark.parametrize("transport", ["rest", "grpc"])
@pytest.mark.parametrize("payload_type", ["ndarray", "tensor"])
def test_feedback_with_truth_moves_predictions_toward_it(served, transport, payload_type):
    client = seldon_client(served, transport)
    x = np.array([ROW])
    first = client.predict(data=x, names=PHISHING_FEATURES, payload_type=payload_type)
    assert first.success, first.msg
    before = p_true(as_dict(first.response))
    assert first.response.meta.puid
    for i in range(5):
        # Five feedbacks about one prediction: each names itself, or the log learns it once.
        response = type(first.response)()
        response.CopyFrom(first.response)
        response.meta.tags["seldon_river_feedback_id"].string_value = f"feedback-{i}"
        fb = client.feedback(prediction_request=first.request, prediction_response=response,
                             reward=0.0, prediction_truth=truth([True]))
        assert fb.success, fb.msg
    after = client.predict(data=x, names=PHISHING_FEATURES, payload_type=payload_type)
    assert p_true(as_dict(after.response)) > before
    assert served.status()["metrics"]["learned"] == 5.0


def test_json_data_predict_and_feedback(served):
    reply = served.predict({"jsonData": X}).json()
    before = reply["jsonData"][0]["False"]
    for _ in range(5):
        ack = served.feedback({"request": {"jsonData": [X]}, "truth": {"jsonData": [False]}})
        assert ack.status_code == 200, ack.text
    after = served.predict({"jsonData": [X, X]}).json()
    assert len(after["jsonData"]) == 2
    assert after["jsonData"][0]["False"] > before


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_label_only_feedback_joins_on_the_puid(served, transport):
    client = seldon_client(served, transport)
    first = client.predict(data=np.array([ROW]), names=PHISHING_FEATURES)
    before = p_true(as_dict(first.response))
    puid = first.response.meta.puid
    # Only the response's puid and the truth: no features in the feedback.
    response_only = {"meta": {"puid": puid}, "data": {"ndarray": []}}
    for _ in range(5):
        if transport == "rest":
            ack = served.feedback({"response": response_only, "truth": {"data": {"ndarray": [[True]]}}})
            assert ack.status_code == 200, ack.text
        else:
            grpc_stub(served).SendFeedback(json_to_feedback(
                {"response": response_only, "truth": {"data": {"ndarray": [[True]]}}}))
    after = client.predict(data=np.array([ROW]), names=PHISHING_FEATURES)
    assert p_true(as_dict(after.response)) > before


def test_puid_from_seldon_header_is_returned_and_joins(served):
    """In a cluster the orchestrator passes the request id only as the Seldon-Puid header."""
    reply = served.predict(rows_payload([X], PHISHING_FEATURES), headers={"Seldon-Puid": "abc123"}).json()
    assert reply["meta"]["puid"] == "abc123"
    before = p_true(reply)
    ack = served.feedback({"truth": {"data": {"ndarray": [[True]]}}}, headers={"Seldon-Puid": "abc123"})
    assert ack.status_code == 200, ack.text
    assert p_true(served.predict(rows_payload([X], PHISHING_FEATURES)).json()) > before


def test_unknown_puid_is_refused(served):
    ack = served.feedback({"response": {"meta": {"puid": "never-seen"}}, "truth": {"data": {"ndarray": [[1]]}}})
    assert ack.status_code == 404
    assert "never-seen" in ack.json()["status"]["info"]


BAD_PREDICTIONS = {
    "wrong width": ({"data": {"ndarray": [[1.0, 2.0]]}}, "expected 9 columns"),
    "unknown feature": (
        {"data": {"names": PHISHING_FEATURES[:-1] + ["colour"], "ndarray": [ROW]}}, "unknown features ['colour']"),
    "missing feature": ({"jsonData": {k: v for k, v in X.items() if k != "https"}}, "missing features ['https']"),
    "non-numeric": ({"data": {"ndarray": [ROW[:-1] + ["yes"]]}}, "expected a number, got 'yes'"),
    "empty batch": ({"data": {"ndarray": []}}, "empty batch"),
    "no data": ({"strData": "hello"}, "expected data.ndarray, data.tensor or jsonData; got strData"),
}


@pytest.mark.parametrize("case", sorted(BAD_PREDICTIONS))
def test_bad_predict_input_is_a_clear_400_over_rest_and_invalid_argument_over_grpc(served, case):
    body, message = BAD_PREDICTIONS[case]
    reply = served.predict(body)
    assert reply.status_code == 400
    assert message in reply.json()["status"]["info"]
    with pytest.raises(grpc.RpcError) as err:
        grpc_stub(served).Predict(json_to_seldon_message(body))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()


def test_nan_is_refused(served):
    body = '{"data": {"ndarray": [[NaN, 0, 0, 0, 0, 0, 0, 0, 0]]}}'
    reply = requests.post(f"{served.rest_url}/api/v1.0/predictions", data=body,
                          headers={"Content-Type": "application/json"}, timeout=10)
    assert reply.status_code == 400
    assert "expected a finite number, got nan" in reply.json()["status"]["info"]


BAD_FEEDBACK = {
    "no truth": ({"request": rows_payload([X], PHISHING_FEATURES)}, "feedback has no truth"),
    "reward only": ({"request": rows_payload([X], PHISHING_FEATURES), "reward": 1.0}, "rewards are for the BanditRouter"),
    "truth length": (
        {"request": rows_payload([X, X], PHISHING_FEATURES), "truth": {"data": {"ndarray": [[True]]}}},
        "truth has 1 values but the feedback has 2 rows"),
    "unknown class": (
        {"request": rows_payload([X], PHISHING_FEATURES), "truth": {"jsonData": ["maybe"]}}, "unknown class 'maybe'"),
    "bad features": ({"request": {"data": {"ndarray": [[1.0]]}}, "truth": {"jsonData": [True]}}, "expected 9 columns"),
    "no features, no puid": ({"truth": {"jsonData": [True]}}, "neither request features nor a prediction id"),
    "second row invalid": (
        {"request": {"data": {"ndarray": [ROW, ROW[:-1] + [None]]}}, "truth": {"jsonData": [True, False]}},
        "row 1, feature 'ip_in_url': missing value"),
}


@pytest.mark.parametrize("case", sorted(BAD_FEEDBACK))
def test_bad_feedback_is_refused_and_learns_nothing(served, case):
    body, message = BAD_FEEDBACK[case]
    probe = rows_payload([X], PHISHING_FEATURES)
    before = served.predict(probe).json()["data"]["ndarray"]
    reply = served.feedback(body)
    assert reply.status_code == 400, reply.text
    assert message in reply.json()["status"]["info"]
    with pytest.raises(grpc.RpcError) as err:
        grpc_stub(served).SendFeedback(json_to_feedback(body))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()
    # Bit-identical: nothing of the batch was learned, not even its valid rows.
    assert served.predict(probe).json()["data"]["ndarray"] == before
    assert served.status()["replica"]["position"] == 0


def test_progressive_metrics_equal_river_progressive_val_score(served):
    stream = list(phishing_stream(300))
    client = seldon_client(served, "rest")
    for i, (x, y) in enumerate(stream):
        pred = client.predict(data=np.array([[x[f] for f in PHISHING_FEATURES]]), names=PHISHING_FEATURES)
        assert pred.success, pred.msg
        if i % 2:  # half the labels arrive label-only, joined by puid
            body = {"response": {"meta": {"puid": pred.response.meta.puid}}, "truth": {"jsonData": [y]}}
            assert served.feedback(body).status_code == 200
        else:
            fb = client.feedback(prediction_request=pred.request, prediction_response=pred.response,
                                 reward=0.0, prediction_truth=truth([y]))
            assert fb.success, fb.msg
    published = served.status()["metrics"]
    for metric, key in [(metrics.Accuracy(), "accuracy"), (metrics.CrossEntropy(), "cross_entropy"),
                        (metrics.MacroF1(), "macro_f1")]:
        expected = evaluate.progressive_val_score(stream, phishing_pipeline(), metric).get()
        assert published[key] == pytest.approx(expected, rel=1e-12), key
    prometheus = served.prometheus()
    assert "seldon_river_accuracy" in prometheus
    assert f"{published['accuracy']}"[:6] in prometheus


def test_regressor_learns_and_reports_mae(services, tmp_path):
    folder = export_regressor(tmp_path / "reg")
    served = model_service(services, folder, tmp_path, f"sqlite:///{tmp_path}/state.db")
    probe = {"data": {"names": ["x1", "x2"], "ndarray": [[1.0, 2.0]]}}
    before = served.predict(probe).json()["data"]["ndarray"][0][0]
    for _ in range(20):
        ack = served.feedback({"request": probe, "truth": {"data": {"tensor": {"shape": [1], "values": [10.0]}}}})
        assert ack.status_code == 200, ack.text
    after = served.predict(probe).json()
    assert after["data"]["names"] == ["prediction"]
    assert abs(after["data"]["ndarray"][0][0] - 10.0) < abs(before - 10.0)
    assert served.status()["metrics"]["mae"] > 0
    bad = served.feedback({"request": probe, "truth": {"jsonData": ["ten"]}})
    assert bad.status_code == 400 and "needs a finite number" in bad.json()["status"]["info"]


def test_metadata_describes_the_model(served):
    meta = requests.get(f"{served.rest_url}/api/v1.0/metadata", timeout=10).json()
    assert meta["name"] == "phishing"
    assert meta["inputs"][0]["schema"]["names"] == PHISHING_FEATURES
    assert meta["custom"]["task"] == "classifier"
