"""``seldon-river-microservice``: serve one Seldon component class over REST, gRPC and metrics.

Takes the arguments and environment of Seldon's ``seldon-core-microservice``, so a pod spec,
an s2i image or a script written for it runs this server by changing the command's name::

    seldon-river-microservice model_wrappers.RiverModel --service-type MODEL \\
        --parameters '[{"name": "model_uri", "value": "/mnt/models", "type": "STRING"}]'

One process serves REST (``--http-port``, else ``PREDICTIVE_UNIT_HTTP_SERVICE_PORT``, 9000),
gRPC (``--grpc-port``, else ``PREDICTIVE_UNIT_GRPC_SERVICE_PORT``, 5000) and Prometheus metrics
(``--metrics-port``, else ``PREDICTIVE_UNIT_METRICS_SERVICE_PORT``, 6000; also the live view,
``/live``) on one event loop, from one copy of the component. ``--workers N`` starts N such
processes sharing the three ports (each its own replica of the learned state on the shared
learning log) and restarts any that dies. SIGTERM or SIGINT stops taking connections, finishes
the calls in flight and exits within ``--grace`` seconds (default 8, inside the 10 s Seldon's
operator gives a pod).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from concurrent.futures import ThreadPoolExecutor

import uvicorn

SERVICE_TYPES = ("MODEL", "ROUTER", "TRANSFORMER", "OUTPUT_TRANSFORMER", "COMBINER", "OUTLIER_DETECTOR")
METRICS_PATHS = ("/prometheus", "/metrics")
DEFAULT_MAX_BODY = 64 * 1024 * 1024

logger = logging.getLogger("seldon_river.server")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="seldon-river-microservice", description=__doc__.split("\n")[0])
    p.add_argument("interface_name", help="the component class, e.g. model_wrappers.RiverModel")
    p.add_argument("--service-type", choices=SERVICE_TYPES, default="MODEL")
    p.add_argument("--parameters", default=os.environ.get("PREDICTIVE_UNIT_PARAMETERS", "[]"),
                   help="Seldon's parameters JSON (default: $PREDICTIVE_UNIT_PARAMETERS)")
    p.add_argument("--host", default=os.environ.get("SELDON_RIVER_HOST", "0.0.0.0"),
                   help="address to listen on (default 0.0.0.0, as in a pod; $SELDON_RIVER_HOST)")
    p.add_argument("--http-port", type=int, default=_env_int("PREDICTIVE_UNIT_HTTP_SERVICE_PORT", 9000))
    p.add_argument("--grpc-port", type=int, default=_env_int("PREDICTIVE_UNIT_GRPC_SERVICE_PORT", 5000))
    p.add_argument("--metrics-port", type=int, default=_env_int("PREDICTIVE_UNIT_METRICS_SERVICE_PORT", 6000))
    p.add_argument("--workers", type=int, default=_env_int("SELDON_RIVER_WORKERS", 1),
                   help="serving processes sharing the ports (default 1; $SELDON_RIVER_WORKERS)")
    p.add_argument("--threads", type=int, default=_env_int("SELDON_RIVER_THREADS", 32),
                   help="threads per process for calls that write the learning log (default 32)")
    p.add_argument("--max-body-bytes", type=int, default=_env_int("SELDON_RIVER_MAX_BODY_BYTES", DEFAULT_MAX_BODY))
    p.add_argument("--grace", type=float, default=8.0, help="seconds to finish calls in flight on SIGTERM")
    p.add_argument("--log-level", default=os.environ.get("SELDON_LOG_LEVEL", "INFO"))
    p.add_argument("--persistence", nargs="?", default=0, const=1, type=int, help=argparse.SUPPRESS)
    p.add_argument("--worker-sockets", default=None, help=argparse.SUPPRESS)  # set for the workers
    return p


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        # bind's own error names no address; the operator needs to know which port it was.
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        parameters = json.loads(args.parameters)
    except ValueError as exc:
        print(f"seldon-river-microservice: --parameters is not JSON: {exc}", file=sys.stderr)
        return 2
    if args.workers > 1 and args.worker_sockets is None:
        from .workers import supervise

        return supervise(args)
    try:
        if args.worker_sockets:
            rest_fd, metrics_fd = (int(fd) for fd in args.worker_sockets.split(","))
            sockets = (socket.socket(fileno=rest_fd), socket.socket(fileno=metrics_fd))
        else:
            sockets = (listening_socket(args.host, args.http_port), listening_socket(args.host, args.metrics_port))
    except OSError as exc:
        print(f"seldon-river-microservice: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # the standard loop serves the same, a little slower
        runner = asyncio.run
    return runner(serve(args, parameters, sockets))


async def serve(args, parameters: list, sockets) -> int:
    import grpc

    from ..config import LiveSettings
    from ..live import LiveApp, StatusFeed
    from ..live.sources import component_source
    from .coalesce import CoalescingHttpTools
    from .component import Component
    from .grpc_api import GrpcApi, generic_handler
    from .metrics import CustomMetrics, seldon_labels
    from .rest import MetricsApp, RestApp

    share_dir = os.environ.get("SELDON_RIVER_METRICS_DIR") if args.worker_sockets else None
    metrics = CustomMetrics(str(os.getpid()), seldon_labels(), share_dir)
    include = os.environ.get("INCLUDE_METRICS_IN_CLIENT_RESPONSE", "false").lower() == "true"
    try:
        component = Component.create(args.interface_name, args.service_type, parameters, metrics, include)
        component.load()
        live_settings = LiveSettings.from_env()
    except Exception as exc:
        # One line saying why (the traceback too with --log-level DEBUG).
        logger.error("%s could not start: %s", args.interface_name, exc,
                     exc_info=logger.isEnabledFor(logging.DEBUG))
        return 1
    pool = ThreadPoolExecutor(max(1, args.threads), thread_name_prefix="seldon-river-call")

    grpc_server = grpc.aio.server(options=[
        ("grpc.so_reuseport", 1 if args.worker_sockets else 0),
        ("grpc.max_receive_message_length", args.max_body_bytes),
        ("grpc.max_send_message_length", args.max_body_bytes),
    ])
    grpc_server.add_generic_rpc_handlers((generic_handler(GrpcApi(component, pool)),))
    address = f"[{args.host}]:{args.grpc_port}" if ":" in args.host else f"{args.host}:{args.grpc_port}"
    try:
        bound = grpc_server.add_insecure_port(address)
    except RuntimeError:  # grpcio >= 1.5x raises where older ones returned 0
        bound = 0
    if bound == 0:
        print(f"seldon-river-microservice: cannot listen for gRPC on {address} (is the port taken?)",
              file=sys.stderr)
        return 1
    await grpc_server.start()

    # The live view reads the component's status in a thread of its own, only while a page is open.
    live = LiveApp(StatusFeed(component_source(component), live_settings.interval, live_settings.max_streams))
    metrics_paths = tuple(dict.fromkeys((os.environ.get("PREDICTIVE_UNIT_METRICS_ENDPOINT", "/prometheus"),
                                         *METRICS_PATHS)))
    servers = [
        # No proxy-headers layer: nothing here reads the client's address.
        _Server(uvicorn.Config(RestApp(component, pool, args.max_body_bytes), http=CoalescingHttpTools, lifespan="off",
                               access_log=False, log_level="warning", timeout_graceful_shutdown=args.grace,
                               proxy_headers=False)),
        _Server(uvicorn.Config(MetricsApp([metrics], metrics_paths, live), http="httptools", lifespan="off",
                               access_log=False, log_level="warning", timeout_graceful_shutdown=1)),
    ]
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    tasks = [asyncio.ensure_future(s.serve(sockets=[sock])) for s, sock in zip(servers, sockets)]
    logger.info("%s (%s) serving REST on %s:%d, gRPC on %s, metrics on %s:%d", args.interface_name,
                args.service_type, args.host, args.http_port, address, args.host, args.metrics_port)
    done, _ = await asyncio.wait([asyncio.ensure_future(stopping.wait()), *tasks],
                                 return_when=asyncio.FIRST_COMPLETED)
    live.feed.close()  # open streams end now, not at the shutdown's deadline
    for s in servers:
        s.should_exit = True
    await asyncio.gather(grpc_server.stop(args.grace), *tasks, return_exceptions=True)
    pool.shutdown(wait=True)
    metrics.share()
    close = getattr(component.obj, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()
    logger.info("%s stopped", args.interface_name)
    return 0


class _Server(uvicorn.Server):
    # The process handles SIGTERM/SIGINT itself, for REST, gRPC and metrics together.
    @contextlib.contextmanager
    def capture_signals(self):
        yield


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
