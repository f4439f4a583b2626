"""The manifests and the Helm chart against a real kube-apiserver with Seldon's real CRD.

What this proves: every object is valid for the API server (schema, strict field validation,
admission), is stored as written (nothing pruned), can be listed and deleted; the chart installs,
upgrades, rolls back and uninstalls as a Helm release; broken manifests are refused with the
server's own message. No Seldon operator watches the namespaces used here, so a
SeldonDeployment's status stays empty; what the operator makes of the same files is checked by
test_operator.py, on namespaces of its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from clusterkit import (
    SELDON_CRD_NAME,
    broken_files,
    chart_values_files,
    expectations,
    is_subset,
    load_docs,
    manifest_files,
    sdeps_of,
)

pytestmark = pytest.mark.cluster


def _ids(paths):
    return [p.name for p in paths]


def check_manifest_lifecycle(kubectl, path: Path, namespace: str) -> None:
    """Server dry run, real create, read back and compare, delete."""
    docs = load_docs(path)
    sdeps = sdeps_of(docs)
    assert docs, f"{path} holds no object"
    own_ns = {d.get("metadata", {}).get("namespace") for d in docs} - {None}
    # kubectl refuses -n when an object names another namespace: then use the object's own.
    ns_args = [] if own_ns else ["-n", namespace]
    for ns in own_ns:
        if kubectl("get", "namespace", ns, check=False).returncode != 0:
            kubectl("create", "namespace", ns)

    dry = kubectl("apply", "--dry-run=server", "-f", path, *ns_args)
    assert "(server dry run)" in dry.stdout
    for sdep in sdeps:
        ns = sdep["metadata"].get("namespace", namespace)
        gone = kubectl("get", "sdep", sdep["metadata"]["name"], "-n", ns, check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr, "a server dry run stored the object"

    kubectl("create", "-f", path, *ns_args)
    try:
        for sdep in sdeps:
            name = sdep["metadata"]["name"]
            ns = sdep["metadata"].get("namespace", namespace)
            listed = kubectl("get", "sdep", "-n", ns, "-o", "name").stdout.split()
            assert f"seldondeployment.machinelearning.seldon.io/{name}" in listed
            stored = kubectl.json("get", "seldondeployment", name, "-n", ns)
            # Fields the schema does not know would have been pruned silently: compare all.
            assert is_subset(sdep["spec"], stored["spec"]), (
                f"the API server stored a different spec for {name}:\n"
                f"sent {json.dumps(sdep['spec'])}\nstored {json.dumps(stored['spec'])}"
            )
            assert "status" not in stored or not stored["status"], "no operator watches this namespace, yet a status appeared"
    finally:
        kubectl("delete", "-f", path, *ns_args, "--wait=true", "--timeout=60s")
    for sdep in sdeps:
        ns = sdep["metadata"].get("namespace", namespace)
        gone = kubectl("get", "sdep", sdep["metadata"]["name"], "-n", ns, check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_seldon_crd_is_established(kubectl):
    crd = kubectl.json("get", "crd", SELDON_CRD_NAME)
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions.get("Established") == "True"
    assert "v1" in [v["name"] for v in crd["spec"]["versions"] if v["served"]]
    names = kubectl("api-resources", "--api-group=machinelearning.seldon.io", "-o", "name").stdout.split()
    assert "seldondeployments.machinelearning.seldon.io" in names


def test_there_are_manifests_with_seldon_deployments():
    files = manifest_files()
    assert any(sdeps_of(load_docs(f)) for f in files), f"no SeldonDeployment in {files}"


@pytest.mark.parametrize("path", manifest_files(), ids=_ids(manifest_files()))
def test_manifest_accepted_stored_and_deleted(kubectl, namespace, path):
    check_manifest_lifecycle(kubectl, path, namespace)


@pytest.mark.parametrize(
    "values",
    [None, *chart_values_files()],
    ids=["default-values", *(f"{p.parent.name}-{p.name}" for p in chart_values_files())],
)
def test_chart_rendering_accepted_stored_and_deleted(kubectl, helm, chart, namespace, tmp_path, values):
    args = ["template", "seldon-river", chart, "--namespace", namespace]
    if values is not None:
        args += ["-f", values]
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(helm(*args).stdout)
    assert sdeps_of(load_docs(rendered)), f"helm {' '.join(map(str, args))} rendered no SeldonDeployment"
    check_manifest_lifecycle(kubectl, rendered, namespace)


@pytest.mark.parametrize("path", broken_files(), ids=_ids(broken_files()))
def test_broken_manifest_refused_with_the_servers_message(kubectl, namespace, path):
    expect = expectations(path)
    dry = kubectl("apply", "--dry-run=server", "-f", path, "-n", namespace, check=False)
    if expect["rejected-by"] == ["seldon-river"]:
        # The CRD's schema cannot express this rule: the API server stores the object, and
        # `seldon-river deploy` refuses it (tests/cluster/test_deploy_cli.py).
        assert dry.returncode == 0, dry.stderr
        return
    assert expect["rejected-by"] == ["api-server"], expect
    assert dry.returncode != 0, f"the API server accepted {path.name}:\n{dry.stdout}"
    for text in expect["expect"]:
        assert text in dry.stderr, f"expected {text!r} in the server's message:\n{dry.stderr}"
    # A real create is refused the same way and stores nothing.
    real = kubectl("create", "-f", path, "-n", namespace, check=False)
    assert real.returncode != 0
    for text in expect["expect"]:
        assert text in real.stderr
    assert kubectl("get", "sdep", "-n", namespace, "-o", "name").stdout.strip() == ""


# -- Helm release lifecycle ------------------------------------------------------------------
def _replicas_path(values, prefix=()):
    """The dotted path of the first integer ``replicas`` in the chart's values, if any."""
    if isinstance(values, dict):
        for key, value in values.items():
            if key == "replicas" and isinstance(value, int) and not isinstance(value, bool):
                return ".".join((*prefix, key)), value
        for key, value in values.items():
            found = _replicas_path(value, (*prefix, key))
            if found:
                return found
    return None


