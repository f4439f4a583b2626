"""seldon-river: serve river pipelines as Seldon Core v1 components that keep learning.

Each subcommand lives in its own module, which provides ``add_arguments(parser, command)``
and ``main(args) -> int`` (``args.command`` names the subcommand); modules are imported only when their subcommand runs, so
``seldon-river export`` does not pay for the Kubernetes client.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "export": ("model_wrappers.commands.export", "write a model folder from a dill file"),
    "export-keyed": ("model_wrappers.keyed_artifact", "write a keyed model folder (one pipeline per key)"),
    "serve": ("model_wrappers.commands.serve", "serve one component with seldon-core-microservice"),
    "pull": ("model_wrappers.commands.pull", "write what a model learned as a new model folder"),
    "replay": ("model_wrappers.commands.replay", "score candidate pipelines on a model's learning log"),
    "promote": ("model_wrappers.commands.promote", "hand serving to one of a model's challengers"),
    "consume-feedback": ("model_wrappers.commands.consume_feedback",
                         "learn from feedback messages on a Kafka topic (serverType kafka)"),
    "run": ("model_wrappers.local.command", "run a SeldonDeployment graph locally, no cluster"),
    "demo": ("model_wrappers.local.demo", "run the full graph locally and stream a dataset through it"),
    "deploy": ("model_wrappers.deploy.command", "create or update a deployment in a cluster"),
    "undeploy": ("model_wrappers.deploy.command", "delete a deployment from a cluster"),
    "status": ("model_wrappers.deploy.command", "show what a cluster reports for a deployment"),
}


def version() -> str:
    """This seldon-river's version and those its model folders depend on."""
    import platform

    import dill
    import river

    from . import __version__

    return f"seldon-river {__version__} (river {river.__version__}, dill {dill.__version__}, Python {platform.python_version()})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seldon-river", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="show the versions a model folder depends on")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--version"]:
        print(version())
        return 0
    top = build_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        top.parse_args(argv)  # prints usage / error and exits
        return 2
    name = argv[0]
    module = importlib.import_module(SUBCOMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"seldon-river {name}", description=SUBCOMMANDS[name][1])
    module.add_arguments(parser, name)
    args = parser.parse_args(argv[1:])
    args.command = name
    return int(module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
