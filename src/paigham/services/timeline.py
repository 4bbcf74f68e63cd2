"""Reading rooms: events, state, members, /messages pagination and /context, with visibility."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from paigham.domain.stored_event import StoredEvent
from paigham.domain.tokens import make_token
from paigham.errors import Codes, MatrixError
from paigham.requester import Requester
from paigham.services.serializer import EventSerializer
from paigham.services.visibility import filter_visible
from paigham.storage.database import Database
from paigham.storage.events import EventStore

EventPredicate = Callable[[dict[str, Any]], bool]
MAX_SCAN_ROUNDS = 5
# Joined-member lists kept for GET /joined_members, bounded by the members they hold over all rooms
# (~200 bytes each: ~20 MB when full); a room smaller than JOINED_KEPT_FROM is read each time.
JOINED_KEPT_MEMBERS = 100_000
JOINED_KEPT_FROM = 200

Profile = dict[str, str]  # display_name / avatar_url, each present only when set


class JoinedMembers:
    """Room → (its members_stream, its joined members with their profiles): GET /joined_members of
    a big room reads and decodes every member event, so the list is kept and checked against the
    room's members_stream (one row by key) at each request. The stream is read before the list, so a
    list is never kept under a newer stream than its own; every worker checks against the database,
    so a cluster needs nothing more."""

    def __init__(self, max_members: int = JOINED_KEPT_MEMBERS, kept_from: int = JOINED_KEPT_FROM) -> None:
        self.max_members = max_members
        self.kept_from = kept_from
        self._rooms: OrderedDict[str, tuple[int, dict[str, Profile]]] = OrderedDict()
        self._members = 0

    def __len__(self) -> int:
        return len(self._rooms)

    def get(self, room_id: str, stream: int) -> dict[str, Profile] | None:
        found = self._rooms.get(room_id)
        if found is None or found[0] != stream:
            return None
        self._rooms.move_to_end(room_id)
        return found[1]

    def put(self, room_id: str, stream: int, joined: dict[str, Profile]) -> None:
        if len(joined) < self.kept_from or len(joined) > self.max_members:
            return
        old = self._rooms.pop(room_id, None)
        if old is not None:
            self._members -= len(old[1])
        self._rooms[room_id] = (stream, joined)
        self._members += len(joined)
        while self._members > self.max_members:
            _, (_, gone) = self._rooms.popitem(last=False)
            self._members -= len(gone)


def joined_profiles(member_events: list[StoredEvent]) -> dict[str, Profile]:
    """user → profile of the joined members among `member_events` (RoomMember fields are strings
    when present and absent otherwise, never null)."""
    return {
        e.state_key: {
            field: e.content[key]
            for field, key in (("display_name", "displayname"), ("avatar_url", "avatar_url"))
            if isinstance(e.content.get(key), str)
        }
        for e in member_events
        if e.content.get("membership") == "join" and e.state_key
    }


@dataclass(frozen=True, slots=True)
class Page:
    chunk: list[dict[str, Any]]
    start: str
    end: str | None
    state: list[dict[str, Any]]
    cursor: str  # where the next page would start, even when nothing is left now


class TimelineService:
    def __init__(self, db: Database, store: EventStore, serializer: EventSerializer) -> None:
        self.db = db
        self.store = store
        self.serializer = serializer
        self.joined = JoinedMembers()

    async def require_member(self, user_id: str, room_id: str, *, allow_left: bool = True) -> tuple[str, int]:
        """The user's membership; members and (if allowed) former members may read, others may not. An
        invitation is not membership: an invitee sees the invite's stripped state, not the room (spec;
        as Synapse does)."""
        m = await self.store.membership(user_id, room_id)
        if m is None or (m[0] not in ("join",) and not (allow_left and m[0] in ("leave", "ban"))):
            if await self.store.get_room(room_id) is None:
                raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
            raise MatrixError(403, Codes.FORBIDDEN, "You are not a member of this room")
        return m[0], m[1]

    async def get_event(self, requester: Requester, room_id: str, event_id: str) -> dict[str, Any]:
        ev = await self._visible_event(requester, room_id, event_id)
        return (await self.serializer.serialize([ev], requester))[0]

    async def _visible_event(self, requester: Requester, room_id: str, event_id: str) -> StoredEvent:
        """The event, if the requester may see it. Whoever may not see the room gets the same 404
        whether the event exists or not: the answer must not tell an outsider what a room holds."""
        try:
            await self.require_member(requester.user_id, room_id)
        except MatrixError:
            raise MatrixError(404, Codes.NOT_FOUND, "Event not found") from None
        ev = await self.store.get_event(event_id)
        if ev is None or ev.room_id != room_id:
            raise MatrixError(404, Codes.NOT_FOUND, "Event not found")
        if not await filter_visible(self.store, requester.user_id, room_id, [ev]):
            raise MatrixError(404, Codes.NOT_FOUND, "Event not found")
        return ev

    async def state(self, requester: Requester, room_id: str) -> list[StoredEvent]:
        membership, stream = await self.require_member(requester.user_id, room_id)
        if membership == "join":
            return await self.store.current_state(room_id)
        return await self.store.state_at(room_id, stream)

    async def joined_members(self, requester: Requester, room_id: str) -> dict[str, Profile]:
        """GET /joined_members: the joined members now (for a member), or when the requester left
        (for a former member); a big room's list is kept while its members do not change."""
        membership, stream = await self.require_member(requester.user_id, room_id)
        if membership != "join":  # as `members` reads for a former member, without asking again
            return joined_profiles(await self.store.state_at(room_id, stream, ["m.room.member"]))
        version = await self.store.members_stream(room_id)
        if version is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
        found = self.joined.get(room_id, version)
        if found is None:
            found = joined_profiles(await self.store.current_state(room_id, ["m.room.member"]))
            self.joined.put(room_id, version, found)
        return found

    async def members(self, requester: Requester, room_id: str, at: int | None) -> list[StoredEvent]:
        membership, stream = await self.require_member(requester.user_id, room_id)
        upto = stream if membership != "join" else None
        if at is not None:
            upto = min(at, upto) if upto is not None else at
        if upto is None:
            return await self.store.current_state(room_id, ["m.room.member"])
        return await self.store.state_at(room_id, upto, ["m.room.member"])

    async def messages(
        self,
        requester: Requester,
        room_id: str,
        *,
        from_pos: int | None,
        to_pos: int | None,
        backwards: bool,
        limit: int,
        predicate: EventPredicate | None,
        lazy_members: bool,
    ) -> Page:
        membership, mstream = await self.require_member(requester.user_id, room_id)
        current = await self.db.current_position()
        upper = current if membership == "join" else mstream
        if from_pos is None:
            from_pos = upper if backwards else 0
        cursor = min(from_pos, upper) if backwards else from_pos
        picked: list[StoredEvent] = []
        exhausted = False
        for _ in range(MAX_SCAN_ROUNDS):
            batch = await self._batch(room_id, cursor, to_pos, upper, backwards, limit)
            if len(batch) < limit:
                exhausted = True
            if batch:
                cursor = batch[-1].stream - 1 if backwards else batch[-1].stream
            visible = await filter_visible(self.store, requester.user_id, room_id, batch)
            picked.extend(visible)
            if len(picked) >= limit or exhausted:
                break
        serialized = await self.serializer.serialize(picked[:limit], requester)
        if predicate is not None:
            serialized = [e for e in serialized if predicate(e)]
        if len(picked) > limit:
            cursor = picked[limit - 1].stream - 1 if backwards else picked[limit - 1].stream
            exhausted = False
        state = await self._lazy_members(room_id, serialized) if lazy_members else []
        return Page(
            serialized,
            make_token(from_pos),
            None if exhausted else make_token(cursor),
            state,
            make_token(max(cursor, 0)),
        )

    async def _batch(
        self, room_id: str, cursor: int, to_pos: int | None, upper: int, backwards: bool, limit: int
    ) -> list[StoredEvent]:
        if backwards:
            after = to_pos if to_pos is not None else None
            return await self.store.room_events(room_id, after=after, upto=cursor, limit=limit, backwards=True)
        upto = min(to_pos, upper) if to_pos is not None else upper
        return await self.store.room_events(room_id, after=cursor, upto=upto, limit=limit, backwards=False)

    async def _lazy_members(self, room_id: str, chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
        senders = {e["sender"] for e in chunk}
        if not senders:
            return []
        members = await self.store.current_state(room_id, ["m.room.member"])
        wanted = [m for m in members if m.state_key in senders]
        return await self.serializer.serialize(wanted, None, bundle=False)

    async def context(
        self,
        requester: Requester,
        room_id: str,
        event_id: str,
        limit: int,
        predicate: EventPredicate | None,
        lazy_members: bool,
    ) -> dict[str, Any]:
        ev = await self._visible_event(requester, room_id, event_id)
        before_n = limit // 2
        after_n = limit - before_n
        # Tokens point between events: `start` just before the earliest event returned (or the
        # target), `end` just after the latest (or the target) — also when limit is 0.
        before_chunk: list[dict[str, Any]] = []
        after_chunk: list[dict[str, Any]] = []
        start, end = make_token(ev.stream - 1), make_token(ev.stream)
        if before_n:
            before = await self.messages(
                requester,
                room_id,
                from_pos=ev.stream - 1,
                to_pos=None,
                backwards=True,
                limit=before_n,
                predicate=predicate,
                lazy_members=False,
            )
            before_chunk, start = before.chunk, before.cursor
        if after_n:
            after = await self.messages(
                requester,
                room_id,
                from_pos=ev.stream,
                to_pos=None,
                backwards=False,
                limit=after_n,
                predicate=predicate,
                lazy_members=False,
            )
            after_chunk, end = after.chunk, after.cursor
        event = (await self.serializer.serialize([ev], requester))[0]
        state_events = await self.store.state_at(room_id, ev.stream)
        if lazy_members:
            senders = {e["sender"] for e in [event, *before_chunk, *after_chunk]}
            state_events = [s for s in state_events if s.type != "m.room.member" or s.state_key in senders]
        return {
            "event": event,
            "events_before": before_chunk,
            "events_after": after_chunk,
            "start": start,
            "end": end,
            "state": await self.serializer.serialize(state_events, None, bundle=False),
        }
