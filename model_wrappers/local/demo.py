"""``seldon-river demo``: the full graph on this machine, learning from a stream.

1. Writes one model folder per RiverModel node of the manifest (by default
   ``manifests/full-graph.yaml``), none of them trained: a logistic regression, then a
   deliberately weak model (river's ``PriorClassifier``, which answers the class frequencies it
   has seen, whatever the features), then a Hoeffding tree. Models this different show what the
   router learns; two models of nearly equal accuracy would leave it nothing to tell apart.
2. Runs the manifest as ``seldon-river run`` would, with fresh state under ``OUT/state``.
3. Streams river's bundled Phishing dataset (1,250 rows, nothing to download) through Seldon's
   own ``SeldonClient``: each row is predicted, then its label goes back as feedback (the truth
   for the model that answered, reward 1 for a right answer and 0 for a wrong one for the
   router). The progress bar shows the progressive accuracy, the router's share of traffic per
   model and the outlier rate.
4. Writes ``OUT/learning-curve.png`` (the graph's accuracy, each model's accuracy on the rows it
   served and, dashed, on every row had it served alone; the router's share of traffic; the
   outlier rate; the detector's warm-up shaded) and ``OUT/summary.json`` (the configuration,
   the stream's figures, each model's accuracy alone and the router's own statistics).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from .demo_report import Tracker
from .manifest import ManifestError, read_deployment
from .plan import river_model_nodes
from .runner import LocalRun, Options, RunError
from .supervisor import StartupError

DEFAULT_MANIFEST = "manifests/full-graph.yaml"
OUTLIER_TAG = "is_outlier"  # the OutlierDetector's per-row flags, carried to the reply by the models


def find_manifest(path: str) -> Path:
    """``path`` as given, else relative to the source tree this package runs from."""
    candidate = Path(path)
    if candidate.exists() or candidate.is_absolute():
        return candidate
    return Path(__file__).resolve().parents[2] / path


def pipelines():
    """Untrained river classifiers for the model nodes, in order (cycled when more nodes)."""
    from river import dummy, linear_model, preprocessing, tree

    return [
        ("logistic-regression", lambda: preprocessing.StandardScaler() | linear_model.LogisticRegression()),
        ("prior-baseline", lambda: dummy.PriorClassifier()),
        ("hoeffding-tree", lambda: tree.HoeffdingTreeClassifier()),
    ]


CLASSES = [True, False]  # the models' output columns, as exported


def export_models(nodes: list[str], folder: Path, features: list[str]) -> dict[str, str]:
    """One model folder per node under ``folder``; returns node -> model kind."""
    from ..artifact import export_model

    kinds = pipelines()
    chosen = {}
    for i, node in enumerate(nodes):
        kind, make = kinds[i % len(kinds)]
        export_model(make(), folder / node, task="classifier", features=features, classes=CLASSES, name=kind)
        chosen[node] = kind
    return chosen


def accuracy_alone(kind: str, rows: int) -> list[float]:
    """Progressive accuracy of the model ``kind`` had it served every row of the stream alone.

    It predicts as the graph's reply is read (the most probable of the exported classes), then
    learns the row, as a model node does with its feedback.
    """
    from river import datasets

    model = dict(pipelines())[kind]()
    curve, right = [], 0
    for i, (x, y) in enumerate(datasets.Phishing()):
        if i >= rows:
            break
        probabilities = model.predict_proba_one(x)
        right += max(CLASSES, key=lambda c: probabilities.get(c, 0.0)) == y
        model.learn_one(x, y)
        curve.append(right / (i + 1))
    return curve


def node_parameters(deployment, name: str | None) -> dict:
    """A graph node's Seldon parameters as name -> raw value (without state URIs, local here)."""
    for node in deployment.predictor.graph.walk():
        if node.name == name:
            return {p["name"]: p.get("value") for p in node.parameters if p.get("name") != "state_uri"}
    return {}


def detector_node(deployment) -> str | None:
    """The graph node that runs the OutlierDetector, if any."""
    from .plan import DETECTOR, STATEFUL

    for name, container in deployment.predictor.containers.items():
        if container.env.get("MODEL_NAME") in (DETECTOR, STATEFUL[DETECTOR]):
            return name
    return None


def predicted_label(response: dict):
    """The class with the highest probability in a RiverModel reply (as text)."""
    data = response.get("data") or {}
    if data.get("names") and data.get("ndarray"):
        probabilities = dict(zip(data["names"], data["ndarray"][0]))
    elif response.get("jsonData"):
        probabilities = response["jsonData"][0]
    else:
        raise ValueError(f"the graph's reply holds no class probabilities: {str(response)[:300]}")
    return max(probabilities, key=probabilities.get)


def is_outlier(tags: dict) -> bool:
    """Whether the OutlierDetector flagged any row of a reply (its ``is_outlier`` tag)."""
    flags = tags.get(OUTLIER_TAG)
    return any(bool(f) for f in flags) if isinstance(flags, list) else bool(flags)


def router_arms(deployment) -> tuple[str | None, list[str]]:
    """The first router node of the graph and the names of its children."""
    from .graph import routes

    for node in deployment.predictor.graph.walk():
        if routes(node):
            return node.name, [c.name for c in node.children]
    return None, []


def component_status(run: LocalRun, node: str) -> dict:
    """What one graph node reports at ``/health/status``, through the run's gateway."""
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://{run.rest_endpoint}/api/v1.0/status/{node}", timeout=30) as reply:
        return json.loads(reply.read()).get("jsonData") or {}


