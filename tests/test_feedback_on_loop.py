"""Feedback on the server's event loop: its work there, its durable wait in the commit's thread.

The project's server runs a class's ``send_feedback_steps`` on its event loop (see
:mod:`model_wrappers.log.steps`). What must hold: the loop keeps answering while a feedback
waits for its transaction, the feedback is acknowledged and learned only once that transaction
is durable, a failed transaction refuses every feedback in it with nothing learned, and calls
from the loop and from threads share transactions.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from model_wrappers import RiverModel
from model_wrappers.log.base import LogUnavailable
from model_wrappers.log.group_commit import GroupCommit
from model_wrappers.request_context import Call
from model_wrappers.server.component import Component, ComponentError
from model_wrappers.server.metrics import CustomMetrics
from support import PHISHING_FEATURES, BlockingLog, phishing_stream, rows_payload


async def _until(condition, what: str, seconds: float = 20.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_loop_and_thread_callers_share_one_transaction(tmp_path):
    log = BlockingLog(tmp_path / "state.db", "group")
    commits = GroupCommit(log)

    async def scenario():
        loop = asyncio.get_running_loop()
        first = loop.run_in_executor(None, commits.append, b'{"i":0}')  # a thread caller holds the log
        await _until(log.entered.is_set, "the first transaction")
        on_loop = [asyncio.ensure_future(commits.append_async(f'{{"i":{i}}}'.encode())) for i in range(1, 6)]
        await _until(lambda: len(commits._waiting) == 5, "five callers queued")
        assert not any(f.done() for f in on_loop)  # none answered before its transaction
        log.release.set()
        return await first, await asyncio.gather(*on_loop)

    first, others = asyncio.run(scenario())
    assert first == 1 and sorted(others) == [2, 3, 4, 5, 6]
    assert log.batches == [1, 5]
    assert [p for p, _ in log.read(0)] == list(range(1, 7))


def test_a_failed_transaction_fails_every_loop_caller(tmp_path):
    log = BlockingLog(tmp_path / "state.db", "group", fail=True)
    commits = GroupCommit(log)

    async def scenario():
        calls = [asyncio.ensure_future(commits.append_async(b'{"i":1}'))]
        await _until(log.entered.is_set, "the first transaction")
        calls += [asyncio.ensure_future(commits.append_async(b'{"i":2}')) for _ in range(3)]
        await _until(lambda: len(commits._waiting) == 3, "three callers queued")
        log.release.set()
        return await asyncio.gather(*calls, return_exceptions=True)

    outcomes = asyncio.run(scenario())
    assert [type(o) for o in outcomes] == [LogUnavailable] * 4
    assert log.read(0) == [] and log.head() == 0


def _component(folder, tmp_path, fail: bool = False):
    model = RiverModel(model_uri=str(folder), state_uri=f"sqlite:///{tmp_path}/state.db")
    component = Component(model, "MODEL", CustomMetrics("test", {}))
    component.load()
    held = BlockingLog(tmp_path / "state.db", model.replica.log.name, fail=fail)
    model.replica._commits.log = held  # the same file and log, behind a gate
    return model, component, held


def _feedback(n: int = 1) -> list[dict]:
    return [{"request": rows_payload([x], PHISHING_FEATURES), "truth": {"data": {"ndarray": [[y]]}}}
            for x, y in phishing_stream(n)]


def test_predictions_are_answered_while_a_feedback_waits_to_be_durable(phishing_folder, tmp_path):
    model, component, held = _component(phishing_folder, tmp_path)
    request = rows_payload([next(phishing_stream(1))[0]], PHISHING_FEATURES)
    pool = ThreadPoolExecutor(2)

    async def scenario():
        feedback = asyncio.ensure_future(component.serve("send-feedback", _feedback()[0], Call(), pool))
        await _until(held.entered.is_set, "the feedback's transaction")
        # The loop is free: a prediction is served, from a state that has learned nothing yet.
        reply = await component.serve("predict", dict(request), Call(), pool)
        learned_meanwhile = model.status()["metrics"]["learned"]
        assert not feedback.done()
        held.release.set()
        return reply, learned_meanwhile, await feedback

    reply, learned_meanwhile, ack = asyncio.run(scenario())
    assert reply["data"]["names"] and learned_meanwhile == 0.0
    assert ack["meta"]["tags"]["seldon_river_position"] == 1
    assert model.status()["metrics"]["learned"] == 1.0
    assert [p for p, _ in held.read(0)] == [1]


def test_a_feedback_whose_transaction_fails_is_refused_and_not_learned(phishing_folder, tmp_path):
    model, component, held = _component(phishing_folder, tmp_path, fail=True)
    pool = ThreadPoolExecutor(2)

    async def scenario():
        calls = [asyncio.ensure_future(component.serve("send-feedback", f, Call(), pool)) for f in _feedback(3)]
        await _until(held.entered.is_set, "the first transaction")
        held.release.set()
        return await asyncio.gather(*calls, return_exceptions=True)

    outcomes = asyncio.run(scenario())
    assert all(isinstance(o, ComponentError) and o.status == 503 for o in outcomes), outcomes
    assert "nothing was learned" in outcomes[0].message
    assert model.status()["metrics"]["learned"] == 0.0 and model.replica.position == 0
    assert held.head() == 0


@pytest.mark.parametrize("on_loop", [True, False])
def test_steps_and_the_threaded_hook_learn_alike(phishing_folder, tmp_path, on_loop):
    """The same feedbacks, through the loop or through Seldon's synchronous hook, give the same state."""
    model = RiverModel(model_uri=str(phishing_folder), state_uri=f"sqlite:///{tmp_path}/state.db")
    component = Component(model, "MODEL", CustomMetrics("test", {}))
    component.load()
    pool = ThreadPoolExecutor(4)
    feedbacks = _feedback(40)

    async def through_loop():
        return [await component.serve("send-feedback", f, Call(), pool) for f in feedbacks]

    acks = asyncio.run(through_loop()) if on_loop else [model.send_feedback_raw(f) for f in feedbacks]
    assert [a["meta"]["tags"]["seldon_river_position"] for a in acks] == list(range(1, 41))
    reference = RiverModel(model_uri=str(phishing_folder), state_uri=f"sqlite:///{tmp_path}/reference.db")
    reference.load()
    for f in feedbacks:
        reference.send_feedback_raw(f)
    assert model.status()["metrics"] == reference.status()["metrics"]


