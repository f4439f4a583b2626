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
from ..learned_state import PullError, Source, learned_state, pull
from ..log.replica import reachable


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("folder", nargs="?", help="the model folder to write")
    parser.add_argument("--from", dest="url", help="a running RiverModel's REST address, e.g. http://127.0.0.1:9000")
    parser.add_argument("--model", help="the model folder the component serves (read from --from when omitted)")
    parser.add_argument("--state", help="the learning-log URI (default: what --from reports, or $SELDON_RIVER_STATE_URI)")
    parser.add_argument("--state-name", help="the log name's node part, as the component's state_name parameter "
                                             "or PREDICTIVE_UNIT_ID (default: the model's name)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--position", type=int, help="the state after this log position (default: the newest)")
    where.add_argument("--checkpoint", type=int, help="the state of the checkpoint kept at this position")
    parser.add_argument("--list", action="store_true", help="show the checkpoints and positions the log can give")
    parser.add_argument("--name", help="the new model's name (default: the folder's name)")
    parser.add_argument("--force", action="store_true", help="replace the model files of an existing folder")


def _source(args: argparse.Namespace) -> tuple[Source, int | None]:
    if args.url:
        return Source.of_component(args.url, args.model, args.state)
    if not args.model:
        raise PullError("say where the state is: --from URL, or --model FOLDER (with --state URI)")
    return Source.of_folder(args.model, args.state, args.state_name), None


def main(args: argparse.Namespace) -> int:
    try:
        source, serving = _source(args)
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
