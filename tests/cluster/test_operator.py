"""What Seldon Core's real operator (v1.17.1, ``scripts/operator.sh``) makes of every manifest
and every rendering of the chart, and what a cluster's Pod Security admission says of the pods.

Each manifest is applied to a namespace that the operator reconciles; the SeldonDeployment must
reach state ``Creating`` (nothing runs pods here, so never ``Available``), and the Deployments
and Services the operator wrote are read back. The tests below say what a pod will look like:
the components' containers as written plus what the operator adds (``PREDICTIVE_UNIT_*``
environment, the orchestrator container, the podinfo volume), the storage initializers, the
security contexts, the rollout strategy. Each pod template is then created as a Pod with a
server-side dry run in namespaces that enforce Pod Security "restricted" and "baseline": that is
the admission a kubelet-bound Pod meets (for a Deployment the API server only warns).

What this cannot show: no scheduler or kubelet runs, so no pod starts, no probe is answered, no
model folder is downloaded and no affinity is scheduled.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from clusterkit import CHART, REPO, Operator, chart_values_files, load_docs, sdeps_of

pytestmark = pytest.mark.cluster

ENGINE = "seldon-container-engine"
MODEL_DIR = "/mnt/models"
# What Pod Security "restricted" refuses in every pod, and why it cannot be fixed from a
# SeldonDeployment: the operator writes its orchestrator's securityContext itself
# (allowPrivilegeEscalation false, runAsUser from EXECUTOR_CONTAINER_USER), svcOrchSpec offers
# env, replicas and resources only, and a componentSpec container of that name replaces the
# operator's container instead of being merged into it.
RESTRICTED_REFUSAL = (
    'unrestricted capabilities (container "seldon-container-engine" must set '
    'securityContext.capabilities.drop=["ALL"])'
)
# The warnings the API server gives for every pod, all about names and ports the operator owns:
# it looks the names http, grpc and metrics up in every component container (adding them when
# missing), gives its own container the same names, and serves its metrics on its http port.
SELDON_PORT_WARNINGS = (
    re.compile(r'^spec\.containers\[\d+\]\.ports\[\d+\]: duplicate port name "(http|grpc|metrics)" with '),
    re.compile(r"^spec\.containers\[(?P<engine>\d+)\]\.ports\[\d+\]: duplicate port definition with "),
)

SOURCES = [pytest.param(("file", p), id=f"manifests/{p.name}") for p in sorted((REPO / "manifests").glob("*.yaml"))]
SOURCES += [pytest.param(("chart", None), id="chart:default-values")]
SOURCES += [pytest.param(("chart", p), id=f"chart:{p.parent.name}/{p.name}") for p in chart_values_files()]


@dataclass
class Reconciled:
    namespace: str
    path: Path
    sdep: dict
    status: dict
    deployments: list[dict]
    services: list[dict]

    @property
    def predictor(self) -> dict:
        return self.sdep["spec"]["predictors"][0]

    def written_containers(self) -> dict[str, dict]:
        return {c["name"]: c for spec in self.predictor["componentSpecs"] for c in spec["spec"]["containers"]}

    def pod_specs(self) -> list[dict]:
        return [d["spec"]["template"]["spec"] for d in self.deployments]

    def made_containers(self) -> dict[str, dict]:
        return {c["name"]: c for spec in self.pod_specs() for c in spec["containers"]}

    def made_of_specs(self) -> list[tuple[dict, dict]]:
        """Each componentSpec with the Deployment the operator made of it, in the written order.

        A graph is one pod unless it spreads over several componentSpecs (keyed shards): each
        is then a Deployment of its own, and the first also holds the orchestrator.
        """
        out = []
        for spec in self.predictor["componentSpecs"]:
            names = {c["name"] for c in spec["spec"]["containers"]}
            made = [d for d in self.deployments
                    if names <= {c["name"] for c in d["spec"]["template"]["spec"]["containers"]}]
            assert len(made) == 1, f"componentSpec of {sorted(names)}: {len(made)} Deployments hold it"
            out.append((spec, made[0]))
        return out

    def engine_deployment(self) -> dict:
        (found,) = [d for d in self.deployments
                    if ENGINE in {c["name"] for c in d["spec"]["template"]["spec"]["containers"]}]
        return found


def nodes(node: dict):
    yield node
    for child in node.get("children") or []:
        yield from nodes(child)


def env_values(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def port(container: dict, name: str) -> int:
    return next(p["containerPort"] for p in container["ports"] if p["name"] == name)


def source_file(source, helm, tmp: Path) -> Path:
    """The manifest, or the chart rendered with the values file (or its defaults)."""
    kind, where = source
    if kind == "file":
        return where
    release = f"river-{where.stem}" if where else "seldon-river"
    rendered = tmp / "rendered.yaml"
    rendered.write_text(helm("template", release, CHART, *(["-f", where] if where else [])).stdout)
    return rendered


@pytest.fixture(scope="module", params=SOURCES)
def reconciled(request, kubectl, helm, operator_env, tmp_path_factory) -> Reconciled:
    """The source applied to a fresh namespace that Seldon's operator reconciles, read back."""
    tmp = tmp_path_factory.mktemp("operator")
    path = source_file(request.param, helm, tmp)
    (sdep,) = sdeps_of(load_docs(path))
    namespace = f"op-{sdep['metadata']['name'][:40]}-{uuid.uuid4().hex[:5]}"
    kubectl("create", "namespace", namespace)
    kubectl("-n", namespace, "create", "serviceaccount", "default")
    operator = Operator(operator_env["SELDON_RIVER_OPERATOR"], operator_env["SELDON_RIVER_OPERATOR_ENV"], namespace,
                        tmp / "operator.log")
    operator.install_config(kubectl, operator_env["SELDON_RIVER_OPERATOR_NAMESPACE"])
    operator.start()
    try:
        kubectl("-n", namespace, "create", "-f", path)
        found = wait_reconciled(kubectl, namespace, path, operator)
    finally:
        operator.stop()
    yield found
    kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def wait_reconciled(kubectl, namespace: str, path: Path, operator: Operator, timeout: float = 60) -> Reconciled:
    (sdep,) = sdeps_of(load_docs(path))
    name = sdep["metadata"]["name"]
    wanted_deployments = len(sdep["spec"]["predictors"][0]["componentSpecs"])
    wanted_services = 1 + len(list(nodes(sdep["spec"]["predictors"][0]["graph"])))
    selector = f"seldon-deployment-id={name}"
    deadline = time.monotonic() + timeout
    while True:
        stored = kubectl.json("-n", namespace, "get", "sdep", name)
        status = stored.get("status") or {}
        deployments = kubectl.json("-n", namespace, "get", "deployments", "-l", selector)["items"]
        services = kubectl.json("-n", namespace, "get", "services", "-l", selector)["items"]
        if status.get("state") == "Failed":
            pytest.fail(f"the operator failed {name}: {status.get('description')}")
        # The operator fills the status in over several passes; the address comes last.
        done = status.get("state") and status.get("address")
        if done and len(deployments) == wanted_deployments and len(services) == wanted_services:
            return Reconciled(namespace, path, stored, status, deployments, services)
        if time.monotonic() > deadline:
            pytest.fail(
                f"{name} not reconciled in {timeout:g} s: status {status}, {len(deployments)} Deployment(s), "
                f"{len(services)} Service(s)\n{operator.log.read_text(errors='replace')[-3000:]}"
            )
        time.sleep(0.5)


