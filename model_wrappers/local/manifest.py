"""Reading the SeldonDeployment that ``seldon-river run`` starts.

Only what a local run needs is kept: the chosen predictor's graph (names, types, methods,
implementation, parameters, ``modelUri``), the containers of its ``componentSpecs`` (their plain
``env`` values) and the orchestrator's environment (``svcOrchSpec.env``). Anything a laptop
cannot reproduce (``valueFrom``, ``envFrom``, volumes) is recorded as a note so the command can
say what it left out instead of silently behaving differently from a cluster.

Examples
--------
>>> import tempfile, textwrap, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "sd.yaml"
>>> _ = path.write_text(textwrap.dedent('''
...     apiVersion: machinelearning.seldon.io/v1
...     kind: SeldonDeployment
...     metadata: {name: iris}
...     spec:
...       predictors:
...       - name: default
...         graph: {name: clf, type: MODEL, modelUri: gs://bucket/iris}
...         componentSpecs:
...         - spec:
...             containers:
...             - name: clf
...               env: [{name: MODEL_NAME, value: model_wrappers.RiverModel}]
... '''))
>>> sd = read_deployment(path)
>>> sd.name, sd.namespace, sd.predictor.graph.name, sd.predictor.graph.model_uri
('iris', 'default', 'clf', 'gs://bucket/iris')
>>> sd.predictor.containers["clf"].env["MODEL_NAME"]
'model_wrappers.RiverModel'

"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator

from ..manifest_files import SELDON_GROUP, ManifestError, is_seldon_deployment, read_documents

NODE_TYPES = ("MODEL", "ROUTER", "TRANSFORMER", "OUTPUT_TRANSFORMER", "COMBINER", "UNKNOWN_TYPE")
METHODS = ("TRANSFORM_INPUT", "TRANSFORM_OUTPUT", "ROUTE", "AGGREGATE", "SEND_FEEDBACK")
ROUTING_INJECTION_ENV = "SELDON_ENABLE_ROUTING_INJECTION"
REST_TIMEOUT_ANNOTATION = "seldon.io/rest-timeout"


@dataclasses.dataclass(frozen=True)
class Node:
    """One node of a predictor's inference graph."""

    name: str
    type: str | None = None
    implementation: str | None = None
    methods: tuple[str, ...] = ()
    parameters: tuple[dict, ...] = ()
    model_uri: str | None = None
    children: tuple["Node", ...] = ()

    def walk(self) -> Iterator["Node"]:
        """This node and every node below it, parents before children."""
        yield self
        for child in self.children:
            yield from child.walk()

    def parameter(self, name: str) -> str | None:
        """The raw (string) value of a Seldon parameter, or None."""
        for p in self.parameters:
            if p.get("name") == name:
                return p.get("value")
        return None


@dataclasses.dataclass(frozen=True)
class Container:
    """A container of ``componentSpecs``: its name, image and the env values a run can use."""

    name: str
    image: str | None = None
    env: dict = dataclasses.field(default_factory=dict)
    mounts: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Predictor:
    """The predictor that runs: its graph, containers and orchestrator environment."""

    name: str
    graph: Node
    containers: dict
    orchestrator_env: dict
    notes: tuple[str, ...] = ()

    @property
    def routing_injection(self) -> bool:
        """Whether Seldon's orchestrator would put ``meta.routing`` into responses.

        The orchestrator tests only that the variable is non-empty, so ``"false"`` enables it too.
        """
        return bool(self.orchestrator_env.get(ROUTING_INJECTION_ENV))


@dataclasses.dataclass(frozen=True)
class Deployment:
    """A SeldonDeployment reduced to what a local run needs."""

    name: str
    namespace: str
    predictor: Predictor
    annotations: dict
    source: Path
    other_predictors: tuple[str, ...] = ()

    @property
    def rest_timeout(self) -> float | None:
        """The ``seldon.io/rest-timeout`` annotation (milliseconds) in seconds, if set."""
        raw = self.annotations.get(REST_TIMEOUT_ANNOTATION)
        if raw in (None, ""):
            return None
        try:
            return int(raw) / 1000.0
        except ValueError:
            raise ManifestError(
                f"annotation {REST_TIMEOUT_ANNOTATION} must be milliseconds as an integer, got {raw!r}"
            ) from None


def _node(raw, where: str) -> Node:
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: expected a graph node (a mapping), got {type(raw).__name__}")
    name = raw.get("name")
    if not name or not isinstance(name, str):
        raise ManifestError(f"{where}: every graph node needs a name, got {name!r}")
    kind = raw.get("type")
    if kind is not None and kind not in NODE_TYPES:
        raise ManifestError(f"graph node {name!r}: type must be one of {NODE_TYPES}, got {kind!r}")
    methods = tuple(raw.get("methods") or ())
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ManifestError(f"graph node {name!r}: unknown methods {unknown}; expected some of {METHODS}")
    parameters = raw.get("parameters") or []
    if not isinstance(parameters, list) or not all(isinstance(p, dict) for p in parameters):
        raise ManifestError(f"graph node {name!r}: parameters must be a list of {{name, type, value}}")
    children = raw.get("children") or []
    if not isinstance(children, list):
        raise ManifestError(f"graph node {name!r}: children must be a list")
    return Node(
        name=name,
        type=kind,
        implementation=raw.get("implementation") or None,
        methods=methods,
        parameters=tuple(dict(p) for p in parameters),
        model_uri=raw.get("modelUri") or None,
        children=tuple(_node(c, f"graph node {name!r}, child {i}") for i, c in enumerate(children)),
    )


