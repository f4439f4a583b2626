"""The model folder: a dill-serialized river pipeline plus the metadata needed to load it safely.

A model folder holds two well-known files:

- ``model.dill``: the pipeline, serialized with dill;
- ``seldon-river.json``: who wrote it (river, dill and Python versions), the sha256 of
  ``model.dill``, the task kind, the feature schema and, for classifiers, the known classes.

dill files do not load across river minor versions, so :func:`load_model` refuses a folder
written by another river minor version (or another dill/Python minor version) and any folder
whose ``model.dill`` does not match the recorded sha256, with a message naming the cause.

Examples
--------
>>> import tempfile
>>> from river import linear_model, preprocessing
>>> pipeline = preprocessing.StandardScaler() | linear_model.LogisticRegression()
>>> folder = tempfile.mkdtemp()
>>> meta = export_model(pipeline, folder, task="classifier", features=["x1", "x2"])
>>> meta.task, [f.name for f in meta.features]
('classifier', ['x1', 'x2'])
>>> loaded = load_model(folder)
>>> loaded.metadata.sha256 == meta.sha256
True

"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Iterable

import dill
import river

from .config import state_key

MODEL_FILE = "model.dill"
METADATA_FILE = "seldon-river.json"
SIGNATURE_FILE = "seldon-river.sig"
FORMAT_VERSION = 1
TASKS = ("classifier", "regressor", "anomaly")
FEATURE_TYPES = ("number", "category")


class ArtifactError(Exception):
    """A model folder cannot be written or loaded; the message says why."""


@dataclasses.dataclass(frozen=True)
class Feature:
    """One input feature: its name and whether it must be a number or may be a category."""

    name: str
    type: str = "number"

    @classmethod
    def parse(cls, spec: str | dict | "Feature") -> "Feature":
        """Read ``"name"``, ``"name:category"`` or ``{"name": ..., "type": ...}``."""
        if isinstance(spec, Feature):
            return spec
        if isinstance(spec, dict):
            name, kind = spec.get("name"), spec.get("type", "number")
        else:
            name, _, kind = str(spec).partition(":")
            kind = kind or "number"
        if not name:
            raise ArtifactError(f"a feature needs a name, got {spec!r}")
        if kind not in FEATURE_TYPES:
            raise ArtifactError(f"feature {name!r}: type must be one of {FEATURE_TYPES}, got {kind!r}")
        return cls(str(name), kind)


@dataclasses.dataclass(frozen=True)
class Metadata:
    """What ``seldon-river.json`` records about a model folder."""

    task: str
    sha256: str
    river_version: str
    dill_version: str
    python_version: str
    created: str
    features: tuple[Feature, ...] = ()
    classes: tuple[Any, ...] = ()
    name: str = "model"
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["features"] = [dataclasses.asdict(f) for f in self.features]
        out["classes"] = list(self.classes)
        return out

    @classmethod
    def from_json(cls, data: dict) -> "Metadata":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ArtifactError(f"{METADATA_FILE} has unknown fields {sorted(unknown)}")
        data = dict(data)
        data["features"] = tuple(Feature.parse(f) for f in data.get("features", ()))
        data["classes"] = tuple(data.get("classes", ()))
        return cls(**data)


@dataclasses.dataclass
class LoadedModel:
    """A verified pipeline and its metadata."""

    pipeline: Any
    metadata: Metadata
    folder: Path


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def infer_task(pipeline: Any) -> str:
    """Guess the task kind from river's own inspection helpers."""
    from river.utils import inspect

    if inspect.isanomalydetector(pipeline):
        return "anomaly"
    if inspect.isclassifier(pipeline):
        return "classifier"
    if inspect.isregressor(pipeline):
        return "regressor"
    raise ArtifactError(
        f"cannot tell whether {type(pipeline).__name__} is a classifier, regressor or anomaly "
        "detector: pass task= explicitly"
    )


