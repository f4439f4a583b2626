"""The learning log on Apache Kafka: one topic per log, for replicas across machines.

``kafka://host:port[,host:port...]/[prefix]?replication=N&min_insync=M&fsync=0|1``

Each log has three single-partition topics, created on first use when missing:

- ``<prefix><name>.events``: the events; an event's position is its offset + 1. Every append
  goes through an idempotent producer with ``acks=all`` and is one produce of one record batch,
  so a group commit of concurrent feedbacks is one durable round trip, all or none.
- ``<prefix><name>.checkpoints``: compacted, keyed by position; the newest ``keep_checkpoints``
  are kept (older ones get tombstones), so every replica can read them.
- ``<prefix><name>.predictions``: prediction records (compacted, deleted after the time to
  live), which every process follows into a table of the newest ``capacity`` records.

Durability: Kafka does not fsync each message by default. With one broker (``replication=1``,
the default) the topics are made with ``flush.messages=1``: an acknowledged append is on disk.
With ``replication=3`` they are made with ``min.insync.replicas=2`` (``min_insync``), and an
acknowledged append survives the loss of a broker; ``fsync=1`` adds the per-message fsync there too.

An append whose outcome is unknown (its messages timed out after being sent) is resolved
before it is answered: the producer is closed so that nothing of it is retried, each message
carries an attempt id in a header, and the tail of the topic is searched for it. Found, the
append succeeded; not found twice, half a second apart, on one broker, it is refused;
not found with replication (where a record can become readable late, once the set of in-sync
replicas shrinks) or with the brokers unreachable, it raises :class:`LogOutcomeUnknown`.
"""

from __future__ import annotations

import collections
import logging
import os
import struct
import threading
import time
import uuid
from urllib.parse import parse_qsl, urlsplit

from .base import Checkpoint, EventLog, LogOutcomeUnknown, LogUnavailable
from .records import RecordWriter

logger = logging.getLogger(__name__)
client_logger = logging.getLogger(__name__ + ".client")

DEFAULT_PREFIX = "seldon-river."
ATTEMPT_HEADER = "seldon-river-attempt"
MAX_BATCH_BYTES = 64 * 1024 * 1024  # one append_many, and one checkpoint, must fit in one record batch
SEND_TIMEOUT_MS = 10_000  # how long the producer keeps trying to deliver one append
SETTLE = 0.5  # seconds between searches of the tail for an append whose delivery failed
RESOLVE_FOR = 10.0  # seconds an append of unknown outcome keeps trying to search the tail
CALL_TIMEOUT = 5.0  # seconds for a metadata, offsets or admin call
UNHEALTHY_WAIT = 0.5  # seconds for an offsets call once the brokers were seen unreachable
MOVING = {3, 6, -190}  # unknown topic or partition, not the leader, unknown partition (librdkafka)
TOPIC_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class KafkaAddress:
    """A parsed ``kafka://`` state URI.

    Examples
    --------
    >>> a = KafkaAddress.parse("kafka://k1:9092,k2:9092/team.?replication=3")
    >>> a.bootstrap, a.prefix, a.replication, a.min_insync, a.fsync
    ('k1:9092,k2:9092', 'team.', 3, 2, False)
    >>> KafkaAddress.parse("kafka://127.0.0.1:9092").topic("m-1", "events")
    'seldon-river.m-1.events'
    >>> KafkaAddress.parse("kafka://k:9092?replication=0")
    Traceback (most recent call last):
    ...
    ValueError: replication in kafka://k:9092?replication=0 must be a whole number of at least 1, got '0'

    """

    def __init__(self, uri: str, bootstrap: str, prefix: str, replication: int, min_insync: int, fsync: bool):
        self.uri, self.bootstrap, self.prefix = uri, bootstrap, prefix
        self.replication, self.min_insync, self.fsync = replication, min_insync, fsync

    @classmethod
    def parse(cls, uri: str) -> "KafkaAddress":
        parts = urlsplit(uri)
        if parts.scheme != "kafka" or not parts.netloc:
            raise ValueError(f"a Kafka state URI is kafka://host:port[,host:port]/[prefix], got {uri!r}")
        hosts = parts.netloc.split(",")
        for host in hosts:
            name, _, port = host.rpartition(":")
            if not name or not port.isdigit():
                raise ValueError(f"each broker in {uri!r} must be host:port, got {host!r}")
        prefix = parts.path.lstrip("/") or DEFAULT_PREFIX
        if not set(prefix) <= TOPIC_CHARS:
            raise ValueError(f"the topic prefix in {uri!r} may hold only letters, digits, '.', '_' and '-', "
                             f"got {prefix!r}")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = set(query) - {"replication", "min_insync", "fsync"}
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)} in {uri!r} (expected replication, min_insync, fsync)")

        def whole(key: str, default: int) -> int:
            text = query.get(key, str(default))
            if not text.isdigit() or int(text) < 1:
                raise ValueError(f"{key} in {uri} must be a whole number of at least 1, got {text!r}")
            return int(text)

        replication = whole("replication", 1)
        min_insync = whole("min_insync", min(2, replication))
        if min_insync > replication:
            raise ValueError(f"min_insync in {uri} ({min_insync}) cannot exceed replication ({replication})")
        fsync_text = query.get("fsync", "1" if replication == 1 else "0")
        if fsync_text not in ("0", "1"):
            raise ValueError(f"fsync in {uri} must be 0 or 1, got {fsync_text!r}")
        return cls(uri, ",".join(hosts), prefix, replication, min_insync, fsync_text == "1")

    def topic(self, log_name: str, kind: str) -> str:
        name = "".join(c if c in TOPIC_CHARS else "_" for c in log_name)
        return f"{self.prefix}{name}.{kind}"[:249]


