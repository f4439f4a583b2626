"""`seldon-river export` checks the pipeline against what it is told, and refuses what cannot serve."""

from __future__ import annotations

import json
import subprocess

import pytest
from river import anomaly, linear_model, multiclass, naive_bayes, preprocessing

from model_wrappers.artifact import METADATA_FILE, ArtifactError, export_model, load_model
from model_wrappers.learning.model import ModelState
from support import BIN, dump


def export_cli(tmp_path, pipeline, *args, folder="out"):
    path = dump(pipeline, tmp_path / "pipeline.dill")
    return subprocess.run([str(BIN / "seldon-river"), "export", str(path), str(tmp_path / folder), *args],
                          capture_output=True, text=True, timeout=120)


def test_binary_model_with_other_classes_is_refused_saying_what_it_predicts(tmp_path):
    out = export_cli(tmp_path, preprocessing.StandardScaler() | linear_model.LogisticRegression(),
                     "--task", "classifier", "--classes", "yes,no")
    assert out.returncode == 1
    assert "predicts True and False only" in out.stderr and "['yes', 'no']" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text", ["true,false", "True,False", "false,true"])
def test_boolean_classes_given_as_text_become_booleans(tmp_path, text):
    out = export_cli(tmp_path, linear_model.LogisticRegression(), "--features", "x", "--classes", text)
    assert out.returncode == 0, out.stderr
    written = json.loads((tmp_path / "out" / METADATA_FILE).read_text())["classes"]
    assert written == [t.strip().lower() == "true" for t in text.split(",")]
    # Served, the model answers exactly those two columns.
    meta = load_model(tmp_path / "out").metadata
    names, values = ModelState(load_model(tmp_path / "out").pipeline, "classifier", meta.classes).predict([{"x": 1.0}])
    assert names == [str(c) for c in written] and len(values[0]) == 2


def test_task_that_contradicts_the_estimator_is_refused(tmp_path):
    out = export_cli(tmp_path, linear_model.LogisticRegression(), "--task", "regressor")
    assert out.returncode == 1 and "LogisticRegression is a classifier" in out.stderr
    with pytest.raises(ArtifactError, match="is a regressor"):
        export_model(linear_model.LinearRegression(), tmp_path / "a", task="classifier")
    with pytest.raises(ArtifactError, match="is a anomaly|is a anomaly|anomaly"):
        export_model(anomaly.HalfSpaceTrees(), tmp_path / "b", task="regressor")
    assert export_model(linear_model.LinearRegression(), tmp_path / "c").task == "regressor"


def test_feature_names_that_are_not_names_are_refused(tmp_path):
    out = export_cli(tmp_path, linear_model.LinearRegression(), "--features", "a,b,...")
    assert out.returncode == 1 and "'...' is not a feature name" in out.stderr
    for bad in (" a", "-", "a,b"):
        with pytest.raises(ArtifactError, match="is not a feature name"):
            export_model(linear_model.LinearRegression(), tmp_path / "m", features=[bad])
    meta = export_model(linear_model.LinearRegression(), tmp_path / "ok", features=["sepal length", "x_1"])
    assert [f.name for f in meta.features] == ["sepal length", "x_1"]


def test_existing_folder_is_refused_unless_forced(tmp_path):
    assert export_cli(tmp_path, linear_model.LinearRegression(), "--features", "x").returncode == 0
    first = json.loads((tmp_path / "out" / METADATA_FILE).read_text())["sha256"]
    again = export_cli(tmp_path, linear_model.LinearRegression(l2=0.5), "--features", "x")
    assert again.returncode == 1 and "already exists" in again.stderr and "--force" in again.stderr
    assert json.loads((tmp_path / "out" / METADATA_FILE).read_text())["sha256"] == first  # untouched
    forced = export_cli(tmp_path, linear_model.LinearRegression(l2=0.5), "--features", "x", "--force")
    assert forced.returncode == 0, forced.stderr
    assert json.loads((tmp_path / "out" / METADATA_FILE).read_text())["sha256"] != first
    (tmp_path / "empty").mkdir()
    assert export_cli(tmp_path, linear_model.LinearRegression(), folder="empty").returncode == 0


def test_name_defaults_to_the_folder_name(tmp_path):
    out = export_cli(tmp_path, linear_model.LinearRegression(), folder="house-prices")
    assert out.returncode == 0 and "regressor house-prices" in out.stdout
    assert load_model(tmp_path / "house-prices").metadata.name == "house-prices"
    assert export_model(linear_model.LinearRegression(), tmp_path / "x", name="given").name == "given"


def test_classifier_without_classes_gets_them_inferred_or_is_refused(tmp_path):
    assert export_model(linear_model.LogisticRegression(), tmp_path / "binary").classes == (True, False)
    with pytest.raises(ArtifactError, match="has learned no classes yet"):
        export_model(naive_bayes.GaussianNB(), tmp_path / "cold")
    out = export_cli(tmp_path, multiclass.OneVsRestClassifier(linear_model.LogisticRegression()))
    assert out.returncode == 1 and "--classes a,b,c" in out.stderr
    warm = naive_bayes.GaussianNB()
    for x, y in [({"x": 1.0}, "cat"), ({"x": 5.0}, "dog")]:
        warm.learn_one(x, y)
    assert export_model(warm, tmp_path / "warm", features=["x"]).classes == ("cat", "dog")


def test_classes_of_a_trained_multiclass_model_must_cover_what_it_predicts(tmp_path):
    warm = naive_bayes.GaussianNB()
    for x, y in [({"x": 1.0}, 1), ({"x": 5.0}, 2), ({"x": 9.0}, 3)]:
        warm.learn_one(x, y)
    with pytest.raises(ArtifactError, match=r"already predicts \[1, 2, 3\].*leave out \[3\]"):
        export_model(warm, tmp_path / "a", features=["x"], classes=[1, 2])
    # Text labels are matched to the labels the model learned, more may be declared.
    meta = export_model(warm, tmp_path / "b", features=["x"], classes=["3", "2", "1", "4"])
    assert meta.classes == (3, 2, 1, "4")
    assert export_model(naive_bayes.GaussianNB(), tmp_path / "c", classes=["yes", "no"]).classes == ("yes", "no")
