"""Start every component as a real ``seldon-river-microservice`` process, watch it, stop it.

Each process runs in its own process group, so stopping the group leaves no process of it
holding a port. A process that exits while the run is up is reported once on stderr, with the
tail of its log, and the rest of the group is killed.

Components get free ports on 127.0.0.1 for REST (the orchestrator's transport), gRPC and
metrics, as the environment Seldon's operator sets (``PREDICTIVE_UNIT_*_SERVICE_PORT``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import urllib3

from .plan import Component
from .ports import free_port

READY_PATH = "/health/ping"
TAIL_CHARS = 2500
PORT_RETRIES = 3  # times a component is started again on other ports when one was taken
# What the server prints when a port it was given is taken (REST and metrics; gRPC).
PORTS_TAKEN = ("Address already in use", "cannot listen for gRPC")
START_MARK = "\n--- "  # begins the line written to a component's log each time it is started


class StartupError(Exception):
    """A component did not become ready; the message names it and shows its log's tail."""


def describe_exit(code: int) -> str:
    """``exited with code 3`` or ``was killed by SIGKILL``."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def tail(path: Path, chars: int = TAIL_CHARS) -> str:
    """The end of a log file (empty when there is none)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - chars))
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def _dies_with_parent(cmd: list[str]) -> list[str]:
    # Linux: the component gets SIGTERM if `seldon-river run` itself is killed (even by
    # SIGKILL), so a crashed run does not leave orphans holding ports. setpriv sets it rather
    # than a preexec_fn: Python code between fork and exec, in a process whose gRPC threads are
    # running, can abort the child in gRPC's fork handlers.
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *cmd] if setpriv else cmd


def microservice_executable() -> str:
    """``seldon-river-microservice`` next to this interpreter, else on PATH."""
    exe = shutil.which("seldon-river-microservice", path=os.path.dirname(sys.executable))
    exe = exe or shutil.which("seldon-river-microservice")
    if not exe:
        raise StartupError("seldon-river-microservice not found: install seldon-river into this environment")
    return exe


@dataclasses.dataclass
class Child:
    """One running component."""

    component: Component
    http_port: int
    metrics_port: int
    grpc_port: int
    log: Path
    proc: subprocess.Popen | None = None
    reported: bool = False

    @property
    def name(self) -> str:
        return self.component.node

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def failure(self) -> str | None:
        """Why the component is not running, or None when it is."""
        code = self.exit_code()
        if self.proc is None:
            return f"graph node {self.name!r} was never started"
        if code is None:
            return None
        return (
            f"graph node {self.name!r} ({self.component.class_path}) is down: its process "
            f"{describe_exit(code)}; log: {self.log}"
        )

    def lost_a_port(self) -> bool:
        """Whether its last start ended because a port it was given was taken."""
        since_start = tail(self.log).rpartition(START_MARK)[2]
        return any(m in since_start for m in PORTS_TAKEN)

    def environment(self, deployment: str, predictor: str) -> dict:
        """The environment Seldon's operator would give the container, on top of ours."""
        c = self.component
        return {
            **os.environ,
            **c.env,
            "PREDICTIVE_UNIT_ID": c.node,
            "PREDICTIVE_UNIT_PARAMETERS": c.parameters_json(),
            "PREDICTIVE_UNIT_HTTP_SERVICE_PORT": str(self.http_port),
            "PREDICTIVE_UNIT_GRPC_SERVICE_PORT": str(self.grpc_port),
            "PREDICTIVE_UNIT_METRICS_SERVICE_PORT": str(self.metrics_port),
            "PREDICTIVE_UNIT_IMAGE": c.image or "",
            "PREDICTOR_ID": predictor,
            "SELDON_DEPLOYMENT_ID": deployment,
            "PYTHONUNBUFFERED": "1",
        }


