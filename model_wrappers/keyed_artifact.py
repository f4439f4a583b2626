"""Keyed model folders: per-key river pipelines on top of the ordinary model folder.

A keyed folder is a model folder (:mod:`model_wrappers.artifact`: ``model.dill`` and
``seldon-river.json``, checked the same way) whose ``model.dill`` holds the *templates*
(candidate name -> pipeline, possibly empty), plus:

- ``keys.db``: an SQLite file with one row per key: the key's own candidate pipelines (what a
  dill'd ``{key: pipeline}`` mapping on disk becomes); read lazily, one key at a time;
- ``seldon-river-keyed.json``: the candidate names, which of them have templates, the default
  key feature, the selection rule, and the number and sha256 of ``keys.db``.

A key listed in ``keys.db`` starts from its own pipelines (candidates it lacks are copied from
the templates); any other key starts from copies of the templates, when there are templates
and the server is allowed to create keys. Templates are copied with their learned state (a
model warmed up on all keys is a fine template).

Examples
--------
>>> import tempfile
>>> from river import linear_model, neighbors
>>> folder = tempfile.mkdtemp()
>>> _ = export_keyed(folder, templates={"linear": linear_model.LinearRegression(),
...                                     "knn": neighbors.KNNRegressor()},
...                  mapping={"p1": {"linear": linear_model.LinearRegression(intercept_lr=0.5)}},
...                  features=["x"], key_feature="product_id")
>>> model = load_keyed(folder)
>>> model.candidates, sorted(model.listed), model.keyed.key_feature
(('linear', 'knn'), ['p1'], 'product_id')
>>> sorted(model.pipelines(["p1", "p2"])["p1"])
['knn', 'linear']

"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sqlite3
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .artifact import (
    ArtifactError,
    Feature,
    Metadata,
    atomic_write,
    check_signature,
    checked_features,
    load_model,
    sign_file,
    write_model,
)
from .config import state_key
from .learning.keyed import HIGHER_IS_BETTER, Selection, dumps, loads
from .learning.model import check_fits
from .pipeline_checks import checked_classes, checked_task

KEYED_FILE = "seldon-river-keyed.json"
KEYED_SIGNATURE_FILE = "seldon-river-keyed.sig"
KEYED_PURPOSE = b"keyed-model-folder"
KEYS_FILE = "keys.db"
KEYED_FORMAT = 1
SINGLE = "model"  # candidate name when each key has one plain pipeline
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
LOOKUP_CHUNK = 500


@dataclasses.dataclass(frozen=True)
class KeyedMetadata:
    """What ``seldon-river-keyed.json`` records."""

    candidates: tuple[str, ...]
    templates: tuple[str, ...]
    keys_count: int = 0
    keys_sha256: str | None = None
    key_feature: str | None = None
    selection_metric: str = "mae"
    min_observations: int = 7
    format_version: int = KEYED_FORMAT

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["candidates"], out["templates"] = list(self.candidates), list(self.templates)
        return out

    @classmethod
    def from_json(cls, data: dict) -> "KeyedMetadata":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ArtifactError(f"{KEYED_FILE} has unknown fields {sorted(unknown)}")
        data = dict(data)
        data["candidates"] = tuple(data.get("candidates", ()))
        data["templates"] = tuple(data.get("templates", ()))
        return cls(**data)

    @property
    def selection(self) -> Selection:
        return Selection(self.selection_metric, self.min_observations)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def key_text(value: Any) -> str:
    """Keys are text: ``42``, ``42.0`` and ``"42"`` are the same key."""
    if isinstance(value, bool) or value is None:
        raise ArtifactError(f"a key must be a string or an integer, got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ArtifactError(f"a key must be a string or an integer, got the number {value}")
        value = int(value)
    if not isinstance(value, (str, int)):
        raise ArtifactError(f"a key must be a string or an integer, got {type(value).__name__} {value!r}")
    return str(value)


def _candidates_of(templates: Mapping[str, Any], mapping: Mapping[Any, Any]) -> tuple[str, ...]:
    names = list(templates)
    for value in mapping.values():
        for name in (value if isinstance(value, Mapping) else {SINGLE: value}):
            if name not in names:
                names.append(name)
    return tuple(names)


def _write_keys(path: Path, mapping: Mapping[Any, Any]) -> int:
    """Write the per-key pipelines to a fresh SQLite file at ``path`` (atomically)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        db = sqlite3.connect(tmp, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("CREATE TABLE pipelines (key TEXT PRIMARY KEY, blob BLOB NOT NULL)")
            db.execute("BEGIN")
            seen: dict[str, Any] = {}
            for raw, value in mapping.items():
                key = key_text(raw)
                if key in seen:
                    raise ArtifactError(f"keys {seen[key]!r} and {raw!r} are the same key {key!r}")
                seen[key] = raw
                pipelines = dict(value) if isinstance(value, Mapping) else {SINGLE: value}
                db.execute("INSERT INTO pipelines (key, blob) VALUES (?, ?)", (key, dumps(pipelines)))
            db.execute("COMMIT")
        finally:
            db.close()
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return len(seen)


def export_keyed(
    folder: str | os.PathLike,
    *,
    templates: Any = None,
    mapping: Mapping[Any, Any] | None = None,
    task: str | None = None,
    features: Iterable[str | dict | Feature] = (),
    classes: Iterable[Any] = (),
    name: str = "keyed",
    key_feature: str | None = None,
    selection_metric: str | None = None,
    min_observations: int = 7,
    key: bytes | None = None,
) -> tuple[Metadata, KeyedMetadata]:
    """Write a keyed model folder.

    Parameters
    ----------
    folder
        Destination folder (created if needed).
    templates
        A pipeline, or candidate name -> pipeline: what a new key starts from.
    mapping
        Key -> pipeline, or key -> {candidate name: pipeline}: keys that start from their own
        (e.g. warmed-up) pipelines. Keys are strings or integers.
    task, features, classes, name
        As for :func:`model_wrappers.artifact.export_model`; ``features`` are the inputs of the
        per-key pipelines (the key feature is not one of them).
    key_feature
        The request feature that names the key, unless the server is told otherwise.
    selection_metric
        Progressive metric that picks each key's serving candidate (default by task: ``mae``,
        ``accuracy``, ``roc_auc``).
    min_observations
        Feedback rows a key needs before its serving candidate may change.
    key
        Sign the folder with this state key: ``seldon-river.sig`` covers ``seldon-river.json``
        (and so ``model.dill``), ``seldon-river-keyed.sig`` covers ``seldon-river-keyed.json``
        (and so ``keys.db``, whose sha256 it records).

    """
    if templates is not None and not isinstance(templates, Mapping):
        templates = {SINGLE: templates}
    templates = dict(templates or {})
    mapping = mapping or {}
    if not templates and not mapping:
        raise ArtifactError("a keyed model needs templates, a key -> pipeline mapping, or both")
    candidates = _candidates_of(templates, mapping)
    for candidate in candidates:
        if not isinstance(candidate, str) or not NAME.match(candidate):
            raise ArtifactError(
                f"candidate names must be identifiers (letters, digits, _; used in metric names), got {candidate!r}"
            )
    first = next(iter(templates.values()), None)
    if first is None:
        value = next(iter(mapping.values()))
        first = next(iter(value.values())) if isinstance(value, Mapping) else value
    task = checked_task(first, task)
    selection = Selection.for_task(task, selection_metric, min_observations)
    feats = checked_features(features)
    classes = checked_classes(first, task, classes, feats)
    if key_feature is not None and key_feature in {f.name for f in feats}:
        raise ArtifactError(
            f"key feature {key_feature!r} is listed among the features; features are the inputs of the "
            "per-key pipelines, the key only picks the pipelines"
        )
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    keys_path = out / KEYS_FILE
    if mapping:
        count = _write_keys(keys_path, mapping)
        keys_sha = _sha256(keys_path)
    else:
        count, keys_sha = 0, None
        if keys_path.exists():
            keys_path.unlink()
    meta = write_model(templates, out, task=task, features=feats, classes=classes, name=name, key=key)
    keyed = KeyedMetadata(
        candidates=candidates,
        templates=tuple(templates),
        keys_count=count,
        keys_sha256=keys_sha,
        key_feature=key_feature,
        selection_metric=selection.metric,
        min_observations=selection.min_observations,
    )
    text = json.dumps(keyed.to_json(), indent=2).encode() + b"\n"
    sign_file(out, key, text, KEYED_SIGNATURE_FILE, KEYED_PURPOSE)
    atomic_write(out / KEYED_FILE, text)
    return meta, keyed


def read_keyed_metadata(folder: str | os.PathLike) -> KeyedMetadata:
    """Read ``seldon-river-keyed.json``, checking its signature (without loading anything else).

    The file is read once and its signature checked over those bytes before they are parsed.
    """
    folder = Path(folder)
    path = folder / KEYED_FILE
    try:
        text = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise ArtifactError(
            f"{path} not found: this is not a keyed model folder (write one with "
            "model_wrappers.keyed_artifact.export_keyed)"
        ) from None
    check_signature(folder, state_key(), text, signed_file=KEYED_FILE, signature_file=KEYED_SIGNATURE_FILE,
                    purpose=KEYED_PURPOSE)
    try:
        keyed = KeyedMetadata.from_json(json.loads(text))
    except (ValueError, TypeError) as exc:
        raise ArtifactError(f"{path} is not valid: {exc}") from None
    if keyed.format_version != KEYED_FORMAT:
        raise ArtifactError(f"{path} has format version {keyed.format_version}; this seldon-river reads {KEYED_FORMAT}")
    if not keyed.candidates:
        raise ArtifactError(f"{path} names no candidates")
    if keyed.selection_metric not in HIGHER_IS_BETTER:
        raise ArtifactError(f"{path}: unknown selection metric {keyed.selection_metric!r}")
    return keyed


class KeyedModel:
    """A verified keyed folder, and the origin of keys that have no stored state yet.

    Attributes
    ----------
    metadata
        The model folder's :class:`~model_wrappers.artifact.Metadata`.
    keyed
        The :class:`KeyedMetadata`.
    candidates
        Candidate names, in declared order.
    listed
        Keys with pipelines of their own in ``keys.db``.
    creates
        Whether other keys can start from templates.

    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.keyed = read_keyed_metadata(self.folder)
        loaded = load_model(self.folder)  # versions and sha256 of model.dill, as for any model folder
        self.metadata = loaded.metadata
        templates = loaded.pipeline
        if not isinstance(templates, dict) or list(templates) != list(self.keyed.templates):
            raise ArtifactError(
                f"{self.folder}/model.dill should hold the templates {list(self.keyed.templates)}, "
                f"found {type(templates).__name__}"
            )
        for name, template in templates.items():
            check_fits(template, self.metadata.task, f"{self.folder}/model.dill template {name!r}")
        self.candidates = self.keyed.candidates
        self.creates = bool(templates)
        self._templates = {name: dumps(p) for name, p in templates.items()}
        self._db: sqlite3.Connection | None = None
        self.listed: frozenset[str] = frozenset()
        if self.keyed.keys_sha256:
            self._open_keys()

    def _open_keys(self) -> None:
        path = self.folder / KEYS_FILE
        if not path.is_file():
            raise ArtifactError(f"{path} not found, but {KEYED_FILE} lists {self.keyed.keys_count} keys in it")
        # The file is hashed once here and then opened immutable (a model volume is read-only).
        actual = _sha256(path)
        if actual != self.keyed.keys_sha256:
            raise ArtifactError(
                f"{path} has sha256 {actual} but {KEYED_FILE} records {self.keyed.keys_sha256}: "
                "the file was changed after export; refusing to load it"
            )
        try:
            self._db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
            self.listed = frozenset(k for (k,) in self._db.execute("SELECT key FROM pipelines"))
        except sqlite3.Error as exc:
            raise ArtifactError(f"{path} cannot be read: {exc}") from None
        if len(self.listed) != self.keyed.keys_count:
            raise ArtifactError(f"{path} has {len(self.listed)} keys, {KEYED_FILE} records {self.keyed.keys_count}")

    def template_copies(self) -> dict[str, Any]:
        """Fresh copies of the templates (learned state included)."""
        return {name: loads(blob) for name, blob in self._templates.items()}

    def pipelines(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Starting pipelines for ``keys``: their own, completed by templates, else templates."""
        own: dict[str, dict[str, Any]] = {}
        listed = [k for k in keys if k in self.listed]
        for start in range(0, len(listed), LOOKUP_CHUNK):
            part = listed[start:start + LOOKUP_CHUNK]
            marks = ",".join("?" * len(part))
            for key, blob in self._db.execute(f"SELECT key, blob FROM pipelines WHERE key IN ({marks})", part):
                own[key] = loads(bytes(blob))
        out = {}
        for key in keys:
            if key in own:
                pipelines = own[key]
                missing = [n for n in self.candidates if n not in pipelines and n in self._templates]
                for name in missing:
                    pipelines[name] = loads(self._templates[name])
                out[key] = {n: pipelines[n] for n in self.candidates if n in pipelines}
            elif self.creates:
                out[key] = self.template_copies()
        return out

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


def load_keyed(folder: str | os.PathLike) -> KeyedModel:
    """Verify and open a keyed model folder written by :func:`export_keyed`."""
    return KeyedModel(folder)


def is_keyed(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is a keyed model folder."""
    return (Path(folder) / KEYED_FILE).is_file()



# -- command line (``seldon-river export-keyed``) ------------------------------------------------
def add_arguments(parser, command: str) -> None:
    from .artifact import TASKS
    from .commands.export import add_sign_argument

    parser.add_argument("folder", help="the keyed model folder to write")
    parser.add_argument("--mapping", help="a dill file holding {key: pipeline} or {key: {candidate: pipeline}}")
    parser.add_argument("--templates", help="a dill file holding a pipeline or {candidate: pipeline} for new keys")
    parser.add_argument("--task", choices=TASKS, help="inferred from the pipelines when omitted")
    parser.add_argument("--features", default="",
                        help="inputs of the per-key pipelines in column order, comma separated (name:category)")
    parser.add_argument("--key-feature", help="the request feature that names the key (e.g. product_id)")
    parser.add_argument("--selection-metric", choices=sorted(HIGHER_IS_BETTER),
                        help="progressive metric that picks each key's serving candidate (default by task)")
    parser.add_argument("--min-observations", type=int, default=7,
                        help="feedback rows a key needs before its serving candidate may change")
    parser.add_argument("--name", default="keyed", help="a short name used in logs, metrics and the log name")
    add_sign_argument(parser)


def main(args) -> int:
    import sys

    import dill

    from .commands.export import signing_key

    def read(path):
        if not path:
            return None
        with open(path, "rb") as fh:
            return dill.load(fh)

    try:
        _, keyed = export_keyed(
            args.folder, templates=read(args.templates), mapping=read(args.mapping), task=args.task,
            features=[f.strip() for f in args.features.split(",") if f.strip()], name=args.name,
            key_feature=args.key_feature, selection_metric=args.selection_metric,
            min_observations=args.min_observations, key=signing_key(args),
        )
    except (OSError, ArtifactError, dill.UnpicklingError, ValueError) as exc:
        print(f"seldon-river export-keyed: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.folder}: candidates {', '.join(keyed.candidates)}, {keyed.keys_count} keys, "
          f"templates for {', '.join(keyed.templates) or 'none'}")
    return 0
