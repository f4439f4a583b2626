"""Today's river served: a pipeline trained on river 0.26 and Python 3.13 (.venv-current) learns as river does.

Each install's pipeline is exported, served and computed in process in that install's own
environment, while the client is SeldonClient from this (the main) environment, talking to the
server over the wire as users' clients do:

- ``.venv-current`` (Python 3.13, river 0.26, numpy 2, no seldon-core): served by the project's
  ``seldon-river-microservice``;
- ``.venv`` (Python 3.11, river 0.23, the seldon-core extra): served by Seldon's stock
  ``seldon-core-microservice``.

Predictions before each feedback and after the last must equal the same pipeline's, fed the
same rows in process, to the last bit. A folder written by one river is refused by the other
install, with the river it needs and the install that serves it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from support import (
    BIN, PHISHING_FEATURES, REPO, as_dict, phishing_stream, require, seldon_client, truth,
)

CURRENT_BIN = REPO / ".venv-current" / "bin"
ROWS = 30

# Run in the serving environment: export the Phishing pipeline to argv[1], print the versions.
EXPORT = """
import json, platform, sys
import river
from river import linear_model, preprocessing
from model_wrappers.artifact import export_model
features = json.loads(sys.argv[2])
export_model(preprocessing.StandardScaler() | linear_model.LogisticRegression(), sys.argv[1],
             task="classifier", features=features, classes=[True, False], name="phishing")
print(json.dumps({"river": river.__version__, "python": platform.python_version()}))
"""

# Run in the serving environment: the exported pipeline fed the rows in process, one by one.
IN_PROCESS = """
import json, sys
from model_wrappers.artifact import load_model
rows = json.loads(open(sys.argv[2]).read())
model = load_model(sys.argv[1]).pipeline
before = []
for x, y in rows:
    before.append(model.predict_proba_one(x)[True])
    model.learn_one(x, y)
print(json.dumps({"before": before, "after": [model.predict_proba_one(x)[True] for x, _ in rows[:5]]}))
"""

# Run in the other environment: what loading the folder says.
LOAD = """
import sys
from model_wrappers.artifact import ArtifactError, load_model
try:
    load_model(sys.argv[1])
except ArtifactError as error:
    print(error)
else:
    print("loaded")
