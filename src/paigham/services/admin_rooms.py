"""The admin API's view of rooms (Synapse's room admin API): the listing with its search and sort
orders, and one room's details. Deleting and blocking a room is `AdminService.delete_room`."""

from __future__ import annotations

from typing import Any, NamedTuple

from paigham.errors import Codes, MatrixError
from paigham.storage.admin import AdminStore, RoomSummary
from paigham.types import JsonDict

# The `order_by` values Synapse's room list accepts (every field of a room but `room_id`, and `created`).
ROOM_ORDERS = (
    "name",
    "canonical_alias",
    "joined_members",
    "joined_local_members",
    "version",
    "creator",
    "encryption",
    "federatable",
    "public",
    "join_rules",
    "guest_access",
    "history_visibility",
    "state_events",
    "room_type",
    "created",
)


class RoomQuery(NamedTuple):
    """One page of the room list: `order_by` is one of ROOM_ORDERS; `search_term` is lower case."""

    offset: int
    limit: int
    order_by: str = "name"
    descending: bool = False
    search_term: str = ""


class RoomPage(NamedTuple):
    rooms: list[JsonDict]  # in the shape of Synapse's room list
    total: int  # rooms matching the search, on every page


class AdminRooms:
    def __init__(self, server_name: str, store: AdminStore) -> None:
        self.server_name = server_name
        self.store = store

    async def list_rooms(self, q: RoomQuery) -> RoomPage:
        """Every room matching the search term (in its ID, name or canonical alias), sorted, one page.
        Rooms are few enough per server to sort in memory from one set of grouped queries."""
        summaries = [s for s in await self.store.room_summaries() if _matches(s, q.search_term)]
        summaries.sort(key=lambda s: self._sort_key(q.order_by, s), reverse=q.descending)
        page = summaries[q.offset : q.offset + q.limit]
        return RoomPage([s.to_synapse(self.server_name) for s in page], len(summaries))

    async def room(self, room_id: str) -> JsonDict:
        """One room in the shape of Synapse's room details, with whether it is blocked."""
        found = await self.store.room_summaries([room_id])
        if not found:
            raise MatrixError(404, Codes.NOT_FOUND, "Room not found")
        return {**found[0].to_synapse(self.server_name), "blocked": await self.store.is_blocked(room_id)}

    def _sort_key(self, order: str, s: RoomSummary) -> tuple[Any, ...]:
        # Rooms without the value sort last; text sorts case-insensitively; the room ID breaks ties.
        if order == "created":
            return (s.created_ts, s.room_id)
        value = s.to_synapse(self.server_name)[order]
        return (value is None, value if not isinstance(value, str) else value.lower(), s.room_id)


def _matches(s: RoomSummary, term: str) -> bool:
    return (
        not term
        or term in s.room_id.lower()
        or term in str(s.state.get("m.room.name", {}).get("name", "")).lower()
        or term in str(s.state.get("m.room.canonical_alias", {}).get("alias", "")).lower()
    )
