"""``seldon-river deploy``, ``undeploy`` and ``status``.

``deploy`` creates or updates every object of a manifest (or of the chart rendered with a values
file) with server-side apply, so it can be run again after any change; ``undeploy`` deletes the
same objects; ``status`` prints what the cluster reports. The API server validates each object
against its schema; a SeldonDeployment's status is filled in by Seldon Core's operator, so it
stays empty in a cluster where no operator runs.

Every failure is one line on stderr and exit status 1: no cluster reachable, Seldon Core not
installed, permission denied, a graph node's ``implementation`` that the operator's
``seldon-config`` does not register (:mod:`model_wrappers.deploy.servers`, checked before
anything is applied), or an object the API server (or the checks of
:mod:`model_wrappers.deploy.manifest`) rejected, with the server's own message.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .kube import Cluster, ClusterError, Ref
from .manifest import SELDON_GROUP, ManifestError, check_objects, load_objects
from .servers import DEFAULT_OPERATOR_NAMESPACE, check_implementations

SELDON_API_VERSION = f"{SELDON_GROUP}/v1"
GATEWAYS = ("istio", "ambassador", "seldon")


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Adds the options of ``command`` (deploy, undeploy or status) to ``parser``."""
    if command == "status":
        parser.add_argument(
            "target",
            nargs="?",
            help="manifest or values file, or the name of a SeldonDeployment "
            "(default: every SeldonDeployment in the namespace)",
        )
    else:
        parser.add_argument(
            "manifest",
            metavar="MANIFEST_OR_VALUES",
            help="multi-document YAML manifest, or a values file for the Helm chart",
        )
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context (default: its current context)")
    parser.add_argument(
        "-n",
        "--namespace",
        help="namespace for objects that name none (default: the context's namespace, else default)",
    )
    parser.add_argument("--chart", help="chart a values file is rendered with (default: charts/seldon-river)")
    parser.add_argument("--release", default="seldon-river", help="release name when rendering the chart")
    parser.add_argument("--helm", help="helm binary for rendering (default: $SELDON_RIVER_HELM, else helm)")
    if command in ("deploy", "undeploy"):
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="send everything as a server-side dry run: validated by the API server, nothing stored",
        )
    if command == "deploy":
        parser.add_argument(
            "--gateway",
            choices=GATEWAYS,
            default="istio",
            help="ingress used in the printed SeldonClient example (default: istio)",
        )
        parser.add_argument(
            "--gateway-endpoint",
            default="INGRESS_HOST:PORT",
            help="ingress address used in the printed SeldonClient example",
        )
        parser.add_argument(
            "--operator-namespace",
            default=DEFAULT_OPERATOR_NAMESPACE,
            help="namespace of Seldon Core's operator, whose seldon-config ConfigMap must register "
            f"every graph node's implementation in predictor_servers (default: {DEFAULT_OPERATOR_NAMESPACE})",
        )
        parser.add_argument(
            "--wait",
            type=float,
            default=0,
            metavar="SECONDS",
            help="wait up to SECONDS for each SeldonDeployment to report state Available "
            "(needs Seldon Core's operator; default: do not wait)",
        )
    if command == "undeploy":
        parser.add_argument(
            "--timeout",
            type=float,
            default=60,
            metavar="SECONDS",
            help="how long to wait for the deleted objects to disappear (default: 60)",
        )


def main(args: argparse.Namespace) -> int:
    """Runs ``args.command``; returns the exit status."""
    run = {"deploy": deploy, "undeploy": undeploy, "status": status}[args.command]
    try:
        return run(args)
    except (ClusterError, ManifestError) as exc:
        print(f"seldon-river {args.command}: error: {exc}", file=sys.stderr)
        return 1


# -- shared ----------------------------------------------------------------------------------
def _load(args: argparse.Namespace, path: str) -> list[dict]:
    objects = load_objects(
        path, chart=args.chart, release=args.release, namespace=args.namespace, helm=args.helm
    )
    check_objects(objects, path)
    return objects


def _resolve(cluster: Cluster, objects: list[dict], namespace: str | None) -> list[tuple[dict, Ref]]:
    """Looks every kind up before anything is changed, so a missing CRD changes nothing."""
    pairs = [(obj, cluster.ref(obj, namespace)) for obj in objects]
    # Namespaces first: objects of the same manifest may live in them.
    return sorted(pairs, key=lambda p: p[1].resource.kind != "Namespace")


