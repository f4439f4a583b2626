"""``seldon-river pull``: write what a model has learned as a new model folder.

From a running component (``--from URL``: the log it reports at ``/health/status``, at the
position it serves), or from a learning log (``--model FOLDER --state URI``: the log a component
serving that folder uses) at its head, at ``--position N`` or at a kept ``--checkpoint N``.
``--list`` shows which positions the log can still give. The folder serves as any other; its
metadata's ``provenance`` says where it comes from.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..artifact import ArtifactError
from ..learned_state import PullError, learned_state, pull
from ..log.replica import reachable
from .log_source import add_source_arguments, source_from


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("folder", nargs="?", help="the model folder to write")
    add_source_arguments(parser)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--position", type=int, help="the state after this log position (default: the newest)")
    where.add_argument("--checkpoint", type=int, help="the state of the checkpoint kept at this position")
    parser.add_argument("--list", action="store_true", help="show the checkpoints and positions the log can give")
    parser.add_argument("--name", help="the new model's name (default: the folder's name)")
    parser.add_argument("--force", action="store_true", help="replace the model files of an existing folder")


def main(args: argparse.Namespace) -> int:
    try:
        source, serving = source_from(args)
        if args.list:
            replica, _ = learned_state(source, 0)
            try:
                print(f"{source.log_name} at {source.state_uri}: {reachable(replica.log)}")
            finally:
                replica.log.close()
            return 0
        if not args.folder:
            raise PullError("give the model folder to write (or --list)")
        position = args.position if args.position is not None or args.checkpoint is not None else serving
        meta = pull(source, args.folder, position=position, checkpoint=args.checkpoint, name=args.name,
                    force=args.force)
    except (PullError, ArtifactError, OSError) as exc:
        print(f"seldon-river pull: {exc}", file=sys.stderr)
        return 1
    made = meta.provenance
    print(f"wrote {args.folder}: {meta.name} at position {made['position']} of log {made['log']['name']}, "
          f"{made['rows_learned']} rows learned, metrics {json.dumps(made['metrics'], sort_keys=True)}, "
          f"sha256 {meta.sha256}")
    return 0
