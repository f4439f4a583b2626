"""The servers under test, the model they all serve, and a private Redis.

Every server is a real process in its own process group, reached at 127.0.0.1:

- :class:`SeldonServer` runs ``seldon-core-microservice`` (Seldon's stock wrapper around
  :class:`benchmarks.baselines.stock_river.StockRiver`, or ``model_wrappers.RiverModel``);
- :class:`MLServer` runs MLServer 1.7.1 from its own virtual environment with
  :mod:`benchmarks.baselines.mlserver_river`;
- :class:`RedisServer` is a private ``redis-server`` with ``appendfsync always``.

Seldon's wrapper binds 0.0.0.0, so these are only started inside the loopback-only network
namespace of ``scripts/in-netns.sh`` (``benchmarks.run`` re-executes itself there).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import requests

from model_wrappers.commands.serve import seldon_parameters
from model_wrappers.local.ports import free_port

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
READY_TIMEOUT = 90.0

STOCK_CLASS = "benchmarks.baselines.stock_river.StockRiver"
FLOOR_CLASS = "benchmarks.baselines.floor.Floor"
RIVER_CLASS = "model_wrappers.RiverModel"


# -- the workload ---------------------------------------------------------------------------
def phishing() -> list[tuple[dict, bool]]:
    """River's bundled Phishing dataset (1,250 rows, 9 numeric features), in order."""
    from river import datasets

    return [(dict(x), bool(y)) for x, y in datasets.Phishing()]


def pipeline():
    from river import linear_model, preprocessing

    return preprocessing.StandardScaler() | linear_model.LogisticRegression()


def warmed_pipeline(data: list[tuple[dict, bool]] | None = None):
    """``StandardScaler | LogisticRegression`` after one pass over Phishing."""
    model = pipeline()
    for x, y in data or phishing():
        model.learn_one(x, y)
    return model


def export_phishing_model(folder: Path, model=None) -> Path:
    """The model folder every server loads (``model.dill`` + ``seldon-river.json``)."""
    from model_wrappers.artifact import export_model

    data = phishing()
    model = model if model is not None else warmed_pipeline(data)
    export_model(model, folder, task="classifier", features=list(data[0][0]), classes=[True, False],
                 name="phishing")
    return Path(folder)


