"""Drift on the error stream, champions and challengers, replay and promote.

A planted concept change (tests/drift_streams.py) is fed as feedback through several RiverModel
replicas sharing one learning log: the detector must flag it within a bounded number of rows, at
the same rows on every replica (and on one restored from a checkpoint), and the configured
reaction must happen.
"""

from __future__ import annotations

import json

import pytest

from support import as_dict
from drift_streams import CHANGE, FEATURES, agrawal_change, export_champion_and_challenger
from model_wrappers.artifact import ArtifactError, export_model
from model_wrappers.cli import main as cli
from model_wrappers.learning.drift import DriftSettings, DriftWatch
from model_wrappers.protocol import dict_to_feedback
from model_wrappers.river_model import RiverModel

ROWS = 1200
BATCH = 50
DETECTED_WITHIN = 200  # rows after the change


def served(folder, state_uri, **params) -> RiverModel:
    model = RiverModel(model_uri=str(folder), state_uri=state_uri, checkpoint_every=7, **params)
    model.load()
    return model


def feed(replicas: list[RiverModel], rows: list, batch: int = BATCH) -> None:
    """Feedback in batches, each sent to the next replica in turn, every one acknowledged."""
    for i in range(0, len(rows), batch):
        part = rows[i:i + batch]
        reply = replicas[(i // batch) % len(replicas)].send_feedback_raw(dict_to_feedback({
            "request": {"data": {"names": FEATURES, "ndarray": [[x[n] for n in FEATURES] for x, _ in part]}},
            "truth": {"data": {"ndarray": [[y] for _, y in part]}},
        }))
        assert as_dict(reply)["meta"]["tags"]["seldon_river_position"] > 0, reply


def learned(model: RiverModel) -> dict:
    status = model.status()
    return {k: status.get(k) for k in ("metrics", "drift", "challengers")}


@pytest.fixture
def folder(tmp_path):
    return export_champion_and_challenger(tmp_path / "nb")


def test_planted_change_is_flagged_and_the_challenger_takes_over_on_every_replica(folder, tmp_path):
    uri = f"sqlite:///{tmp_path / 'state.db'}"
    params = dict(drift_reaction="challenger", challengers="challengers/hat", promote_after=0)
    a, b = served(folder, uri, **params), served(folder, uri, **params)
    feed([a, b], agrawal_change(ROWS))

    first = learned(a)
    assert learned(b) == first
    late = served(folder, uri, **params)  # restored from a checkpoint, then the tail replayed
    assert late.replica.restored_from > 0
    assert learned(late) == first

    drift = first["drift"]
    assert drift["detector"] == "DDM" and drift["reaction"] == "challenger"
    detections = [e for e in drift["events"] if e["kind"] == "drift"]
    assert detections, drift
    assert CHANGE < detections[0]["learned"] <= CHANGE + DETECTED_WITHIN, detections
    assert not [e for e in detections if e["learned"] <= CHANGE], "flagged drift before the change"
    promoted = [e for e in drift["events"] if e["kind"] == "promote"]
    assert promoted and promoted[0]["learned"] == detections[0]["learned"] + 100, drift["events"]

    champions = first["challengers"]
    assert champions["champion"] == "hat" and list(champions["candidates"]) == ["nb"], champions
    assert champions["champion_recent_error"] < champions["candidates"]["nb"]["recent_error"], champions
    assert first["metrics"]["drift_detections"] == len(detections) or first["metrics"]["drift_detections"] >= 1
    assert first["metrics"]["promotions"] == 1.0

    # Replies say who serves and how much drift was seen.
    x = agrawal_change(1)[0][0]
    reply = a.predict_raw({"data": {"names": FEATURES, "ndarray": [[x[n] for n in FEATURES]]}})
    assert reply["meta"]["tags"]["seldon_river_champion"] == "hat"
    assert reply["meta"]["tags"]["seldon_river_drift_detections"] == drift["detections"]
    gauges = {m["key"]: m["value"] for m in reply["meta"]["metrics"] or []}
    assert gauges.get("seldon_river_drift_detections") == float(drift["detections"]), reply["meta"]


