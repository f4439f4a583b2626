"""``seldon-river serve``: run one component, REST on ``--http-port``, gRPC on ``--grpc-port``,
Prometheus metrics on ``--metrics-port``.

By default it runs the project's own server (``seldon-river-microservice``, on ``--host``,
127.0.0.1 unless told otherwise); ``--server seldon-core`` runs Seldon's
``seldon-core-microservice`` instead, which binds every interface.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from ..artifact import folder_problem

COMPONENTS = {
    "model": ("model_wrappers.RiverModel", "MODEL"),
    "keyed": ("model_wrappers.KeyedRiverModel", "MODEL"),
    "router": ("model_wrappers.BanditRouter", "ROUTER"),
    "key-router": ("model_wrappers.KeyRouter", "ROUTER"),
    "detector": ("model_wrappers.OutlierDetector", "TRANSFORMER"),
}


def seldon_parameters(values: dict) -> str:
    """Seldon's ``--parameters`` JSON for a dict of Python values."""
    types = {bool: "BOOL", int: "INT", float: "FLOAT", str: "STRING"}
    return json.dumps(
        [{"name": k, "value": str(v).lower() if isinstance(v, bool) else str(v), "type": types[type(v)]}
         for k, v in values.items()]
    )


def _value(text: str):
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (bool, int, float, str)) else text


SERVERS = {"seldon-river": "seldon-river-microservice", "seldon-core": "seldon-core-microservice"}


def microservice_command(component: str, parameters: dict, args: argparse.Namespace) -> list[str]:
    class_path, service_type = COMPONENTS[component]
    name = SERVERS[args.server]
    exe = shutil.which(name, path=os.path.dirname(sys.executable)) or name
    host = ["--host", args.host] if args.server == "seldon-river" else []
    return [
        exe, class_path, *host, "--service-type", service_type,
        "--http-port", str(args.http_port), "--grpc-port", str(args.grpc_port),
        "--metrics-port", str(args.metrics_port), "--workers", str(args.workers),
        "--parameters", seldon_parameters(parameters),
    ]


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("model_dir", nargs="?", help="model folder (for the model component)")
    parser.add_argument("--component", choices=sorted(COMPONENTS), default="model")
    parser.add_argument("--http-port", type=int, default=9000)
    parser.add_argument("--grpc-port", type=int, default=5000)
    parser.add_argument("--metrics-port", type=int, default=6000)
    parser.add_argument("--workers", type=int, default=1, help="serving processes (gunicorn workers with seldon-core)")
    parser.add_argument("--server", choices=sorted(SERVERS), default="seldon-river",
                        help="seldon-river (default) or Seldon's own seldon-core-microservice")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (seldon-river server only)")
    parser.add_argument(
        "--state", default=None,
        help="learning-log URI (default: sqlite:///./.seldon-river/state.db, or $SELDON_RIVER_STATE_URI)",
    )
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a component parameter (JSON scalar or text); repeatable")


def main(args: argparse.Namespace) -> int:
    if args.component in ("model", "keyed") and args.model_dir:
        problem = folder_problem(args.model_dir, keyed=args.component == "keyed")
        if problem:
            print(f"seldon-river serve: {problem}", file=sys.stderr)
            return 2
    parameters = {}
    if args.component in ("model", "keyed"):
        if not args.model_dir:
            print(f"seldon-river serve: the {args.component} component needs MODEL_DIR", file=sys.stderr)
            return 2
        parameters["model_uri"] = str(Path(args.model_dir).resolve())
    for item in args.param:
        name, sep, text = item.partition("=")
        if not sep:
            print(f"seldon-river serve: --param needs NAME=VALUE, got {item!r}", file=sys.stderr)
            return 2
        parameters[name] = _value(text)
    state = args.state or os.environ.get("SELDON_RIVER_STATE_URI") or f"sqlite:///{Path('.seldon-river/state.db').resolve()}"
    parameters.setdefault("state_uri", state)
    cmd = microservice_command(args.component, parameters, args)
    os.execvp(cmd[0], cmd)
    return 0  # not reached
