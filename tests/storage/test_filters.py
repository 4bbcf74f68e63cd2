"""FilterStore on both engines: numbered per user, read back by ID."""

from __future__ import annotations

from paigham.storage.database import Database
from paigham.storage.filters import FilterStore
from tests.storage.support import ALICE, BOB


async def test_filters_are_numbered_per_user(db: Database) -> None:
    store = FilterStore(db)
    assert await store.add(ALICE, {"room": {"timeline": {"limit": 5}}}) == 1
    assert await store.add(ALICE, {"presence": {"not_types": ["*"]}}) == 2
    assert await store.add(BOB, {}) == 1
    assert await store.get(ALICE, 1) == {"room": {"timeline": {"limit": 5}}}
    assert await store.get(ALICE, 2) == {"presence": {"not_types": ["*"]}}
    assert await store.get(BOB, 2) is None
    assert await store.get(BOB, 1) == {}
