"""The Kubernetes manifests, every rendering of the Helm chart and the s2i settings, checked
against the schemas a cluster uses and against the components they run.

- Each SeldonDeployment validates against the openAPIV3Schema of Seldon's real v1.17.1 CRD
  (read from $SELDON_CRD, by default ../shared/crds/seldondeployment-v1.17.1.yaml beside the
  clone), made strict: a field the CRD does not define is an error here, where an API server
  would silently prune it.
- Every other object, and each pod template inside a SeldonDeployment, validates strictly
  against Kubernetes' own schemas (kubernetes-validate).
- The graph fits the components: each node is a container running the class its type needs
  (MODEL_NAME), with parameters that class's ``__init__`` accepts, parsed by Seldon's own
  parameter parser; routers learn (routing injection), feedback passes the outlier detector
  (SEND_FEEDBACK), the state backend fits the replicas, containers are locked down, metrics are
  scraped, the images are the ones scripts/docker.sh builds, every Secret a pod reads is in the
  file, and the Redis shipped with a graph fsyncs every write, requires a password and is
  reachable from the graph's pods only.

Nothing here runs a pod; tests/cluster applies the same files to a real API server.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import os
import subprocess
import tomllib
import types
import typing
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from support import require

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "seldon-river"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
MANIFESTS = sorted((REPO / "manifests").glob("*.yaml"))
S2I_SOURCES = sorted(p.parent.parent for p in (REPO / "s2i").glob("*/.s2i/environment"))
EXPECTED_MANIFESTS = {"single-model.yaml", "bandit.yaml", "outlier-model.yaml", "full-graph.yaml", "keyed-sharded.yaml"}

# Graph node type -> the component class a container of that type must run.
CLASSES = {
    "MODEL": "model_wrappers.RiverModel",
    "ROUTER": "model_wrappers.BanditRouter",
    "TRANSFORMER": "model_wrappers.OutlierDetector",
}
# The other classes a node of that type may run: a keyed model, and the key router over its shards.
ALSO = {"MODEL": ("model_wrappers.KeyedRiverModel",), "ROUTER": ("model_wrappers.KeyRouter",)}
KEY_ROUTER = "model_wrappers.KeyRouter"
STATE_DIR = "/var/lib/seldon-river"
SQLITE_URI = f"sqlite:///{STATE_DIR}/state.db"
SDEP_KIND = ("machinelearning.seldon.io/v1", "SeldonDeployment")
PYTHON_TYPES = {"INT": int, "FLOAT": float, "DOUBLE": float, "BOOL": bool, "STRING": str}


# ---------------------------------------------------------------------------------------------
# Inputs


def crd_path() -> Path:
    return Path(os.environ.get("SELDON_CRD") or REPO.parent / "shared" / "crds" / "seldondeployment-v1.17.1.yaml")


def helm() -> str:
    path = subprocess.run(
        ["bash", str(REPO / "scripts" / "tools.sh"), "path", "helm"], capture_output=True, text=True, check=True
    ).stdout.strip()
    require("helm", os.access(path, os.X_OK), "bash scripts/tools.sh ensure helm")
    return path


@functools.lru_cache(maxsize=None)
def rendered(example: str | None) -> str:
    """``helm template`` of the chart with its default values or with one example file."""
    args = [helm(), "template", f"river-{Path(example).stem}" if example else "river", str(CHART)]
    if example:
        args += ["-f", example]
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, f"helm template {' '.join(args[2:])} failed:\n{done.stderr}"
    return done.stdout


SOURCES = [pytest.param(("file", str(p)), id=f"manifests/{p.name}") for p in MANIFESTS] + [
    pytest.param(("chart", None), id="chart:defaults")
] + [pytest.param(("chart", str(p)), id=f"chart:examples/{p.name}") for p in EXAMPLES]


def load(source: tuple[str, str | None]) -> list[dict]:
    kind, where = source
    text = Path(where).read_text() if kind == "file" else rendered(where)
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert docs, f"{source} holds no object"
    return docs


def sdeps(docs: list[dict]) -> list[dict]:
    found = [d for d in docs if (d.get("apiVersion"), d.get("kind")) == SDEP_KIND]
    assert found, f"no {SDEP_KIND[1]} ({SDEP_KIND[0]}) among {[d.get('kind') for d in docs]}"
    return found


def nodes(unit: dict):
    """The graph's nodes, depth first."""
    yield unit
    for child in unit.get("children") or []:
        yield from nodes(child)