def _env(items, owner: str) -> tuple[dict, list[str]]:
    """Plain ``name: value`` pairs, and a note for every entry a local run cannot resolve."""
    values, notes = {}, []
    for item in items or []:
        if not isinstance(item, dict) or "name" not in item:
            raise ManifestError(f"{owner}: env entries need a name, got {item!r}")
        if "value" in item:
            values[item["name"]] = "" if item["value"] is None else str(item["value"])
        elif "valueFrom" in item:
            notes.append(f"{owner}: env {item['name']} comes from valueFrom, which a local run cannot read")
    return values, notes


def _containers(predictor: dict) -> tuple[dict, list[str]]:
    containers, notes = {}, []
    for spec in predictor.get("componentSpecs") or []:
        pod = (spec or {}).get("spec") or {}
        for raw in pod.get("containers") or []:
            name = raw.get("name")
            owner = f"container {name!r}"
            env, env_notes = _env(raw.get("env"), owner)
            for source in raw.get("envFrom") or []:
                ref = source.get("secretRef") or source.get("configMapRef") or {}
                env_notes.append(f"{owner}: envFrom {ref.get('name', source)!r} is not read by a local run")
            mounts = tuple(m["mountPath"] for m in raw.get("volumeMounts") or [] if m.get("mountPath"))
            containers[name] = Container(name=name, image=raw.get("image"), env=env, mounts=mounts,
                                         notes=tuple(env_notes))
            notes.extend(env_notes)
    return containers, notes


def read_deployment(path: str | Path, predictor: str | None = None, name: str | None = None) -> Deployment:
    """Read one SeldonDeployment (and one of its predictors) from a YAML file.

    Parameters
    ----------
    path
        A YAML file; other Kubernetes objects in it (Secrets, Services...) are ignored.
    predictor
        The predictor to run; by default the first one.
    name
        The SeldonDeployment to use when the file holds several.

    """
    path = Path(path)
    docs = read_documents(path)
    found = [d for d in docs if is_seldon_deployment(d)]
    if not found:
        kinds = sorted({f"{d.get('kind')}" for d in docs if isinstance(d, dict) and "kind" in d})
        hint = (
            " (it looks like a Helm values file: render it with `helm template` first)"
            if docs and not kinds else ""
        )
        raise ManifestError(
            f"{path}: expected a SeldonDeployment (apiVersion {SELDON_GROUP}/v1), "
            f"found {', '.join(kinds) or 'no Kubernetes objects'}{hint}"
        )
    if name is not None:
        found = [d for d in found if (d.get("metadata") or {}).get("name") == name]
        if not found:
            raise ManifestError(f"{path}: no SeldonDeployment named {name!r}")
    elif len(found) > 1:
        names = [(d.get("metadata") or {}).get("name") for d in found]
        raise ManifestError(f"{path} holds several SeldonDeployments {names}: choose one with --deployment")
    doc = found[0]
    meta = doc.get("metadata") or {}
    spec = doc.get("spec") or {}
    if not meta.get("name"):
        raise ManifestError(f"{path}: the SeldonDeployment has no metadata.name")
    predictors = spec.get("predictors") or []
    if not predictors:
        raise ManifestError(f"{path}: SeldonDeployment {meta['name']!r} has no spec.predictors")
    names = [p.get("name") for p in predictors]
    if predictor is None:
        chosen = predictors[0]
    else:
        matches = [p for p in predictors if p.get("name") == predictor]
        if not matches:
            raise ManifestError(f"{path}: no predictor {predictor!r}; the predictors are {names}")
        chosen = matches[0]
    if not chosen.get("graph"):
        raise ManifestError(f"{path}: predictor {chosen.get('name')!r} has no graph")
    graph = _node(chosen["graph"], f"predictor {chosen.get('name')!r}")
    seen: set[str] = set()
    for node in graph.walk():
        if node.name in seen:
            raise ManifestError(f"graph node names must be unique: {node.name!r} appears twice")
        seen.add(node.name)
    containers, notes = _containers(chosen)
    orchestrator_env, orch_notes = _env((chosen.get("svcOrchSpec") or {}).get("env"), "svcOrchSpec")
    return Deployment(
        name=meta["name"],
        namespace=meta.get("namespace") or "default",
        predictor=Predictor(
            name=chosen.get("name") or "default",
            graph=graph,
            containers=containers,
            orchestrator_env=orchestrator_env,
            notes=tuple(notes + orch_notes),
        ),
        annotations={
            **(meta.get("annotations") or {}),
            **(spec.get("annotations") or {}),
            **(chosen.get("annotations") or {}),
        },
        source=path,
        other_predictors=tuple(n for n in names if n != chosen.get("name")),
    )
