"""AccountDataStore on both engines: documents by (room, type), each change a stream position."""

from __future__ import annotations

from paigham.storage.account_data import AccountData, AccountDataStore
from paigham.storage.database import Database
from tests.storage.support import ALICE, BOB, ROOM


async def test_put_get_and_changes_in_a_range(db: Database) -> None:
    store = AccountDataStore(db)
    p1 = await store.put(ALICE, "", "m.direct", {"a": 1})
    p2 = await store.put(ALICE, ROOM, "m.tag", {"tags": {"u.work": {}}})
    p3 = await store.put(ALICE, "", "m.direct", {"a": 2})  # replaces, at a new position
    await store.put(BOB, "", "m.direct", {"b": 1})
    assert p1 < p2 < p3
    assert await store.get(ALICE, "", "m.direct") == {"a": 2}
    assert await store.get(ALICE, ROOM, "m.tag") == {"tags": {"u.work": {}}}
    assert await store.get(ALICE, ROOM, "m.direct") is None  # room and global are separate
    assert await store.get(ALICE, "", "m.nothing") is None

    everything = await store.since(ALICE, None, p3)
    assert sorted(everything) == [
        AccountData("", "m.direct", {"a": 2}),
        AccountData(ROOM, "m.tag", {"tags": {"u.work": {}}}),
    ]
    assert await store.since(ALICE, p2, p3) == [AccountData("", "m.direct", {"a": 2})]
    assert await store.since(ALICE, p1, p2) == [AccountData(ROOM, "m.tag", {"tags": {"u.work": {}}})]
    assert await store.since(ALICE, p3, p3) == []
    room_id, type_, content = sorted(everything)[0]  # still a (room, type, content) triple
    assert (room_id, type_, content) == ("", "m.direct", {"a": 2})
