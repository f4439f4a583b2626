"""What a served model's learned state is made of besides its pipeline: drift watch and challengers.

Read from the MODEL's Seldon parameters (``drift_detector``, ``drift_options``,
``drift_reaction``, ``challengers``, ``promote_after``, ``promote_margin``, ``promote_window``,
``drift_trial``)
and turned into the state its learning log starts from. The options change what every event
does, so they are part of the log's name: replicas configured alike share a log, and a
deployment with other challengers or another detector starts a log of its own instead of
replaying events into a state they were not applied to. With the defaults (the task's own
detector, reaction ``alert``, no challengers) the log keeps the name it had before these
options existed.

Challengers are model folders written by ``seldon-river export`` for the same task and the same
features; a relative path is read inside the model folder (``challengers/fast`` ships them in
it), and each is named by its own metadata.

Examples
--------
>>> options = ModelOptions.from_parameters(drift_detector="page_hinkley", promote_after="200")
>>> options.drift_detector, options.promote_after
('PageHinkley', 200)

"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Callable

from .artifact import ArtifactError, LoadedModel, Metadata, load_model, read_metadata
from .config import fingerprint
from .learning.challengers import PromotionRule
from .learning.drift import DEFAULT_DETECTOR, DriftSettings, canonical
from .learning.model import ModelState, check_fits


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """A MODEL's drift and challenger parameters, checked.

    Parameters
    ----------
    drift_detector
        A ``river.drift`` detector name, ``none``, or None for the task's default (DDM for
        classifiers, ADWIN otherwise).
    drift_options
        The detector's keyword arguments as a JSON object text.
    drift_reaction
        ``alert``, ``reset`` or ``challenger`` (see :mod:`model_wrappers.learning.drift`).
    challengers
        Model folders of challenger pipelines.
    promote_after, promote_margin, promote_window, drift_trial
        The promotion rule (see :mod:`model_wrappers.learning.challengers`).

    """

    drift_detector: str | None = None
    drift_options: str = "{}"
    drift_reaction: str = "alert"
    challengers: tuple[str, ...] = ()
    promote_after: int = 1000
    promote_margin: float = 0.05
    promote_window: int = 500
    drift_trial: int = 100

    @classmethod
    def from_parameters(cls, drift_detector=None, drift_options=None, drift_reaction=None, challengers=None,
                        promote_after=None, promote_margin=None, promote_window=None,
                        drift_trial=None) -> "ModelOptions":
        """Options from Seldon parameters (strings, or lists for ``challengers``)."""
        if isinstance(challengers, str):
            challengers = [c.strip() for c in challengers.split(",") if c.strip()]
        default = cls()
        try:
            return cls(
                drift_detector=canonical(drift_detector) if drift_detector else None,
                drift_options=drift_options or "{}",
                drift_reaction=drift_reaction or default.drift_reaction,
                challengers=tuple(challengers or ()),
                promote_after=int(default.promote_after if promote_after is None else promote_after),
                promote_margin=float(default.promote_margin if promote_margin is None else promote_margin),
                promote_window=int(default.promote_window if promote_window is None else promote_window),
                drift_trial=int(default.drift_trial if drift_trial is None else drift_trial),
            )
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"model parameters: {exc}") from None

    def parameters(self) -> dict:
        """The options as parameters again (for ``/health/status`` and for rebuilding the state elsewhere)."""
        out = dataclasses.asdict(self)
        out["challengers"] = list(self.challengers)
        return out

    def drift(self, task: str) -> DriftSettings | None:
        try:
            return DriftSettings.for_task(task, self.drift_detector, self.drift_options, self.drift_reaction)
        except ValueError as exc:
            raise ArtifactError(f"drift parameters: {exc}") from None

    def rule(self, task: str) -> PromotionRule | None:
        if not self.challengers:
            return None
        try:
            return PromotionRule(task, self.promote_after, self.promote_margin, self.promote_window, self.drift_trial)
        except ValueError as exc:
            raise ArtifactError(f"challenger parameters: {exc}") from None

    def fresh_state(self, loaded: LoadedModel) -> Callable[[], ModelState]:
        """What the model's learning log starts from: the folder's pipeline and challengers, untouched."""
        meta = loaded.metadata
        drift, rule = self.drift(meta.task), self.rule(meta.task)
        if drift is not None and drift.reaction == "challenger" and not self.challengers:
            raise ArtifactError("drift_reaction challenger needs challengers (parameter challengers: model folders)")
        challengers = self._challengers(loaded)

        def fresh() -> ModelState:
            return ModelState(copy.deepcopy(loaded.pipeline), meta.task, meta.classes, name=meta.name, drift=drift,
                              challengers={n: copy.deepcopy(p) for n, p in challengers.items()}, rule=rule)

        return fresh

    def version(self, meta: Metadata, folder: str | Path) -> str:
        """What the log's name is made from: the model's sha256, and these options when not the defaults."""
        drift = self.drift(meta.task)
        defaults = drift is not None and drift.detector == DEFAULT_DETECTOR[meta.task] and drift.options == "{}" \
            and drift.reaction == "alert" and not self.challengers
        if defaults:
            return meta.sha256
        shas = [read_metadata(self._folder(folder, c)).sha256 for c in self.challengers]
        return fingerprint({**self.parameters(), "challengers": shas, "model": meta.sha256,
                            "drift": dataclasses.astuple(drift) if drift else None})

    @staticmethod
    def _folder(model_folder: str | Path, path: str) -> Path:
        folder = Path(path)
        return folder if folder.is_absolute() else Path(model_folder) / folder

    def _challengers(self, loaded: LoadedModel) -> dict:
        meta, found = loaded.metadata, {}
        for path in self.challengers:
            folder = self._folder(loaded.folder, path)
            try:
                other = load_model(folder)
            except (ArtifactError, OSError) as exc:
                raise ArtifactError(f"challenger {path}: {exc}") from None
            om = other.metadata
            if om.task != meta.task:
                raise ArtifactError(f"challenger {folder} is a {om.task}, but the model it challenges is a {meta.task}")
            if [f.name for f in om.features] != [f.name for f in meta.features]:
                raise ArtifactError(
                    f"challenger {folder} takes features {[f.name for f in om.features]}, but the model takes "
                    f"{[f.name for f in meta.features]}: a challenger must learn from the same rows"
                )
            if om.name == meta.name or om.name in found:
                raise ArtifactError(f"challenger {folder} is named {om.name!r}, a name already taken: "
                                    "export it with another --name")
            check_fits(other.pipeline, meta.task, f"{folder}/model.dill")
            found[om.name] = other.pipeline
        return found