# -- the SeldonDeployment and what the operator wrote ---------------------------------------------
def test_the_operator_accepts_it_and_waits_for_pods(reconciled):
    assert reconciled.status["state"] == "Creating", reconciled.status
    graph_nodes = [n["name"] for n in nodes(reconciled.predictor["graph"])]
    sdep = reconciled.sdep["metadata"]["name"]
    names = {s["metadata"]["name"] for s in reconciled.services}
    assert names == {f"{sdep}-default"} | {f"{sdep}-default-{n}" for n in graph_nodes}
    entry = next(s for s in reconciled.services if s["metadata"]["name"] == f"{sdep}-default")
    assert sorted((p["name"], p["port"]) for p in entry["spec"]["ports"]) == [("grpc", 5001), ("http", 8000)]
    assert reconciled.status["address"]["url"] == (
        f"http://{sdep}-default.{reconciled.namespace}.svc.cluster.local:8000/api/v1.0/predictions"
    )


def test_each_pod_holds_its_components_and_the_first_the_orchestrator(reconciled):
    made = reconciled.made_of_specs()
    assert len(made) == len(reconciled.deployments)
    for i, (spec, deployment) in enumerate(made):
        written = [c["name"] for c in spec["spec"]["containers"]]
        pod = deployment["spec"]["template"]["spec"]
        assert [c["name"] for c in pod["containers"]] == written + ([ENGINE] if i == 0 else [])
        assert deployment["spec"]["replicas"] == spec.get("replicas", reconciled.predictor["replicas"])