# -- processes ------------------------------------------------------------------------------
def wait_until(check: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen | None = None,
               log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready:\n{tail}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s:\n{tail}")


def grpc_ready(port: int, timeout: float = 1.0) -> bool:
    import grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
        return True
    finally:
        channel.close()


class Process:
    """A server process in its own session, so stopping it stops all of its children."""

    name = "server"

    def __init__(self, workdir: Path, name: str):
        self.workdir = Path(workdir)
        self.name = name
        self.proc: subprocess.Popen | None = None
        self.log = self.workdir / f"{name}.log"
        self.started_in: float | None = None

    def _spawn(self, command: list[str], env: dict, cwd: Path) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def pids(self) -> list[int]:
        """The process group's members (the server and its workers)."""
        if self.proc is None:
            return []
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.proc.pid:  # field 5 of stat: the process group id
                found.append(int(entry.name))
        return sorted(found)

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by every process of the group."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / tick

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        # Workers may outlive their parent for a moment; none may keep a port.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def start(self):  # pragma: no cover - defined by subclasses
        raise NotImplementedError


class Server(Process):
    """A model server reachable over REST and gRPC on 127.0.0.1.

    ``protocol`` says which payloads it takes (``"seldon"`` or ``"v2"``); a ``None`` path means
    the server has no such endpoint.
    """

    protocol = "seldon"
    rest_predict_path = "/api/v1.0/predictions"
    rest_feedback_path: str | None = "/api/v1.0/feedback"
    grpc_predict_method = "/seldon.protos.Model/Predict"
    grpc_feedback_method: str | None = "/seldon.protos.Model/SendFeedback"

    def __init__(self, workdir: Path, name: str, label: str, workers: int = 1):
        super().__init__(workdir, name)
        self.label = label
        self.workers = workers
        self.http = free_port()
        self.grpc = free_port()
        self.metrics = free_port()

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    def describe(self) -> dict:
        return {"name": self.name, "label": self.label, "workers": self.workers, "protocol": self.protocol,
                "feedback": self.rest_feedback_path is not None, "started_in_s": self.started_in}


class SeldonServer(Server):
    """``CLASS --service-type MODEL`` under Seldon's ``seldon-core-microservice`` or ``seldon-river-microservice``.

    Parameters
    ----------
    workdir
        Folder for the log (and the working directory of the server).
    name
        Unique name (log file, table rows).
    label
        What it is (``stock``, ``seldon-river``...); ratios compare servers by label.
    class_path
        The component class.
    parameters
        Seldon ``parameters`` as a dict of Python values.
    workers
        Gunicorn workers, and as many gRPC processes.
    env
        Extra environment (e.g. ``GUNICORN_THREADS``).
    server
        ``seldon-core`` (Seldon's wrapper: ``workers`` gunicorn workers and as many gRPC processes)
        or ``seldon-river`` (the project's server: ``workers`` processes, each serving REST and gRPC).
    venv
        The environment whose ``bin`` holds the server's command (default: this interpreter's).

    """

    def __init__(self, workdir: Path, name: str, label: str, class_path: str, parameters: dict,
                 workers: int = 1, env: dict | None = None, server: str = "seldon-core", venv: Path | None = None):
        super().__init__(workdir, name, label, workers)
        self.class_path = class_path
        self.parameters = parameters
        self.env = dict(env or {})
        self.server = server
        self.bin = Path(venv) / "bin" if venv is not None else BIN

    def command(self) -> list[str]:
        if self.server == "seldon-river":
            return [
                str(self.bin / "seldon-river-microservice"), self.class_path, "--service-type", "MODEL",
                "--host", "127.0.0.1", "--http-port", str(self.http), "--grpc-port", str(self.grpc),
                "--metrics-port", str(self.metrics), "--workers", str(self.workers),
                "--parameters", seldon_parameters(self.parameters),
            ]
        return [
            str(self.bin / "seldon-core-microservice"), self.class_path, "--service-type", "MODEL",
            "--http-port", str(self.http), "--grpc-port", str(self.grpc), "--metrics-port", str(self.metrics),
            "--workers", str(self.workers), "--grpc-workers", str(self.workers),
            "--parameters", seldon_parameters(self.parameters),
        ]

    def start(self) -> "SeldonServer":
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               **self.env}
        began = time.monotonic()
        self._spawn(self.command(), env, self.workdir)
        wait_until(self._ready, READY_TIMEOUT, f"{self.name} ({self.class_path})", self.proc, self.log)
        self.started_in = time.monotonic() - began
        return self

    def _ready(self) -> bool:
        if requests.get(f"{self.rest_url}/health/ping", timeout=1).status_code != 200:
            return False
        return grpc_ready(self.grpc)

    def describe(self) -> dict:
        return {**super().describe(), "class": self.class_path, "env": self.env, "server": self.server,
                "python": str(self.bin / "python")}


class MLServer(Server):
    """MLServer 1.7.1 (one process, ``parallel_workers: 0``) serving the river runtime as ``river``.

    With MLServer's default of one parallel worker and the uvloop its pins resolve to, the
    inference worker does not start; with ``parallel_workers: 0`` inference runs in the server
    process itself.
    """

    protocol = "v2"
    model_name = "river"
    rest_predict_path = f"/v2/models/{model_name}/infer"
    rest_feedback_path = None
    grpc_predict_method = "/inference.GRPCInferenceService/ModelInfer"
    grpc_feedback_method = None

    def __init__(self, workdir: Path, name: str, model_folder: Path, venv: Path, parallel_workers: int = 0):
        super().__init__(workdir, name, "mlserver", workers=max(1, parallel_workers))
        self.model_folder = Path(model_folder)
        self.venv = Path(venv)
        self.parallel_workers = parallel_workers

    def write_repository(self) -> Path:
        repo = self.workdir / f"{self.name}-repository"
        (repo / self.model_name).mkdir(parents=True, exist_ok=True)
        (repo / "settings.json").write_text(json.dumps({
            "host": "127.0.0.1", "http_port": self.http, "grpc_port": self.grpc, "metrics_port": self.metrics,
            "parallel_workers": self.parallel_workers, "load_models_at_startup": True,
        }, indent=1))
        (repo / self.model_name / "model-settings.json").write_text(json.dumps({
            "name": self.model_name, "implementation": "mlserver_river.RiverRuntime",
            "parameters": {"uri": str(self.model_folder)},
        }, indent=1))
        return repo

    def start(self) -> "MLServer":
        repo = self.write_repository()
        env = {**os.environ, "PYTHONPATH": str(REPO / "benchmarks" / "baselines")}
        env.pop("VIRTUAL_ENV", None)
        began = time.monotonic()
        self._spawn([str(self.venv / "bin" / "mlserver"), "start", str(repo)], env, repo)
        wait_until(self._ready, READY_TIMEOUT, self.name, self.proc, self.log)
        self.started_in = time.monotonic() - began
        return self

    def _ready(self) -> bool:
        url = f"{self.rest_url}/v2/models/{self.model_name}/ready"
        if requests.get(url, timeout=1).status_code != 200:
            return False
        return grpc_ready(self.grpc)

    def describe(self) -> dict:
        return {**super().describe(), "parallel_workers": self.parallel_workers}


