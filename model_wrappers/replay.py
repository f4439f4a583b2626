"""Judge candidate pipelines on a model's real traffic: replay its learning log into them.

Every ``learn`` event the log holds is fed, in log order, to the state that served (rebuilt
from the model folder and its options, so promotions and drift reactions happen as they did)
and to a fresh state of each candidate; each is scored progressively, row by row, before it
learns the row. A log that still holds every event since position 1 gives the served figures
exactly as the component reports them. A compacted log starts at its oldest kept checkpoint that
the held events follow: the served state starts there with the pipeline it had, and every
figure (served and candidates alike) covers only the rows replayed.

Examples
--------
>>> import tempfile
>>> from river import linear_model, preprocessing
>>> from model_wrappers.artifact import export_model, load_model
>>> from model_wrappers.learned_state import Source
>>> from model_wrappers.river_model import RiverModel
>>> work = tempfile.mkdtemp()
>>> _ = export_model(linear_model.LinearRegression(), f"{work}/m", features=["x"])
>>> _ = export_model(preprocessing.StandardScaler() | linear_model.LinearRegression(), f"{work}/c",
...                  features=["x"], name="scaled")
>>> model = RiverModel(model_uri=f"{work}/m", state_uri=f"sqlite:///{work}/state.db")
>>> model.load()
>>> for x in (1.0, 2.0, 3.0, 4.0):
...     _ = model.replica.submit({"type": "learn", "rows": [{"x": x}], "truth": [2 * x]})
>>> result = replay(Source.of_folder(f"{work}/m", state_uri=f"sqlite:///{work}/state.db"),
...                 {"scaled": load_model(f"{work}/c")})
>>> result.rows, result.served["mae"] == model.status()["metrics"]["mae"], sorted(result.candidates)
(4, True, ['scaled'])

"""

from __future__ import annotations

import copy
import dataclasses

from .artifact import LoadedModel, load_model
from .learned_state import PullError, Source
from .learning.model import ModelState
from .log import LogUnavailable, open_log
from .log.replica import READ_BATCH, checkpoint_at, decode, reachable


@dataclasses.dataclass
class Replayed:
    """What a replay found: rows replayed, where it started, and each pipeline's figures."""

    log_name: str
    first_position: int
    last_position: int
    rows: int
    served_name: str
    served: dict[str, float]
    candidates: dict[str, dict[str, float]]
    skipped: list[int]

    def table(self) -> str:
        """The figures side by side, one line per pipeline."""
        names = sorted({k for f in [self.served, *self.candidates.values()] for k in f} - {"learned"})
        head = f"{'pipeline':<28}{'rows':>8}" + "".join(f"{n:>16}" for n in names)
        lines = [head]
        for label, figures in [(f"{self.served_name} (served)", self.served), *self.candidates.items()]:
            cells = "".join(f"{figures[n]:>16.6g}" if n in figures else f"{'-':>16}" for n in names)
            lines.append(f"{label:<28}{self.rows:>8}{cells}")
        return "\n".join(lines)


def replay(source: Source, candidates: dict[str, LoadedModel]) -> Replayed:
    """Replay ``source``'s learning log into the served state and into each candidate."""
    served_model = load_model(source.model_folder)
    task = served_model.metadata.task
    for name, loaded in candidates.items():
        if loaded.metadata.task != task:
            raise PullError(f"candidate {name} is a {loaded.metadata.task}; the served model is a {task}")
    try:
        log = open_log(source.state_uri, source.log_name)
    except (LogUnavailable, ValueError) as exc:
        raise PullError(str(exc)) from None
    try:
        served, position = _start(log, source, served_model)
        restarted = position > 0
        states = {name: ModelState(copy.deepcopy(c.pipeline), task, served_model.metadata.classes)
                  for name, c in candidates.items()}
        first, learned_before, skipped = position + 1, served.learned, []
        while True:
            entries = log.read(position, READ_BATCH)
            if not entries:
                break
            for at, payload in entries:
                event = decode(payload)
                try:
                    served.apply(event, at)
                except Exception:  # the component skipped it alike (see Replica._apply)
                    skipped.append(at)
                    position = at
                    continue
                if event.get("type") == "learn":
                    for state in states.values():
                        state.apply(event, at)
                position = at
    except LogUnavailable as exc:
        raise PullError(str(exc)) from None
    finally:
        log.close()
    served_figures = dict(served.figures())
    if restarted:
        served_figures["learned"] = float(served.learned - learned_before)
    return Replayed(source.log_name, first, position, served.learned - learned_before, served.name,
                    served_figures, {n: dict(s.figures()) for n, s in states.items()}, skipped)


def _start(log, source: Source, served_model: LoadedModel) -> tuple[ModelState, int]:
    """The served state to replay from and its position: fresh at 0, or a kept checkpoint."""
    held = log.read(0, 1)
    if not held or held[0][0] == 1:
        return source.options.fresh_state(served_model)(), 0
    oldest = held[0][0] - 1
    kept = [c for c in log.list_checkpoints() if c >= oldest]
    if not kept:
        raise PullError(f"log {log.name!r} cannot be replayed: {reachable(log)}")
    start = min(kept)
    state = ModelState.restore(checkpoint_at(log, start).blob)
    # Scored afresh: the figures then cover the replayed rows only, as the candidates' do.
    state.score = type(state.score)(state.task)
    state._figures = None
    return state, start
