"""The stream's watermark (storage/watermark.py) on both engines: a write that took positions returns
only when readers can see them, and a reader never gets a position past a commit still to come —
early lock release on PostgreSQL keeps the order the sync code relies on."""

from __future__ import annotations

import asyncio

import pytest

from paigham.storage.database import Database
from paigham.storage.event_writes import EventWriteStore
from paigham.storage.watermark import BARRIER_SLOTS
from tests.storage.support import ALICE, ROOM, add_messages, add_state, member, message, new_room

ROOMS = [f"!r{i}:test.local" for i in range(6)]


async def _visible(db: Database, upto: int) -> set[int]:
    rows = await db.fetch("SELECT stream FROM events WHERE stream <= $1", upto)
    return {int(r[0]) for r in rows}


async def test_migrate_makes_the_barrier_rows_at_the_counter(db: Database) -> None:
    rows = {int(r[0]): int(r[1]) for r in await db.fetch("SELECT id, pos FROM stream_counter ORDER BY id")}
    assert sorted(rows) == list(range(1, 2 + BARRIER_SLOTS))
    assert await db.current_position() == rows[1]


async def test_acknowledged_writes_are_readable_and_readers_never_skip_one(db: Database) -> None:
    """Writers into six rooms, messages and other positions; a reader looping meanwhile. Each write,
    once returned, is at or below the position readers read; and whatever a reader saw at or below
    a position is, at the end, all there is at or below it: nothing committed late below it."""
    for room in ROOMS:
        await new_room(db, room)
    store = EventWriteStore(db)
    seen: list[tuple[int, set[int]]] = []
    done = asyncio.Event()

    async def writer(w: int) -> None:
        for i in range(15):
            if i % 3 == 2:  # a write of another stream (receipts, typing, …) takes a position too
                async with db.write() as conn:
                    pos = await db.next_position(conn)
            else:
                async with db.write() as conn:
                    m = message(f"$w{w}e{i}", ALICE, "hi", room_id=ROOMS[w])
                    await store.insert_messages(conn, [m])
                pos = m.event.stream
            assert await db.current_position() >= pos

    async def reader() -> None:
        while not done.is_set():
            upto = await db.current_position()
            seen.append((upto, await _visible(db, upto)))
            await asyncio.sleep(0)

    task = asyncio.create_task(reader())
    await asyncio.gather(*(writer(w) for w in range(len(ROOMS))))
    done.set()
    await task
    final = await db.current_position()
    assert final == (await db.fetchrow("SELECT pos FROM stream_counter WHERE id = 1") or [0])[0]
    assert len(seen) > 1
    for upto, visible in seen:
        assert visible == await _visible(db, upto), f"an event at or below {upto} appeared after it was read"


# Early lock release is PostgreSQL's (SQLite has one writer): these run on PostgreSQL only, not skipped.
pg_only = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@pg_only
async def test_positions_commit_without_waiting_for_the_flush(db: Database) -> None:
    """The transaction that takes positions commits with synchronous_commit off (the counter's row
    is released without waiting for the WAL flush); any other keeps durable commits."""
    await new_room(db)
    async with db.write() as conn:
        assert await db.fetchrow("SHOW synchronous_commit", conn=conn) == ("on",)
        await EventWriteStore(db).insert_messages(conn, [message("$m", ALICE, "hi")])
        assert await db.fetchrow("SHOW synchronous_commit", conn=conn) == ("off",)
    async with db.write() as conn:
        await db.next_position(conn)
        assert await db.fetchrow("SHOW synchronous_commit", conn=conn) == ("off",)
    async with db.write() as conn:
        assert await db.fetchrow("SHOW synchronous_commit", conn=conn) == ("on",)


@pg_only
async def test_a_reader_stops_below_an_open_transaction(db: Database) -> None:
    """A transaction that took a position and has not committed holds every later writer back (the
    counter's row), and readers below it; its commit (and barrier) lets both through."""
    await new_room(db)
    before = await db.current_position()
    took, release = asyncio.Event(), asyncio.Event()

    async def slow() -> int:
        async with db.write() as conn:
            pos = await db.next_position(conn)
            took.set()
            await release.wait()
        return pos

    slow_task = asyncio.create_task(slow())
    await took.wait()
    later = asyncio.create_task(add_messages(db, message("$later", ALICE, "after")))
    await asyncio.sleep(0.3)
    assert not later.done(), "a later writer got past an open holder of the counter"
    assert await db.current_position() == before
    release.set()
    pos = await slow_task
    (ev,) = await later
    assert ev.stream > pos
    assert await db.current_position() >= ev.stream


@pg_only
async def test_barriers_of_two_processes_each_move_the_watermark(database_url: str) -> None:
    """Two handles (two workers) with their own barrier rows: the watermark is the highest row, and
    each one's writes are readable through the other as soon as they return."""
    from paigham.storage.migrate import migrate

    a, b = Database(database_url), Database(database_url)
    b._barrier_slot = 2 + (a._barrier_slot - 1) % BARRIER_SLOTS  # another row than a's
    try:
        await migrate(a)
        for room in ROOMS[:2]:
            await new_room(a, room)
        (ea,) = await add_messages(a, message("$a", ALICE, "from a", room_id=ROOMS[0]))
        assert await b.current_position() >= ea.stream
        (eb,) = await add_messages(b, message("$b", ALICE, "from b", room_id=ROOMS[1]))
        assert await a.current_position() >= eb.stream > ea.stream
        rows = {
            int(r[0]): int(r[1])
            for r in await a.fetch(
                "SELECT id, pos FROM stream_counter WHERE id IN ($1, $2)", a._barrier_slot, b._barrier_slot
            )
        }
        assert rows[a._barrier_slot] >= ea.stream and rows[b._barrier_slot] >= eb.stream
    finally:
        await a.close()
        await b.close()


@pg_only
async def test_a_commit_whose_barrier_has_not_run_is_not_read(db: Database) -> None:
    """A commit that is visible but not yet known durable (its process stopped between the commit
    and the barrier) is beyond the position readers read — /sync's probe included, flags and all —
    until a barrier runs (here the catch-up of migrate() at the next start)."""
    from paigham.storage.database import _TOOK_POSITIONS
    from paigham.storage.migrate import migrate
    from paigham.storage.sync_probe import ROOM_EVENTS, probe

    await new_room(db)
    await add_state(db, member(ALICE, "join", "$join"))
    before = await db.current_position()
    async with db.write() as conn:
        m = message("$m", ALICE, "hi")
        await EventWriteStore(db).insert_messages(conn, [m])
        conn.info.pop(_TOOK_POSITIONS)  # as if the process stopped right after its commit
    assert await db.current_position() == before < m.event.stream
    found = await probe(db, ALICE, "DEV", before, ["join"])
    assert found.position == before
    assert not found.room_flags.get(ROOM, 0) & ROOM_EVENTS
    await migrate(db)
    assert await db.current_position() >= m.event.stream
    found = await probe(db, ALICE, "DEV", before, ["join"])
    assert found.position >= m.event.stream and found.room_flags[ROOM] & ROOM_EVENTS
