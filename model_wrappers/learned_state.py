"""A model's learned state taken out of its learning log, as a new model folder.

Every serving process of a model holds the state its learning log gives at its position: the
model folder's pipeline, then every ``learn`` event in order (from a checkpoint when one is kept).
:func:`pull` rebuilds that state at a chosen position (the log's head, a kept checkpoint, or any
position the log still holds the events for) and writes its pipeline as a new model folder,
whose metadata records where it comes from. Served, that folder answers exactly what the model
answered at that position; its own log starts empty.

Examples
--------
>>> import tempfile
>>> from river import linear_model
>>> from model_wrappers.artifact import export_model, load_model
>>> from model_wrappers.river_model import RiverModel
>>> work = tempfile.mkdtemp()
>>> _ = export_model(linear_model.LinearRegression(), f"{work}/m", features=["x"])
>>> model = RiverModel(model_uri=f"{work}/m", state_uri=f"sqlite:///{work}/state.db")
>>> model.load()
>>> for x in (1.0, 2.0, 3.0):
...     _ = model.replica.submit({"type": "learn", "rows": [{"x": x}], "truth": [2 * x]})
>>> source = Source.of_folder(f"{work}/m", state_uri=f"sqlite:///{work}/state.db")
>>> meta = pull(source, f"{work}/pulled", position=2)
>>> meta.provenance["position"], meta.provenance["rows_learned"]
(2, 2)
>>> load_model(f"{work}/pulled").metadata.name
'pulled'

"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import urllib.request
from pathlib import Path

from .artifact import ArtifactError, Metadata, export_model, load_model, read_metadata
from .config import StateSettings, state_key, without_password
from .keyed_artifact import is_keyed
from .learning.model import ModelState
from .log import LogUnavailable, open_log
from .log.replica import Replica, checkpoint_at
from .pipeline_checks import known_classes
from .model_options import ModelOptions


class PullError(Exception):
    """A learned state cannot be pulled; the message says why."""


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a model's learned state is: the folder it started from and its learning log."""

    model_folder: Path
    state_uri: str
    log_name: str
    options: ModelOptions = ModelOptions()

    @classmethod
    def of_folder(cls, folder: str | os.PathLike, state_uri: str | None = None,
                  state_name: str | None = None, options: ModelOptions = ModelOptions()) -> "Source":
        """The log a component serving ``folder`` (with ``options``) uses, named as the component names it."""
        meta = read_metadata(folder)
        settings = StateSettings.resolve(meta.name, options.version(meta, folder), state_uri=state_uri,
                                         state_name=state_name)
        return cls(Path(folder), settings.uri, settings.name, options)

    @classmethod
    def of_component(cls, url: str, model_folder: str | os.PathLike | None = None,
                     state_uri: str | None = None) -> tuple["Source", int]:
        """The source of a running RiverModel and the log position it serves, from its ``/health/status``."""
        status = component_status(url)
        model, replica = status.get("model") or {}, status.get("replica") or {}
        if "log_name" not in replica or "sha256" not in model:
            raise PullError(f"{url} does not report a model's learning log in /health/status: is it a RiverModel?")
        folder = Path(model_folder or model.get("folder") or "")
        if not (folder / "seldon-river.json").is_file():
            raise PullError(
                f"the folder {url} serves ({model.get('folder')}) is not readable here: pass the model folder "
                "it was deployed with (--model)"
            )
        if read_metadata(folder).sha256 != model["sha256"]:
            raise PullError(f"{folder} is not the model {url} serves (its sha256 is {model['sha256']})")
        uri = state_uri or replica.get("state_uri", "")
        if "***" in uri:
            raise PullError(f"{url} reports its state URI without its password: pass it (--state)")
        options = ModelOptions.from_parameters(**(model.get("options") or {}))
        return cls(folder, uri, replica["log_name"], options), int(replica["position"])


def component_status(url: str, timeout: float = 30.0) -> dict:
    """What a running component reports at ``/health/status`` (its ``jsonData``)."""
    target = url.rstrip("/") + "/health/status"
    try:
        with urllib.request.urlopen(target, timeout=timeout) as reply:
            body = json.loads(reply.read())
    except (OSError, ValueError) as exc:
        raise PullError(f"cannot read {target}: {exc}") from None
    found = body.get("jsonData") if isinstance(body, dict) else None
    if not isinstance(found, dict):
        raise PullError(f"{target} answered no status (no jsonData)")
    return found


def learned_state(source: Source, position: int | None = None) -> tuple[Replica, Metadata]:
    """A replica holding ``source``'s state after event ``position`` (the log's head when None)."""
    if is_keyed(source.model_folder):
        raise PullError(
            f"{source.model_folder} is a keyed model folder: its per-key pipelines live in a key store beside "
            "the log, which pulling does not read yet"
        )
    if source.state_uri.startswith("sqlite:///") and not Path(source.state_uri[len("sqlite:///"):]).is_file():
        raise PullError(f"no learning log at {source.state_uri}: pass the state URI the model is served with (--state)")
    loaded = load_model(source.model_folder)
    try:
        log = open_log(source.state_uri, source.log_name)
    except (LogUnavailable, ValueError) as exc:
        raise PullError(str(exc)) from None
    try:
        fresh = source.options.fresh_state(loaded)
    except ArtifactError as exc:
        log.close()
        raise PullError(str(exc)) from None
    replica = Replica(fresh, ModelState.restore, log)
    try:
        replica.start_at(log.head() if position is None else position)
    except LogUnavailable as exc:
        log.close()
        raise PullError(str(exc)) from None
    return replica, loaded.metadata


def pull(source: Source, folder: str | os.PathLike, *, position: int | None = None, checkpoint: int | None = None,
         name: str | None = None, force: bool = False) -> Metadata:
    """Write the state of ``source`` at ``position`` (or at the kept ``checkpoint``) as a new model folder.

    The folder's classes are every class the state has learned, in the order its predictions
    list them, so its predictions have the same columns; its metadata's ``provenance`` records
    the log, the position, the rows learned and the progressive metrics at that position.
    """
    if checkpoint is not None:
        if position is not None and position != checkpoint:
            raise PullError("give a position or a checkpoint, not both")
        position = checkpoint
    replica, meta = learned_state(source, position)
    try:
        if checkpoint is not None:
            checkpoint_at(replica.log, checkpoint)  # refuses a position that is no kept checkpoint
        state = replica.state
        classes = list(state.classes)
        if meta.task == "classifier":
            classes += [c for c in known_classes(state.pipeline, meta.features) if c not in classes]
        provenance = {
            "pulled": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "log": {"state_uri": without_password(source.state_uri), "name": source.log_name},
            "position": replica.position,
            "from_checkpoint": replica.restored_from or None,
            "events_replayed": replica.replayed,
            "rows_learned": state.learned,
            "metrics": state.figures(),
            "source_model": {"name": meta.name, "sha256": meta.sha256},
        }
    except LogUnavailable as exc:
        raise PullError(str(exc)) from None
    finally:
        replica.log.close()
    try:
        # Signed with the key the log was read with, so a server configured alike will load it.
        return export_model(state.pipeline, folder, task=meta.task, features=meta.features, classes=classes,
                            name=name, force=force, provenance=provenance, key=state_key())
    except ArtifactError as exc:
        raise PullError(str(exc)) from None
