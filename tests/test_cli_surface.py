"""What a newcomer meets first: ``--version``, ``serve`` on a bad folder, the JSON types of replies."""

from __future__ import annotations

import subprocess

import pytest
from river import linear_model

from model_wrappers.artifact import MODEL_FILE, export_model
from model_wrappers.keyed_artifact import export_keyed
from support import BIN, PHISHING_FEATURES, dump, model_service, phishing_stream, rows_payload


def cli(*args, timeout=120):
    return subprocess.run([str(BIN / "seldon-river"), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def test_version_names_the_versions_a_model_folder_depends_on():
    import river

    out = cli("--version")
    assert out.returncode == 0
    assert out.stdout.startswith("seldon-river 0.") and f"river {river.__version__}" in out.stdout


def _tampered(folder):
    export_model(linear_model.LinearRegression(), folder)
    dump(linear_model.LinearRegression(l2=1.0), folder / MODEL_FILE)
    return folder


def _file(folder):
    (folder / "file").write_text("")
    return folder / "file"


def _plain(folder):
    export_model(linear_model.LinearRegression(), folder)
    return folder


def _keyed(folder):
    export_keyed(folder, templates=linear_model.LinearRegression(), features=["x"])
    return folder


@pytest.mark.parametrize("make,component,expected", [
    (lambda p: p / "missing", "model", "no such folder"),
    (_file, "model", "is a file"),
    (lambda p: p, "model", "seldon-river.json not found"),
    (_tampered, "model", "changed after export"),
    (_keyed, "model", "serve it with --component keyed"),
    (_plain, "keyed", "is not a keyed model folder"),
])
def test_serve_on_a_bad_folder_fails_in_one_line(tmp_path, make, component, expected):
    (tmp_path / "f").mkdir()
    folder = make(tmp_path / "f")
    out = cli("serve", folder, "--component", component, "--http-port", 0, timeout=60)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seldon-river serve: ") and expected in lines[0], out.stderr


def test_position_tags_are_integers_in_predict_and_feedback_replies(services, phishing_folder, tmp_path):
    service = model_service(services, phishing_folder, tmp_path, f"sqlite:///{tmp_path}/state.db")
    rows = [x for x, _ in phishing_stream(3)]
    request = rows_payload(rows, PHISHING_FEATURES)
    for round_ in range(2):
        predicted = service.predict(request).json()["meta"]["tags"]["seldon_river_position"]
        ack = service.feedback({"request": request, "truth": {"data": {"ndarray": [[True], [False], [True]]}}})
        learned = ack.json()["meta"]["tags"]["seldon_river_position"]
        assert type(predicted) is int and type(learned) is int, (predicted, learned)
        assert learned == predicted + 1 == round_ + 1
