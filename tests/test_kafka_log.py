"""The Kafka learning log on real brokers: its semantics, an append through a frozen broker, and
a three-broker cluster (replication factor 3, ``min.insync.replicas=2``) losing a broker to
``kill -9`` mid-stream.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import threading
import time

import pytest
import requests

from model_wrappers.log import LogOutcomeUnknown, LogUnavailable, open_log
from model_wrappers.log.kafka import KafkaAddress, KafkaLog
from model_wrappers.log.replica import decode
from support import model_service, start_kafka
from test_shared_state import STREAM, feedback_body, flat, in_process, log_of, probe_grpc, probe_rest


def test_positions_checkpoints_and_compaction(kafka_uri):
    log = open_log(kafka_uri, "semantics", keep_checkpoints=2)
    other = open_log(kafka_uri, "semantics", keep_checkpoints=2)
    try:
        assert log.head() == 0 and log.read(0) == []
        assert log.append_many([b"a", b"b", b"c"]) == [1, 2, 3]  # positions start at 1
        assert other.append(b"d") == 4  # another writer continues the same sequence
        assert log.read(1, 2) == [(2, b"b"), (3, b"c")]
        assert other.read(0) == [(1, b"a"), (2, b"b"), (3, b"c"), (4, b"d")]
        assert other.head() == 4

        assert log.save_checkpoint(2, b"at 2") and log.save_checkpoint(3, b"at 3")
        assert not other.save_checkpoint(3, b"older or equal: refused")
        assert other.save_checkpoint(4, b"at 4")
        assert log.list_checkpoints() == [4, 3]  # the newest two are kept
        assert log.load_checkpoint() == (4, b"at 4") and log.load_checkpoint(3) == (3, b"at 3")
        assert log.load_checkpoint(2) is None

        assert log.compact(2) == 2
        assert other.read(0) == [(3, b"c"), (4, b"d")]
        assert other.head() == 4 and log.compact(1) == 0
    finally:
        log.close()
        other.close()


def test_prediction_records_reach_every_process_and_expire(kafka_uri):
    writer = open_log(kafka_uri, "records", ttl=2.0, capacity=2)
    try:
        writer.remember("puid-1", b"[1]")
        writer._writer.flush()
        late = open_log(kafka_uri, "records", ttl=2.0, capacity=2)  # opened after the write
        try:
            assert late.recall("puid-1") == b"[1]"
            assert late.recall("unknown") is None
            for key in ("puid-2", "puid-3"):
                writer.remember(key, key.encode())
            writer._writer.flush()
            assert late.recall("puid-3") == b"puid-3"
            assert late.recall("puid-1") is None  # capacity 2: the oldest went first
            time.sleep(2.2)
            assert late.recall("puid-3") is None  # past its time to live
        finally:
            late.close()
    finally:
        writer.close()


def test_test_clusters_get_ids_the_storage_tool_reads_as_ids():
    from benchmarks.kafka_broker import _cluster_id

    # One id in 64 would start with "-" and be taken for an option (seen in CI).
    ids = [_cluster_id() for _ in range(4000)]
    assert not [i for i in ids if i.startswith("-")]
    assert len(set(ids)) == len(ids) and {len(i) for i in ids} == {22}


def test_bad_kafka_uris_say_what_is_expected():
    for uri, message in [("kafka://", "kafka://host:port"), ("kafka://k", "host:port"),
                         ("kafka://k:1?acks=1", "unknown settings"),
                         ("kafka://k:1?replication=3&min_insync=4", "cannot exceed"),
                         ("kafka://k:1/bad prefix", "topic prefix")]:
        with pytest.raises(ValueError, match=message):
            KafkaAddress.parse(uri)
    with pytest.raises(ValueError, match="kafka://"):
        open_log("kafka-like://k:1", "x")


def test_an_append_through_a_frozen_broker_is_answered_as_it_was_logged(tmp_path):
    """The broker stops answering with an append in flight: the append is either found in the log
    (and answered with its position), refused with nothing logged, or said to be unknown."""
    cluster = start_kafka(tmp_path / "kafka")
    try:
        log = KafkaLog(cluster.uri(), "frozen")
        assert log.append(b"before") == 1
        outcome: dict = {}

        def append() -> None:
            try:
                outcome["positions"] = log.append_many([b"in flight 1", b"in flight 2"])
            except LogOutcomeUnknown as exc:
                outcome["unknown"] = str(exc)
            except LogUnavailable as exc:
                outcome["refused"] = str(exc)

        os.killpg(cluster.procs[1].pid, signal.SIGSTOP)
        try:
            worker = threading.Thread(target=append)
            worker.start()
            time.sleep(12)  # past the producer's delivery timeout: the append is now in doubt
        finally:
            os.killpg(cluster.procs[1].pid, signal.SIGCONT)
        worker.join(timeout=60)
        assert not worker.is_alive()
        time.sleep(1)
        logged = [payload for _, payload in KafkaLog(cluster.uri(), "frozen").read(0)]
        if "positions" in outcome:
            assert outcome["positions"] == [2, 3]
            assert logged == [b"before", b"in flight 1", b"in flight 2"]
        elif "refused" in outcome:
            assert logged == [b"before"], "a refused append must never be in the log"
        else:
            assert "unknown" in outcome
            assert logged in ([b"before"], [b"before", b"in flight 1", b"in flight 2"])  # all or none
        log.close()
    finally:
        cluster.stop()


def test_after_a_failed_append_an_unreachable_log_refuses_the_next_at_once(tmp_path):
    """Clients replacing failed ones ask for the topic before they send: with the broker gone, the
    next append is refused (nothing logged), not left in doubt after the producer's timeouts."""
    cluster = start_kafka(tmp_path / "kafka")
    try:
        log = KafkaLog(cluster.uri(), "after-failure")
        assert log.append(b"before") == 1
        log._drop_clients()  # what a failed append does, its producer being closed
        cluster.kill9(1)
        with pytest.raises(LogUnavailable, match="append to") as refused:
            log.append(b"refused")
        assert not isinstance(refused.value, LogOutcomeUnknown), refused.value
        cluster.start_node(1)  # same port, same data
        assert log.append(b"after") == 2
        assert [payload for _, payload in log.read(0)] == [b"before", b"after"]
        log.close()
    finally:
        cluster.stop()


