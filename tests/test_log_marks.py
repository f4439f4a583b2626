"""A read skips its query of the log while the log's mark has not moved, and is never staler for it.

The SQLite log's mark is a token in a file of its own (``<file>.mark``) that every commit by any
connection moves. These tests count the queries a replica makes and check, across connections,
processes, checkpoints and compaction, that every read still holds every event committed before
it began, and that a writer which never moves the mark is still seen.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

import pytest

from model_wrappers.log import replica as replica_module
from model_wrappers.log.authenticated import AuthenticatedLog
from model_wrappers.log.replica import Replica
from model_wrappers.log.sqlite import SQLiteLog

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def mark_trusted_for_the_whole_test(monkeypatch):
    # A slow machine must not make a read query because the mark's trust ran out meanwhile.
    monkeypatch.setattr(replica_module, "MARK_TRUSTED_FOR", 3600.0)


class Sum:
    def __init__(self):
        self.total = 0

    def apply(self, event, position):
        self.total += event["add"]

    def snapshot(self):
        return json.dumps(self.total).encode()

    @staticmethod
    def restore(blob):
        state = Sum()
        state.total = json.loads(blob)
        return state


def replica(path, checkpoint_every=1000, log=None) -> Replica:
    made = Replica(Sum, Sum.restore, log or SQLiteLog(path, "sum"), checkpoint_every=checkpoint_every)
    made.start()
    return made


def counting_queries(made: Replica) -> list:
    """Count the replica's queries of its log's events."""
    calls: list = []
    read = made.log.read

    def counted(after, limit=1000):
        calls.append(after)
        return read(after, limit)

    made.log.read = counted
    return calls


def total(made: Replica) -> int:
    return made.read(lambda state: state.total)


def test_a_read_with_nothing_new_does_not_query_the_log(tmp_path):
    writer, reader = replica(tmp_path / "s.db"), replica(tmp_path / "s.db")
    writer.submit({"add": 1})
    queries = counting_queries(reader)
    assert total(reader) == 1
    made = len(queries)
    assert made >= 1
    for _ in range(5):
        assert total(reader) == 1
    assert len(queries) == made

    writer.submit({"add": 2})
    assert total(reader) == 3
    assert len(queries) > made


def test_the_mark_moves_with_every_commit_of_any_connection_and_not_with_reads(tmp_path):
    one, other = SQLiteLog(tmp_path / "s.db", "sum"), SQLiteLog(tmp_path / "s.db", "other")
    seen = [one.mark()]
    assert seen[0] is not None

    def moved_by(action) -> bool:
        action()
        seen.append(one.mark())
        return seen[-1] != seen[-2]

    assert moved_by(lambda: other.append(b'{"add":1}'))
    assert moved_by(lambda: one.append(b'{"add":1}'))
    assert not moved_by(lambda: one.read(0))
    assert not moved_by(lambda: other.head())
    assert moved_by(lambda: other.save_checkpoint(1, b"1"))
    assert moved_by(lambda: other.compact(1))
    assert not moved_by(lambda: one.remember("a request", b"its record"))  # records live in another file
    one.close()
    assert one.mark() is None


def test_an_authenticated_log_gives_its_inner_mark(tmp_path):
    inner = SQLiteLog(tmp_path / "s.db", "sum")
    log = AuthenticatedLog(inner, b"a key of at least sixteen bytes")
    assert log.mark() == inner.mark() is not None
    reader = replica(tmp_path / "s.db", log=log)
    queries = counting_queries(reader)
    total(reader), total(reader)
    assert queries == []  # it read to the end when it started
    SQLiteLog(tmp_path / "s.db", "sum").append(b'{"add":4}')
    assert total(reader) == 4
    assert queries


def test_without_a_mark_every_read_queries(tmp_path):
    log = SQLiteLog(tmp_path / "s.db", "sum")
    log._mark.close()  # as a backend that cannot tell whether the log moved
    reader = replica(tmp_path / "s.db", log=log)
    queries = counting_queries(reader)
    for _ in range(3):
        total(reader)
    assert len(queries) == 3


def test_events_appended_by_another_process_are_read(tmp_path):
    reader = replica(tmp_path / "s.db")
    assert total(reader) == 0
    script = (
        "import sys; from model_wrappers.log.sqlite import SQLiteLog\n"
        "log = SQLiteLog(sys.argv[1], 'sum')\n"
        "for n in range(1, 6): log.append(b'{\"add\":%d}' % n)\n"
    )
    for round_ in range(1, 4):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / "s.db")], cwd=ROOT, check=True)
        assert total(reader) == 15 * round_


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from(["submit", "read"]), st.integers(0, 2), st.integers(1, 9)),
                      min_size=1, max_size=40))
def test_every_read_holds_every_event_committed_before_it(tmp_path_factory, steps):
    path = tmp_path_factory.mktemp("marks") / "s.db"
    # Three replicas on their own connections; a checkpoint (and compaction) every 3 positions.
    replicas = [replica(path, checkpoint_every=3) for _ in range(3)]
    committed = 0
    for action, which, amount in steps:
        if action == "submit":
            replicas[which].submit({"add": amount})
            committed += amount
        else:
            assert total(replicas[which]) == committed
    for made in replicas:
        assert total(made) == committed
        made.log.close()


def test_a_forked_child_reads_the_same_mark(tmp_path):
    import os
    import warnings

    log = SQLiteLog(tmp_path / "s.db", "sum")
    before = log.mark()
    with warnings.catch_warnings():
        # Python 3.12+ warns of fork() in a threaded process; the child only reads memory and exits.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        os._exit(0 if log.mark() == before is not None else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_no_interleaving_of_writers_sets_the_mark_back_to_a_token_a_reader_held(tmp_path):
    """Two processes move the mark at once while a third reads it: once the reader has seen the
    mark change, it never sees an earlier token again (that would make it skip a commit)."""
    import os
    import warnings

    from model_wrappers.log.change_mark import ChangeMark

    path = str(tmp_path / "s.db.mark")
    ChangeMark.open(path).close()
    children = []
    for _ in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the child only moves the mark
            pid = os.fork()
        if pid == 0:
            mark = ChangeMark.open(path)
            for _ in range(20000):
                mark.move()
            os._exit(0)
        children.append(pid)
    reader = ChangeMark.open(path)
    seen, last = set(), reader.read()
    running, codes = set(children), []
    while running:
        token = reader.read()
        if token != last:
            assert token not in seen, "the mark went back to a token a reader had held"
            seen.add(last)
            last = token
        for pid in list(running):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                running.discard(pid)
                codes.append(os.waitstatus_to_exitcode(status))
    assert codes == [0, 0]
    assert len(seen) > 10  # the reader did see the mark move while both wrote


def test_a_writer_that_never_moves_the_mark_is_seen_once_the_mark_is_no_longer_trusted(tmp_path, monkeypatch):
    reader = replica(tmp_path / "s.db")
    assert total(reader) == 0
    silent = SQLiteLog(tmp_path / "s.db", "sum")
    silent._mark.close()  # as a writer of an older version, or one that died before moving it
    silent.append(b'{"add":7}')
    assert total(reader) == 0  # the mark has not moved, and is still trusted
    monkeypatch.setattr(replica_module, "MARK_TRUSTED_FOR", 0.0)
    assert total(reader) == 7


def test_a_mark_that_cannot_be_made_leaves_every_read_querying(tmp_path):
    (tmp_path / "s.db.mark").mkdir()  # not a file: it cannot be mapped
    log = SQLiteLog(tmp_path / "s.db", "sum")
    assert log.mark() is None
    reader = replica(tmp_path / "s.db", log=log)
    queries = counting_queries(reader)
    SQLiteLog(tmp_path / "s.db", "sum").append(b'{"add":2}')
    assert total(reader) == 2
    assert total(reader) == 2
    assert len(queries) >= 2


def test_the_mark_is_a_file_of_its_own_that_only_grows(tmp_path):
    one = SQLiteLog(tmp_path / "s.db", "sum")
    mark_file = tmp_path / "s.db.mark"
    assert mark_file.stat().st_size == 8
    with open(mark_file, "ab") as grown:  # someone made it larger: it is used as it is
        grown.write(b"\x00" * 8)
    other = SQLiteLog(tmp_path / "s.db", "sum")
    assert mark_file.stat().st_size == 16
    before = other.mark()
    one.append(b'{"add":1}')
    assert other.mark() != before
