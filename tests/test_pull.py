"""`seldon-river pull`: a model's learned state out of a running component or its log, served bit for bit."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from model_wrappers.artifact import load_model
from model_wrappers.river_model import RiverModel
from support import BIN, PHISHING_FEATURES, model_service, phishing_stream, rows_payload

DATA = list(phishing_stream(500))
TRAIN, PROBE = DATA[:300], [x for x, _ in DATA[300:]]
ROWS_PER_EVENT = 3
# Small batches take the per-row path, one of 64 rows the batch path.
PROBE_BATCHES = [PROBE[i:i + 17] for i in range(0, 136, 17)] + [PROBE[136:200]]


def teach(service, start: int, stop: int) -> None:
    """Send events ``start+1..stop`` (each of ROWS_PER_EVENT rows) as feedback."""
    for event in range(start, stop):
        chunk = TRAIN[event * ROWS_PER_EVENT:(event + 1) * ROWS_PER_EVENT]
        reply = service.feedback({"request": rows_payload([x for x, _ in chunk], PHISHING_FEATURES),
                                  "truth": {"data": {"ndarray": [[y] for _, y in chunk]}}})
        assert reply.status_code == 200, reply.text
        assert reply.json()["meta"]["tags"]["seldon_river_position"] == event + 1


def live_predictions(service) -> list:
    out = []
    for batch in PROBE_BATCHES:
        reply = service.predict(rows_payload(batch, PHISHING_FEATURES))
        assert reply.status_code == 200, reply.text
        out.append((reply.json()["data"]["names"], reply.json()["data"]["ndarray"]))
    return out


def served_predictions(folder, workdir) -> list:
    model = RiverModel(model_uri=str(folder), state_uri=f"sqlite:///{workdir}/{folder.name}-state.db")
    model.load()
    out = []
    for batch in PROBE_BATCHES:
        reply = model.predict_raw(rows_payload(batch, PHISHING_FEATURES))
        out.append((reply["data"]["names"], reply["data"]["ndarray"]))
    model.replica.log.close()
    return out


def pull(*args):
    return subprocess.run([str(BIN / "seldon-river"), "pull", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def served(services, phishing_folder, tmp_path):
    state = f"sqlite:///{tmp_path}/state.db"
    service = model_service(services, phishing_folder, tmp_path, state, checkpoint_every=40)
    return service, state


def test_pulled_states_serve_the_predictions_of_their_position_bit_for_bit(served, phishing_folder, tmp_path):
    service, state = served
    from_log = ("--model", phishing_folder, "--state", state)
    teach(service, 0, 10)
    at = {10: live_predictions(service)}
    teach(service, 10, 30)
    # Before any checkpoint: the model folder's pipeline and the first 10 events.
    assert pull(tmp_path / "p10", *from_log, "--position", 10).returncode == 0
    teach(service, 30, 80)
    at[80] = live_predictions(service)
    teach(service, 80, 90)
    at[90] = live_predictions(service)
    teach(service, 90, 100)

    done = pull(tmp_path / "head", "--from", service.rest_url)
    assert done.returncode == 0, done.stderr
    assert pull(tmp_path / "c80", *from_log, "--checkpoint", 80).returncode == 0
    assert pull(tmp_path / "p90", *from_log, "--position", 90).returncode == 0

    assert served_predictions(tmp_path / "head", tmp_path) == live_predictions(service)
    for position, folder in ((10, "p10"), (80, "c80"), (90, "p90")):
        assert served_predictions(tmp_path / folder, tmp_path) == at[position], folder
    # Different positions really are different states.
    assert at[10] != at[90]


def test_provenance_records_log_position_rows_and_metrics(served, phishing_folder, tmp_path):
    service, state = served
    teach(service, 0, 50)
    assert pull(tmp_path / "out", "--from", service.rest_url, "--name", "phishing-v2").returncode == 0
    meta = load_model(tmp_path / "out").metadata
    status = service.status()
    assert meta.name == "phishing-v2" and meta.task == "classifier" and meta.classes == (True, False)
    made = meta.provenance
    assert made["position"] == 50 and made["rows_learned"] == 50 * ROWS_PER_EVENT
    assert made["from_checkpoint"] == 40 and made["events_replayed"] == 10
    assert made["log"] == {"state_uri": state, "name": status["replica"]["log_name"]}
    assert made["metrics"] == status["metrics"]
    assert made["source_model"]["sha256"] == status["model"]["sha256"] != meta.sha256
    written = json.loads((tmp_path / "out" / "seldon-river.json").read_text())
    assert written["provenance"]["position"] == 50


def test_positions_the_log_no_longer_holds_are_refused_saying_which_it_holds(served, phishing_folder, tmp_path):
    service, state = served
    teach(service, 0, 90)  # checkpoints at 40 and 80; events before the oldest kept checkpoint are compacted
    from_log = ("--model", phishing_folder, "--state", state)
    listed = pull(*from_log, "--list")
    assert listed.returncode == 0, listed.stderr
    oldest = int(re.search(r"positions (\d+)\.\.90 can be pulled", listed.stdout).group(1))
    assert oldest in (40, 80), listed.stdout
    for args in (("--position", 20), ("--checkpoint", 85), ("--position", 91)):
        out = pull(tmp_path / "x", *from_log, *args)
        assert out.returncode == 1, args
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert ("can be pulled" in out.stderr) or ("positions 0..90" in out.stderr), out.stderr
        assert not (tmp_path / "x").exists()
    missing = pull(tmp_path / "x", "--model", phishing_folder, "--state", f"sqlite:///{tmp_path}/none.db")
    assert missing.returncode == 1 and "no learning log" in missing.stderr
    assert not (tmp_path / "none.db").exists()
