"""What a client asks about rooms around sliding sync (Element X): a room's summary
(GET /v1/room_summary/{roomIdOrAlias}), the event closest to a time (GET /v1/rooms/{roomId}/
timestamp_to_event), and the rooms two users share (mutual rooms, MSC2666 / v1.19).

Who sees a summary: members, invitees and knockers; anyone (even unauthenticated) for a room that is
world-readable or that anyone may join or knock on; and, for a restricted room, whoever is joined to
one of the rooms its join rule allows. Everyone else gets the same 404 as for a room that does not
exist, so the answer does not tell who may not see a room that it is there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from paigham.domain.stored_event import StoredEvent
from paigham.errors import Codes, MatrixError
from paigham.ids import check_alias, check_room_id, parse_user_id
from paigham.services.room_summary import summary_from_state
from paigham.services.visibility import filter_visible
from paigham.storage.aliases import AliasStore
from paigham.storage.events import EventStore
from paigham.storage.room_info import RoomInfoStore
from paigham.types import JsonDict

OPEN_JOIN_RULES = ("public", "knock", "knock_restricted")  # a summary for anyone, signed in or not
RESTRICTED_JOIN_RULES = ("restricted", "knock_restricted")
TIME_BATCH = 50  # candidates read per round while looking for an event the requester may see
MAX_TIME_ROUNDS = 10
MUTUAL_ROOMS_PAGE = 100
MAX_TS = 2**53  # the largest integer JSON carries exactly (the spec's timestamps are within it)
_NO_ROOM = "Room not found"


@dataclass(frozen=True, slots=True)
class ClosestEvent:
    event_id: str
    origin_server_ts: int


class RoomInfo:
    def __init__(
        self, events: EventStore, aliases: AliasStore, store: RoomInfoStore, *, page_size: int = MUTUAL_ROOMS_PAGE
    ) -> None:
        self.events = events
        self.aliases = aliases
        self.store = store
        self.page_size = page_size  # mutual rooms per page

    # -- the room summary -------------------------------------------------------------------------
    async def summary(self, user_id: str | None, room_id_or_alias: str) -> JsonDict:
        """The room's summary for `user_id` (None: an unauthenticated request), or 404."""
        room_id = await self._room_id(room_id_or_alias)
        room = await self.events.get_room(room_id)
        if room is None:
            raise MatrixError(404, Codes.NOT_FOUND, _NO_ROOM)
        state: dict[tuple[str, str | None], StoredEvent] = {
            (e.type, e.state_key): e for e in await self.events.current_state(room_id) if e.state_key == ""
        }
        m = await self.events.membership(user_id, room_id) if user_id else None
        membership = m.membership if m is not None else "leave"
        if not await self._may_see(user_id, membership, state):
            raise MatrixError(404, Codes.NOT_FOUND, _NO_ROOM)
        out = summary_from_state(room_id, state, await self.events.joined_count(room_id))
        out["room_version"] = room.room_version
        algorithm = _content(state, "m.room.encryption").get("algorithm")
        if isinstance(algorithm, str):
            out["encryption"] = algorithm
        allowed = _allowed_rooms(state)
        if allowed:
            out["allowed_room_ids"] = allowed
        if user_id is not None:
            out["membership"] = membership
        return out

    async def _room_id(self, room_id_or_alias: str) -> str:
        if not room_id_or_alias.startswith("#"):
            return check_room_id(room_id_or_alias)
        check_alias(room_id_or_alias)
        room_id = await self.aliases.resolve(room_id_or_alias)
        if room_id is None:
            raise MatrixError(404, Codes.NOT_FOUND, _NO_ROOM)
        return room_id

    async def _may_see(self, user_id: str | None, membership: str, state: dict[Any, StoredEvent]) -> bool:
        join_rule = _content(state, "m.room.join_rules").get("join_rule")
        history = _content(state, "m.room.history_visibility").get("history_visibility")
        if membership in ("join", "invite", "knock") or join_rule in OPEN_JOIN_RULES or history == "world_readable":
            return True
        if user_id is None or join_rule not in RESTRICTED_JOIN_RULES:
            return False
        mine = await self.events.user_rooms(user_id)
        return any(room in mine for room in _allowed_rooms(state))

    # -- timestamp_to_event -----------------------------------------------------------------------
    async def closest_event(self, user_id: str, room_id: str, ts: int, forward: bool) -> ClosestEvent:
        """The first event at or after `ts` (forward) or at or before it (backward) that the user may
        see: members see up to now, former members up to when they left, others only a
        world-readable room's events."""
        if not 0 <= ts <= MAX_TS:
            raise MatrixError(400, Codes.INVALID_PARAM, "ts must be a timestamp in milliseconds")
        check_room_id(room_id)
        upto = await self._readable_upto(user_id, room_id)
        key = (ts, -1) if forward else (ts, 2**62)
        for _ in range(MAX_TIME_ROUNDS):
            batch = await self.store.events_by_time(room_id, after=key, forward=forward, upto=upto, limit=TIME_BATCH)
            visible = await filter_visible(self.events, user_id, room_id, batch)
            if visible:
                return ClosestEvent(visible[0].event_id, visible[0].origin_server_ts)
            if len(batch) < TIME_BATCH:
                break
            key = (batch[-1].origin_server_ts, batch[-1].stream)
        direction = "forward" if forward else "backward"
        raise MatrixError(404, Codes.NOT_FOUND, f"No event found from {ts} in the {direction} direction")

    async def _readable_upto(self, user_id: str, room_id: str) -> int:
        """Up to which stream position the user may read the room (as /messages allows), else 403/404."""
        m = await self.events.membership(user_id, room_id)
        if m is not None and m.membership == "join":
            return 2**62
        if m is not None and m.membership in ("leave", "ban"):
            return m.stream
        if await self.events.get_room(room_id) is None:
            raise MatrixError(404, Codes.NOT_FOUND, _NO_ROOM)
        history = await self.events.current_state_event(room_id, "m.room.history_visibility", "")
        if history is None or history.content.get("history_visibility") != "world_readable":
            raise MatrixError(403, Codes.FORBIDDEN, "You are not a member of this room")
        return 2**62

    # -- mutual rooms -----------------------------------------------------------------------------
    async def mutual_rooms(self, user_id: str, other: str | None, start: str | None) -> JsonDict:
        """The rooms both are joined to, a page at a time. An unknown user shares no rooms (the spec
        asks for an empty list, not an error); asking about oneself is a 400."""
        if not other:
            raise MatrixError(400, Codes.MISSING_PARAM, "The user_id parameter is required")
        parse_user_id(other)
        if other == user_id:
            raise MatrixError(400, Codes.INVALID_PARAM, "You cannot ask which rooms you share with yourself")
        if start is not None:
            try:
                check_room_id(start)
            except MatrixError:
                raise MatrixError(400, Codes.INVALID_PARAM, "Invalid from token") from None
        rooms, total = await self.store.mutual_rooms(user_id, other, after=start or "", limit=self.page_size + 1)
        out: JsonDict = {"joined": rooms[: self.page_size], "count": total}
        if len(rooms) > self.page_size:  # the next page starts after the last room of this one
            out["next_batch"] = rooms[self.page_size - 1]
        return out


def _content(state: dict[Any, StoredEvent], type_: str) -> dict[str, Any]:
    ev = state.get((type_, ""))
    return ev.content if ev else {}


def _allowed_rooms(state: dict[Any, StoredEvent]) -> list[str]:
    """The rooms a restricted join rule allows (its `m.room_membership` entries); [] otherwise."""
    rules = _content(state, "m.room.join_rules")
    allow = rules.get("allow")
    if rules.get("join_rule") not in RESTRICTED_JOIN_RULES or not isinstance(allow, list):
        return []
    return [
        a["room_id"]
        for a in allow
        if isinstance(a, dict) and a.get("type") == "m.room_membership" and isinstance(a.get("room_id"), str)
    ]