class RedisServer(Process):
    """A private redis-server on 127.0.0.1 with append-only persistence fsynced on every write."""

    def __init__(self, workdir: Path, name: str = "redis"):
        super().__init__(workdir, name)
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server not found: install it (apt-get install redis-server)")
        data = self.workdir / self.name
        data.mkdir(parents=True, exist_ok=True)
        self._spawn([exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(data), "--save", "",
                     "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no",
                     "--protected-mode", "yes"], dict(os.environ), data)
        import redis

        wait_until(lambda: redis.Redis(port=self.port).ping(), 20, "redis-server", self.proc, self.log)
        return self

    def version(self) -> str | None:
        import redis

        return redis.Redis(port=self.port).info("server").get("redis_version")


class ExecutorFront(Server):
    """Seldon Core v1.17.1's service orchestrator (the prebuilt executor) in front of ``inner``.

    The graph is one MODEL node at the inner server's ports. Clients use the orchestrator's
    external API; it calls the component over REST for REST clients and over gRPC for gRPC
    clients, as in a cluster. ``executor`` is the binary (``SELDON_EXECUTOR``, else the one in
    ``../shared/tools/seldon-executor/``); a writable copy is run.
    """

    rest_predict_path = "/api/v1.0/predictions"
    rest_feedback_path = "/api/v1.0/feedback"
    grpc_predict_method = "/seldon.protos.Seldon/Predict"
    grpc_feedback_method = "/seldon.protos.Seldon/SendFeedback"

    def __init__(self, inner: Server, executor: Path):
        super().__init__(inner.workdir, f"executor+{inner.name}", f"executor+{inner.label}", inner.workers)
        self.inner = inner
        self.executor = Path(executor)
        self.protocol = inner.protocol

    def graph_file(self) -> Path:
        sdep = {
            "apiVersion": "machinelearning.seldon.io/v1", "kind": "SeldonDeployment",
            "metadata": {"name": "bench", "namespace": "default"},
            "spec": {"protocol": "seldon", "transport": "rest", "predictors": [{
                "name": "default",
                "graph": {"name": "model", "type": "MODEL", "children": [],
                          "endpoint": {"service_host": "127.0.0.1", "httpPort": self.inner.http,
                                       "grpcPort": self.inner.grpc, "type": "REST"}},
            }]},
        }
        path = self.workdir / f"{self.name}-sdep.yaml"  # JSON is YAML, and the executor reads .yaml
        path.write_text(json.dumps(sdep))
        return path

    def start(self) -> "ExecutorFront":
        began = time.monotonic()
        self.inner.start()
        binary = self.workdir / "executor"
        if not binary.exists():
            shutil.copyfile(self.executor, binary)
            binary.chmod(0o755)
        for attempt in range(3):
            command = [str(binary), "--sdep", "bench", "--namespace", "default", "--predictor", "default",
                       "--file", str(self.graph_file()), "--http_port", str(self.http),
                       "--grpc_port", str(self.grpc), "--protocol", "seldon", "--transport", "rest"]
            self._spawn(command, dict(os.environ), self.workdir)
            try:
                wait_until(self._ready, READY_TIMEOUT, self.name, self.proc, self.log)
                break
            except RuntimeError as exc:
                # The executor binds every interface, so a port found free on 127.0.0.1 can be
                # taken meanwhile by another process: it exits at once, and new ports are tried.
                if "address already in use" not in str(exc) or attempt == 2:
                    raise
                self.http, self.grpc = free_port(), free_port()
        self.started_in = time.monotonic() - began
        return self

    def _ready(self) -> bool:
        # The executor's /ready asks the components; any answer but a 5xx means it is serving.
        if requests.get(f"{self.rest_url}/ready", timeout=1).status_code >= 500:
            return False
        return grpc_ready(self.grpc)

    def pids(self) -> list[int]:
        return sorted(super().pids() + self.inner.pids())

    def stop(self) -> None:
        super().stop()
        self.inner.stop()

    def describe(self) -> dict:
        return {**super().describe(), "inner": self.inner.describe(), "executor": str(self.executor)}


def executor_binary() -> Path | None:
    """The prebuilt executor, if this machine has it."""
    shared = Path(os.environ.get("SELDON_SHARED") or REPO.parent / "shared")
    path = Path(os.environ.get("SELDON_EXECUTOR") or shared / "tools" / "seldon-executor" / "executor")
    return path if path.is_file() else None
