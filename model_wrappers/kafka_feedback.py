"""Feedback from a Kafka topic into a graph: each message learned exactly once, or set aside with why.

Seldon's orchestrator, run with ``serverType: kafka``, reads prediction requests from a topic
and writes the replies to another (each reply's ``meta.puid`` names the prediction); it reads no
feedback. :class:`FeedbackConsumer` closes that loop: it reads Seldon ``Feedback`` messages
(JSON, as ``/api/v1.0/feedback`` takes them) from a topic and posts each, in order, to the
graph's feedback endpoint (the orchestrator's, which fans it out to the nodes as it does for any
client, or one component's).

- A message is committed (its offset) only once the graph acknowledged it (200). A consumer that
  dies between the acknowledgement and the commit reads the message again: every message carries
  a feedback id (its own ``seldon_river_feedback_id`` tag or puid, else one made from its topic,
  partition and offset), so the copy is answered ``seldon_river_already_learned`` and learned once.
- A message the graph refuses (a 4xx: not JSON, a malformed feedback, an unknown puid) is never
  learned: it is written to the refused topic with the graph's answer in its ``error`` header,
  then committed, so one bad message does not hold back the ones behind it. (Refused again
  after a crash, it is there twice; its ``offset`` header tells.)
- A graph that cannot take feedback now (a 5xx, no connection) is retried with a growing pause;
  nothing behind the message is sent meanwhile, so the order of the topic is the order learned.

Examples
--------
>>> FeedbackConsumer.message_id("feedback", 0, 41)
'kafka:feedback:0:41'

"""

from __future__ import annotations

import dataclasses
import json
import logging
import time

import requests

from .adapter_support import FEEDBACK_ID_TAG, feedback_id
from .errors import InvalidInput

logger = logging.getLogger(__name__)

RETRY_FIRST, RETRY_MAX = 0.2, 5.0  # seconds between attempts while the graph is unavailable
SESSION_TIMEOUT_MS = 10_000


@dataclasses.dataclass
class Counts:
    """What a consumer did: acknowledged (of which already learned), refused, retried."""

    acknowledged: int = 0
    already_learned: int = 0
    refused: int = 0
    retries: int = 0