class Supervisor:
    """Starts components, waits until each answers, reports deaths, stops them all.

    Parameters
    ----------
    components
        What to start (see :func:`.plan.plan`).
    log_dir
        Each component logs to ``LOG_DIR/NODE.log``.
    deployment, predictor
        Names given to components as ``SELDON_DEPLOYMENT_ID`` and ``PREDICTOR_ID``.
    report
        Called with a message when a component dies while the run is up.

    """

    def __init__(
        self,
        components: list[Component],
        log_dir: Path,
        deployment: str,
        predictor: str,
        report: Callable[[str], None] | None = None,
    ):
        self.log_dir = Path(log_dir)
        self.deployment = deployment
        self.predictor = predictor
        self.report = report or (lambda message: print(message, file=sys.stderr, flush=True))
        self.children = {
            c.node: Child(c, free_port(), free_port(), free_port(), self.log_dir / f"{c.node}.log")
            for c in components
        }
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1, read=2))

    def __getitem__(self, name: str) -> Child:
        return self.children[name]

    # -- start ----------------------------------------------------------------------------
    def start(self, timeout: float = 180.0) -> None:
        """Start every component and wait until all answer ``/health/ping``.

        Raises :class:`StartupError` (after stopping everything) when one exits or is not ready
        within ``timeout`` seconds.
        """
        self.log_dir.mkdir(parents=True, exist_ok=True)
        exe = microservice_executable()
        try:
            for child in self.children.values():
                self._spawn(child, exe)
            self._wait_ready(timeout, exe)
        except BaseException:
            self.stop()
            raise
        self._watcher = threading.Thread(target=self._watch, name="seldon-river-supervisor", daemon=True)
        self._watcher.start()

    def _spawn(self, child: Child, exe: str) -> None:
        c = child.component
        cmd = [exe, c.class_path, "--service-type", c.service_type, "--host", "127.0.0.1"]
        with open(child.log, "ab") as out:
            out.write(f"{START_MARK}{time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
            out.flush()
            child.proc = subprocess.Popen(
                _dies_with_parent(cmd), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=child.environment(self.deployment, self.predictor),
                start_new_session=True,
            )

    def _answers(self, child: Child) -> bool:
        try:
            return self._http.request("GET", child.url + READY_PATH).status == 200
        except urllib3.exceptions.HTTPError:
            return False

    def _wait_ready(self, timeout: float, exe: str) -> None:
        pending = dict(self.children)
        moved = dict.fromkeys(self.children, 0)
        deadline = time.monotonic() + timeout
        while pending:
            for name, child in list(pending.items()):
                if child.exit_code() is not None:
                    if moved[name] < PORT_RETRIES and child.lost_a_port():
                        # A port chosen free was taken before the component bound it (by another
                        # process, or as a connection's own port): the component has not served
                        # anything yet, and the graph reads its ports when it calls it.
                        moved[name] += 1
                        child.http_port, child.metrics_port, child.grpc_port = free_port(), free_port(), free_port()
                        self._spawn(child, exe)
                        continue
                    raise StartupError(
                        f"{child.failure()} before it was ready. Its log ends with:\n{tail(child.log)}"
                    )
                if self._answers(child):
                    del pending[name]
            if not pending:
                return
            if time.monotonic() > deadline:
                names = ", ".join(sorted(pending))
                last = next(iter(pending.values()))
                raise StartupError(
                    f"not ready after {timeout:.0f} s: {names}. The log of {last.name!r} ends with:\n"
                    f"{tail(last.log)}"
                )
            time.sleep(0.25)

    # -- watch ----------------------------------------------------------------------------
    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            for child in self.children.values():
                if child.reported or child.exit_code() is None:
                    continue
                child.reported = True
                _kill_group(child, signal.SIGKILL)
                if not self._stopping.is_set():
                    self.report(
                        f"seldon-river run: {child.failure()}. Requests through it now fail with 503. "
                        f"Its log ends with:\n{tail(child.log, 1200)}"
                    )

    def failures(self) -> list[str]:
        """A message for every component that is not running."""
        return [f for f in (c.failure() for c in self.children.values()) if f]

    # -- stop -----------------------------------------------------------------------------
    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every component's process group, SIGKILL what is left after ``grace`` s."""
        self._stopping.set()
        running = [c for c in self.children.values() if c.proc is not None]
        for child in running:
            _kill_group(child, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in running:
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        # Also reaps what outlived the main process (gunicorn workers, the metrics server).
        for child in running:
            _kill_group(child, signal.SIGKILL)
            try:
                child.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout=2)


def _kill_group(child: Child, sig: int) -> None:
    try:
        os.killpg(child.proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
