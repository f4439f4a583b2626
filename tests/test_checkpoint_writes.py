"""A checkpoint is copied under the replica's lock and written outside it.

Reads and other feedback go on while a checkpoint is stored (for a keyed state, while its
changed keys are written to the key store); what changed meanwhile is neither lost nor learned
twice: a state restored from that checkpoint and the log equals the state that kept serving.
"""

from __future__ import annotations

import threading

import pytest
from river import linear_model, preprocessing

from model_wrappers.learning import keyed as keyed_learning
from model_wrappers.learning.keyed import KeyedState, Templates
from model_wrappers.learning.model import ModelState
from model_wrappers.log.keystore import open_keystore
from model_wrappers.log.replica import Replica
from model_wrappers.log.sqlite import SQLiteLog

ROW = {"x1": 1.0, "x2": 2.0}


def free_elsewhere(lock) -> bool:
    """Whether another thread could take ``lock`` right now."""
    got = []

    def probe():
        taken = lock.acquire(blocking=False)
        got.append(taken)
        if taken:
            lock.release()

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return got[0]


def learn(key: str | None, y: float) -> dict:
    event = {"type": "learn", "rows": [ROW], "truth": [y]}
    return {**event, "keys": [key]} if key else event


# -- a single model: the blob is made under the lock, written outside it ----------------------------
def test_a_model_checkpoint_is_written_outside_the_lock(tmp_path):
    log = SQLiteLog(tmp_path / "state.db", "model")

    def fresh():
        return ModelState(preprocessing.StandardScaler() | linear_model.LinearRegression(), "regressor")

    replica = Replica(fresh, ModelState.restore, log, checkpoint_every=2)
    replica.start()
    seen = []
    save = log.save_checkpoint

    def watched(position, blob):
        seen.append((position, free_elsewhere(replica._lock)))
        return save(position, blob)

    log.save_checkpoint = watched
    for y in (1.0, 2.0, 3.0, 4.0):
        replica.submit(learn(None, y))
    assert seen == [(2, True), (4, True)]
    again = Replica(fresh, ModelState.restore, SQLiteLog(tmp_path / "state.db", "model"))
    again.start()
    assert again.restored_from == 4 and again.replayed == 0
    assert again.read(lambda s: s.predict([ROW])) == replica.read(lambda s: s.predict([ROW]))


# -- a keyed state: keys pickled a chunk at a time under the lock, stored outside it -----------------
class Watched:
    """A key store that, on its first write of keys, lets a test act while the write is under way."""

    def __init__(self, inner, during):
        self.inner, self.during, self.calls = inner, during, []

    def save(self, items, commit=None):
        items = list(items)
        if items and not self.calls:
            self.calls.append([key for key, *_ in items])
            self.during()
        return self.inner.save(items, commit=commit)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def keyed_replica(tmp_path, store, checkpoint_every=5) -> Replica:
    options = dict(origin=Templates({"linear": linear_model.LinearRegression()}), task="regressor", store=store)
    return Replica(lambda: KeyedState(**options), lambda blob: KeyedState.restore(blob, **options),
                   SQLiteLog(tmp_path / "state.db", "keyed"), checkpoint_every=checkpoint_every)


