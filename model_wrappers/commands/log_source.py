"""Where a command finds a model's learning log: a running component, or a folder and a state URI.

Shared by ``pull``, ``promote`` and ``replay``. ``--from URL`` reads everything from the
component's ``/health/status`` (its folder, log and model options); ``--model FOLDER --state URI``
names the log as a component serving that folder names it, with ``--option name=value`` for each
model parameter the component was given (``challengers``, ``drift_detector``, ...), since they
are part of the log's name.
"""

from __future__ import annotations

import argparse

from ..artifact import ArtifactError
from ..learned_state import PullError, Source
from ..model_options import ModelOptions


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="url", help="a running RiverModel's REST address, e.g. http://127.0.0.1:9000")
    parser.add_argument("--model", help="the model folder the component serves (read from --from when omitted)")
    parser.add_argument("--state", help="the learning-log URI (default: what --from reports, or $SELDON_RIVER_STATE_URI)")
    parser.add_argument("--state-name", help="the log name's node part, as the component's state_name parameter "
                                             "or PREDICTIVE_UNIT_ID (default: the model's name)")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="a model parameter the component was given (with --model; repeat for each)")


def source_from(args: argparse.Namespace) -> tuple[Source, int | None]:
    """The log the arguments name, and the position the component serves (None without --from)."""
    if args.url:
        return Source.of_component(args.url, args.model, args.state)
    if not args.model:
        raise PullError("say where the state is: --from URL, or --model FOLDER (with --state URI)")
    options = {}
    for item in args.option:
        name, sep, value = item.partition("=")
        if not sep or name not in ModelOptions.__dataclass_fields__:
            raise PullError(f"--option takes NAME=VALUE with NAME one of {sorted(ModelOptions.__dataclass_fields__)}, "
                            f"got {item!r}")
        options[name] = value
    try:
        parsed = ModelOptions.from_parameters(**options)
        return Source.of_folder(args.model, args.state, args.state_name, parsed), None
    except ArtifactError as exc:
        raise PullError(str(exc)) from None
