"""RawPool against a real PostgreSQL: bounded, fair to waiters, drops what it must not hand out again,
survives cancelled statements and waiters, and closes."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from paigham.storage.database import Database
from paigham.storage.raw_pool import PoolClosed, RawPool

pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


def pool_of(db: Database, size: int) -> tuple[RawPool, list[Any]]:
    opened: list[Any] = []

    async def connect() -> Any:
        conn = await asyncpg.connect("postgresql://" + db.url.split("://", 1)[1])
        opened.append(conn)
        return conn

    return RawPool(connect, size), opened


async def test_connections_are_reused_and_bounded_and_waiters_served_in_order(db: Database) -> None:
    pool, opened = pool_of(db, 2)
    a = await pool.acquire()
    pool.release(a)
    assert await pool.acquire() is a and len(opened) == 1  # reused, not reopened
    b = await pool.acquire()
    assert len(opened) == 2 and pool.size == 2
    order: list[str] = []

    async def wait(name: str) -> Any:
        conn = await pool.acquire()
        order.append(name)
        return conn

    first, second = asyncio.create_task(wait("first")), asyncio.create_task(wait("second"))
    await asyncio.sleep(0.05)
    assert not first.done() and not second.done() and len(opened) == 2  # bounded: they wait
    pool.release(a)
    pool.release(b)
    assert {await first, await second} == {a, b} and order == ["first", "second"]
    assert len(opened) == 2
    await pool.close()


async def test_a_closed_connection_or_one_left_in_a_transaction_is_dropped(db: Database) -> None:
    pool, opened = pool_of(db, 1)
    a = await pool.acquire()
    await a.execute("BEGIN")
    waiting = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0.05)
    pool.release(a)  # inside a transaction: dropped, and the waiter opens a fresh one
    b = await waiting
    assert b is not a and a.is_closed() and pool.size == 1
    assert await b.fetchval("SELECT 1") == 1
    await b.close()  # closed while checked out (the server went away, say)
    pool.release(b)
    c = await pool.acquire()
    assert c not in (a, b) and await c.fetchval("SELECT 2") == 2 and len(opened) == 3
    pool.release(c)
    await pool.close()


async def test_a_cancelled_statement_leaves_the_connection_usable(db: Database) -> None:
    pool, _ = pool_of(db, 1)
    conn = await pool.acquire()

    async def slow() -> None:
        try:
            await conn.execute("SELECT pg_sleep(5)")
        finally:
            pool.release(conn)

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    again = await pool.acquire()
    assert again is conn
    assert await asyncio.wait_for(again.fetchval("SELECT 3"), 3) == 3  # waits out the cancellation, not pg_sleep
    pool.release(again)
    await pool.close()


async def test_a_cancelled_waiter_gives_its_connection_on(db: Database) -> None:
    pool, opened = pool_of(db, 1)
    a = await pool.acquire()
    cancelled = asyncio.create_task(pool.acquire())
    served = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0.05)
    pool.release(a)  # handed to the first waiter, which is cancelled before it runs
    cancelled.cancel()
    assert await asyncio.wait_for(served, 3) is a and len(opened) == 1
    pool.release(a)
    await pool.close()


async def test_close_closes_idle_ones_now_busy_ones_on_return_and_fails_waiters(db: Database) -> None:
    pool, _ = pool_of(db, 2)
    idle, busy = await pool.acquire(), await pool.acquire()
    pool.release(idle)
    await pool.close()
    assert idle.is_closed() and not busy.is_closed()
    pool.release(busy)
    assert busy.is_closed() and pool.size == 0
    with pytest.raises(PoolClosed):
        await pool.acquire()

    full, _ = pool_of(db, 1)
    only = await full.acquire()
    waiting = asyncio.create_task(full.acquire())
    await asyncio.sleep(0.05)
    await full.close()
    with pytest.raises(PoolClosed):
        await waiting
    full.release(only)
    assert only.is_closed() and full.size == 0