def events_leader(cluster, uri: str, name: str) -> int:
    from confluent_kafka.admin import AdminClient

    topic = KafkaAddress.parse(uri).topic(name, "events")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    return admin.list_topics(topic, timeout=10).topics[topic].partitions[0].leader


def test_three_brokers_lose_no_acknowledged_feedback_when_the_leader_is_killed(services, phishing_folder,
                                                                                tmp_path):
    cluster = start_kafka(tmp_path / "kafka", nodes=3)
    try:
        uri = cluster.uri()
        assert "replication=3" in uri
        a = model_service(services, phishing_folder, tmp_path, uri, name="a")
        b = model_service(services, phishing_folder, tmp_path, uri, name="b")
        name = a.status()["replica"]["log_name"]
        acked: list[tuple[dict, object]] = []
        unanswered = []
        reached = threading.Event()

        def stream():
            for i, (x, y) in enumerate(STREAM[:120]):
                try:
                    reply = (a if i % 2 == 0 else b).feedback(feedback_body(x, y))
                except requests.RequestException:
                    unanswered.append(i)
                    continue
                if reply.status_code == 200:
                    acked.append((x, y))
                else:
                    unanswered.append(i)  # refused or unknown: the client would resend it
                if len(acked) == 30:
                    reached.set()

        sender = threading.Thread(target=stream)
        sender.start()
        assert reached.wait(timeout=120)
        leader = events_leader(cluster, uri, name)
        cluster.kill9(leader)  # the leader of the events topic, while the stream goes on
        sender.join(timeout=400)
        assert not sender.is_alive()

        events = [decode(p) for _, p in log_of(phishing_folder, uri).read(0, 100_000)]

        def key(row: dict) -> str:
            return json.dumps({k: float(v) for k, v in row.items()}, sort_keys=True)

        logged_rows = collections.Counter(key(e["rows"][0]) for e in events)
        for x, _ in acked:  # every acknowledged feedback is in the log, once per acknowledgement
            assert logged_rows[key(x)] > 0
            logged_rows[key(x)] -= 1
        assert len(acked) <= len(events) <= len(acked) + len(unanswered)
        assert len(acked) > 30  # the stream went on after the kill

        replay = [(e["rows"][0], e["truth"][0]) for e in events]
        assert flat(probe_rest(a)) == pytest.approx(flat(in_process(replay)), rel=1e-12, abs=1e-15)
        answers = [probe_rest(a), probe_rest(b), probe_grpc(a), probe_grpc(b)]
        assert all(answer == answers[0] for answer in answers)  # bit-identical replicas
        assert a.status()["replica"]["position"] == b.status()["replica"]["position"] == len(events)

        cluster.start_node(leader)  # back in the cluster, and a new replica replays the same log
        c = model_service(services, phishing_folder, tmp_path, uri, name="c")
        assert probe_rest(c) == answers[0]
    finally:
        cluster.stop()
