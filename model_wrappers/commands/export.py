"""``seldon-river export``: turn a dill-serialized river pipeline into a model folder."""

from __future__ import annotations

import argparse
import json
import sys

import dill

from ..artifact import TASKS, ArtifactError, export_model


def _scalar(text: str):
    # "true" -> True, "1" -> 1, "cat" -> "cat": class labels keep the type the model learned.
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
    parser.add_argument("--task", choices=TASKS, help="inferred from the pipeline when omitted")
    parser.add_argument(
        "--features", default="", help="feature names in column order, comma separated; name:category for categories"
    )
    parser.add_argument("--classes", default="", help="class labels in output order, comma separated (JSON scalars)")
    parser.add_argument("--name", default="model", help="a short name used in logs, metrics and the log name")


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
        )
    except (OSError, ArtifactError, dill.UnpicklingError) as exc:
        print(f"seldon-river export: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.folder}: {meta.task} {meta.name}, sha256 {meta.sha256}, river {meta.river_version}")
    return 0
