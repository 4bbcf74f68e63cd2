"""The stream's durable watermark on PostgreSQL: early lock release for the stream counter.

Every write that takes stream positions bumps the counter row (`stream_counter` id 1), whose row
lock orders all writers: the next writer gets its positions only when this one has committed, so
commits happen in position order and a reader that sees position N has seen everything up to N.
A durable commit waits for the WAL flush (fdatasync) — with the row still locked, so the counter
admitted at most 1/(flush + round trips) transactions a second across the whole cluster
(docs/scaling.md).

So those transactions commit with `synchronous_commit = off` (set inside the statement that takes
the positions): the row is released as soon as the commit is visible, without waiting for the
flush, and commit order is still position order. Two things keep that safe:
- *acknowledgement*: the writer does not return (answer the client, wake /sync) until a flush
  barrier has committed durably after its commit — the barrier's commit record follows it in the
  WAL, so flushing the barrier flushed it too. One barrier runs at a time per process; writers that
  commit meanwhile share the next one (group commit, done by the application);
- *visibility*: readers take their position from the watermark — the highest of the barrier rows
  (ids 2 to 17, `WATERMARK`); a barrier sets its row to the counter's value it read: positions that
  were visible, hence committed, before the barrier's durable commit, so flushed with it. Nothing a
  reader is given can be lost in a crash, and after one the counter restarts at or above it.
Each process has its own barrier row (one of 16 slots, chosen at random: a shared slot only means
that two processes' barriers queue for it), so barriers of several workers do not wait for each
other's flushes, and any row's value is a valid watermark.

On SQLite there is one writer and its commits are durable when they return: barrier row 2 moves
with the counter in the same statement (Database.next_position).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable

BARRIER_SLOTS = 16  # barrier rows: ids 2 .. 17 of stream_counter (id 1 is the counter)

# The position readers read: every position at or below it is committed durably.
WATERMARK = "(SELECT max(pos) FROM stream_counter WHERE id >= 2)"

# A barrier: an UPDATE of its row ($1) that always writes (so its commit is always flushed), to the
# counter's value if that is higher. `pos` is the row as updated (on PostgreSQL the newest version,
# re-read after waiting for another barrier of the same slot), so a barrier never moves a row back.
# (Written for both engines: migrate() runs it on SQLite too.)
ADVANCE = (
    "UPDATE stream_counter SET pos = CASE WHEN pos > (SELECT pos FROM stream_counter WHERE id = 1) THEN pos "
    "ELSE (SELECT pos FROM stream_counter WHERE id = 1) END WHERE id = $1"
)
# Inside the statement that takes positions: this transaction's commit does not wait for the flush.
NO_FLUSH_WAIT = "SELECT set_config('synchronous_commit', 'off', true)"


def barrier_slot() -> int:
    """A barrier row for this process's writes."""
    return 2 + secrets.randbelow(BARRIER_SLOTS)


class FlushBarrier:
    """`wait()` returns once a durable commit of `ADVANCE` has begun after the call and finished."""

    def __init__(self, advance: Callable[[], Awaitable[None]]) -> None:
        self._advance = advance
        self._running: asyncio.Task[None] | None = None
        self._next: asyncio.Task[None] | None = None

    async def wait(self) -> None:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_task(self._flush(self._running))
        # Shielded: a caller that goes away does not cancel the barrier the others wait for.
        await asyncio.shield(self._next)

    async def _flush(self, before: asyncio.Task[None] | None) -> None:
        if before is not None and not before.done():  # one at a time: after the one running now
            await asyncio.gather(before, return_exceptions=True)
        # From here on, callers need a barrier that starts later than this one.
        self._next, self._running = None, asyncio.current_task()
        await self._advance()
