"""ReceiptStore on both engines: receipts only move forwards; where they start the unread counts."""

from __future__ import annotations

from paigham.storage.database import Database
from paigham.storage.push_actions import PushActionStore, PushRoomRow
from paigham.storage.receipts import Receipt, ReceiptStore
from tests.storage.support import ALICE, BOB, ROOM, statements

OTHER = "!other:test.local"


def receipt(user_id: str, event_stream: int, receipt_type: str = "m.read", thread_id: str = "") -> Receipt:
    return Receipt(ROOM, user_id, receipt_type, thread_id, f"$e{event_stream}", event_stream, 1_000, 0)


async def test_receipts_move_forwards_only(db: Database) -> None:
    store = ReceiptStore(db)
    p1 = await store.put(receipt(ALICE, 10))
    assert p1 > 0
    assert await store.put(receipt(ALICE, 5)) == 0  # backwards: kept as it was
    assert await store.put(receipt(ALICE, 10)) == 0  # the same event: nothing new
    p2 = await store.put(receipt(ALICE, 12))
    assert p2 > p1
    (stored,) = await store.since([ROOM], None, p2)
    assert (stored.user_id, stored.event_id, stored.event_stream, stored.stream) == (ALICE, "$e12", 12, p2)


async def test_receipts_in_a_range_and_by_room(db: Database) -> None:
    store = ReceiptStore(db)
    p1 = await store.put(receipt(ALICE, 10))
    p2 = await store.put(receipt(BOB, 11, "m.read.private"))
    p3 = await store.put(Receipt(OTHER, BOB, "m.read", "", "$o", 3, 1_000, 0))
    assert [r.user_id for r in await store.since([ROOM], p1, p3)] == [BOB]
    assert {(r.room_id, r.user_id) for r in await store.since([ROOM, OTHER], None, p3)} == {
        (ROOM, ALICE),
        (ROOM, BOB),
        (OTHER, BOB),
    }
    assert await store.since([ROOM], p2, p3) == []
    assert await store.since([], None, p3) == []


async def test_unread_counts_start_at_the_newest_main_read_receipt_or_the_joining(db: Database) -> None:
    store, actions = ReceiptStore(db), PushActionStore(db)
    for stream in (10, 14, 16, 20, 30, 40):  # bob's messages, each notifying everyone else
        async with db.write() as conn:
            await actions.add(conn, PushRoomRow(ROOM, stream, BOB, "", False), [])
    async with db.write() as conn:
        await actions.add(conn, PushRoomRow(OTHER, 50, BOB, "", False), [])
    await store.put(receipt(ALICE, 10))
    await store.put(receipt(ALICE, 14, "m.read.private"))
    await store.put(receipt(ALICE, 20, "m.read", thread_id="$thread"))  # a thread's: not the room's
    await store.put(receipt(ALICE, 16, "m.read", thread_id="main"))
    await store.put(receipt(ALICE, 30, "m.fully_read"))  # not a read receipt
    with statements(db) as sent:
        counts = await actions.unread_after_reads(ALICE, {ROOM: 0, OTHER: 0})
    assert counts == {ROOM: (3, 0), OTHER: (1, 0)}  # past the read receipt at 16: 20, 30 and 40
    assert len(sent) == 1  # the receipts and the counts of every room in one statement
    assert await actions.unread_after_reads(ALICE, {ROOM: 35}) == {ROOM: (1, 0)}  # joined after reading
    assert await actions.unread_after_reads(BOB, {ROOM: 0}) == {ROOM: (0, 0)}  # one's own messages
    assert await actions.unread_after_reads(ALICE, {}) == {}
