"""The Helm chart: ``helm lint --strict``, rendering, no drift from manifests/, its NOTES, and its
values schema (refusing bad values, allowing only parameters the components accept).

helm is the one scripts/tools.sh builds; each example values file in charts/seldon-river/examples
renders release ``river-<example>``, which must equal manifests/<example>.yaml object for object.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from test_manifests import CHART, CLASSES, EXAMPLES, REPO, check_parameters, helm

PARAMETER_TYPES = {"integer": int, "number": float, "boolean": bool, "string": str}


def run_helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([helm(), *args], capture_output=True, text=True)
    if check:
        assert done.returncode == 0, f"helm {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def template(release: str, *args: str, chart: Path = CHART, check: bool = True) -> subprocess.CompletedProcess:
    return run_helm("template", release, str(chart), *args, check=check)


def objects(text: str) -> dict[tuple[str, str], dict]:
    found = {}
    for doc in yaml.safe_load_all(text):
        if doc:
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in found, f"{key} appears twice"
            found[key] = doc
    return found


def differences(written, rendered, path: str = "") -> list[str]:
    """Where two parsed objects differ, as "at PATH: written != rendered" lines."""
    if isinstance(written, dict) and isinstance(rendered, dict):
        return [line for key in sorted(set(written) | set(rendered), key=str)
                for line in differences(written.get(key, "<absent>"), rendered.get(key, "<absent>"), f"{path}/{key}")]
    if isinstance(written, list) and isinstance(rendered, list) and len(written) == len(rendered):
        return [line for i, (w, r) in enumerate(zip(written, rendered)) for line in differences(w, r, f"{path}/{i}")]
    return [] if written == rendered else [f"  at {path or '/'}: {written!r} != {rendered!r}"[:400]]


def test_lint_strict():
    done = run_helm("lint", "--strict", str(CHART))
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


def test_chart_script_lints_and_renders_every_example():
    done = subprocess.run(["bash", str(REPO / "scripts" / "chart.sh")], capture_output=True, text=True)
    assert done.returncode == 0, f"scripts/chart.sh failed:\n{done.stdout}\n{done.stderr}"
    for example in EXAMPLES:
        assert f"examples/{example.name} renders" in done.stdout


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_examples_render_the_manifests_without_drift(example):
    rendered = objects(template(f"river-{example.stem}", "-f", str(example)).stdout)
    manifest = REPO / "manifests" / example.name
    written = objects(manifest.read_text())
    assert rendered.keys() == written.keys(), (
        f"{manifest} holds {sorted(written)}, the chart renders {sorted(rendered)}: "
        "run `bash scripts/chart.sh manifests`"
    )
    for key in rendered:
        changes = differences(written[key], rendered[key])
        assert not changes, (
            f"{key[0]} {key[1]} in {manifest} differs from the chart's rendering (run `bash scripts/chart.sh "
            "manifests`):\n" + "\n".join(changes[:20])
        )


def test_default_values_render_the_full_graph():
    changes = differences(objects((REPO / "manifests" / "full-graph.yaml").read_text()),
                          objects(template("river-full-graph").stdout))
    assert not changes, "the chart's defaults do not render manifests/full-graph.yaml:\n" + "\n".join(changes[:20])


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_notes_tell_how_to_predict_and_feed_back(example, tmp_path):
    # helm renders NOTES.txt only on install; a copy of the chart exposes it as a template.
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n"
        '  notes: {{ include (print $.Template.BasePath "/NOTES.txt") . | quote }}\n'
    )
    release = f"river-{example.stem}"
    done = template(release, "-f", str(example), "--namespace", "ml", "--show-only", "templates/zz-notes.yaml",
                    chart=chart)
    notes = yaml.safe_load(done.stdout)["data"]["notes"]
    for needed in (f"svc/{release}-default", "/api/v1.0/predictions", "/api/v1.0/feedback", "truth",
                   "predictor_servers", "-n ml"):
        assert needed in notes, f"NOTES for {example.name} do not mention {needed!r}:\n{notes}"
    values = yaml.safe_load(example.read_text()) or {}
    if (values.get("router") or {}).get("enabled", True):
        assert "reward" in notes


@pytest.mark.parametrize(
    "values, message",
    [
        ({"router": {"enabled": True, "parameters": {"policy": "greedy"}}}, "value must be one of"),
        ({"models": [{"name": "m", "modelUri": "s3://b/m", "parameters": {"learning_rate": 0.1}}],
          "router": {"enabled": False}}, "learning_rate"),
        ({"detector": {"enabled": True, "parameters": {"quantile": 2}}}, "quantile"),
        ({"state": {"backend": "sqlite"}}, "replicas must be 1"),
        ({"router": {"enabled": False}}, "exactly one model"),
        ({"models": [{"name": "m", "modelUri": "s3://b/m"}, {"name": "m", "modelUri": "s3://b/n"}]}, "must be unique"),
        ({"state": {"backend": "etcd"}}, "value must be one of"),
        ({"modelServer": {"implementation": "RIVER_SERVER", "rcloneConfig": {"ACCESS_KEY": "k"}}}, "ACCESS_KEY"),
        ({"state": {"backend": "redis", "redis": {"passwordSecret": "Not A Name"}}}, "passwordSecret"),
        ({"models": [{"name": "m", "modelUri": "s3://b/m", "parameters": {"key_feature": "k"}}],
          "router": {"enabled": False}}, "key_feature"),
        ({"models": [{"name": "m", "modelUri": "s3://b/m", "keyed": True, "parameters": {"selection_metric": "f1"}}],
          "router": {"enabled": False}}, "selection_metric"),
        ({"sharding": {"enabled": True}, "router": {"enabled": False},
          "models": [{"name": "m", "modelUri": "s3://b/m", "keyed": True, "parameters": {"key_feature": "k"}}],
          "state": {"backend": "sqlite"}, "replicas": 1}, "set state.backend=redis"),
        ({"sharding": {"enabled": True},
          "models": [{"name": "m", "modelUri": "s3://b/m", "keyed": True, "parameters": {"key_feature": "k"}}]},
          "set router.enabled=false and exactly one keyed model"),
        ({"sharding": {"enabled": True}, "router": {"enabled": False},
          "models": [{"name": "m", "modelUri": "s3://b/m", "keyed": True}]}, "exactly one of key_feature or key_tag"),
        ({"sharding": {"enabled": True, "shards": 1}}, "/sharding/shards"),
    ],
    ids=["unknown-policy", "unknown-model-parameter", "quantile-out-of-range", "sqlite-with-replicas",
         "two-models-without-router", "repeated-node-name", "unknown-backend", "rclone-setting-not-rclone",
         "password-secret-not-a-name", "keyed-parameter-on-a-plain-model", "unknown-keyed-selection-metric",
         "sharding-on-sqlite", "sharding-under-the-bandit", "sharding-without-a-key", "one-shard"],
)
def test_bad_values_are_refused_with_the_reason(values, message, tmp_path):
    file = tmp_path / "values.yaml"
    file.write_text(yaml.safe_dump(values))
    done = template("river", "-f", str(file), check=False)
    assert done.returncode != 0, f"helm template with {values} rendered; expected a refusal"
    assert message in done.stderr, f"expected {message!r} in the refusal, got:\n{done.stderr}"


def schema_parameters(schema: dict, *path: str) -> dict:
    node = schema
    for step in path:
        node = node[step]
    return node["parameters"]["properties"]


KEYED_CLASS = "model_wrappers.KeyedRiverModel"


@pytest.mark.parametrize(
    "class_path, path",
    [(CLASSES["TRANSFORMER"], ("properties", "detector", "properties")),
     (CLASSES["ROUTER"], ("properties", "router", "properties")),
     (CLASSES["MODEL"], ("properties", "models", "items", "else", "properties")),
     (KEYED_CLASS, ("properties", "models", "items", "then", "properties"))],
    ids=["detector", "router", "model", "keyed-model"],
)
def test_the_schema_allows_only_parameters_the_component_accepts(class_path, path):
    schema = json.loads((CHART / "values.schema.json").read_text())
    for name, spec in schema_parameters(schema, *path).items():
        value = spec.get("enum", [None])[0] or {int: 1, float: 0.5, bool: True, str: "x"}[PARAMETER_TYPES[spec["type"]]]
        values = {name: value}
        if class_path == CLASSES["ROUTER"]:
            values.setdefault("n_arms", 2)
        check_parameters(class_path, values, f"values.schema.json {'/'.join(path)}/parameters/{name}")


def model_nodes(rendered: str) -> tuple[dict[str, dict], dict[str, str]]:
    """The rendered graph's MODEL nodes by name (parameters as a dict) and each container's MODEL_NAME."""
    found = objects(rendered)
    sdep = next(doc for (kind, _), doc in found.items() if kind == "SeldonDeployment")
    predictor = sdep["spec"]["predictors"][0]
    nodes, todo = {}, [predictor["graph"]]
    while todo:
        node = todo.pop()
        todo += node.get("children") or []
        if node["type"] == "MODEL":
            nodes[node["name"]] = {p["name"]: (p["type"], p["value"]) for p in node["parameters"]}
    classes = {c["name"]: next(e["value"] for e in c["env"] if e["name"] == "MODEL_NAME")
               for c in predictor["componentSpecs"][0]["spec"]["containers"]}
    return nodes, classes


def test_keyed_models_under_a_router_are_routed_and_served_by_the_keyed_class(tmp_path):
    values = {"models": [
        {"name": "sales", "modelUri": "s3://b/sales", "keyed": True,
         "parameters": {"key_feature": "product_id", "max_keys_in_memory": 5000, "preload": True}},
        {"name": "plain", "modelUri": "s3://b/plain"},
    ]}
    file = tmp_path / "values.yaml"
    file.write_text(yaml.safe_dump(values))
    nodes, classes = model_nodes(template("river", "-f", str(file)).stdout)
    assert classes["sales"] == KEYED_CLASS and classes["plain"] == CLASSES["MODEL"]
    assert nodes["sales"]["routed"] == ("BOOL", "true") and nodes["plain"]["routed"] == ("BOOL", "true")
    assert nodes["sales"]["key_feature"] == ("STRING", "product_id")
    assert nodes["sales"]["max_keys_in_memory"] == ("INT", "5000")
    assert nodes["sales"]["preload"] == ("BOOL", "true")
    for name, params in nodes.items():
        check_parameters(classes[name], {k: PYTHON_VALUE[t](v) for k, (t, v) in params.items()}, f"node {name}")


def test_a_keyed_model_alone_is_not_routed(tmp_path):
    values = {"router": {"enabled": False},
              "models": [{"name": "sales", "modelUri": "s3://b/sales", "keyed": True}]}
    file = tmp_path / "values.yaml"
    file.write_text(yaml.safe_dump(values))
    nodes, classes = model_nodes(template("river", "-f", str(file)).stdout)
    assert classes["sales"] == KEYED_CLASS and "routed" not in nodes["sales"]


PYTHON_VALUE = {"BOOL": lambda v: v == "true", "INT": int, "FLOAT": float, "STRING": str}


def test_sharding_renders_a_key_router_over_n_shards_each_in_a_pod_of_its_own(tmp_path):
    values = yaml.safe_load((CHART / "examples" / "keyed-sharded.yaml").read_text())
    values["sharding"]["shards"] = 4
    file = tmp_path / "values.yaml"
    file.write_text(yaml.safe_dump(values))
    found = objects(template("river", "-f", str(file)).stdout)
    sdep = next(doc for (kind, _), doc in found.items() if kind == "SeldonDeployment")
    predictor = sdep["spec"]["predictors"][0]
    graph = predictor["graph"]
    assert (graph["name"], graph["type"]) == ("key-router", "ROUTER")
    assert {p["name"]: p["value"] for p in graph["parameters"]} == {"key_feature": "product_id", "shards": "4"}
    children = graph["children"]
    assert [c["name"] for c in children] == [f"sales-shard-{i}" for i in range(4)]
    for i, child in enumerate(children):
        params = {p["name"]: p["value"] for p in child["parameters"]}
        assert (params["shards"], params["shard"], params["routed"]) == ("4", str(i), "true"), params
        assert params["key_feature"] == "product_id" and params["state_uri"].startswith("redis://")
        assert child["modelUri"] == values["models"][0]["modelUri"]
    # The router's pod, then one pod per shard, each downloading the folder for its shard alone.
    specs = predictor["componentSpecs"]
    assert [[c["name"] for c in s["spec"]["containers"]] for s in specs] == [["key-router"]] + [
        [f"sales-shard-{i}"] for i in range(4)]
    assert [[c["name"] for c in s["spec"].get("initContainers", [])] for s in specs[1:]] == [
        [f"sales-shard-{i}-model-initializer"] for i in range(4)]
    env = {e["name"]: e["value"] for e in predictor["svcOrchSpec"]["env"]}
    assert env["SELDON_ENABLE_ROUTING_INJECTION"] == "true"
