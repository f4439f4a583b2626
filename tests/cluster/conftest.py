"""Fixtures for the checks against a real Kubernetes API server with Seldon's CRD installed.

The server is started by ``scripts/cluster.sh up``, which writes the variables read here to
``$SELDON_RIVER_RUN_DIR/env``. Without them these tests are skipped, except in CI (``CI=true``),
where they fail: CI must run them.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CHART = REPO / "charts" / "seldon-river"
SELDON_CRD_NAME = "seldondeployments.machinelearning.seldon.io"


def _missing(message: str):
    """Fails in CI, skips elsewhere: CI must not pass without running these checks."""
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def manifest_files() -> list[Path]:
    """The project's manifests and this directory's own valid ones."""
    return sorted((REPO / "manifests").glob("*.yaml")) + sorted((HERE / "valid").glob("*.yaml"))


def broken_files() -> list[Path]:
    return sorted((HERE / "broken").glob("*.yaml"))


def chart_values_files() -> list[Path]:
    """Values files shipped with the chart for testing it (Helm's ``ci/`` convention)."""
    return sorted((CHART / "ci").glob("*.yaml"))


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]


def sdeps_of(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d.get("kind") == "SeldonDeployment"]


def expectations(path: Path) -> dict[str, list[str]]:
    """Reads a broken manifest's header: ``# rejected-by: WHO`` and ``# expect: TEXT`` lines."""
    found: dict[str, list[str]] = {"rejected-by": [], "expect": []}
    for line in path.read_text().splitlines():
        m = re.match(r"#\s*(rejected-by|expect):\s*(.+?)\s*$", line)
        if m:
            found[m.group(1)].append(m.group(2))
    assert found["rejected-by"] and found["expect"], f"{path} lacks '# rejected-by:' / '# expect:' lines"
    return found


def is_subset(expected, actual) -> bool:
    """True when every field of ``expected`` is in ``actual`` with the same value."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and is_subset(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(expected) == len(actual) and all(
            is_subset(e, a) for e, a in zip(expected, actual)
        )
    return expected == actual


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tool:
    """Runs one command-line tool with the cluster's KUBECONFIG."""

    def __init__(self, argv0: list[str]):
        self.argv0 = argv0

    def __call__(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [*self.argv0, *map(str, args)], capture_output=True, text=True, input=input, cwd=REPO, timeout=300
        )
        if check and proc.returncode != 0:
            pytest.fail(
                f"{' '.join(map(str, [*self.argv0[-1:], *args]))} exited {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}",
                pytrace=False,
            )
        return proc

    def json(self, *args: str) -> dict:
        return json.loads(self(*args, "-o", "json").stdout)


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
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        _missing(
            f"{', '.join(missing)} not set: run scripts/cluster.sh up and source $SELDON_RIVER_RUN_DIR/env "
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
        _missing(f"helm not built ({path or 'no path'}): run bash scripts/tools.sh ensure helm")
    return Tool([path])


@pytest.fixture(scope="session")
def chart() -> Path:
    if not (CHART / "Chart.yaml").is_file():
        _missing(f"{CHART} has no Chart.yaml")
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
