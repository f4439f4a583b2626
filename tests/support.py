"""Real processes for the tests: Seldon's microservice, redis-server, and model folders."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import dill
import grpc
import requests

from model_wrappers.local.ports import free_port
from model_wrappers.log.base import LogUnavailable
from model_wrappers.log.sqlite import SQLiteLog

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
READY_TIMEOUT = 60.0


def require(what: str, found: bool, hint: str) -> None:
    """Fail in CI (a check that CI skips does not exist), skip elsewhere."""
    import pytest

    if found:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI: {hint}")
    pytest.skip(f"{what} not available: {hint}")


def start_kafka(workdir, nodes: int = 1):
    """A real Kafka cluster of ``nodes`` brokers from the jars scripts/kafka.sh caches (fetched
    first when missing); fails, never skips, when it cannot start."""
    from benchmarks.kafka_broker import KafkaCluster

    require("java", shutil.which("java") is not None, "apt-get install openjdk-17-jre-headless")
    return KafkaCluster(workdir, nodes=nodes).start()


def wait_until(check, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready:\n{tail}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s:\n{tail}")


def seldon_parameters(values: dict) -> str:
    from model_wrappers.commands.serve import seldon_parameters as encode

    return encode(values)


# seldon-core-microservice only where the seldon-core extra is installed (.venv, not .venv-current).
SERVERS = ("seldon-river", "seldon-core") if importlib.util.find_spec("seldon_core") else ("seldon-river",)
# The server components run on in tests: the project's own; tests/test_river_model.py runs
# every case on Seldon's seldon-core-microservice too, the compatible path.
DEFAULT_SERVER = os.environ.get("SELDON_RIVER_TEST_SERVER", "seldon-river")


class Microservice:
    """One component served by ``seldon-core-microservice`` or ``seldon-river-microservice``.

    It runs in its own process group, REST on ``http``, gRPC on ``grpc``, both ready when
    :meth:`start` returns.
    """

    def __init__(self, class_path: str, service_type: str, parameters: dict, workdir: Path,
                 workers: int = 1, env: dict | None = None, name: str = "component", server: str | None = None,
                 bin_dir: Path | None = None):
        self.server = server or DEFAULT_SERVER
        self.bin = Path(bin_dir or BIN)  # the environment serving it (another venv's bin/ works too)
        assert self.server in SERVERS or bin_dir is not None, self.server
        self.class_path = class_path
        self.service_type = service_type
        self.parameters = parameters
        self.workers = workers
        self.env = {**os.environ, **(env or {})}
        self.workdir = Path(workdir)
        self.name = name
        self.http = free_port()
        self.grpc = free_port()
        self.metrics = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = self.workdir / f"{name}-{self.http}.log"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def command(self) -> list[str]:
        if self.server == "seldon-river":
            return [
                str(self.bin / "seldon-river-microservice"), self.class_path, "--host", "127.0.0.1",
                "--service-type", self.service_type,
                "--http-port", str(self.http), "--grpc-port", str(self.grpc),
                "--metrics-port", str(self.metrics), "--workers", str(self.workers),
                "--parameters", seldon_parameters(self.parameters),
            ]
        return [
            str(self.bin / "seldon-core-microservice"), self.class_path,
            "--service-type", self.service_type,
            "--http-port", str(self.http), "--grpc-port", str(self.grpc),
            "--metrics-port", str(self.metrics), "--workers", str(self.workers),
            "--parameters", seldon_parameters(self.parameters),
        ]

    def start(self) -> "Microservice":
        self.workdir.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            self.command(), cwd=self.workdir, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        wait_until(self._ready, READY_TIMEOUT, f"{self.name} ({self.class_path})", self.proc, self.log)
        return self

    def _ready(self) -> bool:
        if requests.get(f"{self.rest_url}/health/ping", timeout=1).status_code != 200:
            return False
        channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc}")
        try:
            grpc.channel_ready_future(channel).result(timeout=1)
            return True
        finally:
            channel.close()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)
        # Seldon's children may outlive the parent for a moment; make sure none keeps the ports.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def rest(self, path: str, body: dict, headers: dict | None = None) -> requests.Response:
        return requests.post(f"{self.rest_url}{path}", json=body, headers=headers or {}, timeout=30)

    def predict(self, body: dict, headers: dict | None = None) -> requests.Response:
        return self.rest("/api/v1.0/predictions", body, headers)

    def feedback(self, body: dict, headers: dict | None = None) -> requests.Response:
        return self.rest("/api/v1.0/feedback", body, headers)

    def status(self) -> dict:
        return requests.get(f"{self.rest_url}/health/status", timeout=10).json()["jsonData"]

    def prometheus(self) -> str:
        return requests.get(f"http://127.0.0.1:{self.metrics}/metrics", timeout=10).text


class RedisServer:
    """A private redis-server on 127.0.0.1 with append-only persistence fsynced on every write."""

    def __init__(self, workdir: Path, port: int | None = None):
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.workdir), "--save", "", "--appendonly", "yes", "--appendfsync", "always",
             "--daemonize", "no", "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import redis

        wait_until(lambda: redis.Redis(port=self.port).ping(), 20, "redis-server", self.proc)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class FaultyLink:
    """A TCP relay on 127.0.0.1 in front of a server (Redis), which can break one command on demand.

    Everything is relayed unchanged until :meth:`arm` names a command (by bytes it contains, e.g.
    the SHA of a Lua script) and what happens to it the next time it passes:

    - ``"lose-reply"``: the command reaches the server, which runs it; the connection is then cut
      before its reply comes back (the client cannot tell whether it ran);
    - ``"swallow"``: the connection is cut before the command reaches the server.

    With ``blackout``, every other open connection is cut too, and for ``blackout`` seconds every
    new one as soon as it is made (the server looks down).
    """

    def __init__(self, target_port: int):
        self.target_port = target_port
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._armed: tuple[bytes, str, float] | None = None
        self._dark_until = 0.0
        self.fired = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def arm(self, marker: bytes, mode: str, blackout: float = 0.0) -> None:
        assert mode in ("lose-reply", "swallow"), mode
        with self._lock:
            self._armed = (marker, mode, blackout)
            self.fired.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if time.monotonic() < self._dark_until:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._open |= {client, upstream}
            threading.Thread(target=self._relay, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._relay, args=(upstream, client, False), daemon=True).start()

    def _relay(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if from_client and self._fires(data, source, sink):
                    return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                end.close()
                with self._lock:
                    self._open.discard(end)

    def _fires(self, data: bytes, client: socket.socket, upstream: socket.socket) -> bool:
        with self._lock:
            armed = self._armed
            if armed is None or armed[0] not in data:
                return False
            self._armed = None
        _, mode, blackout = armed
        self._dark_until = time.monotonic() + blackout
        self.fired.set()
        if mode == "lose-reply":
            client.shutdown(socket.SHUT_RDWR)  # nothing more reaches the client ...
            upstream.sendall(data)  # ... while the server runs the command
            time.sleep(0.2)
        with self._lock:
            others = self._open - {client, upstream} if blackout else set()
        for end in (client, upstream, *others):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()
        return True

    def close(self) -> None:
        self._server.close()


def phishing_stream(n: int | None = None):
    """(x, y) pairs from river's bundled Phishing dataset (no download needed)."""
    from river import datasets

    for i, (x, y) in enumerate(datasets.Phishing()):
        if n is not None and i >= n:
            return
        yield x, y


