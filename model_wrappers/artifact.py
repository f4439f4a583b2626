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
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable

import dill
import river

from . import river_versions
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
        name = str(name)
        if name != name.strip() or "," in name or not re.search(r"\w", name):
            raise ArtifactError(
                f"{name!r} is not a feature name (a name has a letter, digit or _, no comma and no "
                "surrounding spaces): list every feature by name, e.g. features a,b,c"
            )
        if kind not in FEATURE_TYPES:
            raise ArtifactError(f"feature {name!r}: type must be one of {FEATURE_TYPES}, got {kind!r}")
        return cls(name, kind)


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
    provenance: dict | None = None  # a pulled state: its log, position, events learned, metrics

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["features"] = [dataclasses.asdict(f) for f in self.features]
        out["classes"] = list(self.classes)
        if self.provenance is None:
            del out["provenance"]
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
    """Guess the task kind from what the pipeline's last step is."""
    from .river_kinds import is_anomaly_detector, is_classifier, is_regressor

    if is_anomaly_detector(pipeline):
        return "anomaly"
    if is_classifier(pipeline):
        return "classifier"
    if is_regressor(pipeline):
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
    name: str | None = None,
    key: bytes | None = None,
    force: bool = False,
    provenance: dict | None = None,
) -> Metadata:
    """Check ``pipeline`` against what it is told, then write it and its metadata to ``folder``.

    With ``key``, ``seldon-river.sig`` holds the HMAC-SHA256 of ``seldon-river.json``, which
    records the sha256 of ``model.dill``, so the signature covers both files.

    Parameters
    ----------
    pipeline
        Any river estimator or pipeline.
    folder
        Destination folder, created if needed; one that exists and is not empty is refused
        unless ``force``.
    task
        ``"classifier"``, ``"regressor"`` or ``"anomaly"``; inferred from the pipeline if omitted,
        refused if it contradicts the pipeline.
    features
        Feature names in column order (``"name"`` or ``"name:category"``). When given, requests
        are checked against them; an ndarray without names is read in this order.
    classes
        Class labels of a classifier, in output column order: predictions always have these
        columns and feedback with any other label is refused. They must include every label the
        pipeline predicts (a binary classifier predicts ``True`` and ``False``); when omitted they
        are the labels the pipeline predicts, and a classifier that has learned none is refused.
    name
        A short name for logs, metrics and the log name; the folder's name by default.
    force
        Replace the model files of an existing folder.
    provenance
        Where the pipeline comes from (for a pulled state: its log, position and metrics).

    """
    from .pipeline_checks import checked_classes, checked_task

    task = checked_task(pipeline, task)
    feats = checked_features(features)
    classes = checked_classes(pipeline, task, classes, feats)
    out = prepare_folder(folder, force)
    return write_model(pipeline, out, task=task, features=feats, classes=classes, name=name or out.name,
                       key=key, provenance=provenance)


def checked_features(features: Iterable[str | dict | Feature]) -> tuple[Feature, ...]:
    """Parsed feature specs, refused unless their names are unique."""
    feats = tuple(Feature.parse(f) for f in features)
    names = [f.name for f in feats]
    if len(set(names)) != len(names):
        raise ArtifactError(f"feature names must be unique, got {names}")
    return feats


def prepare_folder(folder: str | os.PathLike, force: bool) -> Path:
    """The destination folder, created; an existing one that is not empty only with ``force``."""
    out = Path(folder).resolve()
    if out.exists() and not out.is_dir():
        raise ArtifactError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        held = ", ".join(sorted(p.name for p in out.iterdir())[:5])
        raise ArtifactError(f"{out} already exists and is not empty ({held}): choose a new folder, "
                            "or pass --force (force=True) to replace its model files")
    from .keyed_artifact import is_keyed

    if is_keyed(out):
        raise ArtifactError(f"{out} is a keyed model folder: write the model to a new folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_model(pipeline: Any, out: Path, *, task: str, features: tuple[Feature, ...], classes: tuple,
                name: str, key: bytes | None = None, provenance: dict | None = None) -> Metadata:
    """Write ``model.dill`` and ``seldon-river.json`` (and the signature) to an existing folder, unchecked."""
    blob = dill.dumps(pipeline)
    atomic_write(out / MODEL_FILE, blob)
    meta = Metadata(
        task=task,
        sha256=hashlib.sha256(blob).hexdigest(),
        river_version=river.__version__,
        dill_version=dill.__version__,
        python_version=platform.python_version(),
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        features=features,
        classes=classes,
        name=name,
        provenance=provenance,
    )
    text = json.dumps(meta.to_json(), indent=2).encode() + b"\n"
    sign_file(out, key, text)
    atomic_write(out / METADATA_FILE, text)
    return meta


def _sign(key: bytes, signed: bytes, purpose: bytes = b"model-folder") -> str:
    # The purpose keeps a signature of one metadata file from standing for another.
    return hmac.new(key, purpose + b"\0" + signed, hashlib.sha256).hexdigest()


def sign_file(out: Path, key: bytes | None, signed: bytes, signature_file: str = SIGNATURE_FILE,
              purpose: bytes = b"model-folder") -> None:
    """Write (with ``key``) or remove (without) the signature of ``signed`` in ``out``."""
    signature = out / signature_file
    if key is None:
        signature.unlink(missing_ok=True)
    else:
        atomic_write(signature, _sign(key, signed, purpose).encode() + b"\n")


