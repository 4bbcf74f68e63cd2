"""The filter service (services/filtering.py) over an in-memory filter store: filter IDs, the cache
of parsed filters that /sync relies on, and the views /sync and /messages read. Parsing itself is
tested in tests/domain/test_filters.py."""

from __future__ import annotations

import json
from collections.abc import Awaitable

import pytest

from paigham.errors import MatrixError
from paigham.services.filtering import (
    MAX_FILTER_BYTES,
    PARSED_INLINE_MAX,
    FilterService,
    room_event_filter_param,
)
from paigham.types import JsonDict
from tests.services.fakes import stored

ALICE, BOB = "@alice:t", "@bob:t"


class Filters:
    """Filters by user, numbered from 1 per user (as storage/streams.py numbers them)."""

    def __init__(self) -> None:
        self.by_user: dict[str, list[JsonDict]] = {}
        self.reads = 0

    async def add(self, user_id: str, definition: JsonDict) -> int:
        self.by_user.setdefault(user_id, []).append(definition)
        return len(self.by_user[user_id])

    async def get(self, user_id: str, filter_id: int) -> JsonDict | None:
        self.reads += 1
        found = self.by_user.get(user_id, [])
        return found[filter_id - 1] if 0 < filter_id <= len(found) else None


async def raises(errcode: str, status: int, call: Awaitable[object]) -> None:
    with pytest.raises(MatrixError) as exc:
        await call
    assert (exc.value.errcode, exc.value.status) == (errcode, status)


async def test_filters_are_numbered_per_user_and_read_back() -> None:
    service = FilterService(Filters())
    first = {"room": {"timeline": {"limit": 5}}}
    assert await service.create(ALICE, first) == 1
    assert await service.create(ALICE, {}) == 2
    assert await service.create(BOB, {}) == 1
    assert await service.get(ALICE, "1") == first


# "\uff11" is a digit to str.isdigit() but not an ASCII one.
@pytest.mark.parametrize("filter_id", ["3", "0", "x1", "\uff11", "1234567890", ""])
async def test_an_unknown_or_malformed_id_is_not_found(filter_id: str) -> None:
    store = Filters()
    service = FilterService(store)
    await service.create(ALICE, {})
    await raises("M_NOT_FOUND", 404, service.get(ALICE, filter_id))
    await raises("M_NOT_FOUND", 404, service.get(BOB, "1"))  # someone else's numbering


async def test_a_filter_is_checked_before_it_is_kept() -> None:
    store = Filters()
    service = FilterService(store)
    await raises("M_BAD_JSON", 400, service.create(ALICE, {"room": {"timeline": {"limit": "5"}}}))
    big = {"account_data": {"types": ["x" * 200] * (MAX_FILTER_BYTES // 200)}}
    await raises("M_TOO_LARGE", 400, service.create(ALICE, big))
    assert store.by_user == {}


async def test_a_stored_filter_is_read_and_parsed_once_per_user() -> None:
    store = Filters()
    service = FilterService(store)
    await service.create(ALICE, {"room": {"timeline": {"limit": 3}}})
    await service.create(BOB, {"room": {"timeline": {"limit": 7}}})
    views = [await service.sync_view(ALICE, "1") for _ in range(3)]
    assert [v.timeline_limit for v in views] == [3, 3, 3] and store.reads == 1
    assert views[0].flt is views[2].flt
    assert (await service.sync_view(BOB, "1")).timeline_limit == 7 and store.reads == 2


async def test_inline_filters_are_cached_by_their_text_up_to_a_size() -> None:
    service = FilterService(Filters())
    small = json.dumps({"room": {"timeline": {"limit": 4}}})
    assert (await service.sync_view(ALICE, small)).flt is (await service.sync_view(BOB, small)).flt
    padded = json.dumps({"room": {"timeline": {"limit": 4}}, "pad": "x" * PARSED_INLINE_MAX})
    first, again = await service.sync_view(ALICE, padded), await service.sync_view(ALICE, padded)
    assert first.flt == again.flt and first.flt is not again.flt  # parsed each time: never kept
    await raises("M_NOT_JSON", 400, service.sync_view(ALICE, "{not json"))


async def test_the_sync_view_reads_the_filter_for_sync() -> None:
    service = FilterService(Filters())
    default = await service.sync_view(ALICE, None)
    assert default.timeline_limit == 10 and not default.lazy_load_members and not default.has_timeline_filter
    flt = {
        "room": {
            "not_rooms": ["!hidden:t"],
            "include_leave": True,
            "state": {"lazy_load_members": True},
            "timeline": {"types": ["m.room.message"]},
        }
    }
    view = await service.sync_view(ALICE, json.dumps(flt))
    assert view.lazy_load_members and view.include_leave and view.has_timeline_filter
    assert view.room_allowed("!r:t") and not view.room_allowed("!hidden:t")
    message = stored(1, "!r:t", "m.room.message", BOB, {"body": "hi"})
    topic = stored(2, "!r:t", "m.room.topic", BOB, {"topic": "t"}, "")
    assert view.timeline_match_stored(message) and not view.timeline_match_stored(topic)


def test_the_messages_filter_parameter() -> None:
    assert room_event_filter_param(None).predicate is None
    view = room_event_filter_param(json.dumps({"limit": 20, "not_senders": [BOB], "lazy_load_members": True}))
    assert view.limit == 20 and view.lazy_load_members and view.predicate is not None
    assert not view.predicate({"type": "m.room.message", "sender": BOB})
    assert view.predicate({"type": "m.room.message", "sender": ALICE})
