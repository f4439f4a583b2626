"""The benchmark harness end to end on a tiny budget: structure only, never timings."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from support import require

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import run  # noqa: E402

SCENARIOS = ["rest-1", "rest-100", "grpc-1", "feedback", "feedback-16"]
DIRECT = ("stock", "seldon-river", "floor")
BEHIND = ("executor+stock", "executor+seldon-river", "executor+floor-river")


def test_harness_writes_every_figure(tmp_path):
    for tool, package in (("wrk", "wrk"), ("redis-server", "redis-server")):
        require(tool, shutil.which(tool) is not None, f"apt-get install {package}")
    from benchmarks.servers import executor_binary

    require("Seldon's executor", executor_binary() is not None, "set SELDON_EXECUTOR or provide ../shared/tools/")
    out = tmp_path / "results.json"
    args = run.parse_args([
        "--sections", "serve,ceiling,state", "--servers", "stock,seldon-river,floor", "--workers", "1",
        "--duration", "1", "--rounds", "1", "--warmup", "0", "--lag-samples", "3", "--restore-rows", "100",
        "--restore-tail", "5", "--out", str(out), "--workdir", str(tmp_path / "work"),
    ])
    results = run.run_all(args)
    assert results["errors"] == {}, results["errors"]

    written = json.loads(out.read_text())
    for key in ("settings", "machine", "serve", "ceiling", "targets", "state", "elapsed_s"):
        assert key in written, f"results.json has no {key!r}: {sorted(written)}"
    for key in ("nproc", "cpu_model", "versions", "loadavg_start", "loadavg_end", "fsync"):
        assert key in written["machine"], key
    for key in ("python", "seldon-core", "river", "wrk", "redis-server"):
        assert written["machine"]["versions"].get(key), key

    cells = {(c["label"], c["scenario"]): c for c in written["serve"]["cells"]}
    assert set(cells) == {(label, s) for label in DIRECT + BEHIND for s in SCENARIOS}
    for cell in cells.values():
        median = cell["median"]
        assert median["requests"] > 0 and median["rps"] > 0 and median["rows_per_s"] > 0, cell
        assert median["errors"] == 0, cell
        assert median["p50_ms"] is not None and median["p99_ms"] is not None
        assert set(cell["ratios"]) == {"vs_stock", "cpu_vs_stock", "vs_mlserver", "vs_ceiling"}
        assert cell["ratios"]["vs_stock"] > 0 and cell["ratios"]["vs_ceiling"] > 0
    assert cells[("seldon-river", "rest-100")]["median"]["rows_per_s"] > cells[("seldon-river", "rest-100")]["median"]["rps"]

    ceiling = written["ceiling"]
    for key in ("predict_proba_one_us", "predict_rows_per_s", "batch100_rows_per_s", "learn_one_per_s"):
        assert ceiling[key] > 0, key
    assert written["targets"] and all({"target", "measured", "threshold", "met"} <= set(t) for t in written["targets"])
    # Targets against stock and the ceiling also say what a component doing nothing reaches.
    floors = {t["target"]: t.get("floor") for t in written["targets"]}
    assert any("through Seldon's executor" in name for name in floors), floors
    assert all(floors[name] > 0 for name in floors if "stock" in name or "in-process" in name), floors

    state = written["state"]
    for backend in ("sqlite", "redis"):
        lag = state["lag"][backend]
        assert lag["visible_everywhere"]["n"] == 3 and len(lag["per_process"]) == 3
        restore = state["restore"][backend]
        assert restore["checkpoint_mb"] > 0 and [r["tail_events"] for r in restore["runs"]] == [0, 5]
        assert state["feedback"][backend]["median"]["rps"] > 0
        assert [a["writers"] for a in state["append"][backend]] == [1, 4]
        assert all(a["appends_per_s"] > 0 for a in state["append"][backend])

    text = run.table(written)
    assert "targets:" in text and "learning log:" in text