"""


def current_bin() -> Path:
    require(".venv-current (Python 3.13, river 0.26)", (CURRENT_BIN / "python").is_file(),
            "bash scripts/setup-python.sh current")
    return CURRENT_BIN


def run(bin_dir: Path, script: str, *args) -> str:
    done = subprocess.run([str(bin_dir / "python"), "-c", script, *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def rows() -> list[tuple[dict, bool]]:
    # Floats throughout: SeldonClient sends a numpy array, so the served rows hold floats.
    return [({k: float(v) for k, v in x.items()}, y) for x, y in phishing_stream(ROWS)]


def p_true(message) -> float:
    data = as_dict(message)["data"]
    row = data["ndarray"][0] if "ndarray" in data else data["tensor"]["values"]
    return row[data["names"].index("True")]


def export(bin_dir: Path, folder: Path) -> dict:
    return json.loads(run(bin_dir, EXPORT, folder, json.dumps(PHISHING_FEATURES)))


INSTALLS = {
    # name: (the environment's bin/, the server, the river minor and Python minor it must run)
    "current": (current_bin, "seldon-river", "0.26", "3.13"),
    "stock": (lambda: BIN, "seldon-core", "0.23", "3.11"),
}


@pytest.mark.parametrize("install", INSTALLS)
def test_served_pipeline_learns_bit_for_bit_as_its_river_in_process(install, services, tmp_path):
    find_bin, server, river_minor, python_minor = INSTALLS[install]
    bin_dir = find_bin()
    require("seldon-core-microservice (the seldon-core extra)", (bin_dir / f"{server}-microservice").is_file(),
            "bash scripts/setup-python.sh main")
    folder = tmp_path / "model"
    versions = export(bin_dir, folder)
    assert versions["river"].startswith(river_minor + ".") and versions["python"].startswith(python_minor + ".")
    assert json.loads((folder / "seldon-river.json").read_text())["river_version"] == versions["river"]

    served = services.start("model_wrappers.RiverModel", "MODEL",
                            {"model_uri": str(folder), "state_uri": f"sqlite:///{tmp_path}/state.db"},
                            tmp_path, server=server, bin_dir=bin_dir)
    clients = {transport: seldon_client(served, transport) for transport in ("rest", "grpc")}
    stream = rows()
    before = []
    for i, (x, y) in enumerate(stream):
        client = clients["rest" if i % 2 == 0 else "grpc"]  # both transports feed one log
        row = np.array([[x[n] for n in PHISHING_FEATURES]])
        prediction = client.predict(data=row, names=PHISHING_FEATURES, payload_type="ndarray")
        assert prediction.success, prediction.msg
        before.append(p_true(prediction.response))
        feedback = client.feedback(prediction_request=prediction.request, prediction_response=prediction.response,
                                   reward=0.0, prediction_truth=truth([y]))
        assert feedback.success, feedback.msg
    after = []
    for i, (x, _) in enumerate(stream[:5]):
        client = clients["grpc" if i % 2 == 0 else "rest"]
        reply = client.predict(data=np.array([[x[n] for n in PHISHING_FEATURES]]), names=PHISHING_FEATURES)
        assert reply.success, reply.msg
        after.append(p_true(reply.response))
    assert served.status()["metrics"]["learned"] == ROWS

    rows_file = tmp_path / "rows.json"
    rows_file.write_text(json.dumps(stream))
    expected = json.loads(run(bin_dir, IN_PROCESS, folder, rows_file))
    assert before == expected["before"]  # exact: the same floats, not approximately
    assert after == expected["after"]
    assert after != before[:5], "the model should have learned from the feedback"


def test_each_install_refuses_the_others_folder_naming_the_river_and_install_it_needs(tmp_path):
    current = current_bin()
    new, old = tmp_path / "river-0.26", tmp_path / "river-0.23"
    assert export(current, new)["river"].startswith("0.26.")
    assert export(BIN, old)["river"].startswith("0.23.")

    refused_here = run(BIN, LOAD, new)
    assert "written with river 0.26" in refused_here
    assert "serve it with river 0.26.x: pip install seldon-river 'river==0.26.*'" in refused_here
    assert "seldon-river-microservice" in refused_here

    refused_there = run(current, LOAD, old)
    assert "written with river 0.23" in refused_there
    assert "serve it with river 0.23.x: pip install 'seldon-river[seldon-core]' 'river==0.23.*'" in refused_there


def test_current_environment_has_no_seldon_core_and_serves_without_it(services, tmp_path):
    """Every runtime module imports, and the server starts and answers, where seldon-core is not installed."""
    current = current_bin()
    probe = run(current, "import importlib.util, json, numpy, river, sys; print(json.dumps(["
                "importlib.util.find_spec('seldon_core') is None, numpy.__version__, river.__version__]))")
    absent, numpy_version, river_version = json.loads(probe)
    assert absent and numpy_version.startswith("2.") and river_version == "0.26.1"
    imported = run(current, """
import importlib, json, pkgutil, sys
import model_wrappers
names = [m.name for m in pkgutil.walk_packages(model_wrappers.__path__, "model_wrappers.")
         if not m.name.endswith(".__main__")]
for name in names:
    importlib.import_module(name)
print(json.dumps([len(names), sorted(m for m in sys.modules if m.split(".")[0] == "seldon_core")]))
""")
    count, seldon_modules = json.loads(imported)
    assert count > 50 and seldon_modules == []

    folder = tmp_path / "model"
    export(current, folder)
    served = services.start("model_wrappers.RiverModel", "MODEL",
                            {"model_uri": str(folder), "state_uri": f"sqlite:///{tmp_path}/state.db"},
                            tmp_path, server="seldon-river", bin_dir=current)
    x, _ = rows()[0]
    reply = served.predict({"jsonData": x})
    assert reply.status_code == 200, reply.text
    assert set(reply.json()["jsonData"][0]) == {"True", "False"}
    bad = served.predict({"data": {"ndarray": [[1.0]]}})
    assert bad.status_code == 400 and "expected 9 columns" in bad.json()["status"]["info"]