def containers(predictor: dict) -> dict[str, dict]:
    found = {}
    for spec in predictor.get("componentSpecs") or []:
        for container in spec["spec"].get("containers", []):
            assert container["name"] not in found, f"container {container['name']} is defined twice"
            found[container["name"]] = container
    return found


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def params_of(node: dict) -> dict:
    """The node's parameters as Seldon's wrapper hands them to the component's ``__init__``."""
    from seldon_core.microservice import parse_parameters

    names = [p["name"] for p in node.get("parameters") or []]
    assert len(names) == len(set(names)), f"node {node['name']}: a parameter is given twice: {names}"
    return parse_parameters(node.get("parameters") or [])


def component_class(path: str):
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"{path} (named by a MODEL_NAME) cannot be imported: {exc!r}")


def image_names() -> dict[str, str]:
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "docker.sh"), "names"], capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split("=", 1) for line in out.split())


def project_version() -> str:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


# ---------------------------------------------------------------------------------------------
# Schemas


def strict(schema):
    """The schema with ``additionalProperties: false`` wherever it lists properties and does
    not keep unknown fields: an API server prunes an unknown field silently, so a misspelt one
    would pass unnoticed otherwise."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    return schema


@functools.lru_cache(maxsize=1)
def sdep_validator():
    import jsonschema

    path = crd_path()
    require("Seldon's SeldonDeployment CRD", path.is_file(),
            f"{path} is missing: set SELDON_CRD or run scripts/fetch-crd.sh on a networked machine")
    crds = [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "CustomResourceDefinition"]
    assert len(crds) == 1 and crds[0]["metadata"]["name"] == "seldondeployments.machinelearning.seldon.io", (
        f"{path}: expected the one CRD seldondeployments.machinelearning.seldon.io, "
        f"got {[c['metadata']['name'] for c in crds]}"
    )
    versions = {v["name"]: v for v in crds[0]["spec"]["versions"]}
    assert "v1" in versions, f"{path}: the CRD serves no v1, only {sorted(versions)}"
    return jsonschema.Draft7Validator(strict(versions["v1"]["schema"]["openAPIV3Schema"]))


def where(error) -> str:
    return "/".join(str(p) for p in error.absolute_path) or "(top)"


@functools.lru_cache(maxsize=None)
def kubernetes_validator(api_version: str, kind: str):
    """A strict validator for one kind from Kubernetes' own OpenAPI schemas, as packaged by
    kubernetes-validate (its newest version). The schemas are read directly: the package's
    validate() needs jsonschema 4, while seldon-core pins jsonschema below 4; the refs resolve
    the same with jsonschema 3's RefResolver."""
    import re
    from importlib import resources

    import jsonschema

    root = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    strict_dirs = [p.name for p in root.iterdir() if re.fullmatch(r"v[0-9.]+-local-strict", p.name)]
    assert strict_dirs, f"kubernetes-validate ships no strict schemas in {root}"
    newest = max(strict_dirs, key=lambda n: tuple(int(x) for x in n[1:].split("-")[0].split(".")))
    folder = root / newest
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema_file = folder / f"{kind.lower()}-{group_version}.json"
    assert schema_file.is_file(), f"no Kubernetes {newest} schema for {api_version} {kind}"
    schema = json.loads(schema_file.read_text())
    definitions = json.loads((folder / "_definitions.json").read_text())
    resolver = jsonschema.RefResolver(schema["$id"], schema, store={definitions["$id"]: definitions})
    return newest.split("-")[0], jsonschema.Draft7Validator(schema, resolver=resolver)


