"""ReceiptStore on both engines: receipts only move forwards; the read position for unread counts."""

from __future__ import annotations

from paigham.storage.database import Database
from paigham.storage.receipts import Receipt, ReceiptStore
from tests.storage.support import ALICE, BOB, ROOM

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


async def test_read_position_is_the_newest_main_read_receipt(db: Database) -> None:
    store = ReceiptStore(db)
    await store.put(receipt(ALICE, 10))
    await store.put(receipt(ALICE, 14, "m.read.private"))
    await store.put(receipt(ALICE, 20, "m.read", thread_id="$thread"))  # a thread's: not the room's
    await store.put(receipt(ALICE, 16, "m.read", thread_id="main"))
    await store.put(receipt(ALICE, 30, "m.fully_read"))  # not a read receipt
    assert await store.read_positions(ALICE, [ROOM, OTHER]) == {ROOM: 16}
    assert await store.read_positions(BOB, [ROOM]) == {}
