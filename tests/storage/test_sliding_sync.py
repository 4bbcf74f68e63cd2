"""SlidingSyncStore on both engines: every saved generation is what one answer sent, even when
requests made with the same pos save at the same time."""

from __future__ import annotations

import asyncio

from paigham.storage.database import Database
from paigham.storage.sliding_sync import SlidingSyncStore
from tests.storage.support import ALICE

DEV = "DEVICE"


async def test_requests_with_one_pos_each_save_their_own_generation(db: Database) -> None:
    store = SlidingSyncStore(db)
    first = await store.save(ALICE, DEV, "", 1000, 5, b"first", used=None)
    assert first == 1000
    # four requests made with pos `first` (a cancelled long-poll and its resends) save at once
    gens = await asyncio.gather(
        *(store.save(ALICE, DEV, "", first + 1, 6 + i, f"answer {i}".encode(), used=first) for i in range(4))
    )
    assert sorted(gens) == list(range(first + 1, first + 5))
    for i, gen in enumerate(gens):
        saved = await store.load(ALICE, DEV, "", gen)
        assert saved is not None and (saved.stream, saved.state) == (6 + i, f"answer {i}".encode())
    assert await store.load(ALICE, DEV, "", first) is not None  # still retriable
    # going on from one of them drops every generation older than it
    kept = gens[2]
    nxt = await store.save(ALICE, DEV, "", kept + 1, 20, b"next", used=kept)
    assert nxt == max(gens) + 1
    assert await store.load(ALICE, DEV, "", first) is None
    assert [g for g in gens if await store.load(ALICE, DEV, "", g) is not None] == [g for g in gens if g >= kept]


async def test_a_fresh_connection_drops_the_older_generations(db: Database) -> None:
    store = SlidingSyncStore(db)
    old = await store.save(ALICE, DEV, "room-list", 50, 1, b"old", used=None)
    other = await store.save(ALICE, DEV, "encryption", 50, 1, b"other connection", used=None)
    fresh = await store.save(ALICE, DEV, "room-list", 10, 2, b"fresh", used=None)
    assert fresh == old + 1  # above every saved generation, even when asked for less
    assert await store.load(ALICE, DEV, "room-list", old) is None
    saved = await store.load(ALICE, DEV, "encryption", other)
    assert saved is not None and saved.state == b"other connection"


async def test_generations_are_scoped_to_user_device_and_connection(db: Database) -> None:
    store = SlidingSyncStore(db)
    gen = await store.save(ALICE, DEV, "room-list", 10, 5, b"first", used=None)
    got = await store.load(ALICE, DEV, "room-list", gen)
    assert got is not None and got.stream == 5 and got.state == b"first"
    assert await store.load("@bob:test.local", DEV, "room-list", gen) is None
    assert await store.load(ALICE, "OTHER", "room-list", gen) is None
    assert await store.load(ALICE, DEV, "encryption", gen) is None


async def test_old_connections_and_those_of_deleted_devices_are_purged(db: Database) -> None:
    store = SlidingSyncStore(db)
    gen = await store.save(ALICE, "GONE", "c", 1, 1, b"s", used=None)
    assert await store.load(ALICE, "GONE", "c", gen) is not None
    await store.purge()  # no such device
    assert await store.load(ALICE, "GONE", "c", gen) is None


async def test_saves_of_many_connections_made_together_go_as_one_statement(db: Database) -> None:
    """The long-polls one message wakes all save at once: one statement on PostgreSQL, each connection
    its own generation and state; the earlier generations of each go as they would alone."""
    store = SlidingSyncStore(db)
    users = [f"@u{i}:test.local" for i in range(8)]
    firsts = await asyncio.gather(*(store.save(u, DEV, "room-list", 100, 1, b"first", used=None) for u in users))
    before = store._saves.batches
    gens = await asyncio.gather(
        *(store.save(u, DEV, "room-list", g + 1, 2, u.encode(), used=None) for u, g in zip(users, firsts, strict=True))
    )
    assert gens == [g + 1 for g in firsts]
    assert store._saves.batches - before == (1 if db.dialect.name == "postgresql" else 0)
    for u, g, old in zip(users, gens, firsts, strict=True):
        saved = await store.load(u, DEV, "room-list", g)
        assert saved is not None and (saved.stream, saved.state) == (2, u.encode())
        assert await store.load(u, DEV, "room-list", old) is None  # used=None: the older ones dropped
