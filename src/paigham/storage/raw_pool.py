"""A pool of raw asyncpg connections for single statements: the hot paths' reads, and the writes that
are one statement each (`Database.fetch`, `Database.write_one`).

asyncpg's own pool does more per checkout than such a statement needs — a task to shield each
release, a timeout context per acquire, a reset hook — about 45 µs of CPU per statement in a
micro-benchmark, on each of the ~10 statements of a sliding-sync window or the 2 of a /sync
(docs/decisions.md). Here a checkout takes a connection from a list and a return puts it back (or
hands it straight to the oldest waiter). What asyncpg's pool also did, this does too: a connection
that closed, or was left inside a transaction, is dropped and its place offered to a waiter; the pool
never holds more than `max_size`. A statement cancelled mid-flight needs nothing here: asyncpg makes
the connection's next statement wait until the server has taken the cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any


class PoolClosed(RuntimeError):
    pass


class RawPool:
    def __init__(self, connect: Callable[[], Awaitable[Any]], max_size: int) -> None:
        self._connect = connect
        self._max = max_size
        self._free: list[Any] = []
        self._size = 0  # connections open, being opened, or checked out
        self._waiters: deque[asyncio.Future[Any]] = deque()
        self._closed = False

    @property
    def size(self) -> int:
        return self._size

    async def acquire(self) -> Any:
        """A connection for the caller alone, until it is given back with `release`."""
        while True:
            if self._closed:
                raise PoolClosed("the database pool is closed")
            while self._free:
                conn = self._free.pop()
                if not conn.is_closed():
                    return conn
                self._size -= 1
            if self._size < self._max:
                self._size += 1
                try:
                    return await self._connect()
                except BaseException:
                    self._size -= 1
                    self._offer_slot()
                    raise
            waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                conn = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    handed = waiter.result()
                    if handed is not None:
                        self.release(handed)
                    else:
                        self._offer_slot()
                raise
            if conn is not None:
                return conn
            # None: a connection was dropped, so there is room to open one: go round again

    def release(self, conn: Any) -> None:
        """Give a connection back: to the oldest waiter, else to the free list; dropped if unusable."""
        if self._closed or conn.is_closed() or conn.is_in_transaction():
            if not conn.is_closed():
                conn.terminate()
            self._size -= 1
            self._offer_slot()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._free.append(conn)

    def _offer_slot(self) -> None:
        """Wake the oldest waiter to open a connection in a dropped one's place."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        """Close the idle connections now and the others as they come back; waiters get PoolClosed."""
        self._closed = True
        free, self._free = self._free, []
        self._size -= len(free)
        for conn in free:
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(PoolClosed("the database pool is closed"))