def test_component_containers_are_kept_as_written(reconciled):
    made = reconciled.made_containers()
    for name, written in reconciled.written_containers().items():
        c = made[name]
        for field in ("image", "ports", "resources", "securityContext", "startupProbe", "readinessProbe",
                      "livenessProbe"):
            assert _normalised(c.get(field)) == _normalised(written.get(field)), f"{name}: {field} changed"
        assert c["env"][: len(written["env"])] == written["env"], f"{name}: its own environment changed"
        mounts = [m for m in c["volumeMounts"] if m["name"] != "seldon-podinfo"]
        assert mounts == written["volumeMounts"], f"{name}: volume mounts {mounts}"


def _normalised(value):
    """Drops the defaults the API server fills in (probe scheme, timeouts, ...)."""
    if isinstance(value, dict):
        defaults = {"scheme": "HTTP", "successThreshold": 1, "timeoutSeconds": 1}
        return {k: _normalised(v) for k, v in value.items() if defaults.get(k, object()) != v}
    if isinstance(value, list):
        return [_normalised(v) for v in value]
    return value


def test_the_operator_tells_each_component_its_node_ports_and_parameters(reconciled):
    made = reconciled.made_containers()
    for node in nodes(reconciled.predictor["graph"]):
        c = made[node["name"]]
        env = env_values(c)
        assert env["PREDICTIVE_UNIT_ID"] == node["name"]
        assert env["PREDICTIVE_UNIT_HTTP_SERVICE_PORT"] == str(port(c, "http"))
        assert env["PREDICTIVE_UNIT_GRPC_SERVICE_PORT"] == str(port(c, "grpc"))
        assert env["PREDICTIVE_UNIT_METRICS_SERVICE_PORT"] == str(port(c, "metrics"))
        assert env["PREDICTIVE_UNIT_METRICS_ENDPOINT"] == "/prometheus"
        assert env["SELDON_DEPLOYMENT_ID"] == reconciled.sdep["metadata"]["name"]
        expected = [(p["name"], p["value"], p["type"]) for p in node.get("parameters") or []]
        if node["type"] == "MODEL":
            # The one parameter the operator adds: where the model folder is.
            expected.append(("model_uri", MODEL_DIR, "STRING"))
        given = [(p["name"], p["value"], p["type"]) for p in json.loads(env["PREDICTIVE_UNIT_PARAMETERS"])]
        assert sorted(given) == sorted(expected), f"{node['name']}: parameters {given}"


def test_the_orchestrator_runs_the_graph_as_written(reconciled):
    made = reconciled.made_containers()
    engine = made[ENGINE]
    env = env_values(engine)
    predictor = json.loads(base64.b64decode(env["ENGINE_PREDICTOR"]))
    written_nodes = {n["name"]: n for n in nodes(reconciled.predictor["graph"])}
    beside = {c["name"] for c in reconciled.engine_deployment()["spec"]["template"]["spec"]["containers"]}
    services = {s["metadata"]["name"]: s for s in reconciled.services}
    for node in nodes(predictor["graph"]):
        written = written_nodes.pop(node["name"])
        assert node["type"] == written["type"]
        assert node.get("methods") == written.get("methods"), f"{node['name']}: methods {node.get('methods')}"
        if node["name"] in beside:
            assert node["endpoint"]["service_host"] == "localhost"
        else:
            # In a pod of its own: reached through the Service the operator made for the node.
            service = f"{reconciled.sdep['metadata']['name']}-default-{node['name']}"
            assert node["endpoint"]["service_host"] == f"{service}.{reconciled.namespace}.svc.cluster.local"
            assert port(made[node["name"]], "http") in [p["port"] for p in services[service]["spec"]["ports"]]
        assert node["endpoint"]["httpPort"] == port(made[node["name"]], "http")
        assert node["endpoint"]["grpcPort"] == port(made[node["name"]], "grpc")
    assert not written_nodes, f"nodes missing from the orchestrator's graph: {sorted(written_nodes)}"
    orch = reconciled.predictor.get("svcOrchSpec") or {}
    for var in orch.get("env", []):
        assert env.get(var["name"]) == var["value"], f"svcOrchSpec env {var['name']} did not reach the orchestrator"
    assert _normalised(engine["resources"]) == _normalised(orch["resources"])
    # Seldon's own choice, which no SeldonDeployment field changes (see RESTRICTED_REFUSAL).
    assert engine["securityContext"] == {"allowPrivilegeEscalation": False, "runAsUser": 8888}


