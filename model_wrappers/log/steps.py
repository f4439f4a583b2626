"""A call that waits on the learning log, written once and run by a thread or by an event loop.

A feedback does some work, waits for its event to be durable, then learns it and answers. The
waiting is the slow part, and a thread blocked on it is what Seldon's wrapper needs, while an
event-loop server gains most by doing the work on its loop and only the wait elsewhere (a
handoff to a thread and back costs more than the work). So such a call is a generator: it
yields each wait as a step (:class:`Durable`, :class:`Blocking`) and is sent back the step's
result, or has its error thrown in. :func:`run` drives it in the calling thread; :func:`run_async`
on an event loop, where durable appends of concurrent calls still share one transaction.

Examples
--------
>>> import tempfile
>>> from model_wrappers.log.group_commit import GroupCommit
>>> from model_wrappers.log.sqlite import SQLiteLog
>>> commits = GroupCommit(SQLiteLog(tempfile.mkdtemp() + "/state.db", "demo"))
>>> def learn(n):
...     position = yield Durable(commits, str(n).encode())
...     return f"learned {n} at {position}"
>>> run(learn(7))
'learned 7 at 1'
>>> import asyncio
>>> asyncio.run(run_async(learn(8), None))
'learned 8 at 2'

"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
from concurrent.futures import Executor
from typing import Any, Callable, Generator

from .group_commit import GroupCommit

Steps = Generator[Any, Any, Any]


@dataclasses.dataclass(frozen=True)
class Durable:
    """Append ``payload`` to the log behind ``commits``; the step's result is its position."""

    commits: GroupCommit
    payload: bytes

    def now(self) -> int:
        return self.commits.append(self.payload)

    async def later(self, executor: Executor | None) -> int:
        return await self.commits.append_async(self.payload)


@dataclasses.dataclass(frozen=True)
class Blocking:
    """Call ``fn()``, which may block (a checkpoint, a store's round trip): off the event loop
    when there is one, in the caller's context (the request it serves)."""

    fn: Callable[[], Any]

    def now(self):
        return self.fn()

    async def later(self, executor: Executor | None):
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(executor, context.run, self.fn)


def run(steps: Steps):
    """Drive ``steps`` to its end in this thread; returns what it returns."""
    sent = _Sent()
    while (step := sent.into(steps)) is not None:
        try:
            sent = _Sent(step.now())
        except Exception as exc:
            sent = _Sent(error=exc)
    return sent.returned


async def run_async(steps: Steps, executor: Executor | None):
    """Drive ``steps`` on the running event loop: its work here, its waits elsewhere."""
    sent = _Sent()
    while (step := sent.into(steps)) is not None:
        try:
            sent = _Sent(await step.later(executor))
        except Exception as exc:
            sent = _Sent(error=exc)
    return sent.returned


class _Sent:
    """A step's outcome, sent into the steps: its result, or its error thrown in."""

    __slots__ = ("value", "error", "returned")

    def __init__(self, value=None, error: Exception | None = None):
        self.value, self.error, self.returned = value, error, None

    def into(self, steps: Steps):
        """The next step, or None once ``steps`` has returned (what it returned is then ``returned``)."""
        try:
            return steps.send(self.value) if self.error is None else steps.throw(self.error)
        except StopIteration as stop:
            self.returned = stop.value
            return None
