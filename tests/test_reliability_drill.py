"""The reliability drill (benchmarks/reliability.py) end to end on a tiny budget: one kill -9
cycle per backend, its checks and the figures it writes; counts only, never timings."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from support import require

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import reliability  # noqa: E402


def test_one_kill_cycle_per_backend_loses_nothing_and_writes_the_figures(tmp_path):
    require("redis-server", shutil.which("redis-server") is not None, "apt-get install redis-server")
    out = tmp_path / "reliability.json"
    args = reliability.parse_args(["--backends", "sqlite,redis", "--cycles", "2", "--acks-per-cycle", "20",
                                   "--fuzz-examples", "0", "--out", str(out), "--workdir", str(tmp_path / "work")])
    results = reliability.run(args)
    assert results["errors"] == {}, results["errors"]
    written = json.loads(out.read_text())
    assert [d["backend"] for d in written["kill_drills"]] == ["sqlite", "redis"]
    for drill in written["kill_drills"]:
        assert drill["cycles"] == drill["replica_kills"] == 2, drill
        assert drill["acknowledged"] >= 40, drill
        assert drill["lost"] == 0 and drill["refused_but_learned"] == 0, drill
        assert drill["distinct_ids_logged"] >= drill["acknowledged"], drill
        assert drill["replicas_bit_identical"] and drill["each_learned_every_id_once"], drill
        assert drill["max_abs_difference_from_river"] < 1e-12, drill
    assert written["kill_drills"][1]["redis_kills"] == 1
    assert written["totals"]["lost"] == 0 and written["totals"]["cycles"] == 4
    assert "fuzz" not in written  # --fuzz-examples 0 skips it
    assert "0 lost" in reliability.summary(results)


def test_the_ledger_tells_refused_from_unanswered():
    ledger = reliability.Ledger()
    ledger.note("a", "ack")
    ledger.note("b", "refused:503")
    ledger.note("c", "none")
    ledger.note("c", "refused:503")  # its first attempt may have been logged: not "refused at once"
    ledger.note("d", "none")
    ledger.note("d", "copy")
    assert ledger.acknowledged() == {"a", "d"}
    assert ledger.refused_at_once() == {"b"}
    counts = ledger.counts()
    assert counts["acknowledged"] == 2 and counts["acknowledged_as_copy"] == 1
    assert counts["refused"] == 2 and counts["attempts"] == 6
    assert counts["refusals_by_status"] == {"refused:503": 2}