def _pack_record(expires: float, record: bytes) -> bytes:
    return struct.pack(">d", expires) + record


class _Clients:
    """The Kafka clients of one process (librdkafka's threads do not survive a fork)."""

    def __init__(self, common: dict, healthy: bool = True):
        from confluent_kafka import Consumer, Producer

        self.healthy = healthy
        self.producer = Producer({
            **common, "enable.idempotence": True, "acks": "all", "linger.ms": 5,
            "batch.num.messages": 1_000_000, "batch.size": MAX_BATCH_BYTES,
            "message.max.bytes": MAX_BATCH_BYTES + 1024 * 1024, "message.timeout.ms": SEND_TIMEOUT_MS,
            "error_cb": self._error,
        })
        self.consumer = Consumer({
            **common, "group.id": "seldon-river-reader", "enable.auto.commit": False,
            "enable.partition.eof": True, "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10,
            "fetch.max.bytes": MAX_BATCH_BYTES * 2, "max.partition.fetch.bytes": MAX_BATCH_BYTES * 2,
            "receive.message.max.bytes": MAX_BATCH_BYTES * 2 + 1024 * 1024, "error_cb": self._error,
        })
        self.lock = threading.Lock()  # one produce-and-flush, or one scan, at a time

    def _error(self, err) -> None:
        self.healthy = False

    def close(self) -> None:
        self.consumer.close()
        self.producer.flush(1)