def test_a_feedback_cancelled_while_it_waits_is_learned_once_its_transaction_is_durable(phishing_folder, tmp_path):
    """A caller that gave up (a gRPC deadline) does not fork the state: the log has the event, so the
    replica learns it, once; a resend with the same feedback id is acknowledged as already learned."""
    model, component, held = _component(phishing_folder, tmp_path)
    pool = ThreadPoolExecutor(2)
    feedback = _feedback()[0]
    feedback["response"] = {"meta": {"tags": {"seldon_river_feedback_id": "fb-1"}}}

    async def scenario():
        first = asyncio.ensure_future(component.serve("send-feedback", dict(feedback), Call(), pool))
        await _until(held.entered.is_set, "the feedback's transaction")
        first.cancel()
        held.release.set()
        with pytest.raises(asyncio.CancelledError):
            await first
        await _until(lambda: held.head() == 1, "the transaction")
        return await component.serve("send-feedback", dict(feedback), Call(), pool)

    again = asyncio.run(scenario())
    assert again["meta"]["tags"]["seldon_river_already_learned"] is True
    assert again["meta"]["tags"]["seldon_river_position"] == 1
    assert model.status()["metrics"]["learned"] == 1.0 and held.head() == 1


def test_a_label_only_feedback_looks_its_prediction_up_off_the_loop(phishing_folder, tmp_path):
    """The lookup may wait for a store (or for another process to write the record): the loop
    answers meanwhile, and the lookup still knows the call's request id (the Seldon-Puid header)."""
    model, component, held = _component(phishing_folder, tmp_path)
    held.release.set()  # only the lookup is held here
    pool = ThreadPoolExecutor(2)
    x, y = next(phishing_stream(1))
    entered, release = threading.Event(), threading.Event()
    recall = model.replica.log.recall

    def held_recall(puid):
        entered.set()
        release.wait(20)
        return recall(puid)

    model.replica.log.recall = held_recall
    label_only = {"truth": {"data": {"ndarray": [[y]]}}}

    async def scenario():
        await component.serve("predict", rows_payload([x], PHISHING_FEATURES), Call(puid="p-1"), pool)
        known = asyncio.ensure_future(component.serve("send-feedback", dict(label_only), Call(puid="p-1"), pool))
        await _until(entered.is_set, "the record lookup")
        served = await component.serve("predict", rows_payload([x], PHISHING_FEATURES), Call(), pool)
        assert not known.done()
        release.set()
        unknown = component.serve("send-feedback", dict(label_only), Call(puid="never-predicted"), pool)
        return served, await known, await asyncio.gather(unknown, return_exceptions=True)

    served, known, (unknown,) = asyncio.run(scenario())
    assert served["data"]["names"]
    assert known["meta"]["puid"] == "p-1" and known["meta"]["tags"]["seldon_river_position"] == 1
    assert isinstance(unknown, ComponentError) and unknown.status == 404 and "never-predicted" in unknown.message
    assert model.status()["metrics"]["learned"] == 1.0