def test_storage_initializers_are_the_ones_written(reconciled):
    by_name = {}
    for spec, deployment in reconciled.made_of_specs():
        pod = deployment["spec"]["template"]["spec"]
        assert [_normalised(_without_server_defaults(c)) for c in pod.get("initContainers", [])] == [
            _normalised(c) for c in spec["spec"].get("initContainers", [])
        ], "the operator injected or changed a storage initializer"
        by_name.update({c["name"]: c for c in pod.get("initContainers", [])})
    models = [n for n in nodes(reconciled.predictor["graph"]) if n["type"] == "MODEL"]
    for model in models:
        init = by_name[f"{model['name']}-model-initializer"]
        assert init["args"] == [model["modelUri"], MODEL_DIR]
        mount = next(m for m in init["volumeMounts"] if m["mountPath"] == MODEL_DIR)
        reader = next(m for m in reconciled.made_containers()[model["name"]]["volumeMounts"] if m["mountPath"] == MODEL_DIR)
        assert reader["name"] == mount["name"] and reader.get("readOnly") is True


def _without_server_defaults(container: dict) -> dict:
    return {k: v for k, v in container.items() if k not in ("terminationMessagePath", "terminationMessagePolicy")}


def test_the_secrets_the_pod_reads_are_in_the_manifest(reconciled, kubectl):
    secrets_in_namespace = {
        s["metadata"]["name"] for s in kubectl.json("-n", reconciled.namespace, "get", "secrets")["items"]
    }
    referenced = set()
    for c in [c for pod in reconciled.pod_specs() for c in pod.get("initContainers", []) + pod["containers"]]:
        referenced |= {e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e}
        referenced |= {e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", []) if "secretKeyRef" in (e.get("valueFrom") or {})}
    assert referenced <= secrets_in_namespace, (
        f"the pod reads Secrets {sorted(referenced - secrets_in_namespace)} that {reconciled.path.name} does not create"
    )


def test_the_pod_security_context_is_kept(reconciled):
    for spec, deployment in reconciled.made_of_specs():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"] == spec["spec"]["securityContext"]
        assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"] == 8888


def test_rollouts_start_the_new_pod_first_and_a_sqlite_claim_stays_on_its_node(reconciled):
    for deployment in reconciled.deployments:
        _rolls_new_pod_first(deployment)


def _rolls_new_pod_first(deployment: dict) -> None:
    strategy = deployment["spec"]["strategy"]
    # Seldon's operator always rolls this way, and a SeldonDeployment has no strategy field.
    assert strategy["type"] == "RollingUpdate" and strategy["rollingUpdate"]["maxUnavailable"] == 0
    template = deployment["spec"]["template"]
    claims = [v for v in template["spec"]["volumes"] if "persistentVolumeClaim" in v]
    if not claims:
        assert deployment["spec"]["replicas"] >= 1
        return
    terms = template["spec"]["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert [t["topologyKey"] for t in terms] == ["kubernetes.io/hostname"]
    selector = terms[0]["labelSelector"]["matchLabels"]
    # Old and new pods both match, so the new one is placed where the old one holds the claim.
    assert selector.items() <= template["metadata"]["labels"].items()
    assert deployment["spec"]["replicas"] == 1


# -- Pod Security admission -------------------------------------------------------------------
@pytest.fixture(scope="module")
def security_namespaces(kubectl):
    """Namespaces enforcing Pod Security "restricted" and "baseline" (each with its default
    ServiceAccount, without which no Pod is admitted)."""
    made = {}
    for level in ("restricted", "baseline"):
        name = f"psa-{level}-{uuid.uuid4().hex[:5]}"
        kubectl("create", "namespace", name)
        kubectl("label", "namespace", name, f"pod-security.kubernetes.io/enforce={level}",
                f"pod-security.kubernetes.io/warn={level}")
        kubectl("-n", name, "create", "serviceaccount", "default")
        made[level] = name
    yield made
    for name in made.values():
        kubectl("delete", "namespace", name, "--wait=false", check=False)


def create_pod_dry_run(kubectl, namespace: str, template: dict):
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "pod-security-probe", "labels": template["metadata"].get("labels", {})},
           "spec": template["spec"]}
    return kubectl("-n", namespace, "create", "--dry-run=server", "-f", "-", "-o", "name",
                   input=json.dumps(pod), check=False)


def warnings_of(proc) -> list[str]:
    return [line.removeprefix("Warning: ") for line in proc.stderr.splitlines() if line.startswith("Warning: ")]


