"""``seldon-river replay``: score candidate pipelines on a model's learning log, beside what served.

Each ``--candidate`` is a model folder (``seldon-river export``) for the same task and features.
The figures are progressive: each row is predicted before it is learned, in log order, as the
served model was scored (see :mod:`model_wrappers.replay`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from ..artifact import ArtifactError, load_model
from ..learned_state import PullError
from ..replay import replay
from .log_source import add_source_arguments, source_from


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    add_source_arguments(parser)
    parser.add_argument("--candidate", action="append", default=[], metavar="FOLDER",
                        help="a candidate model folder (repeat for each)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def main(args: argparse.Namespace) -> int:
    try:
        source, _ = source_from(args)
        candidates = {}
        for folder in args.candidate:
            loaded = load_model(folder)
            if loaded.metadata.name in candidates:
                raise PullError(f"two candidates are named {loaded.metadata.name!r}: export one with another --name")
            candidates[loaded.metadata.name] = loaded
        result = replay(source, candidates)
    except (PullError, ArtifactError, OSError) as exc:
        print(f"seldon-river replay: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(dataclasses.asdict(result), sort_keys=True))
        return 0
    print(f"log {result.log_name}: positions {result.first_position}..{result.last_position}, {result.rows} rows")
    print(result.table())
    if result.skipped:
        print(f"skipped (unlearnable, as the component skipped them): positions {result.skipped}")
    return 0
