"""Reading the objects to deploy, and the checks made before a cluster sees them.

A manifest is a multi-document YAML file of Kubernetes objects. A file whose documents are not
Kubernetes objects (no ``apiVersion``/``kind``) is taken as a values file for the Helm chart and
rendered with ``helm template``. The API server validates each object against its schema (for a
SeldonDeployment, the schema of Seldon's CRD); :func:`check_objects` adds what that schema
cannot express but the Seldon Python wrapper enforces at start-up, e.g. the type of a
graph parameter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ..manifest_files import SELDON_GROUP, ManifestError, is_seldon_deployment, parse_documents, read_documents

# SELDON_GROUP and ManifestError are imported from here by the deploy command and its client.
__all__ = [
    "SELDON_GROUP", "ManifestError", "check_objects", "default_chart", "find_helm", "is_seldon_deployment",
    "load_objects", "render_values",
]

# The types seldon_core.microservice.parse_parameters knows; any other type makes the
# component exit at start-up, long after the API server accepted the object.
PARAMETER_TYPES = ("INT", "FLOAT", "DOUBLE", "STRING", "BOOL")
_TRUE = {"y", "yes", "t", "true", "on", "1"}
_FALSE = {"n", "no", "f", "false", "off", "0"}


def _is_object(doc) -> bool:
    return isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc


def find_helm(explicit: str | None = None) -> str:
    """The helm binary: ``explicit``, else ``$SELDON_RIVER_HELM``, else ``helm`` on PATH."""
    candidate = explicit or os.environ.get("SELDON_RIVER_HELM") or shutil.which("helm")
    if not candidate or not Path(candidate).is_file():
        raise ManifestError(
            "rendering a values file needs helm: pass --helm PATH or set SELDON_RIVER_HELM "
            "(bash scripts/tools.sh ensure helm builds one)"
        )
    return candidate


def default_chart() -> Path | None:
    """``charts/seldon-river`` of the source tree this package runs from, if there is one."""
    chart = Path(__file__).resolve().parents[2] / "charts" / "seldon-river"
    return chart if (chart / "Chart.yaml").is_file() else None


def render_values(values: Path, chart: Path, release: str, namespace: str | None, helm: str) -> str:
    """Renders ``chart`` with the values file ``values`` through ``helm template``."""
    cmd = [helm, "template", release, str(chart), "-f", str(values)]
    if namespace:
        cmd += ["--namespace", namespace]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        message = " ".join(proc.stderr.split()) or f"exit status {proc.returncode}"
        raise ManifestError(f"helm template {chart} -f {values} failed: {message}")
    return proc.stdout


def load_objects(
    path: str | Path,
    *,
    chart: str | Path | None = None,
    release: str = "seldon-river",
    namespace: str | None = None,
    helm: str | None = None,
) -> list[dict]:
    """Reads the objects to deploy from a manifest, or from a values file rendered with Helm.

    Parameters
    ----------
    path
        A multi-document YAML manifest, or a values file for the chart.
    chart
        The chart a values file is rendered with; default :func:`default_chart`.
    release
        Helm release name used when rendering.
    namespace
        Namespace passed to ``helm template``.
    helm
        The helm binary (see :func:`find_helm`).

    Returns
    -------
    list of dict
        The objects in file order; ``List`` objects are flattened.

    Raises
    ------
    ManifestError
        The file cannot be read or parsed, mixes objects and other documents, or holds nothing.
    """
    path = Path(path)
    docs = read_documents(path)
    if not docs:
        raise ManifestError(f"{path} holds no YAML document")
    if not any(_is_object(d) for d in docs):
        if len(docs) != 1 or not isinstance(docs[0], dict):
            raise ManifestError(
                f"{path} is neither a manifest (documents with apiVersion and kind) "
                "nor a Helm values file (one mapping)"
            )
        chart_dir = Path(chart) if chart else default_chart()
        if chart_dir is None:
            raise ManifestError(
                f"{path} is a values file (no apiVersion/kind), so it needs the chart: pass --chart"
            )
        rendered = render_values(path, chart_dir, release, namespace, find_helm(helm))
        docs = parse_documents(rendered, f"the output of helm template {chart_dir} -f {path}")
        if not docs:
            raise ManifestError(f"helm template {chart_dir} -f {path} rendered no object")
    objects: list[dict] = []
    for index, doc in enumerate(docs, start=1):
        if not _is_object(doc):
            raise ManifestError(
                f"document {index} of {path} is not a Kubernetes object: expected a mapping "
                f"with apiVersion and kind, got {_describe(doc)}"
            )
        if doc["kind"].endswith("List") and isinstance(doc.get("items"), list):
            objects.extend(doc["items"])
        else:
            objects.append(doc)
    return objects


def _describe(doc) -> str:
    if isinstance(doc, dict):
        keys = ", ".join(sorted(map(str, doc))[:5])
        return f"a mapping with keys {keys}"
    return f"a {type(doc).__name__}"


def _graph_nodes(graph, path: str):
    """Yields (path, node) for a graph node and all its children, depth first."""
    if not isinstance(graph, dict):
        return
    yield path, graph
    children = graph.get("children")
    if isinstance(children, list):
        for i, child in enumerate(children):
            yield from _graph_nodes(child, f"{path}.children[{i}]")


def _parameter_problem(param: dict) -> str | None:
    ptype, value = param.get("type"), param.get("value")
    # Wrong JSON types are the API server's to report, with its own message.
    if not isinstance(ptype, str) or not isinstance(value, str):
        return None
    if ptype not in PARAMETER_TYPES:
        return f"has type {ptype!r}; Seldon's Python wrapper accepts {', '.join(PARAMETER_TYPES)}"
    try:
        if ptype == "INT":
            int(value)
        elif ptype in ("FLOAT", "DOUBLE"):
            float(value)
        elif ptype == "BOOL" and value.strip().lower() not in _TRUE | _FALSE:
            raise ValueError
    except ValueError:
        return f"has value {value!r}, which is not a valid {ptype}"
    return None


def check_objects(objects: list[dict], source: str) -> None:
    """Checks what the API server's schema cannot: names present, graph parameters usable.

    Raises
    ------
    ManifestError
        On the first problem found, naming the object and the field.
    """
    for obj in objects:
        name = (obj.get("metadata") or {}).get("name") if isinstance(obj.get("metadata"), dict) else None
        if not name:
            raise ManifestError(f"a {obj.get('kind')} in {source} has no metadata.name")
        if not is_seldon_deployment(obj):
            continue
        predictors = (obj.get("spec") or {}).get("predictors") if isinstance(obj.get("spec"), dict) else None
        if not isinstance(predictors, list):
            continue
        for i, predictor in enumerate(predictors):
            if not isinstance(predictor, dict):
                continue
            for where, node in _graph_nodes(predictor.get("graph"), f"spec.predictors[{i}].graph"):
                params = node.get("parameters")
                if not isinstance(params, list):
                    continue
                for j, param in enumerate(params):
                    if not isinstance(param, dict):
                        continue
                    problem = _parameter_problem(param)
                    if problem:
                        raise ManifestError(
                            f"SeldonDeployment {name}: parameter {param.get('name')!r} "
                            f"({where}.parameters[{j}], node {node.get('name')!r}) {problem}"
                        )

