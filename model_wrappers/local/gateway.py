"""Seldon's external REST API in front of a local graph (FastAPI served by uvicorn).

The paths are those a cluster exposes, so ``SeldonClient`` works unchanged with any gateway:

- ``/api/v1.0/predictions`` and ``/api/v1.0/feedback`` (``gateway="seldon"``, or the
  orchestrator itself);
- the same under ``/seldon/<namespace>/<deployment>/`` (``gateway="ambassador"`` or ``"istio"``)
  and ``/seldon/<deployment>/`` (those gateways without a namespace);
- ``/api/v0.1/...`` as the orchestrator also serves it.

Every prediction and feedback answer carries the request id in the ``Seldon-Puid`` header; a
request's own ``Seldon-Puid`` header is used when it has one. ``GET /api/v1.0/status/<node>``
and ``/api/v1.0/metadata/<node>`` show one component's status and metadata; ``/live`` and
``/ready`` are the orchestrator's probes. ``/live`` opened in a browser (a request accepting
``text/html``) is the live view of every node instead, streamed from ``/live/events`` (see
:func:`with_live_view`).

When a token is set every request except the probes needs ``Authorization: Bearer <token>``
(or ``X-Auth-Token: <token>``, which ``SeldonClient`` sends for its call credentials).
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import threading
import time

import urllib3
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from .manifest import Deployment
from .orchestrator import PUID_HEADER, GraphError, Orchestrator, new_puid, status_body

logger = logging.getLogger(__name__)

OPEN_PATHS = ("/live", "/ready")


class Token:
    """A shared secret compared in constant time; ``None`` means no authentication."""

    def __init__(self, secret: str | None):
        self.secret = secret

    def accepts(self, authorization: str | None, x_auth_token: str | None) -> bool:
        if self.secret is None:
            return True
        offered = x_auth_token or ""
        if authorization and authorization.lower().startswith("bearer "):
            offered = authorization[7:].strip()
        return hmac.compare_digest(offered.encode(), self.secret.encode())


class Api:
    """Prediction and feedback for one deployment, with errors turned into Seldon replies.

    Shared by the REST and gRPC front ends: each call returns ``(status, body, puid)``.
    """

    def __init__(self, deployment: Deployment, orchestrator: Orchestrator):
        self.deployment = deployment
        self.orchestrator = orchestrator

    def serves(self, name: str | None, namespace: str | None) -> str | None:
        """None when the request is for this deployment, else why not."""
        d = self.deployment
        if name is not None and name != d.name or namespace is not None and namespace != d.namespace:
            asked = f"{name!r}" + (f" in namespace {namespace!r}" if namespace else "")
            return f"no deployment {asked} here: this gateway serves {d.name!r} in namespace {d.namespace!r}"
        return None

    def handle(self, kind: str, message, puid: str | None, transport: str = "rest") -> tuple[int, dict, str]:
        puid = puid or new_puid()
        if not isinstance(message, dict):
            what = "SeldonMessage" if kind == "predict" else "Feedback"
            return 400, status_body(400, f"expected a JSON object (a {what}), got {type(message).__name__}",
                                    "BAD_REQUEST"), puid
        try:
            if kind == "predict":
                return 200, self.orchestrator.predict(message, puid, transport), puid
            return 200, self.orchestrator.feedback(message, puid, transport), puid
        except GraphError as error:
            logger.warning("%s %s failed: %s", kind, puid, error.message)
            return error.status, error.body, puid
        except Exception as exc:  # a bug here must still answer, not drop the connection
            logger.exception("%s %s failed", kind, puid)
            return 500, status_body(500, f"{type(exc).__name__}: {exc}", "GATEWAY_ERROR"), puid

    def component(self, node: str, path: str) -> tuple[int, dict]:
        """GET ``path`` of one component (its status or metadata)."""
        supervisor = self.orchestrator.supervisor
        if node not in supervisor.children:
            return 404, status_body(404, f"no component {node!r}; the components are "
                                    f"{sorted(supervisor.children)}", "NOT_FOUND")
        child = supervisor[node]
        down = child.failure()
        if down:
            return 503, status_body(503, down, "NODE_DOWN")
        try:
            response = urllib3.PoolManager(retries=False).request(
                "GET", child.url + path, timeout=self.orchestrator.timeout)
            return response.status, json.loads(response.data or b"{}")
        except (urllib3.exceptions.HTTPError, ValueError) as exc:
            return 502, status_body(502, f"graph node {node!r} did not answer {path}: {exc}", "NODE_ERROR")


def create_app(api: Api, token: Token) -> FastAPI:
    """The FastAPI application of the gateway."""
    app = FastAPI(title=f"seldon-river run: {api.deployment.name}", docs_url=None, redoc_url=None,
                  openapi_url=None)

    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        if request.url.path not in OPEN_PATHS and not token.accepts(
            request.headers.get("authorization"), request.headers.get("x-auth-token")
        ):
            return JSONResponse(status_body(401, "missing or wrong token: send Authorization: Bearer <token>",
                                            "UNAUTHENTICATED"), status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        return await call_next(request)

    def endpoint(kind: str):
        async def handler(request: Request):
            # Path parameters exist only on the /seldon/... routes.
            params = request.path_params
            refused = api.serves(params.get("deployment"), params.get("namespace"))
            if refused:
                return JSONResponse(status_body(404, refused, "NOT_FOUND"), status_code=404)
            try:
                message = json.loads(await request.body())
            except ValueError as exc:
                return JSONResponse(status_body(400, f"the body is not JSON: {exc}", "BAD_REQUEST"), 400)
            status, body, puid = await run_in_threadpool(api.handle, kind, message,
                                                         request.headers.get(PUID_HEADER))
            return JSONResponse(body, status_code=status, headers={PUID_HEADER: puid})

        return handler

    for prefix in ("", "/seldon/{deployment}", "/seldon/{namespace}/{deployment}"):
        for version in ("v1.0", "v0.1"):
            app.add_api_route(f"{prefix}/api/{version}/predictions", endpoint("predict"), methods=["POST"])
            app.add_api_route(f"{prefix}/api/{version}/feedback", endpoint("feedback"), methods=["POST"])

    @app.get("/api/v1.0/status/{node}")
    async def status(node: str):
        code, body = await run_in_threadpool(api.component, node, "/health/status")
        return JSONResponse(body, status_code=code)

    @app.get("/api/v1.0/metadata/{node}")
    async def metadata(node: str):
        code, body = await run_in_threadpool(api.component, node, "/metadata")
        return JSONResponse(body, status_code=code)

    @app.get("/live")
    async def live():
        return JSONResponse({"status": "alive"})

    @app.get("/ready")
    async def ready():
        failures = api.orchestrator.supervisor.failures()
        if failures:
            return JSONResponse(status_body(503, "; ".join(failures), "NODE_DOWN"), status_code=503)
        return JSONResponse({"status": "ready"})

    return app


def with_live_view(app, live):
    """``app`` with the live view (:class:`model_wrappers.live.LiveApp`) in front of it.

    ``/live`` stays the orchestrator's probe for probes and scripts; a browser (whose request
    accepts ``text/html``) gets the page. ``/live/events`` is the page's stream.
    """

    async def dispatch(scope, receive, send):
        if live.serves(scope):
            accept = dict(scope.get("headers") or []).get(b"accept", b"")
            if scope["path"] != "/live" or b"text/html" in accept:
                await live(scope, receive, send)
                return
        await app(scope, receive, send)

    return dispatch


def token_check(token: Token):
    """Why a request's headers (lowercase ``bytes`` names) are refused by ``token``, or None."""

    def refused(headers: dict) -> str | None:
        authorization = headers.get(b"authorization", b"").decode("latin-1") or None
        x_auth_token = headers.get(b"x-auth-token", b"").decode("latin-1") or None
        if token.accepts(authorization, x_auth_token):
            return None
        return ("missing or wrong token: send Authorization: Bearer <token> (the page sends the token "
                "given as /live#token=<token>)")

    return refused


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, with a clear error when the address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror} (choose another with --port)") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class RestServer:
    """uvicorn serving the gateway in a background thread (signals stay with the caller)."""

    def __init__(self, app: FastAPI, host: str, port: int):
        self.socket = listen(host, port)
        self.port = self.socket.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                                    timeout_graceful_shutdown=5))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                       name="seldon-river-gateway", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not self.server.started:
            raise RuntimeError("the REST gateway did not start; see the messages above")

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=10)
        self.socket.close()
