"""Plain functions and constants shared by the cluster tests (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from model_wrappers.local.ports import free_port

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# SELDON_RIVER_CHART points the chart checks at another copy of the chart.
CHART = Path(os.environ.get("SELDON_RIVER_CHART") or REPO / "charts" / "seldon-river")
SELDON_CRD_NAME = "seldondeployments.machinelearning.seldon.io"


def missing(message: str):
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
    """Values files shipped with the chart: its examples, and Helm's ``ci/`` test values."""
    return sorted((CHART / "examples").glob("*.yaml")) + sorted((CHART / "ci").glob("*.yaml"))


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


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (values optionally single-quoted), as ``operator.env`` holds them."""
    values = {}
    for line in Path(path).read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip("'")
    return values


class Operator:
    """Seldon's operator (the prebuilt manager) reconciling one namespace, run as a process.

    Restricted to a namespace, the manager reads only that namespace, so it is installed there
    as Seldon's chart does for a single-namespace operator: its seldon-config ConfigMap is copied
    into the namespace (:meth:`install_config`) and read from there (POD_NAMESPACE).
    """

    def __init__(self, manager: str, env_file: str, namespace: str, log: Path):
        self.manager, self.namespace, self.log = manager, namespace, log
        self.env = {**os.environ, **read_env_file(Path(env_file)), "POD_NAMESPACE": namespace}
        self.proc: subprocess.Popen | None = None

    def install_config(self, kubectl: "Tool", source_namespace: str, without: tuple[str, ...] = ()) -> None:
        """Copies seldon-config from ``source_namespace``, minus the predictor_servers ``without``."""
        config = kubectl.json("-n", source_namespace, "get", "configmap", "seldon-config")
        servers = json.loads(config["data"]["predictor_servers"])
        for name in without:
            servers.pop(name)
        copy = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "seldon-config", "namespace": self.namespace},
                "data": {**config["data"], "predictor_servers": json.dumps(servers)}}
        kubectl("create", "-f", "-", input=json.dumps(copy))

    def start(self, timeout: float = 60) -> "Operator":
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [self.manager, "--metrics-addr", "0", "--namespace", self.namespace],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        # scripts/operator.sh stop (run by cluster.sh down) ends it by this file should the test not.
        self.pid_file.write_text(str(self.proc.pid))
        deadline = time.monotonic() + timeout
        while "Starting workers" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"Seldon's operator did not start:\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        return self

    @property
    def pid_file(self) -> Path:
        return Path(self.manager).parent / f"manager-{self.namespace}.pid"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.pid_file.unlink(missing_ok=True)