def export_model(
    pipeline: Any,
    folder: str | os.PathLike,
    *,
    task: str | None = None,
    features: Iterable[str | dict | Feature] = (),
    classes: Iterable[Any] = (),
    name: str = "model",
    key: bytes | None = None,
) -> Metadata:
    """Write ``pipeline`` and its metadata to ``folder`` (created if needed).

    With ``key``, ``seldon-river.sig`` holds the HMAC-SHA256 of ``seldon-river.json``, which
    records the sha256 of ``model.dill``, so the signature covers both files.

    Parameters
    ----------
    pipeline
        Any river estimator or pipeline.
    folder
        Destination folder; existing model files in it are replaced atomically.
    task
        ``"classifier"``, ``"regressor"`` or ``"anomaly"``; inferred from the pipeline if omitted.
    features
        Feature names in column order (``"name"`` or ``"name:category"``). When given, requests
        are checked against them; an ndarray without names is read in this order.
    classes
        Class labels of a classifier, in output column order. When given, predictions always
        have these columns and feedback with any other label is refused.
    name
        A short name for logs and metrics.

    """
    task = task or infer_task(pipeline)
    if task not in TASKS:
        raise ArtifactError(f"task must be one of {TASKS}, got {task!r}")
    feats = tuple(Feature.parse(f) for f in features)
    names = [f.name for f in feats]
    if len(set(names)) != len(names):
        raise ArtifactError(f"feature names must be unique, got {names}")
    classes = tuple(classes)
    if classes and task != "classifier":
        raise ArtifactError(f"classes only apply to classifiers, not to a {task}")
    for c in classes:
        if not isinstance(c, (str, int, bool)):
            raise ArtifactError(f"class labels must be str, int or bool, got {c!r}")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    blob = dill.dumps(pipeline)
    atomic_write(out / MODEL_FILE, blob)
    meta = Metadata(
        task=task,
        sha256=hashlib.sha256(blob).hexdigest(),
        river_version=river.__version__,
        dill_version=dill.__version__,
        python_version=platform.python_version(),
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        features=feats,
        classes=classes,
        name=name,
    )
    text = json.dumps(meta.to_json(), indent=2).encode() + b"\n"
    signature = out / SIGNATURE_FILE
    if key is None:
        signature.unlink(missing_ok=True)
    else:
        atomic_write(signature, _sign(key, text).encode() + b"\n")
    atomic_write(out / METADATA_FILE, text)
    return meta


def _sign(key: bytes, metadata: bytes) -> str:
    return hmac.new(key, b"model-folder\0" + metadata, hashlib.sha256).hexdigest()


def check_signature(folder: Path, key: bytes | None) -> None:
    """Refuse an unsigned or wrongly signed folder when a key is configured, and a signed one without a key.

    A signed folder with no key configured is refused rather than loaded unchecked: whoever
    signed it meant it to be verified, and loading it silently would hide a missing Secret.
    """
    signature = folder / SIGNATURE_FILE
    if key is None:
        if signature.is_file():
            raise ArtifactError(
                f"{signature} exists but no state key is configured (SELDON_RIVER_STATE_KEY or "
                "SELDON_RIVER_STATE_KEY_FILE): refusing to load a signed model folder unverified"
            )
        return
    if not signature.is_file():
        raise ArtifactError(
            f"a state key is configured but {folder} has no {SIGNATURE_FILE}: refusing an unsigned "
            "model folder (export it with the key)"
        )
    text = (folder / METADATA_FILE).read_bytes()
    if not hmac.compare_digest(signature.read_text().strip(), _sign(key, text)):
        raise ArtifactError(
            f"{signature} does not match {METADATA_FILE} under the configured state key: the folder "
            "was changed after it was signed, or signed with another key; refusing to load it"
        )


def read_metadata(folder: str | os.PathLike) -> Metadata:
    """Read and check ``seldon-river.json`` without loading the pipeline."""
    path = Path(folder) / METADATA_FILE
    if not path.is_file():
        raise ArtifactError(
            f"{path} not found: a model folder needs {MODEL_FILE} and {METADATA_FILE} "
            "(write one with `seldon-river export`)"
        )
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from None
    meta = Metadata.from_json(data)
    if meta.format_version != FORMAT_VERSION:
        raise ArtifactError(
            f"{path} has format version {meta.format_version}; this seldon-river reads {FORMAT_VERSION}"
        )
    return meta


def check_versions(meta: Metadata) -> None:
    """Refuse a folder written by river, dill or Python versions whose pickles may not load here."""
    running = {
        "river": river.__version__,
        "dill": dill.__version__,
        "Python": platform.python_version(),
    }
    written = {"river": meta.river_version, "dill": meta.dill_version, "Python": meta.python_version}
    for lib, version in written.items():
        if _minor(version) != _minor(running[lib]):
            raise ArtifactError(
                f"model folder was written with {lib} {version} but {lib} {running[lib]} is running; "
                f"dill files do not load across {lib} minor versions: re-export the model with "
                f"{lib} {_minor(running[lib])}.x or serve it with {lib} {_minor(version)}.x"
            )


def load_model(folder: str | os.PathLike) -> LoadedModel:
    """Verify and load a model folder written by :func:`export_model`."""
    folder = Path(folder)
    meta = read_metadata(folder)
    check_signature(folder, state_key())
    check_versions(meta)
    path = folder / MODEL_FILE
    if not path.is_file():
        raise ArtifactError(f"{path} not found")
    # Hash the very bytes that get unpickled, so the file cannot change between check and load.
    blob = path.read_bytes()
    actual = hashlib.sha256(blob).hexdigest()
    if actual != meta.sha256:
        raise ArtifactError(
            f"{path} has sha256 {actual} but {METADATA_FILE} records {meta.sha256}: "
            "the file was changed after export; refusing to load it"
        )
    pipeline = dill.loads(blob)
    return LoadedModel(pipeline=pipeline, metadata=meta, folder=folder)
