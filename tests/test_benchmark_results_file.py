"""What a benchmark run writes over an earlier results file, and where the project's server runs from."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import run, venvs  # noqa: E402


def test_sections_left_out_keep_their_figures_and_date(tmp_path):
    out = tmp_path / "results.json"
    out.write_text(json.dumps({
        "machine": {"date": "2026-12-01T10:00:00+00:00"}, "serve": {"old": True},
        "keyed": {"rss": 1}, "keyed_sharded": {"rss": 2},
        "carried": {"keyed_sharded": "2026-11-30T09:00:00+00:00"},
    }))
    fresh = {"machine": {"date": "2026-12-03T12:00:00+00:00"}, "serve": {"old": False}, "state": {"new": 1}}
    run.carry_over(fresh, out)
    assert fresh["serve"] == {"old": False} and fresh["state"] == {"new": 1}
    assert fresh["keyed"] == {"rss": 1} and fresh["keyed_sharded"] == {"rss": 2}
    # A section carried twice keeps the date it was measured on, not the date of the run that carried it.
    assert fresh["carried"] == {"keyed": "2026-12-01T10:00:00+00:00", "keyed_sharded": "2026-11-30T09:00:00+00:00"}


def test_nothing_is_carried_from_a_missing_or_unreadable_file(tmp_path):
    fresh = {"serve": {}}
    run.carry_over(fresh, tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{not json")
    run.carry_over(fresh, tmp_path / "bad.json")
    assert fresh == {"serve": {}}


def test_the_server_venv_pins_what_the_model_folder_needs():
    import dill
    import numpy
    import river

    pins = venvs.model_pins()
    assert pins == [f"river=={river.__version__}", f"dill=={dill.__version__}", f"numpy=={numpy.__version__}"]


def test_river_venv_option(tmp_path):
    assert run.river_venv(run.parse_args(["--river-venv", "this"])) is None
    assert run.river_venv(run.parse_args(["--river-venv", str(tmp_path)])) == tmp_path