def _is_sdep(ref: Ref) -> bool:
    return ref.resource.api_version.startswith(SELDON_GROUP + "/") and ref.resource.kind == "SeldonDeployment"


# -- deploy ----------------------------------------------------------------------------------
def deploy(args: argparse.Namespace) -> int:
    """Creates or updates every object of the manifest; prints how to call each deployment."""
    objects = _load(args, args.manifest)
    cluster = Cluster(args.kubeconfig, args.context)
    pairs = _resolve(cluster, objects, args.namespace)
    note = check_implementations(cluster, objects, args.operator_namespace)
    if note:
        print(note)
    suffix = " (server dry run)" if args.dry_run else ""
    applied: list[tuple[Ref, dict]] = []
    for obj, ref in pairs:
        before = cluster.get(ref)
        try:
            stored = cluster.apply(obj, ref, dry_run=args.dry_run)
        except ClusterError as exc:
            if applied and not args.dry_run:
                raise ClusterError(f"{exc} ({len(applied)} of {len(pairs)} objects were applied before this)") from None
            raise
        applied.append((ref, stored))
        if before is None:
            action = "created"
        elif stored.get("metadata", {}).get("resourceVersion") == before.get("metadata", {}).get("resourceVersion"):
            action = "unchanged"
        else:
            action = "configured"
        print(f"{ref} {action}{suffix}")
    sdeps = [(ref, stored) for ref, stored in applied if _is_sdep(ref)]
    if args.dry_run:
        print(f"{len(applied)} object(s) accepted by the API server at {cluster.server}; nothing was stored.")
        return 0
    for ref, stored in sdeps:
        print()
        print(_how_to_call(ref, stored, args.gateway, args.gateway_endpoint))
    if args.wait > 0:
        for ref, _ in sdeps:
            _wait_available(cluster, ref, args.wait)
            print(f"{ref} is Available")
    return 0


def _how_to_call(ref: Ref, sdep: dict, gateway: str, endpoint: str) -> str:
    name, ns = ref.name, ref.namespace
    predictors = ", ".join(p.get("name", "?") for p in (sdep.get("spec") or {}).get("predictors") or [])
    lines = [
        f"SeldonDeployment {name} (namespace {ns}, predictors: {predictors or 'none'}) is stored by the API server.",
        "Seldon Core's operator creates its pods; once they run, call it through the ingress:",
        "  from seldon_core.seldon_client import SeldonClient",
        f'  sc = SeldonClient(deployment_name="{name}", namespace="{ns}", gateway="{gateway}",',
        f'                    gateway_endpoint="{endpoint}", transport="rest", client_return_type="proto")',
        '  r = sc.predict(data=X, payload_type="ndarray")  # X: 2-D numpy array, one row per sample',
        "  sc.feedback(prediction_request=r.request, prediction_response=r.response, reward=1.0)",
        f"  REST: POST http://{endpoint}/seldon/{ns}/{name}/api/v1.0/predictions",
        f"  status: seldon-river status {name} --namespace {ns}",
    ]
    return "\n".join(lines)


def _wait_available(cluster: Cluster, ref: Ref, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    state = None
    while True:
        obj = cluster.get(ref) or {}
        st = obj.get("status") or {}
        state = st.get("state")
        if state == "Available":
            return
        if state == "Failed":
            raise ClusterError(f"{ref} failed: {st.get('description') or 'no description'}")
        if time.monotonic() >= deadline:
            break
        time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))
    if state is None:
        raise ClusterError(
            f"{ref} reports no status after {timeout:g} s: nothing has reconciled it "
            "(is Seldon Core's operator running in this cluster?)"
        )
    raise ClusterError(f"{ref} is {state}, not Available, after {timeout:g} s")


# -- undeploy --------------------------------------------------------------------------------
def undeploy(args: argparse.Namespace) -> int:
    """Deletes the manifest's objects (last first) and waits until they are gone."""
    objects = _load(args, args.manifest)
    cluster = Cluster(args.kubeconfig, args.context)
    pairs = list(reversed(_resolve(cluster, objects, args.namespace)))
    suffix = " (server dry run)" if args.dry_run else ""
    deleted: list[Ref] = []
    for _, ref in pairs:
        if cluster.delete(ref, dry_run=args.dry_run):
            deleted.append(ref)
            print(f"{ref} deleted{suffix}")
        else:
            print(f"{ref} not found")
    if args.dry_run:
        return 0
    deadline = time.monotonic() + args.timeout
    for ref in deleted:
        while (obj := cluster.get(ref)) is not None:
            if time.monotonic() >= deadline:
                finalizers = ", ".join(obj.get("metadata", {}).get("finalizers") or []) or "none"
                raise ClusterError(
                    f"{ref} still exists {args.timeout:g} s after its deletion (finalizers: {finalizers})"
                )
            time.sleep(0.2)
    return 0


