"""Fixtures for the checks against a real Kubernetes API server with Seldon's CRD installed.

The server is started by ``scripts/cluster.sh up``, which writes the variables read here to
``$SELDON_RIVER_RUN_DIR/env``. Without them these tests are skipped, except in CI (``CI=true``),
where they fail: CI must run them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from clusterkit import CHART, REPO, Operator, Tool, missing

@pytest.fixture(scope="session")
def cluster_env() -> dict[str, str]:
    """The variables ``scripts/cluster.sh up`` exports."""
    names = (
        "KUBECONFIG",
        "SELDON_RIVER_KUBECTL",
        "SELDON_RIVER_LIMITED_CONTEXT",
        "SELDON_RIVER_LIMITED_NAMESPACE",
        "SELDON_RIVER_NO_CRD_CONTEXT",
    )
    absent = [n for n in names if not os.environ.get(n)]
    if absent:
        missing(
            f"{', '.join(absent)} not set: run scripts/cluster.sh up and source $SELDON_RIVER_RUN_DIR/env "
            "(make test does both)"
        )
    return {n: os.environ[n] for n in names}


@pytest.fixture(scope="session")
def kubectl(cluster_env) -> Tool:
    """kubectl from the PyPI wheel in the venv (never one from PATH)."""
    path = cluster_env["SELDON_RIVER_KUBECTL"]
    assert Path(path).is_file(), f"SELDON_RIVER_KUBECTL={path} does not exist"
    return Tool([path])


@pytest.fixture(scope="session")
def helm(cluster_env) -> Tool:
    """helm as built by scripts/tools.sh."""
    path = os.environ.get("SELDON_RIVER_HELM") or subprocess.run(
        ["bash", str(REPO / "scripts" / "tools.sh"), "path", "helm"], capture_output=True, text=True
    ).stdout.strip()
    if not path or not Path(path).is_file():
        missing(f"helm not built ({path or 'no path'}): run bash scripts/tools.sh ensure helm")
    return Tool([path])


@pytest.fixture(scope="session")
def chart() -> Path:
    if not (CHART / "Chart.yaml").is_file():
        missing(f"{CHART} has no Chart.yaml")
    return CHART


@pytest.fixture(scope="session")
def seldon_river(cluster_env) -> Tool:
    """The ``seldon-river`` command of this checkout."""
    return Tool([sys.executable, "-m", "model_wrappers.cli"])


@pytest.fixture
def namespace(kubectl, request) -> str:
    """A fresh namespace per test. No namespace controller runs here, so a deleted namespace
    stays Terminating; its objects are deleted explicitly by the tests that make them."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{slug}-{uuid.uuid4().hex[:5]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def operator_env(cluster_env) -> dict[str, str]:
    """The variables ``scripts/operator.sh install`` exports (run by ``cluster.sh up``)."""
    names = ("SELDON_RIVER_OPERATOR", "SELDON_RIVER_OPERATOR_ENV", "SELDON_RIVER_OPERATOR_NAMESPACE")
    absent = [n for n in names if not os.environ.get(n)]
    if absent:
        missing(f"{', '.join(absent)} not set: scripts/cluster.sh up installs Seldon's operator (scripts/operator.sh)")
    assert os.access(os.environ["SELDON_RIVER_OPERATOR"], os.X_OK), "SELDON_RIVER_OPERATOR is not executable"
    return {n: os.environ[n] for n in names}


@pytest.fixture
def start_operator(operator_env, kubectl, tmp_path):
    """Starts Seldon's operator on a namespace, installed there with the seldon-config of
    ``scripts/operator.sh`` less the predictor_servers in ``without``, and a ``default``
    ServiceAccount (which no controller-manager makes here); stops them when the test ends."""
    started = []

    def start(namespace: str, without: tuple[str, ...] = ()) -> Operator:
        kubectl("-n", namespace, "create", "serviceaccount", "default")
        operator = Operator(operator_env["SELDON_RIVER_OPERATOR"], operator_env["SELDON_RIVER_OPERATOR_ENV"],
                            namespace, tmp_path / f"operator-{namespace}.log")
        operator.install_config(kubectl, operator_env["SELDON_RIVER_OPERATOR_NAMESPACE"], without)
        started.append(operator)
        return operator.start()

    yield start
    for operator in started:
        operator.stop()
