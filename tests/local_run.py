"""`seldon-river run MANIFEST` started as a user starts it, for the tests that drive it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import requests
from seldon_core.seldon_client import SeldonClient

from support import REPO, export_phishing, free_port, wait_until

MANIFESTS = REPO / "manifests"
START_TIMEOUT = 180.0


def manifest_paths() -> list[Path]:
    return sorted(MANIFESTS.glob("*.yaml"))


def phishing_manifests() -> list[Path]:
    """The manifests whose models are RiverModels, which the tests over every manifest serve
    Phishing rows; a keyed manifest has tests of its own (tests/test_keyed_shards.py)."""
    from model_wrappers.local.plan import KEYED_MODEL

    def keyed(path: Path) -> bool:
        containers = read_manifest(path).predictor.containers.values()
        return any(c.env.get("MODEL_NAME") == KEYED_MODEL for c in containers)

    return [p for p in manifest_paths() if not keyed(p)]


def read_manifest(path: Path):
    from model_wrappers.local.manifest import read_deployment

    return read_deployment(path)


class Run:
    """`seldon-river run MANIFEST` as a user starts it, in its own process group."""

    def __init__(self, manifest: Path, workdir: Path, *args: str, env: dict | None = None):
        self.manifest = manifest
        self.workdir = Path(workdir)
        self.state = self.workdir / "state"
        self.port, self.grpc_port = free_port(), free_port()
        self.args = [sys.executable, "-m", "model_wrappers.cli", "run", str(manifest),
                     "--models-dir", str(self.workdir / "models"), "--state-dir", str(self.state),
                     "--port", str(self.port), "--grpc-port", str(self.grpc_port), *args]
        self.env = {**os.environ, **(env or {})}
        self.out = self.workdir / "run.out"
        self.proc: subprocess.Popen | None = None
        self.info: dict = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, headers: dict | None = None) -> "Run":
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(self.args, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        wait_until(lambda: requests.get(f"{self.url}/ready", headers=headers, timeout=2).status_code == 200,
                   START_TIMEOUT, f"seldon-river run {self.manifest.name}", self.proc, self.out)
        self.info = json.loads((self.state / "run.json").read_text())
        return self

    def output(self) -> str:
        return self.out.read_text()

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise

    def client(self, gateway: str = "ambassador", transport: str = "rest", **kwargs) -> SeldonClient:
        deployment = read_manifest(self.manifest)
        port = self.port if transport == "rest" else self.grpc_port
        return SeldonClient(deployment_name=deployment.name, namespace=deployment.namespace, gateway=gateway,
                            transport=transport, gateway_endpoint=f"127.0.0.1:{port}", payload_type="ndarray",
                            client_return_type="proto", **kwargs)

    def status(self, node: str) -> dict:
        response = requests.get(f"{self.url}/api/v1.0/status/{node}", timeout=30)
        assert response.status_code == 200, response.text
        return response.json()["jsonData"]


def group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
        return True
    except ProcessLookupError:
        return False


def wait_gone(pids: list[int]) -> None:
    """Until no process of these groups is left (killed ones are reaped by init a moment later)."""
    wait_until(lambda: not any(group_alive(p) for p in pids), 30, f"process groups {pids} to end")


def export_models(manifest: Path, folder: Path, pipelines: dict | None = None) -> list[str]:
    """A Phishing model folder for every RiverModel node of ``manifest``."""
    from model_wrappers.local.plan import river_model_nodes

    nodes = river_model_nodes(read_manifest(manifest))
    for node in nodes:
        export_phishing(folder / node, (pipelines or {}).get(node))
    return nodes