def test_restricted_refuses_only_the_orchestrators_capabilities(reconciled, kubectl, security_namespaces):
    template = reconciled.engine_deployment()["spec"]["template"]
    proc = create_pod_dry_run(kubectl, security_namespaces["restricted"], template)
    assert proc.returncode != 0, "Pod Security restricted admitted the pod: RESTRICTED_REFUSAL is out of date"
    refusal = proc.stderr.split('violates PodSecurity "restricted:latest": ', 1)[-1].strip()
    assert refusal == RESTRICTED_REFUSAL, proc.stderr


def test_baseline_admits_the_pod_with_only_seldons_port_warnings(reconciled, kubectl, security_namespaces):
    template = reconciled.engine_deployment()["spec"]["template"]
    proc = create_pod_dry_run(kubectl, security_namespaces["baseline"], template)
    assert proc.returncode == 0, proc.stderr
    engine = [c["name"] for c in template["spec"]["containers"]].index(ENGINE)
    for warning in warnings_of(proc):
        matched = [m for m in (p.match(warning) for p in SELDON_PORT_WARNINGS) if m]
        assert matched, f"a warning that is not about Seldon's port names: {warning}"
        if "engine" in matched[0].groupdict():
            assert int(matched[0]["engine"]) == engine, warning


def test_the_other_pods_meet_restricted_without_warnings(reconciled, kubectl, security_namespaces):
    # The manifest's own Deployments (Redis), and the pods the operator made without its orchestrator.
    templates = [d["spec"]["template"] for d in load_docs(reconciled.path) if d["kind"] == "Deployment"]
    engine = reconciled.engine_deployment()
    templates += [d["spec"]["template"] for d in reconciled.deployments if d is not engine]
    for template in templates:
        proc = create_pod_dry_run(kubectl, security_namespaces["restricted"], template)
        assert proc.returncode == 0, proc.stderr
        assert warnings_of(proc) == [], proc.stderr


# -- what the operator insists on ---------------------------------------------------------------
SINGLE_MODEL = REPO / "manifests" / "single-model.yaml"


def _manifest_with(tmp_path: Path, change) -> Path:
    docs = load_docs(SINGLE_MODEL)
    change(sdeps_of(docs)[0])
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


def test_the_operator_adds_seldons_port_names_to_every_component(kubectl, namespace, start_operator, tmp_path):
    """Why port names repeat in a pod: a component whose ports are named otherwise gets ports
    named http, grpc and metrics added by the operator."""
    def rename(sdep):
        for c in sdep["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"]:
            for p in c["ports"]:
                p["name"] = f"{p['name'][:4]}-{c['name']}"[:15]
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                c[probe]["httpGet"]["port"] = c["ports"][0]["name"]

    path = _manifest_with(tmp_path, rename)
    operator = start_operator(namespace)
    kubectl("-n", namespace, "create", "-f", path)
    found = wait_reconciled(kubectl, namespace, path, operator)
    model = found.made_containers()["model"]
    names = [p["name"] for p in model["ports"]]
    assert {"http", "grpc", "metrics"} <= set(names) and len(names) == 6, names


def test_an_unregistered_implementation_fails_at_reconcile_and_deploy_says_so_first(
    kubectl, namespace, start_operator, seldon_river
):
    # An operator whose seldon-config lacks the RIVER_SERVER entry README asks users to add.
    operator = start_operator(namespace, without=("RIVER_SERVER",))
    refused = seldon_river("deploy", SINGLE_MODEL, "-n", namespace, "--operator-namespace", namespace, check=False)
    err = refused.stderr.strip()
    assert refused.returncode == 1 and len(err.splitlines()) == 1, refused.stderr
    assert "implementation RIVER_SERVER" in err and f"namespace {namespace}" in err and "Failed to get server config" in err
    assert kubectl("-n", namespace, "get", "sdep,secrets,pvc", "-o", "name").stdout.strip() == "", "deploy applied something"

    kubectl("-n", namespace, "create", "-f", SINGLE_MODEL)
    name = sdeps_of(load_docs(SINGLE_MODEL))[0]["metadata"]["name"]
    deadline = time.monotonic() + 60
    while (status := kubectl.json("-n", namespace, "get", "sdep", name).get("status") or {}).get("state") != "Failed":
        assert time.monotonic() < deadline, f"the operator did not fail {name}: {status}"
        time.sleep(0.5)
    assert status.get("description") == "Failed to get server config for RIVER_SERVER", status
    assert "No entry in predictors map for RIVER_SERVER" in operator.log.read_text(errors="replace")
