"""PresenceStore on both engines: each user's presence, and that of everyone sharing a room."""

from __future__ import annotations

from paigham.storage.database import Database
from paigham.storage.presence import PresenceRow, PresenceStore
from tests.storage.support import ALICE, BOB, CARA, add_state, member, new_room

DAVE = "@dave:test.local"


async def test_presence_by_user_and_range(db: Database) -> None:
    store = PresenceStore(db)
    p1 = await store.put(ALICE, "online", None, 100)
    p2 = await store.put(ALICE, "unavailable", "lunch", 200)
    assert p2 > p1
    (row,) = await store.get([ALICE, BOB])
    assert row == PresenceRow(ALICE, "unavailable", "lunch", 200, p2)
    assert (row.state, row.status_msg, row.last_active_ts) == ("unavailable", "lunch", 200)
    assert await store.get([ALICE], after=p2) == []
    assert await store.get([ALICE], after=p1, upto=p2) == [row]
    assert await store.get([]) == []


async def test_presence_of_co_members(db: Database) -> None:
    store = PresenceStore(db)
    await new_room(db)
    await add_state(db, member(ALICE, "join", "$a"), member(BOB, "join", "$b"), member(CARA, "invite", "$c"))
    p_bob = await store.put(BOB, "online", None, 1)
    await store.put(CARA, "online", None, 1)  # invited only: not a co-member
    await store.put(DAVE, "online", None, 1)  # in no room with alice
    p_alice = await store.put(ALICE, "online", None, 2)
    assert sorted(r.user_id for r in await store.of_co_members(ALICE, None, p_alice)) == [ALICE, BOB]
    assert [r.user_id for r in await store.of_co_members(ALICE, p_bob, p_alice)] == [ALICE]
    assert await store.of_co_members(DAVE, None, p_alice) == []
