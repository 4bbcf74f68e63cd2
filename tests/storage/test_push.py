"""PushRuleStore and PushActionStore on both engines: each user's rules document, and unread counts
from the shared and per-member push actions (two queries, one per engine: they must agree)."""

from __future__ import annotations

from paigham.storage.database import Database
from paigham.storage.push_actions import PushActionStore, PushRoomRow, PushUserRow
from paigham.storage.push_rules import PushRuleStore
from tests.storage.support import ALICE, BOB, CARA, ROOM

OTHER = "!other:test.local"


async def test_push_rules_documents(db: Database) -> None:
    store = PushRuleStore(db)
    assert await store.get(ALICE) is None
    p1 = await store.put(ALICE, {"content": [{"rule_id": "x"}]})
    p2 = await store.put(ALICE, {"content": []})
    found = await store.get(ALICE)
    assert found is not None and (found.rules, found.stream) == ({"content": []}, p2) and p2 > p1
    await store.put(BOB, {"muted": True})
    assert await store.of_users([ALICE, BOB, CARA]) == {ALICE: {"content": []}, BOB: {"muted": True}}
    assert await store.of_users([]) == {}


async def test_unread_counts_from_shared_and_own_rows(db: Database) -> None:
    actions = PushActionStore(db)

    async def add(room_row: PushRoomRow | None, *own: PushUserRow) -> None:
        async with db.write() as conn:
            await actions.add(conn, room_row, own)

    # 1: alice's message notifies everyone else; cara muted the room.
    await add(PushRoomRow(ROOM, 1, ALICE, "", False), PushUserRow(CARA, ROOM, 1, "", False, False))
    # 2: bob's message; it highlights for alice.
    await add(PushRoomRow(ROOM, 2, BOB, "", False), PushUserRow(ALICE, ROOM, 2, "", True, True))
    # 3: a message that notifies nobody but mentions cara.
    await add(None, PushUserRow(CARA, ROOM, 3, "", True, True))
    # 4: in another room, a highlight for everyone.
    await add(PushRoomRow(OTHER, 4, ALICE, "", True))

    assert await actions.unread_after_reads(ALICE, {ROOM: 0, OTHER: 0}) == {ROOM: (1, 1), OTHER: (0, 0)}
    assert await actions.unread_after_reads(BOB, {ROOM: 0, OTHER: 0}) == {ROOM: (1, 0), OTHER: (1, 1)}
    assert await actions.unread_after_reads(CARA, {ROOM: 0}) == {ROOM: (2, 1)}
    assert await actions.unread_after_reads(CARA, {ROOM: 1}) == {ROOM: (2, 1)}  # past her joining at 1
    assert await actions.unread_after_reads(CARA, {ROOM: 3}) == {ROOM: (0, 0)}
    assert await actions.unread_after_reads(BOB, {}) == {}