def test_a_keyed_checkpoint_stores_keys_outside_the_lock_and_loses_nothing_learned_meanwhile(tmp_path, monkeypatch):
    monkeypatch.setattr(keyed_learning, "SNAPSHOT_CHUNK", 2)
    keys = ["p1", "p2", "p3", "p4", "p5"]
    free, learned_meanwhile = [], []
    replica = None

    def during():
        free.append(free_elsewhere(replica._lock))
        if not free[-1]:
            return  # held: another request would wait for the whole write (and here, forever)
        # Another request while the first chunk (p1, p2) is being stored: p1 learns after it was
        # pickled, p5 before its chunk is.
        thread = threading.Thread(target=lambda: learned_meanwhile.append(
            replica.submit({"type": "learn", "keys": ["p1", "p5"], "rows": [ROW, ROW], "truth": [9.0, 9.0]})))
        thread.start()
        thread.join()

    store = Watched(open_keystore(f"sqlite:///{tmp_path}/state.db", "keyed"), during)
    replica = keyed_replica(tmp_path, store)
    replica.start()
    for i, key in enumerate(keys):
        replica.submit({"type": "learn", "keys": [key], "rows": [ROW], "truth": [float(i)]})
    assert store.calls == [["p1", "p2"]]
    assert free == [True] and learned_meanwhile == [6]
    state = replica.state
    assert state.last_checkpoint == {"position": 5, "keys": 5, "bytes": state.last_checkpoint["bytes"]}
    assert state.dirty == {"p1": 6}  # stored as of position 1; p5 was stored as of 6
    stored = store.inner.load(keys)
    assert {k: p for k, (p, _) in stored.items()} == {"p1": 1, "p2": 2, "p3": 3, "p4": 4, "p5": 6}
    assert store.inner.committed() == 5

    again = keyed_replica(tmp_path, open_keystore(f"sqlite:///{tmp_path}/state.db", "keyed"))
    again.start()
    assert again.restored_from == 5 and again.replayed == 1

    def served(s):
        return s.predict(keys, [ROW] * len(keys)), s.figures()["learned"]

    assert again.read(served) == replica.read(served)
    assert again.read(lambda s: s.figures()["learned"]) == 7.0  # five rows, then two: each once


def test_a_checkpoint_due_while_one_is_being_written_is_skipped_and_the_next_covers_it(tmp_path):
    replica = None
    skipped = []

    def during():
        if not free_elsewhere(replica._lock):
            return  # held: the requests below would wait for the whole write (and here, forever)
        # The next checkpoint position comes while this one is being written: it is skipped,
        # not written from a second thread at the same time.
        thread = threading.Thread(target=lambda: [replica.submit(learn("q", 1.0)) for _ in range(2)])
        thread.start()
        thread.join()
        skipped.append(replica.log.list_checkpoints())

    store = Watched(open_keystore(f"sqlite:///{tmp_path}/state.db", "keyed"), during)
    replica = keyed_replica(tmp_path, store, checkpoint_every=2)
    replica.start()
    replica.submit(learn("p", 1.0))
    replica.submit(learn("p", 2.0))  # checkpoint at 2: its write calls during(), which reaches 4
    assert skipped == [[]]  # nothing saved yet while 2 was being written, and 4 was not begun
    assert replica.log.list_checkpoints() == [2]
    replica.submit(learn("p", 3.0))
    replica.submit(learn("p", 4.0))  # 6: written, covering what 4 would have
    assert replica.log.list_checkpoints() == [6, 2]
    again = keyed_replica(tmp_path, open_keystore(f"sqlite:///{tmp_path}/state.db", "keyed"), checkpoint_every=2)
    again.start()
    assert again.restored_from == 6 and again.replayed == 0
    assert again.read(lambda s: s.figures()["learned"]) == replica.read(lambda s: s.figures()["learned"]) == 6.0


@pytest.mark.parametrize("capacity", [0, 2])
def test_snapshot_called_directly_still_stores_every_changed_key(tmp_path, capacity):
    store = open_keystore(f"sqlite:///{tmp_path}/keys.db", "keyed")
    state = KeyedState(Templates({"linear": linear_model.LinearRegression()}), "regressor", store=store,
                       capacity=capacity)
    for position, key in enumerate(["a", "b", "c", "d"], start=1):
        state.apply({"type": "learn", "keys": [key], "rows": [ROW], "truth": [1.0]}, position)
    state.snapshot()
    assert state.dirty == {} and store.committed() == 4
    assert sorted(store.load(["a", "b", "c", "d"])) == ["a", "b", "c", "d"]