def stream(run: LocalRun, rows: int, tracker: Tracker, router: str | None) -> None:
    """Predict then send feedback for each row, through SeldonClient, with a progress bar."""
    import numpy as np
    from river import datasets
    from tqdm import tqdm

    try:  # the demo's client is the one users' clients use
        from seldon_core.seldon_client import SeldonClient
        from seldon_core.utils import json_to_seldon_message
    except ImportError:
        raise RunError("the demo streams through the graph with Seldon's SeldonClient, which is not installed: "
                       "pip install 'seldon-river[seldon-core,demo]' (Python 3.11)") from None

    d = run.deployment
    client = SeldonClient(deployment_name=d.name, namespace=d.namespace, gateway="ambassador", transport="rest",
                          gateway_endpoint=run.rest_endpoint, payload_type="ndarray", client_return_type="dict")
    with tqdm(total=rows, unit="row", desc="predict → feedback", file=sys.stdout, mininterval=0.5) as bar:
        for i, (x, y) in enumerate(datasets.Phishing()):
            if i >= rows:
                break
            names = list(x)
            prediction = client.predict(data=np.array([[x[n] for n in names]]), names=names)
            if not prediction.success:
                raise RunError(f"prediction {i} failed: {prediction.msg} {prediction.response}")
            response = prediction.response
            meta = response.get("meta") or {}
            correct = str(predicted_label(response)).lower() == str(y).lower()
            feedback = client.feedback(
                prediction_request=prediction.request,
                prediction_response=json_to_seldon_message(response),
                prediction_truth=json_to_seldon_message({"data": {"ndarray": [[y]]}}),
                reward=1.0 if correct else 0.0,
            )
            if not feedback.success:
                raise RunError(f"feedback {i} failed: {feedback.msg} {feedback.response}")
            arm = (meta.get("routing") or {}).get(router) if router else None
            tracker.record(correct, arm, is_outlier(meta.get("tags") or {}))
            bar.set_postfix_str(tracker.postfix(), refresh=False)
            bar.update()


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default demo-out)")
    parser.add_argument("--manifest", default=DEFAULT_MANIFEST, help=f"the SeldonDeployment to run (default {DEFAULT_MANIFEST})")
    parser.add_argument("--rows", type=int, default=1250, help="rows of the Phishing dataset to stream (at most 1250)")
    parser.add_argument("--port", type=int, default=0, help="gateway port (default: any free port)")


def main(args: argparse.Namespace) -> int:
    from river import datasets

    logging.basicConfig(level=logging.WARNING, format="seldon-river demo: %(message)s")
    out = args.out.resolve()
    if not 1 <= args.rows:
        print(f"seldon-river demo: --rows must be at least 1, got {args.rows}", file=sys.stderr)
        return 2
    try:
        deployment = read_deployment(find_manifest(args.manifest))
        features = list(next(iter(datasets.Phishing()))[0])
        nodes = river_model_nodes(deployment)
        if not nodes:
            raise ManifestError(f"{args.manifest} has no RiverModel node to stream the dataset through")
        kinds = export_models(nodes, out / "models", features)
        run = LocalRun(deployment, Options(models_dir=out / "models", state_dir=out / "state", reset_state=True,
                                           port=args.port, grpc_port=None))
    except (ManifestError, RunError) as exc:
        print(f"seldon-river demo: {exc}", file=sys.stderr)
        return 2
    router, arms = router_arms(deployment)
    detector = detector_node(deployment)
    warm_up = int(node_parameters(deployment, detector).get("warm_up") or 0) if detector else 0
    tracker = Tracker(arms, {a: f"{a} ({kinds[a]})" for a in arms if a in kinds},
                      outliers=detector is not None, warm_up=warm_up)
    rows = min(args.rows, 1250)
    print(f"seldon-river demo: {deployment.name} from {deployment.source}; models "
          + ", ".join(f"{n}={k}" for n, k in kinds.items()), flush=True)
    started = time.monotonic()
    try:
        with run:
            print(f"graph ready after {time.monotonic() - started:.1f} s, gateway {run.rest_endpoint}", flush=True)
            stream(run, rows, tracker, router)
            router_status = component_status(run, router) if router else None
    except (StartupError, RunError, OSError) as exc:
        print(f"seldon-river demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("seldon-river demo: interrupted", file=sys.stderr)
        return 130
    configuration = {
        "manifest": str(deployment.source),
        "deployment": deployment.name,
        "rows": rows,
        "models": kinds,
        "router": {"node": router, "parameters": node_parameters(deployment, router)} if router else None,
        "detector": {"node": detector, "parameters": node_parameters(deployment, detector)} if detector else None,
    }
    statistics = {"router_statistics": {k: router_status.get(k) for k in ("arms", "metrics")}} if router else {}
    alone = {a: accuracy_alone(kinds[a], rows) for a in arms if a in kinds}
    png, summary = tracker.write(out, f"{deployment.name}: {tracker.rows} Phishing rows through seldon-river run",
                                 alone, {"configuration": configuration, **statistics})
    print(f"progressive accuracy {tracker.accuracy:.3f} over {tracker.rows} rows; {tracker.postfix()}")
    print(f"wrote {png} and {summary} in {time.monotonic() - started:.0f} s")
    return 0