PHISHING_FEATURES = list(next(iter(phishing_stream(1)))[0])


def phishing_pipeline():
    from river import linear_model, preprocessing

    return preprocessing.StandardScaler() | linear_model.LogisticRegression()


def export_phishing(folder: Path, pipeline=None) -> Path:
    from model_wrappers.artifact import export_model

    export_model(pipeline or phishing_pipeline(), folder, task="classifier",
                 features=PHISHING_FEATURES, classes=[True, False], name="phishing")
    return Path(folder)


def export_regressor(folder: Path) -> Path:
    from river import linear_model, preprocessing

    from model_wrappers.artifact import export_model

    export_model(preprocessing.StandardScaler() | linear_model.LinearRegression(intercept_lr=0.1),
                 folder, task="regressor", features=["x1", "x2"], name="linear")
    return Path(folder)


def rows_payload(rows: list[dict], names: list[str]) -> dict:
    return {"data": {"names": names, "ndarray": [[r[n] for n in names] for r in rows]}}


def dump(obj, path: Path) -> Path:
    with open(path, "wb") as fh:
        dill.dump(obj, fh)
    return path


def pretty(obj) -> str:
    return json.dumps(obj, indent=1, default=str)[:2000]


def model_service(services, folder, workdir, state_uri, workers=1, name="model", server=None,
                  **params) -> Microservice:
    """A RiverModel microservice serving ``folder`` with its log at ``state_uri``."""
    return services.start(
        "model_wrappers.RiverModel", "MODEL",
        {"model_uri": str(folder), "state_uri": state_uri, **params},
        workdir, workers=workers, name=name, server=server,
    )


