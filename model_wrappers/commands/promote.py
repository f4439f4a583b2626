"""``seldon-river promote``: hand serving to one of a model's challengers, as an event in its log.

The command appends a ``promote`` event to the model's learning log; every replica applies it in
log order, so all of them switch at the same position, and the switch is in the log's history
(``/health/status`` lists it among the drift and champion events). The champion it replaces
becomes a challenger and goes on learning.
"""

from __future__ import annotations

import argparse
import sys
import uuid

from ..learned_state import PullError, learned_state
from ..log import LogUnavailable
from .log_source import add_source_arguments, source_from


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("challenger", help="the name of the challenger to serve (as /health/status lists it)")
    add_source_arguments(parser)


def main(args: argparse.Namespace) -> int:
    try:
        source, _ = source_from(args)
        replica, _ = learned_state(source)
        try:
            state = replica.state
            known = sorted(getattr(state, "challengers", None) or {})
            if args.challenger not in known:
                serving = f"{state.name} serves" if known else "it has no challengers"
                raise PullError(f"no challenger named {args.challenger!r} in {source.log_name}: {serving}"
                                + (f"; its challengers are {known}" if known else ""))
            position = replica.submit({"type": "promote", "candidate": args.challenger,
                                       "id": f"promote-{uuid.uuid4()}"})
            now = replica.state.name
        finally:
            replica.log.close()
    except (PullError, LogUnavailable) as exc:
        print(f"seldon-river promote: {exc}", file=sys.stderr)
        return 1
    print(f"{args.challenger} promoted at position {position} of log {source.log_name}: {now} serves")
    return 0