def test_alert_only_counts_and_changes_nothing(folder, tmp_path):
    uri = f"sqlite:///{tmp_path / 'state.db'}"
    a = served(folder, uri, challengers="challengers/hat", promote_after=0)
    feed([a], agrawal_change(ROWS))
    status = a.status()
    assert status["drift"]["reaction"] == "alert" and status["drift"]["detections"] >= 1
    assert status["challengers"]["champion"] == "nb" and status["challengers"]["promotions"] == 0
    assert not [e for e in status["drift"]["events"] if e["kind"] in ("promote", "reset")]


def test_reset_reaction_restarts_the_champion_from_the_folder(folder, tmp_path):
    uri = f"sqlite:///{tmp_path / 'state.db'}"
    alert = served(folder, f"sqlite:///{tmp_path / 'alert.db'}")
    reset = served(folder, uri, drift_reaction="reset")
    rows = agrawal_change(ROWS)
    feed([alert], rows)
    feed([reset], rows)
    events = reset.status()["drift"]["events"]
    resets = [e for e in events if e["kind"] == "reset"]
    assert resets and CHANGE < resets[0]["learned"] <= CHANGE + DETECTED_WITHIN, events
    # Restarted on the new concept only, it serves the rows after the change better than the
    # champion that still carries the old one.
    assert reset.status()["metrics"]["accuracy"] > alert.status()["metrics"]["accuracy"]
    assert served(folder, uri, drift_reaction="reset").status()["drift"] == reset.status()["drift"]


def test_rule_promotes_a_clearly_better_challenger_without_drift(folder, tmp_path):
    uri = f"sqlite:///{tmp_path / 'state.db'}"
    a = served(folder, uri, drift_detector="none", challengers="challengers/hat", promote_after=300,
               promote_window=200)
    feed([a], agrawal_change(ROWS))
    status = a.status()
    assert "drift" not in status and "drift_detections" not in status["metrics"]
    changes = status["challengers"]["changes"]
    assert status["challengers"]["champion"] == "hat" and changes[0]["kind"] == "promote", changes
    assert changes[0]["learned"] >= 300 and "by rule" in changes[0]["detail"], changes


def test_promote_command_is_an_event_every_replica_applies(folder, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'state.db'}"
    params = dict(challengers="challengers/hat", promote_after=0)
    a, b = served(folder, uri, **params), served(folder, uri, **params)
    feed([a], agrawal_change(200))
    options = ["--option", "challengers=challengers/hat", "--option", "promote_after=0"]
    head = a.replica.log.head()

    assert cli(["promote", "nobody", "--model", str(folder), "--state", uri, *options]) == 1
    assert "no challenger named 'nobody'" in capsys.readouterr().err
    assert a.replica.log.head() == head  # refused: nothing logged

    assert cli(["promote", "hat", "--model", str(folder), "--state", uri, *options]) == 0
    assert "hat serves" in capsys.readouterr().out
    for replica in (a, b):
        status = replica.status()["challengers"]
        assert status["champion"] == "hat" and status["changes"][-1]["detail"].startswith("hat serves by command")
    assert a.replica.log.head() == head + 1

    # Without the options the component was given, the log named is another (empty) one.
    assert cli(["promote", "hat", "--model", str(folder), "--state", uri]) == 1
    assert "it has no challengers" in capsys.readouterr().err


