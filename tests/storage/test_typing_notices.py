"""TypingStore on both engines: who types where, expiry, and which rooms' lists changed."""

from __future__ import annotations

from paigham.storage.database import Database
from paigham.storage.typing_notices import TypingStore
from tests.storage.support import ALICE, BOB, ROOM

OTHER = "!other:test.local"


async def test_typing_starts_stops_and_expires(db: Database) -> None:
    store = TypingStore(db)
    assert not await store.anyone_typing()
    p1 = await store.put(ROOM, ALICE, 5_000)
    p2 = await store.put(ROOM, BOB, 9_000)
    p3 = await store.put(OTHER, BOB, 9_000)
    assert await store.anyone_typing()
    typing = await store.users([ROOM, OTHER], now=1_000)
    assert {room: sorted(users) for room, users in typing.items()} == {ROOM: [ALICE, BOB], OTHER: [BOB]}
    assert await store.users([ROOM], now=6_000) == {ROOM: [BOB]}  # alice's has run out
    assert await store.changed([ROOM, OTHER], p1, p2) == {ROOM}
    assert await store.changed([ROOM, OTHER], p2, p3) == {OTHER}
    assert await store.changed([ROOM, OTHER], None, p3) == {ROOM, OTHER}

    p4 = await store.put(OTHER, BOB, None)  # stopped
    assert await store.users([OTHER], now=1_000) == {}
    assert await store.changed([ROOM, OTHER], p3, p4) == {OTHER}

    assert await store.expire(4_000) == (0, [])  # nothing ran out yet
    pos, rooms = await store.expire(6_000)
    assert pos > p4 and rooms == [ROOM]
    assert await store.changed([ROOM, OTHER], p4, pos) == {ROOM}
    assert await store.users([ROOM], now=1_000) == {ROOM: [BOB]}
    assert (await store.expire(10_000))[1] == [ROOM]
    assert not await store.anyone_typing()
