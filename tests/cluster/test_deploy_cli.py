"""``seldon-river deploy / status / undeploy`` against a real kube-apiserver with Seldon's CRD.

Every failure the command can meet is produced for real: an address where nothing listens, an
API server without Seldon's CRD (a second server started by scripts/cluster.sh), a user whose
RBAC rights are read-only, and objects the server (or the command's own checks) rejects.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from clusterkit import REPO, broken_files, expectations, free_port, load_docs, manifest_files, sdeps_of

pytestmark = pytest.mark.cluster

VALID = REPO / "tests" / "cluster" / "valid" / "river-graph.yaml"


def _ids(paths):
    return [p.name for p in paths]


def assert_one_line_error(proc, *fragments: str) -> str:
    """Exit status 1, one line on stderr (no traceback) that contains every fragment."""
    err = proc.stderr.strip()
    assert proc.returncode == 1, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    assert "Traceback" not in err and len(err.splitlines()) == 1, f"not a one-line error:\n{err}"
    assert err.startswith("seldon-river "), err
    for fragment in fragments:
        assert fragment in err, f"expected {fragment!r} in:\n{err}"
    return err


def _single_sdep_manifest(tmp_path: Path, name: str = "solo") -> Path:
    """A manifest with one SeldonDeployment only, taken from the valid graph."""
    sdep = sdeps_of(load_docs(VALID))[0]
    sdep["metadata"]["name"] = name
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sdep))
    return path


@pytest.mark.parametrize("path", manifest_files(), ids=_ids(manifest_files()))
def test_deploy_status_undeploy_round_trip(seldon_river, kubectl, namespace, path):
    docs = load_docs(path)
    pinned = {d.get("metadata", {}).get("namespace") for d in docs} - {None}
    for ns in pinned:
        if kubectl("get", "namespace", ns, check=False).returncode != 0:
            kubectl("create", "namespace", ns)
    # Objects that name no namespace go to the test's own (and --namespace must not contradict the others).
    ns_args = [] if pinned else ["--namespace", namespace]
    sdeps = [(d["metadata"]["name"], d["metadata"].get("namespace") or namespace) for d in sdeps_of(docs)]

    def listed_sdeps():
        found = set()
        for ns in {ns for _, ns in sdeps}:
            for line in kubectl("get", "sdep", "-n", ns, "-o", "name").stdout.split():
                found.add((line.rpartition("/")[2], ns))
        return found

    dry = seldon_river("deploy", path, *ns_args, "--dry-run")
    assert "(server dry run)" in dry.stdout and "nothing was stored" in dry.stdout
    assert listed_sdeps() == set()

    first = seldon_river("deploy", path, *ns_args)
    for name, ns in sdeps:
        assert f"seldondeployments.machinelearning.seldon.io/{name} (namespace {ns}) created" in first.stdout
        assert f'SeldonClient(deployment_name="{name}", namespace="{ns}"' in first.stdout
        assert f"/seldon/{ns}/{name}/api/v1.0/predictions" in first.stdout
    assert listed_sdeps() == set(sdeps)

    # Deploying again changes nothing: server-side apply of the same manifest.
    again = seldon_river("deploy", path, *ns_args)
    for name, ns in sdeps:
        assert f"seldondeployments.machinelearning.seldon.io/{name} (namespace {ns}) unchanged" in again.stdout

    status = seldon_river("status", path, *ns_args)
    for name, ns in sdeps:
        assert f"seldondeployments.machinelearning.seldon.io/{name} (namespace {ns}): created" in status.stdout
    if sdeps:
        assert "status: none reported" in status.stdout and "operator" in status.stdout
        name, ns = sdeps[0]
        by_name = seldon_river("status", name, "--namespace", ns)
        assert f"/{name} (namespace {ns})" in by_name.stdout

    gone = seldon_river("undeploy", path, *ns_args)
    for name, ns in sdeps:
        assert f"seldondeployments.machinelearning.seldon.io/{name} (namespace {ns}) deleted" in gone.stdout
    for doc in docs:
        kind, name = doc["kind"].lower(), doc["metadata"]["name"]
        where = ["-n", doc["metadata"].get("namespace") or namespace]
        proc = kubectl("get", kind, name, *where, check=False)
        assert proc.returncode != 0 and "NotFound" in proc.stderr, f"{kind}/{name} survived undeploy"

    after = seldon_river("status", path, *ns_args, check=False)
    assert_one_line_error(after, "not found")
    assert "not found" in after.stdout


def test_update_changes_the_stored_object(seldon_river, kubectl, namespace, tmp_path):
    path = _single_sdep_manifest(tmp_path)
    seldon_river("deploy", path, "-n", namespace)
    sdep = yaml.safe_load(path.read_text())
    sdep["spec"]["predictors"][0]["replicas"] = 3
    path.write_text(yaml.safe_dump(sdep))
    out = seldon_river("deploy", path, "-n", namespace).stdout
    assert f"seldondeployments.machinelearning.seldon.io/solo (namespace {namespace}) configured" in out
    stored = kubectl.json("get", "sdep", "solo", "-n", namespace)
    assert stored["spec"]["predictors"][0]["replicas"] == 3 and stored["metadata"]["generation"] == 2
    seldon_river("undeploy", path, "-n", namespace)


def test_status_lists_the_namespace(seldon_river, namespace, tmp_path):
    empty = seldon_river("status", "-n", namespace)
    assert f"no SeldonDeployment in namespace {namespace}" in empty.stdout
    path = _single_sdep_manifest(tmp_path)
    seldon_river("deploy", path, "-n", namespace)
    listed = seldon_river("status", "-n", namespace)
    assert "/solo (namespace" in listed.stdout and "graph outliers(TRANSFORMER) -> [bandit(ROUTER)" in listed.stdout
    seldon_river("undeploy", path, "-n", namespace)


def test_wait_explains_that_no_operator_reconciles(seldon_river, namespace, tmp_path):
    path = _single_sdep_manifest(tmp_path)
    proc = seldon_river("deploy", path, "-n", namespace, "--wait", "0.5", check=False)
    assert_one_line_error(proc, "reports no status", "operator")
    seldon_river("undeploy", path, "-n", namespace)


@pytest.mark.parametrize("path", broken_files(), ids=_ids(broken_files()))
def test_broken_manifest_refused_with_a_clear_message(seldon_river, kubectl, namespace, path):
    expect = expectations(path)
    for extra in (["--dry-run"], []):
        proc = seldon_river("deploy", path, "-n", namespace, *extra, check=False)
        err = assert_one_line_error(proc, *expect["expect"])
        if expect["rejected-by"] == ["api-server"]:
            assert "the API server rejected" in err
    assert kubectl("get", "sdep", "-n", namespace, "-o", "name").stdout.strip() == ""


def test_broken_update_of_an_existing_object_gives_the_servers_message(seldon_river, namespace, tmp_path):
    path = _single_sdep_manifest(tmp_path, "broken-later")
    seldon_river("deploy", path, "-n", namespace)
    sdep = yaml.safe_load(path.read_text())
    sdep["spec"]["predictors"][0]["graph"]["modelURL"] = "/mnt/models"
    sdep["spec"]["predictors"][0]["replicas"] = "two"
    path.write_text(yaml.safe_dump(sdep))
    proc = seldon_river("deploy", path, "-n", namespace, check=False)
    assert_one_line_error(proc, "the API server rejected", "broken-later")
    assert "must be of type integer" in proc.stderr or 'unknown field "spec.predictors[0].graph.modelURL"' in proc.stderr
    path.write_text(yaml.safe_dump(sdeps_of(load_docs(VALID))[0] | {"metadata": {"name": "broken-later"}}))
    seldon_river("undeploy", path, "-n", namespace)


def test_no_cluster_reachable(seldon_river, tmp_path):
    port = free_port()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}", "insecure-skip-tls-verify": True}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    for command in (["deploy", VALID], ["undeploy", VALID], ["status"]):
        proc = seldon_river(*command, "--kubeconfig", kubeconfig, check=False)
        assert_one_line_error(proc, f"cannot reach the Kubernetes API server at https://127.0.0.1:{port}", "refused")


def test_missing_kubeconfig(seldon_river, tmp_path):
    proc = seldon_river("status", "--kubeconfig", tmp_path / "absent", check=False)
    assert_one_line_error(proc, f"kubeconfig {tmp_path / 'absent'} does not exist")


def test_unknown_context(seldon_river):
    proc = seldon_river("status", "--context", "no-such-context", check=False)
    assert_one_line_error(proc, "cannot use kubeconfig", "no-such-context")


def test_seldon_core_not_installed(seldon_river, cluster_env, kubectl):
    bare = cluster_env["SELDON_RIVER_NO_CRD_CONTEXT"]
    # The second API server is real and reachable; only the CRD is missing.
    assert kubectl("--context", bare, "get", "namespace", "default", "-o", "name").stdout.strip() == "namespace/default"
    for command in (["deploy", VALID], ["deploy", VALID, "--dry-run"], ["undeploy", VALID], ["status"], ["status", "x"]):
        proc = seldon_river(*command, "--context", bare, check=False)
        assert_one_line_error(proc, "does not serve SeldonDeployment", "install Seldon Core first")
    # Nothing of the manifest was created before the missing kind was noticed.
    secrets = kubectl("--context", bare, "get", "secrets", "-n", "default", "-o", "name").stdout.split()
    assert "secret/river-graph-state" not in secrets


def test_rbac_denial(seldon_river, cluster_env, kubectl, tmp_path):
    context, ns = cluster_env["SELDON_RIVER_LIMITED_CONTEXT"], cluster_env["SELDON_RIVER_LIMITED_NAMESPACE"]
    path = _single_sdep_manifest(tmp_path, "denied")
    proc = seldon_river("deploy", path, "--context", context, check=False)
    assert_one_line_error(
        proc,
        "permission denied",
        'User "seldon-river-limited" cannot patch resource "seldondeployments"',
        f'in the namespace "{ns}"',
    )
    # Read rights are enough for status.
    listed = seldon_river("status", "--context", context)
    assert f"no SeldonDeployment in namespace {ns}" in listed.stdout
    # And another namespace is not readable at all.
    other = seldon_river("status", "--context", context, "-n", "default", check=False)
    assert_one_line_error(other, "permission denied", 'cannot list resource "seldondeployments"')
    assert kubectl("get", "sdep", "-n", ns, "-o", "name").stdout.strip() == ""


def test_namespace_conflict(seldon_river, namespace, tmp_path):
    path = _single_sdep_manifest(tmp_path)
    sdep = yaml.safe_load(path.read_text())
    sdep["metadata"]["namespace"] = "elsewhere"
    path.write_text(yaml.safe_dump(sdep))
    proc = seldon_river("deploy", path, "-n", namespace, check=False)
    assert_one_line_error(proc, "names namespace 'elsewhere'", f"--namespace '{namespace}'")


def test_not_a_manifest(seldon_river, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [unclosed\n")
    assert_one_line_error(seldon_river("deploy", bad, check=False), "is not valid YAML")
    assert_one_line_error(seldon_river("deploy", tmp_path / "absent.yaml", check=False), "cannot read")


def test_values_file_is_rendered_with_the_chart(seldon_river, kubectl, helm, chart, namespace, tmp_path):
    values = tmp_path / "values.yaml"
    shutil.copy(chart / "values.yaml", values)
    out = seldon_river("deploy", values, "-n", namespace, "--chart", chart, "--helm", helm.argv0[0]).stdout
    assert "seldondeployments.machinelearning.seldon.io/" in out and "created" in out
    assert kubectl("get", "sdep", "-n", namespace, "-o", "name").stdout.strip()
    seldon_river("undeploy", values, "-n", namespace, "--chart", chart, "--helm", helm.argv0[0])
    assert kubectl("get", "sdep", "-n", namespace, "-o", "name").stdout.strip() == ""


SINGLE_MODEL = REPO / "manifests" / "single-model.yaml"


def test_deploy_without_the_operators_config_says_where_it_looked(seldon_river, kubectl, namespace):
    proc = seldon_river("deploy", SINGLE_MODEL, "-n", namespace, "--operator-namespace", "no-operator-here", check=False)
    assert_one_line_error(proc, "ConfigMap seldon-config in namespace no-operator-here not found",
                          "implementation RIVER_SERVER", "--operator-namespace")
    assert kubectl("get", "sdep,secrets,pvc", "-n", namespace, "-o", "name").stdout.strip() == ""


def test_a_user_who_may_not_read_the_operators_config_is_told_it_was_not_checked(seldon_river, cluster_env):
    proc = seldon_river("deploy", SINGLE_MODEL, "--context", cluster_env["SELDON_RIVER_LIMITED_CONTEXT"], check=False)
    assert "was not checked" in proc.stdout and "permission denied" in proc.stdout, proc.stdout
    # The refusal that follows is the RBAC one, still one line.
    assert_one_line_error(proc, "permission denied")
