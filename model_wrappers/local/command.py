"""``seldon-river run``: run a SeldonDeployment's graph on this machine, no cluster needed.

Every graph node starts as a real ``seldon-river-microservice`` process; a gateway on
``127.0.0.1:8003`` serves Seldon's external API (REST, and gRPC on 8004) and walks the graph like
Seldon's orchestrator. The same manifest later goes to a cluster unchanged::

    seldon-river run manifests/full-graph.yaml --models-dir models/
    seldon-river run sd.yaml --models clf=./my-model --port 9000

Ctrl-C (or SIGTERM, SIGHUP) stops the gateway and every component.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from .manifest import ManifestError, read_deployment
from .runner import DEFAULT_GRPC_PORT, DEFAULT_PORT, LocalRun, Options, RunError
from .supervisor import StartupError

TOKEN_ENV = "SELDON_RIVER_TOKEN"


def _models(items: list[str]) -> dict[str, Path]:
    models = {}
    for item in items:
        node, sep, folder = item.partition("=")
        if not sep or not node or not folder:
            raise RunError(f"--models needs NODE=DIR, got {item!r}")
        models[node] = Path(folder)
    return models


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("manifest", help="a YAML file holding the SeldonDeployment")
    parser.add_argument("--models", action="append", default=[], metavar="NODE=DIR",
                        help="local model folder of a graph node (its modelUri is not fetched); repeatable")
    parser.add_argument("--models-dir", type=Path, metavar="DIR",
                        help="a folder holding one model folder per graph node: DIR/<node-name>")
    parser.add_argument("--state-dir", type=Path, metavar="DIR",
                        help="learning logs and component logs (default ./.seldon-river/<deployment>); "
                             "components resume from it on the next run")
    parser.add_argument("--state-uri", metavar="URI",
                        help="one learning-log store for every component (sqlite:///ABS/PATH.db or "
                             "redis://HOST:PORT/DB) instead of a sqlite file per node in the state directory")
    parser.add_argument("--reset-state", action="store_true", help="delete the state directory first")
    parser.add_argument("--deployment", help="the SeldonDeployment to run when the file holds several")
    parser.add_argument("--predictor", help="the predictor to run (default: the first)")
    parser.add_argument("--namespace", help="namespace in the gateway's paths (default: the manifest's, or default)")
    parser.add_argument("--host", default="127.0.0.1",
                        help=f"gateway address (default 127.0.0.1; any other needs a token: ${TOKEN_ENV} or --token)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"REST port (default {DEFAULT_PORT}; 0 = any)")
    parser.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT,
                        help=f"gRPC port (default {DEFAULT_GRPC_PORT}; 0 = any)")
    parser.add_argument("--no-grpc", action="store_true", help="serve REST only")
    parser.add_argument("--token", help=f"bearer token clients must send (prefer ${TOKEN_ENV}: "
                                        "a command line is visible to other users)")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="limit for one component call (default: the seldon.io/rest-timeout annotation, else 30)")
    parser.add_argument("--startup-timeout", type=float, default=180.0, metavar="SECONDS",
                        help="how long components may take to become ready")


def options_from(args: argparse.Namespace) -> Options:
    """Run options from parsed arguments (the token from --token or the environment)."""
    return Options(
        models=_models(args.models),
        models_dir=args.models_dir,
        state_dir=args.state_dir,
        state_uri=args.state_uri,
        reset_state=args.reset_state,
        host=args.host,
        port=args.port,
        grpc_port=None if args.no_grpc else args.grpc_port,
        token=args.token or os.environ.get(TOKEN_ENV) or None,
        timeout=args.timeout,
        startup_timeout=args.startup_timeout,
    )


def main(args: argparse.Namespace) -> int:
    stop = threading.Event()
    started = False

    def on_signal(signum, frame):
        if not started:
            raise KeyboardInterrupt  # interrupts the start-up, which then stops what it started
        stop.set()

    try:
        deployment = read_deployment(args.manifest, predictor=args.predictor, name=args.deployment)
        if args.namespace:
            deployment = dataclasses.replace(deployment, namespace=args.namespace)
        run = LocalRun(deployment, options_from(args))
    except (ManifestError, RunError) as exc:
        print(f"seldon-river run: {exc}", file=sys.stderr)
        return 2
    for note in run.notes:
        print(f"note: {note}", file=sys.stderr)
    logging.basicConfig(level=logging.WARNING, format="seldon-river run: %(message)s")
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        run.start()
        started = True
        print(run.banner(), flush=True)
        print("Ready. Ctrl-C stops.", flush=True)
        while not stop.wait(0.5):
            pass
        print("seldon-river run: stopping", file=sys.stderr, flush=True)
        return 0
    except KeyboardInterrupt:
        print("seldon-river run: interrupted while starting", file=sys.stderr)
        return 130
    except RunError as exc:
        print(f"seldon-river run: {exc}", file=sys.stderr)
        return 2
    except (StartupError, OSError, RuntimeError) as exc:
        print(f"seldon-river run: {exc}", file=sys.stderr)
        return 1
    finally:
        run.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
