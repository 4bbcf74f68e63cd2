"""Database: the raw-SQL helpers of the hot paths on both engines, and SQLite's in-loop writer."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from paigham.storage.database import Database
from paigham.storage.migrate import migrate


async def test_raw_helpers_same_results_on_both_engines(db: Database) -> None:
    async with db.write() as conn:
        await db.run_many(
            "INSERT INTO presence (user_id, state, status_msg, last_active_ts, stream) VALUES ($1, $2, $3, $4, $5)",
            [(f"@u{i}:x", "online", None, 1000 + i, i) for i in range(1, 6)],
            conn=conn,
        )
        await db.run("UPDATE presence SET state = $1 WHERE user_id = $2", "offline", "@u1:x", conn=conn)
        inside = await db.fetch("SELECT count(*) FROM presence", conn=conn)
        assert int(inside[0][0]) == 5  # visible inside the transaction
    rows = await db.fetch(
        "SELECT user_id, state FROM presence WHERE user_id = ANY($1::text[]) AND stream > $2 ORDER BY user_id",
        ["@u1:x", "@u2:x", "@u5:x", "@nobody:x"],
        1,
    )
    assert [tuple(r) for r in rows] == [("@u2:x", "online"), ("@u5:x", "online")]
    assert await db.fetch("SELECT user_id FROM presence WHERE user_id = ANY($1::text[])", []) == []
    row = await db.fetchrow("SELECT state FROM presence WHERE user_id = $1", "@u1:x")
    assert row is not None and row[0] == "offline"
    assert await db.fetchrow("SELECT state FROM presence WHERE user_id = $1", "@none:x") is None


async def test_write_one_commits_one_statement_and_returns_its_rows(db: Database) -> None:
    sql = (
        "INSERT INTO presence (user_id, state, status_msg, last_active_ts, stream) VALUES ($1, $2, NULL, 1, 1) "
        "ON CONFLICT (user_id) DO NOTHING RETURNING user_id"
    )
    assert [tuple(r) for r in await db.write_one(sql, "@w:x", "online")] == [("@w:x",)]
    assert await db.write_one(sql, "@w:x", "online") == []  # the conflict: nothing written, no row
    row = await db.fetchrow("SELECT state FROM presence WHERE user_id = $1", "@w:x")  # committed: seen by a read
    assert row is not None and row[0] == "online"
    with pytest.raises(Exception):  # noqa: B017 - each engine's own error for the bad statement
        await db.write_one("UPDATE presence SET no_such_column = 1")
    assert (await db.fetchrow("SELECT count(*) FROM presence"))[0] == 1  # type: ignore[index]


async def test_failed_write_transaction_rolls_back(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.write() as conn:
            pos = await db.next_position(conn)
            await db.run(
                "INSERT INTO presence (user_id, state, status_msg, last_active_ts, stream) VALUES ($1, $2, $3, $4, $5)",
                "@r:x",
                "online",
                None,
                1,
                pos,
                conn=conn,
            )
            raise RuntimeError("boom")
    assert await db.fetchrow("SELECT 1 FROM presence WHERE user_id = $1", "@r:x") is None
    assert await db.current_position() == 0


async def test_positions_are_taken_in_order(db: Database) -> None:
    taken = []
    for _ in range(3):
        async with db.write() as conn:
            taken.append(await db.next_position(conn, 2))
    assert taken == [2, 4, 6]
    assert await db.current_position() == 6


async def test_sqlite_writer_waits_for_another_process_without_blocking_the_loop(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    db = Database(url)
    await migrate(db)
    other = sqlite3.connect(tmp_path / "p.db", isolation_level=None)  # stands in for the CLI process
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async def release() -> None:
        await asyncio.sleep(0.3)
        other.execute("COMMIT")

    t = asyncio.create_task(ticker())
    r = asyncio.create_task(release())
    start = time.monotonic()
    async with db.write() as conn:
        await db.next_position(conn)
    waited = time.monotonic() - start
    t.cancel()
    await r
    other.close()
    await db.close()
    assert waited >= 0.25  # it did wait for the lock …
    assert ticks >= 10  # … while the event loop kept running


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # (SQLite has no JIT)
async def test_postgresql_sessions_never_compile_statements_with_jit(db: Database) -> None:
    """JIT compilation is off in both pools (reads, and write transactions): a big table's cost estimates
    made PostgreSQL spend ~1 s compiling a statement that ran in 14 ms (storage/database.py)."""
    assert (await db.fetch("SHOW jit"))[0][0] == "off"
    async with db.write() as conn:
        assert (await db.fetch("SHOW jit", conn=conn))[0][0] == "off"