def _sdep_specs(kubectl, namespace: str) -> dict[str, dict]:
    items = kubectl.json("get", "seldondeployments", "-n", namespace)["items"]
    return {i["metadata"]["name"]: i["spec"] for i in items}


def _revisions(helm, release: str, namespace: str) -> list[dict]:
    return json.loads(helm("history", release, "-n", namespace, "-o", "json").stdout)


def test_helm_install_upgrade_rollback_uninstall(helm, kubectl, chart, namespace):
    release = "lifecycle"
    found = _replicas_path(yaml.safe_load((chart / "values.yaml").read_text()) or {})
    assert found, f"{chart}/values.yaml has no integer 'replicas' for the upgrade to change"
    key, replicas = found

    helm("install", release, chart, "-n", namespace)
    installed = _sdep_specs(kubectl, namespace)
    assert installed, "helm install created no SeldonDeployment"
    assert [r["status"] for r in _revisions(helm, release, namespace)] == ["deployed"]

    helm("upgrade", release, chart, "-n", namespace, "--set", f"{key}={replicas + 1}")
    upgraded = _sdep_specs(kubectl, namespace)
    assert upgraded.keys() == installed.keys()
    assert upgraded != installed, f"--set {key}={replicas + 1} changed no SeldonDeployment"
    assert [r["status"] for r in _revisions(helm, release, namespace)] == ["superseded", "deployed"]

    helm("rollback", release, "1", "-n", namespace)
    assert _sdep_specs(kubectl, namespace) == installed
    history = _revisions(helm, release, namespace)
    assert len(history) == 3 and history[-1]["status"] == "deployed"

    helm("uninstall", release, "-n", namespace, "--wait", "--timeout", "60s")
    assert _sdep_specs(kubectl, namespace) == {}
    assert release not in helm("list", "-n", namespace, "-q").stdout.split()
