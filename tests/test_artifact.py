"""Model folders: export, verification and refusal of folders that must not be loaded."""

from __future__ import annotations

import json
import subprocess

import pytest
from river import linear_model, naive_bayes, preprocessing

from model_wrappers.artifact import METADATA_FILE, MODEL_FILE, ArtifactError, export_model, load_model
from support import BIN, Microservice, dump


def test_export_records_versions_checksum_and_schema(tmp_path):
    pipeline = preprocessing.StandardScaler() | naive_bayes.GaussianNB()
    meta = export_model(pipeline, tmp_path, features=["a", "b:category"], classes=[0, 1])
    written = json.loads((tmp_path / METADATA_FILE).read_text())
    assert written["task"] == "classifier"  # inferred from the pipeline
    assert written["features"] == [{"name": "a", "type": "number"}, {"name": "b", "type": "category"}]
    assert written["classes"] == [0, 1]
    assert written["sha256"] == meta.sha256 and len(meta.sha256) == 64
    assert {"river_version", "dill_version", "python_version", "created"} <= set(written)
    assert repr(load_model(tmp_path).pipeline) == repr(pipeline)


def _rewrite(folder, **changes):
    path = folder / METADATA_FILE
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("lib,field,version", [
    ("river", "river_version", "0.21.0"),
    ("dill", "dill_version", "0.2.9"),
    ("Python", "python_version", "3.9.18"),
])
def test_folder_from_another_minor_version_is_refused_naming_both_versions(tmp_path, lib, field, version):
    export_model(linear_model.LinearRegression(), tmp_path, task="regressor")
    _rewrite(tmp_path, **{field: version})
    with pytest.raises(ArtifactError) as err:
        load_model(tmp_path)
    assert f"written with {lib} {version}" in str(err.value)
    assert "is running" in str(err.value)


def test_tampered_model_file_is_refused(tmp_path):
    meta = export_model(linear_model.LinearRegression(), tmp_path, task="regressor")
    dump(linear_model.LinearRegression(l2=1.0), tmp_path / MODEL_FILE)
    with pytest.raises(ArtifactError) as err:
        load_model(tmp_path)
    assert meta.sha256 in str(err.value) and "changed after export" in str(err.value)


def test_missing_metadata_is_explained(tmp_path):
    dump(linear_model.LinearRegression(), tmp_path / MODEL_FILE)
    with pytest.raises(ArtifactError, match="seldon-river export"):
        load_model(tmp_path)


def test_bad_export_arguments_are_refused(tmp_path):
    with pytest.raises(ArtifactError, match="task must be one of"):
        export_model(linear_model.LinearRegression(), tmp_path, task="ranker")
    with pytest.raises(ArtifactError, match="unique"):
        export_model(linear_model.LinearRegression(), tmp_path, task="regressor", features=["a", "a"])
    with pytest.raises(ArtifactError, match="only apply to classifiers"):
        export_model(linear_model.LinearRegression(), tmp_path, task="regressor", classes=[1])


def test_export_command_writes_a_loadable_folder(tmp_path):
    pipeline = dump(preprocessing.StandardScaler() | linear_model.LogisticRegression(), tmp_path / "p.dill")
    out = subprocess.run(
        [str(BIN / "seldon-river"), "export", str(pipeline), str(tmp_path / "m"),
         "--features", "x,y", "--classes", "true,false", "--name", "clf"],
        capture_output=True, text=True, check=True,
    )
    assert "classifier clf" in out.stdout
    meta = load_model(tmp_path / "m").metadata
    assert meta.classes == (True, False) and [f.name for f in meta.features] == ["x", "y"]
    missing = subprocess.run([str(BIN / "seldon-river"), "export", str(tmp_path / "none.dill"), str(tmp_path / "n")],
                             capture_output=True, text=True)
    assert missing.returncode == 1 and "No such file" in missing.stderr


def test_microservice_refuses_to_serve_a_tampered_folder(tmp_path):
    export_model(linear_model.LinearRegression(), tmp_path / "m", task="regressor")
    dump(linear_model.LinearRegression(l2=1.0), tmp_path / "m" / MODEL_FILE)
    service = Microservice("model_wrappers.RiverModel", "MODEL",
                           {"model_uri": str(tmp_path / "m"), "state_uri": f"sqlite:///{tmp_path}/s.db"}, tmp_path)
    try:
        with pytest.raises(RuntimeError, match="exited"):
            service.start()
        assert "changed after export; refusing to load it" in service.log.read_text()
    finally:
        service.stop()