def check_signature(folder: Path, key: bytes | None, signed: bytes, *, signed_file: str = METADATA_FILE,
                    signature_file: str = SIGNATURE_FILE, purpose: bytes = b"model-folder") -> None:
    """Refuse an unsigned or wrongly signed folder when a key is configured, and a signed one without a key.

    ``signed`` is the content of ``signed_file`` as the caller read it: the caller parses these
    very bytes, so the file cannot change between the check and its use.

    A signed folder with no key configured is refused rather than loaded unchecked: whoever
    signed it meant it to be verified, and loading it silently would hide a missing Secret.
    """
    signature = folder / signature_file
    if key is None:
        if signature.is_file():
            raise ArtifactError(
                f"{signature} exists but no state key is configured (SELDON_RIVER_STATE_KEY or "
                "SELDON_RIVER_STATE_KEY_FILE): refusing to load a signed model folder unverified"
            )
        return
    if not signature.is_file():
        raise ArtifactError(
            f"a state key is configured but {folder} has no {signature_file}: refusing an unsigned "
            "model folder (export it with the key)"
        )
    if not hmac.compare_digest(signature.read_text().strip(), _sign(key, signed, purpose)):
        raise ArtifactError(
            f"{signature} does not match {signed_file} under the configured state key: the folder "
            "was changed after it was signed, or signed with another key; refusing to load it"
        )


def metadata_bytes(folder: str | os.PathLike) -> bytes:
    """The bytes of a folder's ``seldon-river.json``, read once."""
    path = Path(folder) / METADATA_FILE
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise ArtifactError(
            f"{path} not found: a model folder needs {MODEL_FILE} and {METADATA_FILE} "
            "(write one with `seldon-river export`)"
        ) from None
    except IsADirectoryError:
        raise ArtifactError(f"{path} is a folder, not a metadata file") from None


def parse_metadata(folder: str | os.PathLike, text: bytes) -> Metadata:
    """Check and parse the bytes of ``seldon-river.json``."""
    path = Path(folder) / METADATA_FILE
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path} should hold a JSON object, found {type(data).__name__}")
    meta = Metadata.from_json(data)
    if meta.format_version != FORMAT_VERSION:
        raise ArtifactError(
            f"{path} has format version {meta.format_version}; this seldon-river reads {FORMAT_VERSION}"
        )
    return meta


def read_metadata(folder: str | os.PathLike) -> Metadata:
    """Read and check ``seldon-river.json`` without loading the pipeline (and without its signature)."""
    return parse_metadata(folder, metadata_bytes(folder))


def check_versions(meta: Metadata) -> None:
    """Refuse a folder written by river, dill or Python versions whose pickles may not load here."""
    running = {
        "river": river.__version__,
        "dill": dill.__version__,
        "Python": platform.python_version(),
    }
    written = {"river": meta.river_version, "dill": meta.dill_version, "Python": meta.python_version}
    if _minor(meta.river_version) != _minor(running["river"]):
        raise ArtifactError(
            f"model folder was written with river {meta.river_version} but river {running['river']} is "
            f"running; dill files do not load across river minor versions: serve it with "
            f"{river_versions.needed(meta.river_version)}, or re-export the model with river "
            f"{_minor(running['river'])}.x"
        )
    for lib, version in written.items():
        if _minor(version) != _minor(running[lib]):
            raise ArtifactError(
                f"model folder was written with {lib} {version} but {lib} {running[lib]} is running; "
                f"dill files do not load across {lib} minor versions: re-export the model with "
                f"{lib} {_minor(running[lib])}.x or serve it with {lib} {_minor(version)}.x"
            )


def _verified(folder: Path) -> tuple[Metadata, bytes]:
    """The metadata and ``model.dill``'s bytes of a folder whose checks all pass."""
    # One read of the metadata: the signature is checked over the very bytes that are parsed.
    text = metadata_bytes(folder)
    check_signature(folder, state_key(), text)
    meta = parse_metadata(folder, text)
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
    return meta, blob


def load_model(folder: str | os.PathLike) -> LoadedModel:
    """Verify and load a model folder written by :func:`export_model`."""
    folder = Path(folder)
    meta, blob = _verified(folder)
    return LoadedModel(pipeline=dill.loads(blob), metadata=meta, folder=folder)


def folder_problem(folder: str | os.PathLike, keyed: bool = False) -> str | None:
    """What stops ``folder`` from being served, in one line, or None when it can be.

    Every check of loading runs except unpickling, so a server is started only for a folder it
    will load. ``keyed`` says whether it is to be served as a keyed model.
    """
    from .keyed_artifact import is_keyed, read_keyed_metadata

    folder = Path(folder)
    if not folder.exists():
        return f"{folder}: no such folder (write a model folder with `seldon-river export`)"
    if not folder.is_dir():
        return f"{folder} is a file, not a model folder (write one with `seldon-river export`)"
    if is_keyed(folder) != keyed:
        return (f"{folder} is a keyed model folder: serve it with --component keyed" if not keyed
                else f"{folder} is not a keyed model folder: serve it with --component model")
    try:
        _verified(folder)
        if keyed:
            read_keyed_metadata(folder)
    except (ArtifactError, OSError) as exc:
        return " ".join(str(exc).split())
    return None
