"""SlidingSyncStore: generations of a connection, superseding, scoping and age (both engines)."""

from __future__ import annotations

from paigham.storage.database import Database
from paigham.storage.sliding_sync import SlidingSyncStore


async def test_generations_supersede_and_are_scoped(db: Database) -> None:
    store = SlidingSyncStore(db)
    await store.save("@a:x", "D1", "room-list", 10, 5, b"first", used=10)
    got = await store.load("@a:x", "D1", "room-list", 10)
    assert got is not None and got.stream == 5 and got.state == b"first"
    # Scoped by user, device and connection.
    assert await store.load("@b:x", "D1", "room-list", 10) is None
    assert await store.load("@a:x", "D2", "room-list", 10) is None
    assert await store.load("@a:x", "D1", "encryption", 10) is None
    # Saving 11 from 10 keeps 10 (a retry) ...
    await store.save("@a:x", "D1", "room-list", 11, 7, b"second", used=10)
    assert await store.load("@a:x", "D1", "room-list", 10) is not None
    # ... and saving 12 from 11 drops 10.
    await store.save("@a:x", "D1", "room-list", 12, 9, b"third", used=11)
    assert await store.load("@a:x", "D1", "room-list", 10) is None
    assert (await store.load("@a:x", "D1", "room-list", 11)) is not None
    # A retry of 11 replaces 12.
    await store.save("@a:x", "D1", "room-list", 12, 10, b"again", used=11)
    again = await store.load("@a:x", "D1", "room-list", 12)
    assert again is not None and again.state == b"again" and again.stream == 10


async def test_old_connections_and_those_of_deleted_devices_are_purged(db: Database) -> None:
    store = SlidingSyncStore(db)
    await store.save("@a:x", "GONE", "c", 1, 1, b"s", used=1)
    assert await store.load("@a:x", "GONE", "c", 1) is not None
    await store.purge()  # no such device
    assert await store.load("@a:x", "GONE", "c", 1) is None