# -- status ----------------------------------------------------------------------------------
def status(args: argparse.Namespace) -> int:
    """Prints what the cluster reports for a manifest's objects, one SeldonDeployment, or all."""
    target = args.target
    if target is not None and Path(target).is_file():
        objects = _load(args, target)
        cluster = Cluster(args.kubeconfig, args.context)
        refs = [ref for _, ref in _resolve(cluster, objects, args.namespace)]
        found = [(ref, cluster.get(ref)) for ref in refs]
    else:
        cluster = Cluster(args.kubeconfig, args.context)
        resource = cluster.resource(SELDON_API_VERSION, "SeldonDeployment")
        namespace = args.namespace or cluster.default_namespace
        if target is None:
            items = cluster.list(resource, namespace)
            if not items:
                print(f"no SeldonDeployment in namespace {namespace}")
                return 0
            found = [(Ref(resource, o["metadata"]["name"], namespace), o) for o in items]
        else:
            ref = Ref(resource, target, namespace)
            found = [(ref, cluster.get(ref))]
    missing = 0
    for ref, obj in found:
        if obj is None:
            missing += 1
            print(f"{ref}: not found")
        elif _is_sdep(ref):
            print(_describe_sdep(ref, obj))
        else:
            print(_describe_other(ref, obj))
    if missing:
        print(f"seldon-river status: error: {missing} of {len(found)} object(s) not found", file=sys.stderr)
        return 1
    return 0


def _graph_text(node: dict) -> str:
    kind = node.get("type") or node.get("implementation") or "MODEL"
    text = f"{node.get('name', '?')}({kind})"
    children = [c for c in node.get("children") or [] if isinstance(c, dict)]
    if children:
        text += " -> [" + ", ".join(_graph_text(c) for c in children) + "]"
    return text


def _describe_sdep(ref: Ref, sdep: dict) -> str:
    meta = sdep.get("metadata", {})
    lines = [f"{ref}: created {meta.get('creationTimestamp')}, generation {meta.get('generation')}"]
    for p in (sdep.get("spec") or {}).get("predictors") or []:
        lines.append(
            f"  predictor {p.get('name')} (replicas {p.get('replicas', 1)}, traffic {p.get('traffic', 'default')}): "
            f"graph {_graph_text(p.get('graph') or {})}"
        )
        for spec in p.get("componentSpecs") or []:
            for c in ((spec or {}).get("spec") or {}).get("containers") or []:
                lines.append(f"    container {c.get('name')}: {c.get('image')}")
    st = sdep.get("status") or {}
    if not st:
        lines.append(
            "  status: none reported. Seldon Core's operator fills it in when it creates the pods; "
            "an empty status means no operator has processed this SeldonDeployment "
            "(none runs in this cluster, or it has not got to it yet)"
        )
    else:
        line = f"  status: state {st.get('state', '?')}"
        if st.get("description"):
            line += f" ({st['description']})"
        if "replicas" in st or "availableReplicas" in st:
            line += f", replicas {st.get('availableReplicas', 0)}/{st.get('replicas', '?')} available"
        lines.append(line)
        for addr in (st.get("address") or {}).values():
            lines.append(f"  address: {addr}")
        for name, dep in (st.get("deploymentStatus") or {}).items():
            lines.append(f"  deployment {name}: {dep.get('availableReplicas', 0)}/{dep.get('replicas', '?')} available")
    return "\n".join(lines)


def _describe_other(ref: Ref, obj: dict) -> str:
    meta = obj.get("metadata", {})
    line = f"{ref}: created {meta.get('creationTimestamp')}"
    st = obj.get("status") or {}
    if ref.resource.kind in ("Deployment", "StatefulSet"):
        line += f", replicas {st.get('readyReplicas', 0)}/{(obj.get('spec') or {}).get('replicas', 1)} ready"
    elif "phase" in st:
        line += f", phase {st['phase']}"
    return line

