"""One local run of a SeldonDeployment: components, orchestrator and gateways together.

Used by ``seldon-river run`` and ``seldon-river demo``::

    with LocalRun(read_deployment("manifests/full-graph.yaml"), Options(models_dir=Path("models"))) as run:
        print(run.rest_endpoint)    # 127.0.0.1:8003
"""

from __future__ import annotations

import dataclasses
import fcntl
import ipaddress
import json
import shutil
import sys
from pathlib import Path
from typing import Callable

from ..config import LiveSettings
from ..live import LiveApp, StatusFeed
from ..live.sources import graph_source
from .gateway import Api, RestServer, Token, create_app, token_check, with_live_view
from .grpc_gateway import GrpcServer
from .manifest import ROUTING_INJECTION_ENV, Deployment
from .orchestrator import DEFAULT_TIMEOUT, Orchestrator
from .plan import plan
from .supervisor import Supervisor

DEFAULT_PORT = 8003  # SeldonClient's default gateway_endpoint is localhost:8003
DEFAULT_GRPC_PORT = 8004
MIN_TOKEN_LENGTH = 16
LOCK_FILE = ".lock"


class RunError(Exception):
    """The run cannot start as asked; the message says why and what to change."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None) -> None:
    """Refuse to serve beyond loopback without a token (and a token too short to be one)."""
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise RunError(f"the token must have at least {MIN_TOKEN_LENGTH} characters, got {len(token)}")
    if not is_loopback(host) and not token:
        raise RunError(
            f"--host {host} would expose the deployment beyond this machine: set a token with "
            "SELDON_RIVER_TOKEN (or --token); clients then send Authorization: Bearer <token>"
        )


def default_state_dir(deployment: Deployment) -> Path:
    return Path(".seldon-river") / deployment.name


@dataclasses.dataclass
class Options:
    """How to run a deployment locally (see ``seldon-river run --help``)."""

    models: dict = dataclasses.field(default_factory=dict)
    models_dir: Path | None = None
    state_dir: Path | None = None
    state_uri: str | None = None
    reset_state: bool = False
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    grpc_port: int | None = DEFAULT_GRPC_PORT
    token: str | None = None
    timeout: float | None = None
    startup_timeout: float = 180.0


def warnings_for(deployment: Deployment) -> tuple[list[str], list[str]]:
    """Warnings (what makes this manifest misbehave, here and in a cluster) and plain notes."""
    warnings, notes = [], []
    predictor = deployment.predictor
    has_router = any(n.type == "ROUTER" or "ROUTE" in n.methods for n in predictor.graph.walk())
    if not predictor.routing_injection:
        if has_router:
            warnings.append(
                f"predictor {predictor.name!r} does not set {ROUTING_INJECTION_ENV} in svcOrchSpec.env: "
                "responses carry no meta.routing, feedback goes to every child of the router, and the "
                "router gets routing=None: it cannot learn which child answered, in a cluster as here. "
                f"Add to the predictor:\n    svcOrchSpec:\n      env:\n      - name: {ROUTING_INJECTION_ENV}\n"
                "        value: \"true\""
            )
        else:
            notes.append(f"{ROUTING_INJECTION_ENV} is not set in svcOrchSpec.env: responses carry no meta.routing")
    elif predictor.orchestrator_env[ROUTING_INJECTION_ENV].lower() in ("false", "0", "no"):
        warnings.append(
            f"{ROUTING_INJECTION_ENV}={predictor.orchestrator_env[ROUTING_INJECTION_ENV]!r} still enables "
            "routing injection: Seldon's orchestrator only checks that it is not empty"
        )
    if deployment.other_predictors:
        warnings.append(
            f"running predictor {predictor.name!r} only; {list(deployment.other_predictors)} are not started "
            "(choose with --predictor)"
        )
    return warnings, notes


class LocalRun:
    """Start (and later stop) the components and gateways of one deployment.

    Parameters
    ----------
    deployment
        The SeldonDeployment to run.
    options
        Model folders, state, addresses, token, timeouts.
    say
        Where progress and warnings go (stderr by default).

    """

    def __init__(self, deployment: Deployment, options: Options, say: Callable[[str], None] | None = None):
        self.deployment = deployment
        self.options = options
        self.say = say or (lambda m: print(m, file=sys.stderr, flush=True))
        check_exposure(options.host, options.token)
        self.state_dir = Path(options.state_dir or default_state_dir(deployment)).resolve()
        self.components, self.notes = plan(deployment, self.state_dir, options.models, options.models_dir,
                                           options.state_uri)
        try:
            self.live_settings = LiveSettings.from_env()
        except ValueError as exc:
            raise RunError(str(exc)) from None
        self.warnings, notes = warnings_for(deployment)
        self.notes += notes
        self.supervisor: Supervisor | None = None
        self.orchestrator: Orchestrator | None = None
        self.rest: RestServer | None = None
        self.grpc: GrpcServer | None = None
        self.live: LiveApp | None = None
        self._lock = None

    @property
    def timeout(self) -> float:
        return self.options.timeout or self.deployment.rest_timeout or DEFAULT_TIMEOUT

    @property
    def rest_endpoint(self) -> str:
        return f"{self.options.host}:{self.rest.port}"

    def start(self) -> "LocalRun":
        """Start everything; on any failure stop what was started and raise."""
        self._lock_state_dir()
        for warning in self.warnings:
            self.say(f"WARNING: {warning}")
        try:
            self.supervisor = Supervisor(self.components, self.state_dir / "logs", self.deployment.name,
                                         self.deployment.predictor.name, report=self.say)
            self.orchestrator = Orchestrator(self.deployment.predictor, self.supervisor, self.timeout)
            token = Token(self.options.token)
            api = Api(self.deployment, self.orchestrator)
            self.live = self._live_view(token)
            # The gateway's ports are taken first: a busy port is reported before components start.
            self.rest = RestServer(with_live_view(create_app(api, token), self.live), self.options.host,
                                   self.options.port)
            if self.options.grpc_port is not None:
                self.grpc = GrpcServer(api, token, self.options.host, self.options.grpc_port)
            self.supervisor.start(self.options.startup_timeout)
            self._write_run_file()  # before /ready answers, so whoever waits for it finds the file
            if self.grpc is not None:
                self.grpc.start()
            self.rest.start()
        except BaseException:
            self.stop()
            raise
        return self

    def _live_view(self, token: Token) -> LiveApp:
        """The live view of every node, each read from its ``/health/status`` while a page is open."""
        nodes = {c.node: {"url": self.supervisor[c.node].url, "service_type": c.service_type, "class": c.class_path}
                 for c in self.components}
        source = graph_source(self.deployment.name, nodes, lambda node: self.supervisor[node].failure())
        return LiveApp(StatusFeed(source, self.live_settings.interval, self.live_settings.max_streams),
                       allowed=token_check(token))

    @property
    def live_url(self) -> str:
        """The live view's page on the gateway."""
        return f"http://{self.rest_endpoint}/live"

    def _lock_state_dir(self) -> None:
        # Two runs on one state directory would share learning logs and overwrite run.json.
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.state_dir / LOCK_FILE, "a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise RunError(f"another seldon-river run uses {self.state_dir}: stop it or pass another --state-dir") from None
        if self.options.reset_state:
            for entry in self.state_dir.iterdir():
                if entry.name != LOCK_FILE:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    @property
    def run_file(self) -> Path:
        """``STATE_DIR/run.json``: where everything listens, for tools and tests."""
        return self.state_dir / "run.json"

    def _write_run_file(self) -> None:
        d = self.deployment
        info = {
            "deployment": d.name, "namespace": d.namespace, "predictor": d.predictor.name,
            "manifest": str(d.source), "gateway": {"host": self.options.host, "rest_port": self.rest.port,
                                                   "grpc_port": self.grpc.port if self.grpc else None},
            "components": {
                c.node: {"pid": child.proc.pid, "rest_port": child.http_port, "metrics_port": child.metrics_port,
                         "class": c.class_path, "log": str(child.log)}
                for c in self.components for child in [self.supervisor[c.node]]
            },
        }
        self.run_file.write_text(json.dumps(info, indent=2) + "\n")

    def stop(self) -> None:
        """Stop the gateways, then every component."""
        if self._lock is None:
            return
        if self.live is not None:
            self.live.feed.close()  # open pages' streams end now, not at the gateway's shutdown deadline
        if self.rest is not None:
            self.rest.stop()
        if self.grpc is not None:
            self.grpc.stop()
        if self.orchestrator is not None:
            self.orchestrator.close()
        if self.supervisor is not None:
            self.supervisor.stop()
        self.run_file.unlink(missing_ok=True)
        self._lock.close()
        self._lock = None

    def __enter__(self) -> "LocalRun":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def banner(self) -> str:
        """What runs where, and how to call it."""
        d = self.deployment
        lines = [f"seldon-river run: {d.name} (predictor {d.predictor.name}, namespace {d.namespace}) "
                 f"from {d.source}"]
        width = max(len(c.node) for c in self.components)
        for c in self.components:
            child = self.supervisor[c.node]
            lines.append(f"  {c.node:<{width}}  {c.service_type:<11}  {c.class_path}  pid {child.proc.pid}  "
                         f"REST :{child.http_port}  log {child.log}")
        host = self.options.host
        lines += [
            f"REST  http://{self.rest_endpoint}/api/v1.0/predictions   (also /seldon/{d.namespace}/{d.name}/api/v1.0/...)",
        ]
        lines.append(f"live  {self.live_url}   (every node's figures as it learns; add #token=<token> when "
                     "a token is set)")
        if self.grpc is not None:
            lines.append(f"gRPC  {host}:{self.grpc.port}   (seldon.protos.Seldon; metadata seldon={d.name}, "
                         f"namespace={d.namespace})")
        lines += [
            f"state {self.state_dir}   (where everything listens: {self.run_file.name})",
            f"SeldonClient(deployment_name=\"{d.name}\", namespace=\"{d.namespace}\", "
            f"gateway_endpoint=\"{self.rest_endpoint}\", gateway=\"ambassador\", client_return_type=\"proto\")",
            "Components listen on all interfaces, as Seldon's wrapper always does: on a shared network "
            "their ports are reachable without the gateway's token.",
        ]
        return "\n".join(lines)