class KafkaLog(EventLog):
    """Learning log in Apache Kafka.

    Parameters
    ----------
    uri
        ``kafka://host:port[,host:port]/[prefix]``, with ``?replication=3`` (default 1) for topics
        made on three brokers, ``min_insync`` (default 2 with replication, else 1) and ``fsync``.
    name
        Log name; topics are ``<prefix><name>.events`` (and ``.checkpoints``, ``.predictions``).
    ttl
        Seconds a prediction record is kept.
    capacity
        Most prediction records each process keeps (the newest).
    keep_checkpoints
        How many of the newest checkpoints are kept.

    Examples
    --------
    >>> KafkaLog("kafka://127.0.0.1:1/", "demo")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    model_wrappers.log.base.LogUnavailable: cannot open the learning log at kafka://127.0.0.1:1/: ...

    """

    def __init__(self, uri: str, name: str, ttl: float = 86400.0, capacity: int = 100_000,
                 keep_checkpoints: int = 3):
        self.address = KafkaAddress.parse(uri)
        self.uri = uri
        self.name = name
        self.ttl = ttl
        self.capacity = capacity
        self.keep_checkpoints = max(1, int(keep_checkpoints))
        self._events = self.address.topic(name, "events")
        self._checkpoints = self.address.topic(name, "checkpoints")
        self._records = self.address.topic(name, "predictions")
        self._common = {"bootstrap.servers": self.address.bootstrap, "logger": client_logger,
                        "socket.connection.setup.timeout.ms": 3000, "reconnect.backoff.max.ms": 1000}
        self._clients: _Clients | None = None
        self._clients_pid: int | None = None
        # Clients made to replace ones that failed start out unhealthy: their first append asks
        # for the topic, so a log still unreachable refuses it at once rather than after timeouts.
        self._replacing_failed = False
        self._clients_lock = threading.Lock()
        self._floor = 0  # an offset at or below any this process's next append can get
        self._table: collections.OrderedDict[str, tuple[float, bytes]] = collections.OrderedDict()
        self._table_lock = threading.Lock()
        self._follower_pid: int | None = None
        self._caught_up = threading.Event()
        self._writer = RecordWriter(self._write_records, self._read_record, ttl)
        self._ensure_topics()

    # -- plumbing ---------------------------------------------------------------------------
    def _fail(self, action: str, exc: object) -> LogUnavailable:
        return LogUnavailable(f"cannot {action} the learning log at {self.uri}: {exc}")

    def _admin(self):
        from confluent_kafka.admin import AdminClient

        return AdminClient(dict(self._common))

    def _ensure_topics(self) -> None:
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import NewTopic

        a = self.address
        durable = {"min.insync.replicas": str(a.min_insync), "unclean.leader.election.enable": "false",
                   "max.message.bytes": str(MAX_BATCH_BYTES + 1024 * 1024)}
        if a.fsync:
            durable["flush.messages"] = "1"
        wanted = {
            self._events: {**durable, "cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"},
            # Small segments so that superseded checkpoints are compacted away soon.
            self._checkpoints: {**durable, "cleanup.policy": "compact", "segment.bytes": str(MAX_BATCH_BYTES * 2),
                                "segment.ms": "60000", "min.cleanable.dirty.ratio": "0.1",
                                "delete.retention.ms": "60000"},
            self._records: {"cleanup.policy": "compact,delete", "retention.ms": str(max(1000, int(self.ttl * 1000))),
                            "max.message.bytes": str(MAX_BATCH_BYTES), "segment.ms": "600000"},
        }
        try:
            admin = self._admin()
            existing = admin.list_topics(timeout=CALL_TIMEOUT).topics
            missing = [NewTopic(t, 1, a.replication, config=c) for t, c in wanted.items() if t not in existing]
            if not missing:
                return
            for future in admin.create_topics(missing, operation_timeout=CALL_TIMEOUT).values():
                try:
                    future.result(timeout=CALL_TIMEOUT * 2)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # another process made it
                        raise
            # A new topic's partition has a leader a moment after it is made: wait for it, so the
            # first read or append does not find an unknown partition.
            deadline = time.monotonic() + CALL_TIMEOUT * 2
            while True:
                topics = admin.list_topics(timeout=CALL_TIMEOUT).topics
                if all(t in topics and topics[t].partitions and topics[t].partitions[0].leader >= 0
                       for t in wanted):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"topics {sorted(wanted)} have no leader yet")
                time.sleep(0.1)
        except Exception as exc:  # noqa: BLE001 - any client error: the log cannot be opened
            raise LogUnavailable(f"cannot open the learning log at {self.uri}: {exc}") from None

    def _mine(self) -> _Clients:
        with self._clients_lock:
            if self._clients is None or self._clients_pid != os.getpid():
                self._clients = _Clients(self._common, healthy=not self._replacing_failed)
                self._clients_pid = os.getpid()
                self._replacing_failed = False
            return self._clients

    def _drop_clients(self, failed: bool = True) -> None:
        """Close this process's producer: nothing it still holds is retried after this."""
        with self._clients_lock:
            clients, self._clients = self._clients, None
            self._replacing_failed = failed
        if clients is not None:
            try:
                clients.producer.purge()
                clients.close()
            except Exception:  # noqa: BLE001 - closing a failed client may fail too
                pass

    def _watermarks(self, clients: _Clients, topic: str) -> tuple[int, int]:
        from confluent_kafka import TopicPartition

        from confluent_kafka import KafkaException

        clients.consumer.poll(0)  # serves error callbacks (it holds no partition here)
        # With trouble seen, a short wait: a predict then serves the last state soon.
        wait = CALL_TIMEOUT if clients.healthy else UNHEALTHY_WAIT
        # Just after a topic is made, or its leader moves, the metadata lags for a moment.
        deadline = time.monotonic() + CALL_TIMEOUT
        while True:
            try:
                found = clients.consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=wait, cached=False)
                clients.healthy = True
                return found
            except KafkaException as exc:
                if exc.args[0].code() not in MOVING or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _scan(self, clients: _Clients, topic: str, start: int, end: int, limit: int | None = None) -> list:
        """Messages of ``topic`` with ``start <= offset < end``, oldest first (at most ``limit``)."""
        from confluent_kafka import KafkaError, TopicPartition

        out: list = []
        if start >= end:
            return out
        clients.consumer.assign([TopicPartition(topic, 0, start)])
        try:
            deadline = time.monotonic() + CALL_TIMEOUT * 2
            offset = start
            while offset < end and (limit is None or len(out) < limit):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading {topic} stalled at offset {offset} of {end}")
                want = (end - offset) if limit is None else min(limit - len(out), end - offset)
                for message in clients.consumer.consume(num_messages=max(1, min(1000, want)), timeout=0.5):
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            return out  # the end (a compacted topic has gaps in its offsets)
                        raise RuntimeError(error.str())
                    if message.offset() < offset:
                        continue
                    offset = message.offset() + 1
                    if message.offset() < end and (limit is None or len(out) < limit):
                        out.append(message)
            return out
        finally:
            clients.consumer.unassign()

    # -- events -----------------------------------------------------------------------------
    def append(self, payload: bytes) -> int:
        return self.append_many([payload])[0]

    def append_many(self, payloads: list[bytes]) -> list[int]:
        """Append ``payloads`` as one record batch, or raise: :class:`LogUnavailable` when none was
        logged (nor ever will be), :class:`LogOutcomeUnknown` when Kafka could not say."""
        if sum(len(p) for p in payloads) > MAX_BATCH_BYTES:
            raise self._fail("append to", f"{len(payloads)} events of more than {MAX_BATCH_BYTES} bytes together")
        clients = self._mine()
        attempt = uuid.uuid4().bytes
        delivered: list = [None] * len(payloads)
        errors: list = []
        with clients.lock:
            try:
                clients.producer.poll(0)
                if self._floor == 0:
                    self._floor = self._watermarks(clients, self._events)[1]
                if not clients.healthy:
                    # Trouble was seen: ask for the topic first, so that a log known to be
                    # unreachable refuses at once, with nothing sent.
                    clients.producer.list_topics(self._events, timeout=CALL_TIMEOUT)
                    clients.healthy = True
                for i, payload in enumerate(payloads):
                    def done(err, message, i=i):
                        if err is not None:
                            errors.append(err)
                        else:
                            delivered[i] = message.offset()
                    clients.producer.produce(self._events, payload, partition=0, on_delivery=done,
                                             headers=[(ATTEMPT_HEADER, attempt + struct.pack(">I", i))])
            except Exception as exc:  # noqa: BLE001 - nothing reached the broker: refused
                clients.producer.purge(in_flight=False)
                clients.producer.poll(0)
                self._drop_clients()
                raise self._fail("append to", exc) from None
            remaining = clients.producer.flush(SEND_TIMEOUT_MS / 1000 + 5)
        if remaining == 0 and not errors and None not in delivered:
            if delivered != list(range(delivered[0], delivered[0] + len(payloads))):
                # Another writer's records between ours: cannot happen within one record batch.
                raise LogOutcomeUnknown(f"the append to {self.uri} was split at offsets {delivered}")
            self._floor = max(self._floor, delivered[-1] + 1)
            return [offset + 1 for offset in delivered]
        return self._resolve(attempt, len(payloads), errors[0] if errors else "no delivery report")

    def _resolve(self, attempt: bytes, count: int, lost: object) -> list[int]:
        """The positions of an append whose delivery failed: found in the tail, or refused / unknown.

        The producer is closed first, so nothing of the attempt is sent again. A request the
        broker had already received may still be written a moment later, so "not found" counts
        only when two searches :data:`SETTLE` apart, both answered, agree.
        """
        self._drop_clients()
        deadline = time.monotonic() + RESOLVE_FOR
        pause = 0.2
        searches: list[dict[int, int]] = []
        while True:
            time.sleep(SETTLE)
            try:
                searches.append(self._search(attempt))
            except Exception as exc:  # noqa: BLE001 - still unreachable
                self._drop_clients()
                searches.clear()
                if time.monotonic() + pause > deadline:
                    raise LogOutcomeUnknown(
                        f"the learning log at {self.uri} took an append and did not confirm it ({lost}); for "
                        f"{RESOLVE_FOR:g} s it could not be asked whether the append was logged ({exc})"
                    ) from None
                time.sleep(pause)
                pause = min(1.0, pause * 2)
                continue
            found = searches[-1]
            if len(found) == count:
                offsets = [found[i] for i in range(count)]
                self._floor = max(self._floor, offsets[-1] + 1)
                return [offset + 1 for offset in offsets]
            if found or self.address.replication > 1:
                raise LogOutcomeUnknown(
                    f"the learning log at {self.uri} did not confirm an append ({lost}) and holds "
                    f"{len(found)} of its {count} events; with replication the rest may still appear")
            if len(searches) >= 2:
                raise self._fail("append to", lost)

    def _search(self, attempt: bytes) -> dict[int, int]:
        """Offsets of the events of ``attempt`` in the tail of the events topic, by index."""
        clients = self._mine()
        found: dict[int, int] = {}
        with clients.lock:
            _, high = self._watermarks(clients, self._events)
            for message in self._scan(clients, self._events, self._floor, high):
                tag = dict(message.headers() or []).get(ATTEMPT_HEADER, b"")
                if tag[:16] == attempt:
                    found[struct.unpack(">I", tag[16:])[0]] = message.offset()
        return found

    def read(self, after: int, limit: int = 1000) -> list[tuple[int, bytes]]:
        try:
            clients = self._mine()
            with clients.lock:
                low, high = self._watermarks(clients, self._events)
                start = max(after, low)
                messages = self._scan(clients, self._events, start, high, limit)
        except Exception as exc:  # noqa: BLE001 - any client error
            raise self._fail("read", exc) from None
        return [(m.offset() + 1, m.value()) for m in messages]

    def head(self) -> int:
        try:
            clients = self._mine()
            with clients.lock:
                return self._watermarks(clients, self._events)[1]
        except Exception as exc:  # noqa: BLE001
            raise self._fail("read", exc) from None

    def compact(self, upto: int) -> int:
        from confluent_kafka import TopicPartition

        try:
            clients = self._mine()
            with clients.lock:
                low, high = self._watermarks(clients, self._events)
            target = min(upto, high)
            if target <= low:
                return 0
            admin = self._admin()  # held until the futures resolve: they die with it
            futures = admin.delete_records([TopicPartition(self._events, 0, target)],
                                                   operation_timeout=CALL_TIMEOUT)
            for future in futures.values():
                future.result(timeout=CALL_TIMEOUT * 2)
            return target - low
        except Exception as exc:  # noqa: BLE001
            raise self._fail("compact", repr(exc)) from None

    # -- checkpoints ------------------------------------------------------------------------
    def _kept(self) -> dict[int, bytes]:
        clients = self._mine()
        with clients.lock:
            low, high = self._watermarks(clients, self._checkpoints)
            kept: dict[int, bytes] = {}
            for message in self._scan(clients, self._checkpoints, low, high):
                position = int(message.key())
                if message.value() is None:
                    kept.pop(position, None)
                else:
                    kept[position] = message.value()
        newest = sorted(kept, reverse=True)[: self.keep_checkpoints]
        return {p: kept[p] for p in newest}

    def save_checkpoint(self, position: int, blob: bytes) -> bool:
        try:
            kept = self._kept()
            if kept and position <= max(kept):
                return False
            clients = self._mine()
            dropped = sorted(kept, reverse=True)[self.keep_checkpoints - 1:]
            errors: list = []
            report = lambda err, _message: err is not None and errors.append(err)  # noqa: E731
            with clients.lock:
                clients.producer.produce(self._checkpoints, blob, key=str(position).encode(), partition=0,
                                         on_delivery=report)
                for old in dropped:  # tombstones: compaction drops them, readers skip them now
                    clients.producer.produce(self._checkpoints, None, key=str(old).encode(), partition=0,
                                             on_delivery=report)
                remaining = clients.producer.flush(SEND_TIMEOUT_MS / 1000 + 5)
            if remaining or errors:
                raise RuntimeError(errors[0] if errors else "not delivered in time")
            return True
        except LogUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._fail("write a checkpoint to", exc) from None

    def load_checkpoint(self, position: int | None = None) -> Checkpoint | None:
        try:
            kept = self._kept()
        except Exception as exc:  # noqa: BLE001
            raise self._fail("read a checkpoint from", exc) from None
        if not kept:
            return None
        chosen = max(kept) if position is None else position
        return Checkpoint(chosen, bytes(kept[chosen])) if chosen in kept else None

    def list_checkpoints(self) -> list[int]:
        try:
            return sorted(self._kept(), reverse=True)
        except Exception as exc:  # noqa: BLE001
            raise self._fail("read a checkpoint from", exc) from None

    # -- prediction records -----------------------------------------------------------------
    def remember(self, key: str, record: bytes) -> None:
        self._writer.remember(key, record)
        self._follow()

    def recall(self, key: str) -> bytes | None:
        self._follow()
        return self._writer.recall(key)

    def _write_records(self, batch: list[tuple[str, float, bytes]]) -> None:
        clients = self._mine()
        errors: list = []
        report = lambda err, _message: err is not None and errors.append(err)  # noqa: E731
        try:
            for key, expires, record in batch:
                clients.producer.produce(self._records, _pack_record(expires, record), key=key.encode(),
                                         partition=0, on_delivery=report)
            remaining = clients.producer.flush(SEND_TIMEOUT_MS / 1000 + 5)
        except Exception as exc:  # noqa: BLE001
            raise self._fail("write prediction records to", exc) from None
        if remaining or errors:
            raise self._fail("write prediction records to", errors[0] if errors else "not delivered in time")

    def _keep_record(self, key: str, expires: float, record: bytes) -> None:
        with self._table_lock:
            self._table.pop(key, None)
            self._table[key] = (expires, record)
            while len(self._table) > self.capacity:
                self._table.popitem(last=False)

    def _read_record(self, key: str) -> bytes | None:
        # Records written before this process started are in the table once it has caught up.
        self._caught_up.wait(CALL_TIMEOUT)
        with self._table_lock:
            found = self._table.get(key)
        return found[1] if found is not None and found[0] >= time.time() else None

    def _follow(self) -> None:
        """Start this process's follower of the prediction records topic (once per process)."""
        if self._follower_pid == os.getpid():
            return
        with self._table_lock:
            if self._follower_pid == os.getpid():
                return
            self._follower_pid = os.getpid()
            self._caught_up = threading.Event()
            self._table.clear()
        threading.Thread(target=self._run_follower, name="prediction-records-follower", daemon=True).start()

    def _run_follower(self) -> None:
        from confluent_kafka import Consumer, KafkaError, TopicPartition

        consumer = Consumer({**self._common, "group.id": "seldon-river-records", "enable.auto.commit": False,
                             "enable.partition.eof": True, "auto.offset.reset": "earliest",
                             "fetch.wait.max.ms": 5})
        pid = os.getpid()
        consumer.assign([TopicPartition(self._records, 0, 0)])
        while self._follower_pid == pid:
            try:
                for message in consumer.consume(num_messages=1000, timeout=0.2):
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            self._caught_up.set()
                        continue
                    value = message.value()
                    if value is None or len(value) < 8:
                        continue
                    self._keep_record(message.key().decode(), struct.unpack(">d", value[:8])[0], value[8:])
            except Exception:  # noqa: BLE001 - keep following; a recall meanwhile may miss a record
                logger.exception("following the prediction records of %s failed; retrying", self.name)
                time.sleep(1.0)
        consumer.close()

    def close(self) -> None:
        self._writer.flush()
        self._follower_pid = None
        self._drop_clients(failed=False)
