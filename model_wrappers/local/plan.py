"""From a SeldonDeployment to the processes Seldon's operator would have started.

Each graph node that makes calls (see :mod:`.graph`) becomes one ``seldon-river-microservice``
process configured as the operator configures a container: ``PREDICTIVE_UNIT_ID`` (the node's
name, which components use to find their ``meta.routing`` entry), ``PREDICTIVE_UNIT_PARAMETERS``
(the node's parameters), the port variables, and the container's own ``env``.

Two things a laptop has to supply differently from a cluster:

- model folders: a ``modelUri`` (``gs://``, ``pvc://``...) is not fetched; each RiverModel node
  gets a local folder (``--models NODE=DIR`` or ``--models-dir DIR`` holding ``DIR/NODE``),
  passed as its ``model_uri`` parameter;
- learning state: each seldon-river component keeps its log in ``sqlite:///STATE_DIR/NODE.db``,
  unless its parameters set a ``state_uri`` this machine can use: a sqlite file in a writable
  folder, or a Redis whose host name resolves here. A cluster's own store
  (``redis://<service>:6379``, ``sqlite:////var/lib/seldon-river/...`` on a volume) is replaced,
  with a note. ``--state-uri`` puts every component on one given store instead.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from . import graph
from .manifest import Deployment, ManifestError, Node

RIVER_MODEL = "model_wrappers.RiverModel"
ROUTER = "model_wrappers.BanditRouter"
DETECTOR = "model_wrappers.OutlierDetector"
KEYED_MODEL = "model_wrappers.KeyedRiverModel"
# Classes of this package; they take the state_uri parameter (and the models model_uri).
STATEFUL = {
    RIVER_MODEL: "model_wrappers.river_model.RiverModel",
    KEYED_MODEL: "model_wrappers.keyed_model.KeyedRiverModel",
    ROUTER: "model_wrappers.bandit_router.BanditRouter",
    DETECTOR: "model_wrappers.outlier_detector.OutlierDetector",
}
# The classes that serve a model folder (model_uri).
MODELS = (RIVER_MODEL, KEYED_MODEL)
PARAMETER_TYPES = ("INT", "FLOAT", "DOUBLE", "STRING", "BOOL")
# What the seldon-river image runs when a container sets no MODEL_NAME / SERVICE_TYPE.
IMAGE_DEFAULT = (RIVER_MODEL, "MODEL")
# Folders of the seldon-river image: only meaningful inside its containers.
IMAGE_PATHS = ("/var/lib/seldon-river", "/mnt/models")


@dataclasses.dataclass(frozen=True)
class Component:
    """One graph node as a process to start."""

    node: str
    class_path: str
    service_type: str
    parameters: tuple[dict, ...]
    env: dict
    image: str | None = None
    model_folder: Path | None = None

    def parameters_json(self) -> str:
        """``PREDICTIVE_UNIT_PARAMETERS`` as the operator sets it."""
        return json.dumps(list(self.parameters))


def _canonical(class_path: str) -> str:
    for short, full in STATEFUL.items():
        if class_path in (short, full):
            return short
    return class_path


def _check_parameters(node: Node) -> None:
    # The API server would refuse these; catching them here saves a trip to a cluster.
    for p in node.parameters:
        name, kind, value = p.get("name"), p.get("type"), p.get("value")
        if not name:
            raise ManifestError(f"graph node {node.name!r}: a parameter has no name: {p}")
        if kind not in PARAMETER_TYPES:
            raise ManifestError(
                f"graph node {node.name!r}, parameter {name!r}: type must be one of {PARAMETER_TYPES}, got {kind!r}"
            )
        if not isinstance(value, str):
            raise ManifestError(
                f"graph node {node.name!r}, parameter {name!r}: a SeldonDeployment needs the value as a "
                f"string (quote it: \"{value}\"), got {type(value).__name__} {value!r}"
            )


def _with(parameters: list[dict], name: str, value: str) -> list[dict]:
    return [p for p in parameters if p.get("name") != name] + [{"name": name, "type": "STRING", "value": value}]


def model_folder(node: Node, models: dict[str, Path], models_dir: Path | None,
                 container_paths: tuple[str, ...] = ()) -> Path:
    """The local model folder of a RiverModel node, or a ManifestError saying how to give one."""
    if node.name in models:
        folder = Path(models[node.name]).expanduser().resolve()
        if not folder.is_dir():
            raise ManifestError(f"--models {node.name}={models[node.name]}: no such folder")
        return folder
    if models_dir is not None:
        folder = (Path(models_dir) / node.name).expanduser().resolve()
        if folder.is_dir():
            return folder
    declared = node.parameter("model_uri")
    if declared and Path(declared).is_absolute() and Path(declared).is_dir() and not any(
        Path(declared).is_relative_to(m) for m in container_paths
    ):
        return Path(declared)
    source = node.model_uri or declared or "/mnt/models"
    looked = f"; looked for {Path(models_dir) / node.name}" if models_dir is not None else ""
    raise ManifestError(
        f"graph node {node.name!r} needs a local model folder: its model ({source}) cannot be fetched "
        f"by a local run. Pass --models {node.name}=DIR, or --models-dir DIR with a folder "
        f"DIR/{node.name}{looked}. `seldon-river export` writes a model folder."
    )


@functools.lru_cache(maxsize=None)
def _resolves(host: str) -> bool:
    try:
        socket.getaddrinfo(host, None)
        return True
    except (socket.gaierror, UnicodeError, OSError):
        return False


def usable_here(state_uri: str, container_paths: tuple[str, ...] = IMAGE_PATHS) -> str | None:
    """None when this machine can use ``state_uri``, else why not.

    A sqlite file under one of ``container_paths`` (the container's volume mounts) belongs to
    the pod, not to this machine, even when the same path happens to exist here.
    """
    url = urlparse(state_uri)
    if url.scheme == "sqlite":
        # As model_wrappers.log.open_log reads it; the folder is created when it can be.
        path = Path(state_uri[len("sqlite:///"):])
        for mount in container_paths:
            if path.is_absolute() and path.is_relative_to(mount):
                return f"{mount} is a folder of the container"
        folder = path.parent
        existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
        if not existing.is_dir() or not os.access(existing, os.W_OK):
            return f"{folder} cannot be written here"
    elif url.scheme in ("redis", "rediss"):
        if not url.hostname or not _resolves(url.hostname):
            return f"the host {url.hostname!r} does not resolve here (a cluster service name)"
    return None


def state_uri_for(node: Node, state_dir: Path, forced: str | None,
                  container_paths: tuple[str, ...] = IMAGE_PATHS) -> tuple[str, str | None]:
    """The ``state_uri`` a node runs with locally, and a note when the manifest's is replaced."""
    if forced:
        return forced, None
    default = f"sqlite:///{state_dir / (node.name + '.db')}"
    declared = node.parameter("state_uri")
    if declared is None:
        return default, None
    problem = usable_here(declared, container_paths)
    if problem is None:
        return declared, None
    return default, f"graph node {node.name!r}: state_uri {declared} is not usable locally ({problem}); using {default}"


def river_model_nodes(deployment: Deployment) -> list[str]:
    """Names of the graph nodes that serve a model folder (RiverModel, KeyedRiverModel), in graph order."""
    out = []
    for node in deployment.predictor.graph.walk():
        container = deployment.predictor.containers.get(node.name)
        if container is None or not graph.needs_process(node):
            continue
        class_path = container.env.get("MODEL_NAME") or (IMAGE_DEFAULT[0] if node.type in (None, "MODEL") else "")
        if _canonical(class_path) in MODELS:
            out.append(node.name)
    return out


def _class_of(node: Node, container) -> tuple[str, str, list[str]]:
    notes = []
    env = container.env if container else {}
    class_path = env.get("MODEL_NAME")
    service_type = env.get("SERVICE_TYPE") or node.type or IMAGE_DEFAULT[1]
    if not class_path:
        if node.type not in (None, "MODEL"):
            raise ManifestError(
                f"container {node.name!r} sets no MODEL_NAME, so the seldon-river image would run "
                f"{IMAGE_DEFAULT[0]} for a {node.type}; set env MODEL_NAME (e.g. "
                f"{ROUTER if node.type == 'ROUTER' else DETECTOR})"
            )
        class_path = IMAGE_DEFAULT[0]
        notes.append(f"container {node.name!r}: no MODEL_NAME env, running the image default {class_path}")
    return class_path, service_type, notes


def plan(
    deployment: Deployment,
    state_dir: Path,
    models: dict[str, Path] | None = None,
    models_dir: Path | None = None,
    state_uri: str | None = None,
) -> tuple[list[Component], list[str]]:
    """The components to start for ``deployment``, and notes about what differs from a cluster.

    Parameters
    ----------
    deployment
        The SeldonDeployment read by :func:`.manifest.read_deployment`.
    state_dir
        Where learning logs go unless a node's parameters set ``state_uri``.
    models
        Node name to local model folder.
    models_dir
        A folder holding one model folder per node name.
    state_uri
        One learning-log URI for every component, instead of each node's own.

    """
    models = dict(models or {})
    predictor = deployment.predictor
    state_dir = Path(state_dir).resolve()
    nodes = list(predictor.graph.walk())
    unknown = sorted(set(models) - {n.name for n in nodes})
    if unknown:
        raise ManifestError(f"--models names {unknown}, which are not graph nodes: {[n.name for n in nodes]}")
    components, notes = [], list(predictor.notes)
    for node in nodes:
        _check_parameters(node)
        if not graph.needs_process(node):
            if node.implementation and not graph.abtest(node):
                raise ManifestError(
                    f"graph node {node.name!r}: implementation {node.implementation} is not something "
                    "a local run can start"
                )
            continue
        container = predictor.containers.get(node.name)
        if container is None:
            what = f"implementation {node.implementation}" if node.implementation else "no container"
            raise ManifestError(
                f"graph node {node.name!r} ({node.type or 'no type'}) has {what}: a local run starts the "
                f"container named {node.name!r} of componentSpecs, and there is none"
            )
        class_path, service_type, class_notes = _class_of(node, container)
        notes.extend(class_notes)
        parameters = [dict(p) for p in node.parameters]
        folder = None
        canonical = _canonical(class_path)
        if canonical in MODELS:
            folder = model_folder(node, models, models_dir, IMAGE_PATHS + container.mounts)
            parameters = _with(parameters, "model_uri", str(folder))
        if canonical in STATEFUL:
            uri, note = state_uri_for(node, state_dir, state_uri, IMAGE_PATHS + container.mounts)
            parameters = _with(parameters, "state_uri", uri)
            if note:
                notes.append(note)
        components.append(
            Component(
                node=node.name,
                class_path=class_path,
                service_type=service_type,
                parameters=tuple(parameters),
                env=dict(container.env),
                image=container.image,
                model_folder=folder,
            )
        )
    if not components:
        raise ManifestError("the graph has no component to start")
    return components, notes