def seldon_client(service: Microservice, transport: str):
    """SeldonClient talking to one microservice through its gateway-level API.

    The microservice serves ``/api/v1.0/predictions`` and ``/api/v1.0/feedback`` and the gRPC
    ``Seldon`` service itself, so ``predict`` and ``feedback`` (which, unlike
    ``microservice_feedback``, carries ``prediction_truth``) reach it unchanged. Replies are
    protobuf messages, as ``feedback`` needs them back; read them with :func:`as_dict`.
    """
    from seldon_core.seldon_client import SeldonClient

    import functools
    import types

    port = service.http if transport == "rest" else service.grpc
    client = SeldonClient(gateway="seldon", transport=transport, gateway_endpoint=f"127.0.0.1:{port}",
                          deployment_name="local", client_return_type="proto")
    # gateway_prefix="" makes the REST paths /api/v1.0/...; it is only accepted per call.
    return types.SimpleNamespace(
        predict=functools.partial(client.predict, gateway_prefix=""),
        feedback=functools.partial(client.feedback, gateway_prefix=""),
    )


def as_dict(message) -> dict:
    """A SeldonMessage (seldon-core's, as SeldonClient returns it, or the project's) as its JSON form."""
    from model_wrappers.protocol import message_to_dict

    return message_to_dict(message)


def truth(values: list):
    """A SeldonMessage holding one truth value per row, as SeldonClient.feedback takes it."""
    from seldon_core.utils import json_to_seldon_message

    return json_to_seldon_message({"data": {"ndarray": [[v] for v in values]}})


class SeldonStub:
    """A client of the ``seldon.protos.Seldon`` gRPC service built on :mod:`model_wrappers.protocol`.

    It sends the same bytes as seldon-core's ``prediction_pb2_grpc.SeldonStub`` (and takes either
    package's messages), so the modules using it also run where seldon-core is not installed.
    """

    def __init__(self, channel: grpc.Channel):
        from model_wrappers.protocol import SERVICES

        for name, method in SERVICES["seldon.protos.Seldon"].items():
            setattr(self, name, channel.unary_unary(method.path, request_serializer=_serialize,
                                                    response_deserializer=method.response.FromString))


def _serialize(message) -> bytes:
    return message.SerializeToString()


class BlockingLog(SQLiteLog):
    """A log whose first transaction waits until released, so that others queue behind it."""

    def __init__(self, *args, fail: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.batches: list[int] = []
        self.fail = fail

    def append_many(self, payloads):
        self.batches.append(len(payloads))
        if len(self.batches) == 1:
            self.entered.set()
            self.release.wait(20)
        if self.fail:
            raise LogUnavailable("disk gone")
        return super().append_many(payloads)