def test_replay_scores_candidates_beside_what_served(folder, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'state.db'}"
    a = RiverModel(model_uri=str(folder), state_uri=uri, checkpoint_every=100_000)
    a.load()
    rows = agrawal_change(800)
    feed([a], rows)
    candidate = tmp_path / "candidate"
    from drift_streams import challenger_pipeline

    export_model(challenger_pipeline(), candidate, task="classifier", features=FEATURES, classes=[0, 1],
                 name="tree")
    assert cli(["replay", "--model", str(folder), "--state", uri, "--candidate", str(candidate), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["rows"] == 800 and result["first_position"] == 1
    assert result["served"] == a.status()["metrics"]  # the log is whole: what served, exactly

    # The candidate's figures are river's own progressive validation on the same rows.
    from river import metrics

    model, accuracy = challenger_pipeline(), metrics.Accuracy()
    for x, y in rows:
        proba = model.predict_proba_one(x)
        if proba:
            accuracy.update(y, max(proba, key=proba.get))
        model.learn_one(x, y)
    assert result["candidates"]["tree"]["accuracy"] == pytest.approx(accuracy.get(), abs=1e-12)
    assert result["candidates"]["tree"]["learned"] == 800.0

    assert cli(["replay", "--model", str(folder), "--state", uri, "--candidate", str(candidate)]) == 0
    table = capsys.readouterr().out
    assert "served (now nb)" in table and "tree" in table and "800" in table


@pytest.mark.parametrize("params, message", [
    ({"drift_detector": "nope"}, "unknown drift detector 'nope'"),
    ({"drift_options": "[1]"}, "drift_options must be a JSON object"),
    ({"drift_options": "{bad"}, "drift_options must be a JSON object"),
    ({"drift_detector": "DDM", "drift_options": '{"delta": 1}'}, "DDM takes no option ['delta']"),
    ({"drift_reaction": "panic"}, "drift_reaction must be one of"),
    ({"drift_reaction": "challenger"}, "drift_reaction challenger needs challengers"),
    ({"challengers": "missing"}, "challenger missing"),
    ({"challengers": "challengers/hat", "promote_margin": "2"}, "promote_margin must be a fraction"),
    ({"challengers": "challengers/hat", "drift_trial": "900"}, "drift_trial must be from 1 up to promote_window"),
    ({"promote_after": "soon"}, "model parameters"),
])
def test_bad_drift_and_challenger_parameters_are_refused_when_loading(folder, tmp_path, params, message):
    with pytest.raises((ArtifactError, ValueError)) as caught:
        served(folder, f"sqlite:///{tmp_path / 'state.db'}", **params)
    assert message in str(caught.value)


def test_a_challenger_must_take_the_same_features_and_task(folder, tmp_path):
    from river import linear_model

    export_model(linear_model.LogisticRegression(), folder / "challengers" / "other", task="classifier",
                 features=["salary"], name="other")
    export_model(linear_model.LinearRegression(), folder / "challengers" / "reg", task="regressor",
                 features=FEATURES, name="reg")
    uri = f"sqlite:///{tmp_path / 'state.db'}"
    with pytest.raises(ArtifactError, match="a challenger must learn from the same rows"):
        served(folder, uri, challengers="challengers/other")
    with pytest.raises(ArtifactError, match="is a regressor, but the model it challenges is a classifier"):
        served(folder, uri, challengers="challengers/reg")


def test_binary_detectors_only_watch_classifiers():
    with pytest.raises(ValueError, match="only a classifier has"):
        DriftSettings.for_task("regressor", "HDDM_W")
    assert DriftSettings.for_task("regressor", "page-hinkley").detector == "PageHinkley"
    assert DriftSettings.for_task("classifier", "hddma").detector == "HDDM_A"
    assert DriftSettings.for_task("regressor", "none") is None


@pytest.mark.parametrize("detector", ["ADWIN", "PageHinkley", "KSWIN"])
def test_a_rise_of_a_regressors_error_is_drift_and_a_fall_is_not(detector):
    import random

    rises, falls = (DriftWatch(DriftSettings.for_task("regressor", detector)) for _ in range(2))
    noise = random.Random(3)
    for i in range(3000):
        e = abs(noise.gauss(0, 1))
        rises.update(e * (1 if i < 1500 else 4), i + 1, i + 1)
        falls.update(e * (4 if i < 1500 else 1), i + 1, i + 1)
    flagged = [e["learned"] for e in rises.history if e["kind"] == "drift"]
    assert [at for at in flagged if 1500 < at <= 1800], rises.status()
    if detector != "KSWIN":  # KSWIN samples its windows and flags either way: false alarms happen
        assert flagged[0] > 1500, rises.status()
        assert not [e for e in falls.history if e["kind"] == "drift" and e["learned"] > 1500], falls.status()


# -- keyed mode: a detector per key -----------------------------------------------------------
def keyed_model(folder, state_uri, **params):
    from model_wrappers.keyed_model import KeyedRiverModel

    model = KeyedRiverModel(model_uri=str(folder), state_uri=state_uri, checkpoint_every=5, **params)
    model.load()
    return model


def test_each_key_watches_its_own_errors_for_drift_on_every_replica(tmp_path):
    """Two products; the sales of one jump tenfold at day 300: only that key flags drift."""
    import random

    from model_wrappers.keyed_artifact import export_keyed
    from model_wrappers.synthetic import FEATURES as SALES_FEATURES, candidates

    folder = tmp_path / "m5"
    export_keyed(folder, templates=candidates(), features=list(SALES_FEATURES), key_feature="product_id",
                 name="m5", min_observations=4)
    uri = f"sqlite:///{tmp_path / 'state.db'}"
    a, b = (keyed_model(folder, uri, drift_detector="PageHinkley") for _ in range(2))
    noise = random.Random(5)
    names = ["product_id", *SALES_FEATURES]
    for day in range(500):
        batch = []
        for key in ("steady", "jumps"):
            x = {f: float(noise.randint(0, 3)) for f in SALES_FEATURES}
            level = 30.0 if key == "jumps" and day >= 300 else 3.0
            batch.append(([key, *[x[f] for f in SALES_FEATURES]], level + noise.random()))
        (a if day % 2 else b).send_feedback_raw(dict_to_feedback({
            "request": {"data": {"names": names, "ndarray": [r for r, _ in batch]}},
            "truth": {"data": {"ndarray": [[y] for _, y in batch]}}}))

    figures = a.status()["metrics"]
    assert figures["keys_with_drift"] == 1.0 and figures["drift_detections"] >= 1, figures
    keys = a.key_figures(["steady", "jumps"])["keys"]
    assert keys["steady"]["drift"]["detections"] == 0, keys["steady"]
    assert 300 < keys["jumps"]["drift"]["last_detection"] <= 400, keys["jumps"]
    assert b.key_figures(["steady", "jumps"])["keys"] == keys
    restored = keyed_model(folder, uri, drift_detector="PageHinkley")
    assert restored.replica.restored_from > 0
    assert restored.key_figures(["steady", "jumps"])["keys"] == keys
    assert a.status()["keyed"]["drift"] == {"detector": "PageHinkley", "options": "{}"}
    # Unwatched (the default), the same folder keeps its own log, and no key carries drift figures.
    plain = keyed_model(folder, uri)
    assert plain.replica.log.name != a.replica.log.name and "drift_detections" not in plain.status()["metrics"]
    with pytest.raises(RuntimeError, match="DDM watches 0/1 errors"):
        keyed_model(folder, uri, drift_detector="DDM")


def test_an_anomaly_detector_watches_its_scores_for_a_shift_of_the_data():
    """No truth is needed: the score stream moves when the data does."""
    import random

    from river import anomaly

    from model_wrappers.learning.model import ModelState

    state = ModelState(anomaly.HalfSpaceTrees(seed=1, window_size=50), "anomaly",
                       drift=DriftSettings.for_task("anomaly"))
    noise = random.Random(2)
    for i in range(2000):
        low = 0.0 if i < 1000 else 0.7
        state.apply({"type": "learn", "rows": [{"a": low + 0.3 * noise.random(), "b": low + 0.3 * noise.random()}],
                     "truth": None}, i + 1)
    flagged = [e["learned"] for e in state.drift_status()["events"] if e["kind"] == "drift"]
    assert [at for at in flagged if 1000 < at <= 1300], flagged
    assert state.drift_status()["detector"] == "ADWIN"
