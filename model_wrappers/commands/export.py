"""``seldon-river export``: turn a dill-serialized river pipeline into a model folder."""

from __future__ import annotations

import argparse
import json
import sys

import dill

from .. import river_versions
from ..artifact import TASKS, ArtifactError, export_model
from ..config import state_key


def _scalar(text: str):
    # "1" -> 1, "cat" -> "cat"; export then matches each label to the pipeline's own ("True" -> True).
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (str, int, bool)) else text


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("pipeline", help="a river pipeline saved with dill.dump")
    parser.add_argument("folder", help="the model folder to write")
    parser.add_argument("--task", choices=TASKS,
                        help="inferred from the pipeline when omitted; refused when it contradicts the pipeline")
    parser.add_argument(
        "--features", default="", help="feature names in column order, comma separated; name:category for categories"
    )
    parser.add_argument("--classes", default="",
                        help="class labels in output order, comma separated; inferred when the pipeline predicts "
                             "known labels (a binary classifier: true,false)")
    parser.add_argument("--name", default=None,
                        help="a short name used in logs, metrics and the log name (default: the folder's name)")
    parser.add_argument("--force", action="store_true", help="replace the model files of an existing folder")
    add_sign_argument(parser)


def add_sign_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sign", action="store_true",
                        help="sign the folder with the state key (SELDON_RIVER_STATE_KEY_FILE or SELDON_RIVER_STATE_KEY)")


def signing_key(args: argparse.Namespace) -> bytes | None:
    """The state key when ``--sign`` is given; refused when no key is configured."""
    if not getattr(args, "sign", False):
        return None
    key = state_key()
    if key is None:
        raise ArtifactError("--sign needs a state key: set SELDON_RIVER_STATE_KEY_FILE or SELDON_RIVER_STATE_KEY")
    return key


def main(args: argparse.Namespace) -> int:
    try:
        with open(args.pipeline, "rb") as fh:
            pipeline = dill.load(fh)
        meta = export_model(
            pipeline,
            args.folder,
            task=args.task,
            features=_list(args.features),
            classes=[_scalar(c) for c in _list(args.classes)],
            name=args.name,
            force=args.force,
            key=signing_key(args),
        )
    except (OSError, ArtifactError, dill.UnpicklingError, ValueError) as exc:
        print(f"seldon-river export: {exc}", file=sys.stderr)
        return 1
    classes = f", classes {','.join(map(str, meta.classes))}" if meta.classes else ""
    print(f"wrote {args.folder}: {meta.task} {meta.name}{classes}, sha256 {meta.sha256}, river {meta.river_version}")
    print(f"serve it with {river_versions.needed(meta.river_version)}")
    return 0
