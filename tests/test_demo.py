"""`seldon-river demo` as `make demo` runs it (fewer rows): the figure, the summary, the progress bar."""

from __future__ import annotations

import json
import subprocess
import sys

from support import REPO

ROWS = 150


def test_demo_streams_through_the_graph_and_writes_its_figure_and_summary(tmp_path):
    out = tmp_path / "demo-out"
    done = subprocess.run([sys.executable, "-m", "model_wrappers.cli", "demo", "--out", str(out), "--rows", str(ROWS)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "predict → feedback" in done.stdout and f"{ROWS}/{ROWS}" in done.stdout  # the progress bar
    assert (out / "learning-curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())

    config = summary["configuration"]
    assert config["rows"] == ROWS and config["models"] == {"model-a": "logistic-regression",
                                                           "model-b": "prior-baseline"}
    assert config["router"]["parameters"]["policy"] == "thompson"
    assert config["detector"]["parameters"]["warm_up"] == "500"
    stream = summary["stream"]
    assert stream["rows"] == ROWS and stream["detector_warm_up_rows"] == 500
    assert sum(a["rows"] for a in stream["arms"]) == ROWS
    # The router's own count agrees with what the client saw it route.
    pulls = {a["arm"]: a["pulls"] for a in summary["router_statistics"]["arms"]}
    assert [pulls[i] for i in range(2)] == [a["rows"] for a in stream["arms"]]
    # The models really differ, and the router sent most rows to the better one.
    alone = summary["accuracy_alone"]
    assert alone["model-a"] > alone["model-b"] + 0.15, alone
    assert stream["arms"][0]["rows"] > stream["arms"][1]["rows"], stream
