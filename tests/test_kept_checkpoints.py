"""The newest N checkpoints are kept, and every event since the oldest of them.

So a state at any position from the oldest kept checkpoint on can be rebuilt (what
``seldon-river pull`` and a rollback need), on SQLite, on a real redis-server and on a real Kafka broker, with and
without authenticated state.
"""

from __future__ import annotations

import json

import pytest

from model_wrappers.config import StateSettings
from model_wrappers.log import open_log
from model_wrappers.log.replica import Replica
from model_wrappers.log.sqlite import SQLiteLog


class Sum:
    """A state that is the running sum of its events and the positions it applied."""

    def __init__(self):
        self.total, self.seen = 0, []

    def apply(self, event, position):
        self.total += event["add"]
        self.seen.append(position)

    def snapshot(self):
        return json.dumps([self.total, self.seen]).encode()

    @staticmethod
    def restore(blob):
        state = Sum()
        state.total, state.seen = json.loads(blob)
        return state


@pytest.fixture(params=["sqlite", "redis", "kafka"])
def uri(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    if request.param == "kafka":
        return request.getfixturevalue("kafka_uri")
    return request.getfixturevalue("redis_server").url


@pytest.fixture(params=[False, True], ids=["plain", "authenticated"])
def keyed(request, monkeypatch):
    if request.param:
        monkeypatch.setenv("SELDON_RIVER_STATE_KEY", "a key of at least sixteen bytes")
    else:
        monkeypatch.delenv("SELDON_RIVER_STATE_KEY", raising=False)
    monkeypatch.delenv("SELDON_RIVER_STATE_KEY_FILE", raising=False)
    return request.param


def test_the_newest_checkpoints_are_kept_with_the_events_since_the_oldest(uri, keyed):
    log = open_log(uri, "kept", keep_checkpoints=3)
    replica = Replica(Sum, Sum.restore, log, checkpoint_every=5)
    replica.start()
    for n in range(1, 31):
        replica.submit({"add": n})
    assert log.list_checkpoints() == [30, 25, 20]
    assert [p for p, _ in log.read(0, 1)] == [20]  # events 1..19 dropped, 20..30 kept
    assert log.head() == 30
    for position in (20, 25, 30):
        blob = log.load_checkpoint(position).blob
        assert Sum.restore(blob).total == sum(range(1, position + 1))
    assert log.load_checkpoint(15) is None
    assert log.load_checkpoint().position == 30
    # Every position from the oldest kept checkpoint on can be rebuilt exactly.
    for position in range(20, 31):
        past = Replica(Sum, Sum.restore, open_log(uri, "kept", keep_checkpoints=3), checkpoint_every=5)
        past.start_at(position)
        assert past.state.total == sum(range(1, position + 1))
        assert past.state.seen[-1] == position


def test_an_older_checkpoint_is_never_written_over_a_newer_one(tmp_path):
    log = SQLiteLog(tmp_path / "state.db", "order", keep_checkpoints=2)
    assert log.save_checkpoint(10, b"ten")
    assert not log.save_checkpoint(5, b"five")
    assert not log.save_checkpoint(10, b"again")
    assert log.save_checkpoint(12, b"twelve")
    assert log.save_checkpoint(14, b"fourteen")
    assert log.list_checkpoints() == [14, 12]
    assert log.load_checkpoint(10) is None and log.load_checkpoint(12).blob == b"twelve"


def test_a_log_written_with_one_checkpoint_is_read_and_then_moved_on(tmp_path):
    path = tmp_path / "state.db"
    log = SQLiteLog(path, "old", keep_checkpoints=3)
    # What a log kept before several checkpoints were: one row in the checkpoints table.
    log._db.execute("INSERT INTO checkpoints (name, position, blob) VALUES ('old', 7, ?)", (b"seven",))
    assert log.list_checkpoints() == [7]
    assert log.load_checkpoint().blob == b"seven" and log.load_checkpoint(7).blob == b"seven"
    assert not log.save_checkpoint(6, b"six")
    assert log.save_checkpoint(9, b"nine")
    assert log.list_checkpoints() == [9]


def test_how_many_are_kept_is_configured_in_one_place(monkeypatch):
    monkeypatch.setenv("SELDON_RIVER_KEEP_CHECKPOINTS", "5")
    assert StateSettings.resolve("c", "0" * 12, state_uri="sqlite:////tmp/x.db").keep_checkpoints == 5
    monkeypatch.setenv("SELDON_RIVER_KEEP_CHECKPOINTS", "0")
    with pytest.raises(ValueError, match="SELDON_RIVER_KEEP_CHECKPOINTS"):
        StateSettings.resolve("c", "0" * 12, state_uri="sqlite:////tmp/x.db")