# ---------------------------------------------------------------------------------------------
# Tests


def test_the_manifests_exist():
    assert {p.name for p in MANIFESTS} == EXPECTED_MANIFESTS
    assert {p.name for p in EXAMPLES} == EXPECTED_MANIFESTS, "each manifest has a chart example rendering it"


@pytest.mark.parametrize("source", SOURCES)
def test_seldondeployments_match_the_seldon_crd(source):
    validator = sdep_validator()
    for sdep in sdeps(load(source)):
        errors = sorted(validator.iter_errors(sdep), key=lambda e: list(e.absolute_path))
        assert not errors, f"{sdep['metadata']['name']} does not match Seldon's v1.17.1 CRD:\n" + "\n".join(
            f"  at {where(e)}: {e.message[:300]}" for e in errors[:20]
        )


@pytest.mark.parametrize("source", SOURCES)
def test_other_objects_and_pod_templates_match_kubernetes_schemas(source):
    docs = load(source)
    checked = []
    for doc in docs:
        if (doc.get("apiVersion"), doc.get("kind")) == SDEP_KIND:
            # A componentSpec is a pod template: check it as the pod it becomes.
            for p in doc["spec"]["predictors"]:
                for i, spec in enumerate(p.get("componentSpecs") or []):
                    metadata = {"name": f"{doc['metadata']['name']}-{p['name']}-{i}", **(spec.get("metadata") or {})}
                    checked.append({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec["spec"]})
        else:
            checked.append(doc)
    for obj in checked:
        version, validator = kubernetes_validator(obj["apiVersion"], obj["kind"])
        errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
        assert not errors, f"{obj['kind']} {obj['metadata']['name']} is not valid for Kubernetes {version}:\n" + "\n".join(
            f"  at {where(e)}: {e.message[:300]}" for e in errors[:20]
        )


@pytest.mark.parametrize("source", SOURCES)
def test_every_node_is_a_container_running_its_class(source):
    for sdep in sdeps(load(source)):
        for p in sdep["spec"]["predictors"]:
            graph_nodes = list(nodes(p["graph"]))
            by_name = containers(p)
            names = [n["name"] for n in graph_nodes]
            assert len(names) == len(set(names)), f"node names repeat: {names}"
            assert set(names) == set(by_name), (
                f"graph nodes {sorted(names)} and containers {sorted(by_name)} differ: Seldon's operator "
                "matches them by name"
            )
            for node in graph_nodes:
                env = env_of(by_name[node["name"]])
                assert node.get("type") in CLASSES, f"node {node['name']}: type {node.get('type')!r} is none of {sorted(CLASSES)}"
                allowed = (CLASSES[node["type"]], *ALSO.get(node["type"], ()))
                assert env.get("MODEL_NAME") in allowed, (
                    f"node {node['name']} is a {node['type']}: expected MODEL_NAME to be one of {allowed}, "
                    f"got {env.get('MODEL_NAME')!r}"
                )
                assert env.get("SERVICE_TYPE") == node["type"], (
                    f"node {node['name']}: SERVICE_TYPE {env.get('SERVICE_TYPE')!r} is not its type {node['type']}"
                )
                component_class(env["MODEL_NAME"])


