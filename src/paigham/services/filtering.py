"""Stored filters and the views of them that /sync and /messages use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from paigham.domain.filters import DEFAULT_FILTER, Filter, RoomEventFilter, parse_filter, parse_room_event_filter
from paigham.domain.stored_event import StoredEvent
from paigham.errors import Codes, MatrixError
from paigham.types import JsonDict

MAX_FILTER_BYTES = 64 * 1024
# Parsed filters kept (stored ones by user and ID, inline ones by their text if at most
# PARSED_INLINE_MAX bytes: a client sending ever-new large filters must not fill memory).
PARSED_CACHE_SIZE = 4096
PARSED_INLINE_MAX = 4096
DEFAULT_TIMELINE_LIMIT = 10


def _as_event(e: StoredEvent) -> dict[str, Any]:
    return {"type": e.type, "sender": e.sender, "room_id": e.room_id, "content": e.content}


@dataclass(frozen=True)
class SyncFilterView:
    flt: Filter

    @property
    def timeline_limit(self) -> int:
        return self.flt.room.timeline.limit or DEFAULT_TIMELINE_LIMIT

    @property
    def lazy_load_members(self) -> bool:
        return bool(self.flt.room.state.lazy_load_members or self.flt.room.timeline.lazy_load_members)

    @property
    def include_leave(self) -> bool:
        return bool(self.flt.room.include_leave)

    @property
    def has_timeline_filter(self) -> bool:
        return self.flt.room.timeline != RoomEventFilter()

    def room_allowed(self, room_id: str) -> bool:
        return self.flt.room.room_allowed(room_id)

    def timeline_match_stored(self, e: StoredEvent) -> bool:
        return self.flt.room.timeline.matches(_as_event(e))

    def state_match_stored(self, e: StoredEvent) -> bool:
        return self.flt.room.state.matches(_as_event(e))

    def account_data_match(self, ev: dict[str, Any]) -> bool:
        return self.flt.account_data.matches(ev)


@dataclass(frozen=True)
class RoomEventFilterView:
    predicate: Callable[[dict[str, Any]], bool] | None
    lazy_load_members: bool
    limit: int | None


def _filter_json(raw: str) -> Any:
    """A filter given as JSON text in a query parameter, size-checked and decoded."""
    if len(raw) > MAX_FILTER_BYTES:
        raise MatrixError(400, Codes.TOO_LARGE, "filter is too large")
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        raise MatrixError(400, Codes.NOT_JSON, "filter is not valid JSON") from None


def room_event_filter_param(raw: str | None) -> RoomEventFilterView:
    """The `filter` query parameter of /messages and /context (a RoomEventFilter as JSON)."""
    if not raw:
        return RoomEventFilterView(None, False, None)
    flt = parse_room_event_filter(_filter_json(raw))
    return RoomEventFilterView(flt.matches, bool(flt.lazy_load_members), flt.limit)


class StoredFilters(Protocol):
    """Where filters are kept (storage/filters.py FilterStore)."""

    async def add(self, user_id: str, definition: JsonDict) -> int: ...

    async def get(self, user_id: str, filter_id: int) -> JsonDict | None: ...


class FilterService:
    def __init__(self, store: StoredFilters) -> None:
        self.store = store
        self._parsed: dict[tuple[str, str], Filter] = {}

    async def create(self, user_id: str, body: dict[str, Any]) -> int:
        parse_filter(body)  # validate before storing
        if len(msgspec.json.encode(body)) > MAX_FILTER_BYTES:
            raise MatrixError(400, Codes.TOO_LARGE, "Filter is too large")
        return await self.store.add(user_id, body)

    async def get(self, user_id: str, filter_id: str) -> dict[str, Any]:
        if not (filter_id.isascii() and filter_id.isdigit()) or len(filter_id) > 9:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown filter")
        found = await self.store.get(user_id, int(filter_id))
        if found is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown filter")
        return found

    async def sync_view(self, user_id: str, param: str | None) -> SyncFilterView:
        if not param:
            return SyncFilterView(DEFAULT_FILTER)
        # A client sends the same filter with every /sync: parsed once. Stored filters never change
        # (the API has no update), and a parsed `Filter` is immutable, so the cache needs no expiry.
        inline = param.lstrip().startswith("{")
        key = ("" if inline else user_id, param)
        found = self._parsed.get(key)
        if found is None:
            found = parse_filter(_filter_json(param) if inline else await self.get(user_id, param))
            if not inline or len(param) <= PARSED_INLINE_MAX:
                if len(self._parsed) >= PARSED_CACHE_SIZE:
                    self._parsed.clear()
                self._parsed[key] = found
        return SyncFilterView(found)