class FeedbackConsumer:
    """Reads Seldon feedback messages from a Kafka topic and posts them to a graph.

    Parameters
    ----------
    bootstrap
        The brokers, ``host:port[,host:port]``.
    topic
        The feedback topic.
    url
        The graph's REST address; feedback goes to ``<url>/api/v1.0/feedback``.
    group
        The consumer group (offsets are committed there).
    refused_topic
        Where refused messages go; ``<topic>.refused`` by default.
    commit_every
        Acknowledged messages between two offset commits (a crash re-reads at most this many,
        each then recognised by its id).

    """

    def __init__(self, bootstrap: str, topic: str, url: str, group: str = "seldon-river-feedback",
                 refused_topic: str | None = None, commit_every: int = 1):
        from confluent_kafka import Consumer, Producer

        if int(commit_every) < 1:
            raise ValueError(f"commit_every must be at least 1, got {commit_every}")
        self.topic, self.url = topic, url.rstrip("/") + "/api/v1.0/feedback"
        self.refused_topic = refused_topic or f"{topic}.refused"
        self.commit_every = int(commit_every)
        self.counts = Counts()
        self._session = requests.Session()
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "isolation.level": "read_committed",
            "broker.address.family": "v4",
            # A consumer that died holds its partition until its session times out: keep that short.
            "session.timeout.ms": SESSION_TIMEOUT_MS,
        })
        self._producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                   "broker.address.family": "v4"})
        self.assigned = False
        self._consumer.subscribe([topic], on_assign=self._on_assign)
        self._uncommitted = 0

    def _on_assign(self, consumer, partitions) -> None:
        self.assigned = True

    @staticmethod
    def message_id(topic: str, partition: int, offset: int) -> str:
        """The feedback id of a message that names none: where it sits in the topic."""
        return f"kafka:{topic}:{partition}:{offset}"

    def run(self, max_messages: int | None = None, idle_exit: float | None = None) -> Counts:
        """Consume until ``max_messages`` were handled, or no message came for ``idle_exit`` s.

        The idle time counts from when the topic's partitions were assigned to this consumer
        (after a consumer of the group died, that waits for its session to time out).
        """
        handled, idle_since = 0, None
        try:
            while max_messages is None or handled < max_messages:
                message = self._consumer.poll(0.5)
                if message is None:
                    if idle_since is None and self.assigned:
                        idle_since = time.monotonic()
                    if idle_exit is not None and idle_since is not None and time.monotonic() - idle_since >= idle_exit:
                        break
                    continue
                if message.error():
                    logger.warning("feedback topic: %s", message.error())
                    continue
                self.handle(message)
                handled += 1
                idle_since = time.monotonic()
        finally:
            self.close()
        return self.counts

    def handle(self, message) -> None:
        """Post one message until the graph acknowledges or refuses it; then mark it done."""
        body, problem = self._prepared(message)
        pause = RETRY_FIRST
        while problem is None:
            try:
                reply = self._session.post(self.url, data=body, headers={"Content-Type": "application/json"},
                                           timeout=30)
            except requests.RequestException as exc:
                reply, why = None, str(exc)
            else:
                why = f"HTTP {reply.status_code}: {reply.text[:500]}"
            if reply is not None and reply.status_code == 200:
                self.counts.acknowledged += 1
                if _already_learned(reply):
                    self.counts.already_learned += 1
                break
            if reply is not None and 400 <= reply.status_code < 500:
                problem = why
                break
            self.counts.retries += 1
            logger.warning("feedback at offset %d not taken (%s): retrying in %.1f s", message.offset(), why, pause)
            time.sleep(pause)
            pause = min(pause * 2, RETRY_MAX)
        if problem is not None:
            self._refuse(message, problem)
        self._done(message)

    def _prepared(self, message) -> tuple[bytes, str | None]:
        """The body to post, with a feedback id; or the reason it cannot be posted at all."""
        try:
            feedback = json.loads(message.value() or b"")
        except ValueError as exc:
            return b"", f"not JSON: {exc}"
        if not isinstance(feedback, dict):
            return b"", f"a feedback is a JSON object, got {type(feedback).__name__}"
        if _needs_id(feedback):
            # No id of its own: the message's place in the topic names it, for every re-read.
            # (A part given as null is none: it gets an object, as an absent one does.)
            response = feedback["response"] = feedback.get("response") or {}
            meta = response["meta"] = response.get("meta") or {}
            tags = meta["tags"] = meta.get("tags") or {}
            tags[FEEDBACK_ID_TAG] = self.message_id(message.topic(), message.partition(), message.offset())
        return json.dumps(feedback).encode(), None

    def _refuse(self, message, why: str) -> None:
        self.counts.refused += 1
        logger.warning("feedback at offset %d refused: %s", message.offset(), why)
        self._producer.produce(self.refused_topic, value=message.value(), key=message.key(),
                               headers=[("error", why.encode()), ("offset", str(message.offset()).encode())])
        # Durable before the offset moves past it: a refused message is never lost from sight.
        if self._producer.flush(30) != 0:
            raise RuntimeError(f"could not write the refused message to {self.refused_topic}")

    def _done(self, message) -> None:
        self._uncommitted += 1
        if self._uncommitted >= self.commit_every:
            self._consumer.commit(message=message, asynchronous=False)
            self._uncommitted = 0

    def close(self) -> None:
        try:
            if self._uncommitted:
                self._consumer.commit(asynchronous=False)
        except Exception as exc:  # nothing to commit, or the brokers are gone: the ids cover a re-read
            logger.info("last commit not made: %s", exc)
        self._consumer.close()
        self._producer.flush(10)


def _needs_id(feedback: dict) -> bool:
    """Whether ``feedback`` names no id of its own and has room for one.

    The id is read as every component reads it (:func:`model_wrappers.adapter_support.feedback_id`).
    A feedback whose ``response``, ``meta`` or ``tags`` is not an object, or whose id is not text,
    is posted as it came: the graph refuses it, saying why, and nothing is repaired on its behalf.
    """
    try:
        if feedback_id(feedback) is not None:
            return False
    except InvalidInput:
        return False
    parts = [feedback.get("response")]
    parts.append(parts[0].get("meta") if isinstance(parts[0], dict) else None)
    parts.append(parts[1].get("tags") if isinstance(parts[1], dict) else None)
    return all(part is None or isinstance(part, dict) for part in parts)


def _already_learned(reply) -> bool:
    try:
        tags = (reply.json().get("meta") or {}).get("tags") or {}
    except ValueError:
        return False
    return bool(tags.get("seldon_river_already_learned"))