def check_parameters(class_path: str, values: dict, where: str) -> None:
    """The values are ones the class's ``__init__`` takes, of types its annotations allow, and
    every argument without a default is given."""
    cls = component_class(class_path)
    signature = inspect.signature(cls.__init__)
    accepted = {n: p for n, p in signature.parameters.items() if n != "self"}
    open_ended = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    hints = typing.get_type_hints(cls.__init__)
    for name, value in values.items():
        if name not in accepted:
            assert open_ended, f"{where}: {class_path} takes no parameter {name!r} (it takes {sorted(accepted)})"
            continue
        hint = hints.get(name)
        if hint is None:
            continue
        allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else (hint,)
        # An int where a float is expected is fine; a bool is not an int here.
        ok = any(
            a is typing.Any or (isinstance(a, type) and isinstance(value, a) and not (a is int and isinstance(value, bool)))
            or (a is float and type(value) is int)
            for a in allowed
        )
        assert ok, f"{where}: {class_path}({name}=...) expects {hint}, the parameter gives {type(value).__name__} {value!r}"
    missing = [
        n for n, p in accepted.items()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and n not in values
    ]
    assert not missing, f"{where}: {class_path} needs {missing}, which the parameters do not give"


def construct(class_path: str, values: dict, where: str) -> None:
    """Builds the component as Seldon's wrapper does before it forks its servers: a combination
    of parameters the class refuses (e.g. a detector's warm_up below its window) fails here.
    Connections and model folders are only opened later, by load()."""
    cls = component_class(class_path)
    try:
        cls(**values)
    except Exception as exc:  # noqa: BLE001 - any refusal is the finding
        pytest.fail(f"{where}: {class_path}(**{values}) refuses its parameters: {exc!r}")


@pytest.mark.parametrize("source", SOURCES)
def test_parameters_are_ones_the_classes_accept(source):
    for sdep in sdeps(load(source)):
        for p in sdep["spec"]["predictors"]:
            by_name = containers(p)
            for node in nodes(p["graph"]):
                values = params_of(node)
                if node["type"] == "MODEL" and node.get("modelUri"):
                    # The operator adds model_uri=/mnt/models where it downloads modelUri to.
                    values.setdefault("model_uri", "/mnt/models")
                class_path = env_of(by_name[node["name"]])["MODEL_NAME"]
                check_parameters(class_path, values, f"node {node['name']}")
                construct(class_path, values, f"node {node['name']}")
                if node["type"] == "ROUTER":
                    count = "shards" if class_path == KEY_ROUTER else "n_arms"
                    assert values.get(count) == len(node.get("children") or []), (
                        f"router {node['name']}: {count} {values.get(count)} is not its number of children "
                        f"({len(node.get('children') or [])})"
                    )
                if class_path == KEY_ROUTER:
                    # Child i must be shard i of as many shards, reading the key as the router does.
                    for i, child in enumerate(node["children"]):
                        shard = params_of(child)
                        assert (shard.get("shards"), shard.get("shard")) == (values["shards"], i), (
                            f"router {node['name']}: child {i} ({child['name']}) is shard {shard.get('shard')} "
                            f"of {shard.get('shards')}, expected shard {i} of {values['shards']}"
                        )
                        assert shard.get("routed") is True, f"shard {child['name']} must be routed"
                        for key in ("key_feature", "key_tag"):
                            assert shard.get(key) == values.get(key), (
                                f"shard {child['name']}: {key} {shard.get(key)!r}, the router reads {values.get(key)!r}"
                            )


@pytest.mark.parametrize("source", SOURCES)
def test_routers_get_their_routing_back(source):
    for sdep in sdeps(load(source)):
        for p in sdep["spec"]["predictors"]:
            if not any(n["type"] == "ROUTER" for n in nodes(p["graph"])):
                continue
            env = {e["name"]: e.get("value") for e in (p.get("svcOrchSpec") or {}).get("env", [])}
            assert env.get("SELDON_ENABLE_ROUTING_INJECTION") == "true", (
                f"predictor {p['name']} has a ROUTER but svcOrchSpec.env does not set "
                "SELDON_ENABLE_ROUTING_INJECTION=\"true\": feedback would reach the router with no routing"
            )


