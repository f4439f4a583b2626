"""``seldon-river consume-feedback``: learn from feedback messages on a Kafka topic.

For graphs served with Seldon's ``serverType: kafka`` (predictions in and out through topics):
each message of ``--topic`` is a Seldon feedback in JSON, posted in order to ``--to`` (the
orchestrator, or one component) and committed once acknowledged; refused ones go to
``--refused-topic`` with the reason (see :mod:`model_wrappers.kafka_feedback`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--brokers", required=True, help="Kafka brokers, host:port[,host:port]")
    parser.add_argument("--topic", required=True, help="the feedback topic")
    parser.add_argument("--to", required=True, dest="url",
                        help="the graph's REST address, e.g. http://127.0.0.1:8000 (the orchestrator's)")
    parser.add_argument("--group", default="seldon-river-feedback", help="the consumer group (default: %(default)s)")
    parser.add_argument("--refused-topic", help="where refused messages go (default: TOPIC.refused)")
    parser.add_argument("--commit-every", type=int, default=1,
                        help="acknowledged messages between offset commits (default: %(default)s)")
    parser.add_argument("--max-messages", type=int, help="stop after this many messages")
    parser.add_argument("--idle-exit", type=float, help="stop after this many seconds without a message")


def main(args: argparse.Namespace) -> int:
    from ..kafka_feedback import FeedbackConsumer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        consumer = FeedbackConsumer(args.brokers, args.topic, args.url, group=args.group,
                                    refused_topic=args.refused_topic, commit_every=args.commit_every)
    except ValueError as exc:
        print(f"seldon-river consume-feedback: {exc}", file=sys.stderr)
        return 2
    counts = consumer.run(max_messages=args.max_messages, idle_exit=args.idle_exit)
    print(json.dumps(dataclasses.asdict(counts), sort_keys=True))
    return 0
