"""Calls made in the same turn of the event loop, sent to the database together.

One message into a room wakes every member's long-poll in one turn of the event loop, and each then
makes the same kind of statement with its own values (a probe, a save of its position). Each would be
a round trip of its own: the driver's work on both sides and a statement for PostgreSQL to plan and
run. A call made through a `TurnBatcher` waits for the end of the turn; then every call of the same
kind made meanwhile goes to `run` as one batch (one statement, of an array per parameter), and each
caller gets its own answer (300 sliding-sync long-polls woken by one message: half the time and CPU,
docs/decisions.md). On SQLite a statement does not suspend the event loop, so there is nothing to
gather: the users send SQLite's statements one by one, without a batcher.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)  # what calls must share to go together (a statement's fixed values)
A = TypeVar("A")  # one call's own values
R = TypeVar("R")  # one call's answer

Runner = Callable[[K, list[A]], Awaitable[list[R]]]


class TurnBatcher(Generic[K, A, R]):
    """Batches per turn and key: `run(key, calls)` answers the calls in order (at most `most` each)."""

    def __init__(self, run: Runner[K, A, R], most: int) -> None:
        self._run = run
        self.most = most
        self._queue: dict[K, list[tuple[A, asyncio.Future[R]]]] = {}
        self._running: set[asyncio.Task[None]] = set()  # the batches in flight (a task must be referenced)
        self.batches = 0  # batches sent (the tests count them)

    async def ask(self, key: K, call: A) -> R:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        if not self._queue:  # the first call of this turn: the batch's task starts in the next one
            self._keep(loop.create_task(self._flush()))
        self._queue.setdefault(key, []).append((call, fut))
        return await fut

    async def _flush(self) -> None:
        """Send what was asked in the turn: the first batch in this task (one pass of the event loop
        fewer than a task of its own: under load a pass is every ready task's step), any others in
        tasks of their own, at the same time."""
        queued, self._queue = self._queue, {}
        batches = [
            (key, asked[i : i + self.most]) for key, asked in queued.items() for i in range(0, len(asked), self.most)
        ]
        loop = asyncio.get_running_loop()
        for key, batch in batches[1:]:
            self._keep(loop.create_task(self._one(key, batch)))
        if batches:
            await self._one(*batches[0])

    def _keep(self, task: asyncio.Task[None]) -> None:
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _one(self, key: K, batch: list[tuple[A, asyncio.Future[R]]]) -> None:
        batch = [(a, f) for a, f in batch if not f.done()]  # a caller that went away needs no answer
        if not batch:
            return
        try:
            self.batches += 1
            answers = await self._run(key, [a for a, _ in batch])
        except BaseException as e:  # every caller gets the failure
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(e if isinstance(e, Exception) else RuntimeError("the batch was cancelled"))
            if not isinstance(e, Exception):
                raise
            return
        for (_, fut), answer in zip(batch, answers, strict=True):
            if not fut.done():
                fut.set_result(answer)