@pytest.mark.parametrize("source", SOURCES)
def test_the_state_backend_fits_the_replicas(source):
    docs = load(source)
    services = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Service"}
    claims = {d["metadata"]["name"] for d in docs if d.get("kind") == "PersistentVolumeClaim"}
    for sdep in sdeps(docs):
        for p in sdep["spec"]["predictors"]:
            by_name = containers(p)
            # The key router keeps no state.
            uris = {params_of(n).get("state_uri") for n in nodes(p["graph"])
                    if env_of(by_name[n["name"]]).get("MODEL_NAME") != KEY_ROUTER}
            assert len(uris) == 1 and None not in uris, f"every node names the same state_uri, got {uris}"
            uri = uris.pop()
            replicas = p.get("replicas", sdep["spec"].get("replicas", 1))
            if uri.startswith("redis://"):
                url = urlparse(uri)
                service = services.get(url.hostname)
                assert service, f"state_uri {uri}: no Service {url.hostname} in the same file"
                assert url.port in [port["port"] for port in service["spec"]["ports"]], (
                    f"Service {url.hostname} does not serve port {url.port}"
                )
                selected = service["spec"]["selector"]
                backends = [d for d in docs if d.get("kind") == "Deployment"
                            and selected.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
                assert backends, f"Service {url.hostname} selects no Deployment of the same file"
            else:
                assert uri == SQLITE_URI, f"state_uri is {uri!r}: expected redis://... or {SQLITE_URI}"
                assert replicas == 1, (
                    f"{replicas} replicas with the embedded sqlite state: each pod would learn alone "
                    "(use a redis:// state_uri for more than one)"
                )
            volumes = {}
            for spec in p["componentSpecs"]:
                volumes.update({v["name"]: v for v in spec["spec"].get("volumes", [])})
            for name, container in containers(p).items():
                mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
                assert STATE_DIR in mounts, f"container {name} mounts nothing at {STATE_DIR}"
                volume = volumes[mounts[STATE_DIR]]
                if uri.startswith("sqlite:") and "persistentVolumeClaim" in volume:
                    claim = volume["persistentVolumeClaim"]["claimName"]
                    assert claim in claims, f"volume {volume['name']} claims {claim}, which the file does not define"


@pytest.mark.parametrize("source", SOURCES)
def test_containers_are_locked_down_and_probed(source):
    for sdep in sdeps(load(source)):
        for p in sdep["spec"]["predictors"]:
            volumes = {v["name"] for spec in p["componentSpecs"] for v in spec["spec"].get("volumes", [])}
            for name, c in containers(p).items():
                sc = c.get("securityContext") or {}
                assert sc.get("runAsNonRoot") is True and sc.get("runAsUser", 0) != 0, f"{name}: must run as non-root"
                assert sc.get("readOnlyRootFilesystem") is True, f"{name}: root filesystem must be read-only"
                assert sc.get("allowPrivilegeEscalation") is False, f"{name}: privilege escalation must be off"
                assert "ALL" in (sc.get("capabilities") or {}).get("drop", []), f"{name}: capabilities must be dropped"
                mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
                assert "/tmp" in mounts, f"{name}: a read-only root needs a writable /tmp volume"
                assert set(mounts.values()) <= volumes, f"{name}: mounts {set(mounts.values()) - volumes}, which are not volumes"
                for probe in ("readinessProbe", "livenessProbe"):
                    assert c.get(probe), f"{name}: no {probe}"
                assert (c.get("resources") or {}).get("requests"), f"{name}: no resource requests"
                assert ((c.get("resources") or {}).get("limits") or {}).get("memory"), f"{name}: no memory limit"
                assert c.get("image"), f"{name}: no image"


@pytest.mark.parametrize("source", SOURCES)
def test_custom_metrics_are_scraped(source):
    for sdep in sdeps(load(source)):
        for p in sdep["spec"]["predictors"]:
            for spec in p["componentSpecs"]:
                annotations = (spec.get("metadata") or {}).get("annotations") or {}
                assert annotations.get("prometheus.io/scrape") == "true", "pods must be annotated prometheus.io/scrape=\"true\""
                assert annotations.get("prometheus.io/path") == "/prometheus", (
                    "Seldon's operator serves the wrapper's metrics at /prometheus: annotate prometheus.io/path=/prometheus"
                )
                ports = [port["containerPort"] for c in spec["spec"]["containers"] for port in c.get("ports", [])]
                assert len(ports) == len(set(ports)), f"containers of one pod share ports: {sorted(ports)}"
                for c in spec["spec"]["containers"]:
                    names = {port.get("name") for port in c.get("ports", [])}
                    assert {"http", "grpc", "metrics"} <= names, f"{c['name']}: ports named {names}, expected http, grpc, metrics"


@pytest.mark.parametrize("source", SOURCES)
def test_models_come_from_model_uris_and_images_are_the_built_one(source):
    image = image_names()["IMAGE"]
    for sdep in sdeps(load(source)):
        for p in sdep["spec"]["predictors"]:
            for node in nodes(p["graph"]):
                if node["type"] == "MODEL":
                    assert node.get("modelUri"), f"model {node['name']} has no modelUri"
                    assert node.get("implementation"), (
                        f"model {node['name']}: Seldon's operator downloads modelUri only for an implementation "
                        "registered in its predictor_servers"
                    )
            for name, c in containers(p).items():
                assert c["image"] == image, f"{name} runs {c['image']}, but scripts/docker.sh builds {image}"


@pytest.mark.parametrize("source", SOURCES)
def test_objects_carry_the_standard_labels(source):
    docs = load(source)
    instance = sdeps(docs)[0]["metadata"]["name"]
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    for d in docs:
        labels = d["metadata"].get("labels") or {}
        expected = {
            "app.kubernetes.io/name": "seldon-river",
            "app.kubernetes.io/instance": instance,
            "app.kubernetes.io/version": version,
            "app.kubernetes.io/part-of": "seldon-river",
        }
        assert expected.items() <= labels.items(), f"{d['kind']} {d['metadata']['name']}: labels {labels}, expected {expected}"
        assert labels.get("app.kubernetes.io/component"), f"{d['kind']} {d['metadata']['name']}: no component label"


def read_environment(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path}: {line!r} is not KEY=VALUE"
            values[key.strip()] = value
    return values


@pytest.mark.parametrize("source", S2I_SOURCES, ids=[p.name for p in S2I_SOURCES])
def test_s2i_settings_name_a_component_and_its_parameters(source):
    env = read_environment(source / ".s2i" / "environment")
    for key in ("MODEL_NAME", "API_TYPE", "SERVICE_TYPE", "PERSISTENCE"):
        assert env.get(key), f"{source}/.s2i/environment: {key} is missing (Seldon's python builder needs it)"
    assert env["API_TYPE"] in ("REST", "GRPC")
    assert env["PERSISTENCE"] == "0", "PERSISTENCE has been ignored since Seldon 1.8; 0 says so"
    allowed = (CLASSES.get(env["SERVICE_TYPE"]), *ALSO.get(env["SERVICE_TYPE"], ()))
    assert env["MODEL_NAME"] in allowed, (
        f"{source.name}: SERVICE_TYPE {env['SERVICE_TYPE']} runs one of {allowed}, not {env['MODEL_NAME']}"
    )
    from seldon_core.microservice import parse_parameters

    values = parse_parameters(json.loads(env.get("PREDICTIVE_UNIT_PARAMETERS", "[]")))
    check_parameters(env["MODEL_NAME"], values, f"{source.name}/.s2i/environment")
    construct(env["MODEL_NAME"], values, f"{source.name}/.s2i/environment")
    requirements = [
        line.strip() for line in (source / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert f"seldon-river=={project_version()}" in requirements, (
        f"{source.name}/requirements.txt must pin seldon-river=={project_version()} (pyproject.toml), got {requirements}"
    )


def test_s2i_has_a_model_source():
    assert "model" in [p.name for p in S2I_SOURCES], "scripts/docker.sh builds s2i/model"


@pytest.mark.parametrize("source", SOURCES)
def test_feedback_passes_the_outlier_detector(source):
    for sdep in sdeps(load(source)):
        for p in sdep["spec"]["predictors"]:
            for node in nodes(p["graph"]):
                if node["type"] == "TRANSFORMER":
                    # Seldon's orchestrator forwards feedback through a node only when it is a
                    # MODEL or ROUTER or lists SEND_FEEDBACK; TRANSFORM_INPUT keeps its predictions.
                    assert {"TRANSFORM_INPUT", "SEND_FEEDBACK"} <= set(node.get("methods") or []), (
                        f"node {node['name']}: methods {node.get('methods')}, expected TRANSFORM_INPUT and SEND_FEEDBACK"
                    )


def pod_templates(docs: list[dict]) -> list[dict]:
    """Every pod a file makes: the componentSpecs of its SeldonDeployments and its Deployments' templates."""
    found = [spec for d in sdeps(docs) for p in d["spec"]["predictors"] for spec in p["componentSpecs"]]
    return found + [d["spec"]["template"] for d in docs if d.get("kind") == "Deployment"]


@pytest.mark.parametrize("source", SOURCES)
def test_every_secret_a_pod_reads_is_in_the_file(source):
    docs = load(source)
    secrets = {d["metadata"]["name"] for d in docs if d.get("kind") == "Secret"}
    for template in pod_templates(docs):
        spec = template["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            read = {e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e}
            read |= {e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", [])
                     if "secretKeyRef" in (e.get("valueFrom") or {})}
            assert read <= secrets, f"container {c['name']} reads Secrets {sorted(read - secrets)}, not in the file"


@pytest.mark.parametrize("source", SOURCES)
def test_pods_run_as_the_operators_user_with_a_writable_state_volume(source):
    for sdep in sdeps(load(source)):
        sc = sdep["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["securityContext"]
        assert sc.get("runAsNonRoot") is True and sc.get("runAsUser") == 8888 and sc.get("fsGroup") == 8888, sc
        assert sc.get("seccompProfile") == {"type": "RuntimeDefault"}, sc


def _redis_of(docs: list[dict]) -> dict | None:
    deployments = [d for d in docs if d.get("kind") == "Deployment"
                   and any(c["name"] == "redis" for c in d["spec"]["template"]["spec"]["containers"])]
    return deployments[0] if deployments else None


@pytest.mark.parametrize("source", SOURCES)
def test_the_redis_shipped_fsyncs_requires_a_password_and_admits_the_graph_only(source):
    docs = load(source)
    redis = _redis_of(docs)
    if redis is None:
        return
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes" and args[args.index("--appendfsync") + 1] == "always", args
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)", args
    env = {e["name"]: e for e in container["env"]}
    secret = env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert env["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"] == secret, "the readiness probe must authenticate"
    for sdep in sdeps(docs):
        for name, c in containers(sdep["spec"]["predictors"][0]).items():
            sent = {e["name"]: e for e in c.get("env", [])}.get("SELDON_RIVER_REDIS_PASSWORD")
            assert sent and sent["valueFrom"]["secretKeyRef"] == secret, f"{name} does not send Redis's password"
    (policy,) = [d for d in docs if d.get("kind") == "NetworkPolicy"]
    redis_labels = redis["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= redis_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    allowed = peer["podSelector"]["matchLabels"]
    graph_labels = sdeps(docs)[0]["spec"]["predictors"][0]["componentSpecs"][0]["metadata"]["labels"]
    assert allowed.items() <= graph_labels.items(), "the graph's pods are not admitted"
    assert not allowed.items() <= redis_labels.items(), "the policy admits more than the graph's pods"
    assert [p["port"] for p in rule["ports"]] == [container["ports"][0]["name"]]
