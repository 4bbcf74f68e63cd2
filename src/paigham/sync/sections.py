"""The sections of a /sync response, each built by its own small function over the stores.

`Sections.build` reads the sections in a fixed order (membership changes, account data, joined,
invited and left rooms, global account data, presence) and returns them assembled; nothing writes
into a shared body. The E2EE extension adds its fields afterwards (sync/service.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

import msgspec
from msgspec import UNSET, Raw, Struct, UnsetType

from paigham.clock import now_ms
from paigham.domain.stored_event import StoredEvent
from paigham.domain.tokens import make_token
from paigham.services.serializer import strip_room_id
from paigham.storage.sync_probe import ACCOUNT_DATA, PRESENCE, PUSH_RULES, ROOM_EVENTS, ROOM_RECEIPTS, ROOM_TYPING
from paigham.sync.model import (
    Events,
    InvitedRoom,
    JoinedRoom,
    LeftRoom,
    Rooms,
    RoomSummary,
    SyncRequest,
    SyncResponse,
    Timeline,
    UnreadNotifications,
)
from paigham.sync.shared_reads import SharedReads
from paigham.sync.sources import PushRulesProvider, RoomReads, Serializer, StreamReads
from paigham.types import JsonDict

# The memberships a sync looks at: rooms it syncs (join), offers (invite, knock) or reports as left.
MEMBERSHIPS = ("join", "invite", "leave", "ban", "knock")
LEFT = ("leave", "ban")

# The state an invitee sees of the room (the spec's recommended stripped state), besides the
# inviter's and their own membership events.
STRIPPED_TYPES = (
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
)


def stripped_invite_state(state: Sequence[StoredEvent], user_id: str) -> list[JsonDict]:
    """The stripped state of an invite (or knock): the room's description, the user's own membership
    event and that of whoever sent it (without it, clients show "Empty room")."""
    own = next((e for e in state if e.type == "m.room.member" and e.state_key == user_id), None)
    inviter = own.sender if own is not None else None
    return [
        {"type": e.type, "state_key": e.state_key, "content": e.content, "sender": e.sender}
        for e in state
        if e.type in STRIPPED_TYPES
        or (e.type == "m.room.member" and e.state_key in (user_id, inviter) and e.state_key is not None)
    ]


@dataclass
class RoomDelta:
    timeline: list[StoredEvent] = field(default_factory=list)
    limited: bool = False
    state: list[StoredEvent] = field(default_factory=list)
    prev_batch: int = 0
    initial: bool = False  # the state is the whole state before the timeline (not the changes)
    # A membership changed in this delta (not counting members added by lazy-loading): the room's
    # summary (member counts, heroes) is sent again only then.
    members_changed: bool = False
    related: list[StoredEvent] = field(default_factory=list)  # the timeline's relations (bundled aggregations)


class RenderedRoom(Struct, gc=False):
    """A room's delta in the client format: what joined and left rooms share."""

    timeline: Timeline
    state: Events
    summary: RoomSummary | UnsetType


class AccountData(NamedTuple):
    """The user's account data changed in the window, as events: global, and by room."""

    global_events: list[JsonDict]
    by_room: dict[str, list[JsonDict]]


# Rooms read at once when many are sent (an initial or full_state sync): on PostgreSQL each room's
# reads are round trips, and a few in flight hide their latency (bounded: one sync must not take the
# whole connection pool); on SQLite the reads do not suspend, so the rooms go one after another.
ROOMS_IN_FLIGHT = 4
# A response of more joined rooms than this encodes each room as soon as it is built, and keeps its
# JSON (msgspec.Raw, spliced in when the response is encoded) instead of its tree of dicts: the peak of
# a big initial sync is then its JSON, not every room's events as Python objects at once.
ENCODE_ROOMS_OVER = 50
_encode = msgspec.json.Encoder().encode

T = TypeVar("T")
R = TypeVar("R")


async def in_flight(limit: int, items: Sequence[T], fn: Callable[[T], Awaitable[R]]) -> list[R]:
    """`fn` of each item, at most `limit` running at once, the results in the items' order. One item
    (an incremental sync woken by one room: the common case) runs in the caller's task: a task of
    its own would cost two passes of the event loop (its start, and the caller's resumption), and
    under load a pass is every ready task's step."""
    if len(items) == 1 or limit <= 1:
        return [await fn(item) for item in items]
    out: list[R | None] = [None] * len(items)
    todo = iter(enumerate(items))

    async def worker() -> None:
        for i, item in todo:  # one iterator shared by the workers: each item taken once
            out[i] = await fn(item)

    async with asyncio.TaskGroup() as group:  # one failing cancels the others
        for _ in range(min(limit, len(items))):
            group.create_task(worker())
    return out  # type: ignore[return-value]  # every slot was filled


def _room_has_news(
    delta: RoomDelta, ephemeral: list[JsonDict], account_data: list[JsonDict], membership_changed: bool
) -> bool:
    """Whether an incremental sync sends this joined room (a room with nothing new is left out)."""
    return bool(delta.timeline or delta.state or ephemeral or account_data or membership_changed)


class Sections:
    """Builds the core of a /sync response from the stores (through the Protocols in sources.py)."""

    def __init__(
        self,
        events: RoomReads,
        streams: StreamReads,
        serializer: Serializer,
        push_rules: PushRulesProvider,
        *,
        presence_enabled: bool,
    ) -> None:
        self.events = events
        # The reads of a woken incremental sync that every member woken by one event makes alike.
        self.shared = SharedReads(events)
        self.streams = streams
        self.serializer = serializer
        self.push_rules = push_rules
        self.presence_enabled = presence_enabled

    async def build(self, req: SyncRequest) -> SyncResponse:
        changes = await self._membership_changes(req)
        acct = await self._account_data_changes(req)
        rooms = Rooms(
            join=await self._joined(req, changes, acct.by_room),
            invite=await self._invited(req),
            leave=await self._left(req, changes),
        )
        account_data = await self._account_data(req, acct.global_events)
        presence = await self._presence(req) if self.presence_enabled and req.probe.has(PRESENCE) else []
        return SyncResponse(
            next_batch=make_token(req.upto), rooms=rooms, account_data=Events(account_data), presence=Events(presence)
        )

    async def _membership_changes(self, req: SyncRequest) -> set[str]:
        """Rooms whose membership state for this user is different now from at `since`.

        A join→join change (a new display name or avatar) is not a change: the room stays
        incremental, so nothing already delivered is sent again.
        """
        if req.since is None:
            return set()
        mem = req.probe.memberships
        moved = {r: mem[r][0] for r in req.probe.moved if mem[r][1] <= req.upto}
        before = await self.events.memberships_at(req.requester.user_id, list(moved), req.since)
        return {r for r, now in moved.items() if before.get(r) != now}

    async def _account_data_changes(self, req: SyncRequest) -> AccountData:
        """Room and global account data changed in the window, from one read."""
        out = AccountData([], {})
        if not req.probe.has(ACCOUNT_DATA):
            return out
        rows = await self.streams.account_data.since(req.requester.user_id, req.since, req.upto)
        for room_id, type_, content in rows:  # room_id "" for global data
            ev = {"type": type_, "content": content}
            if room_id:
                out.by_room.setdefault(room_id, []).append(ev)
            else:
                out.global_events.append(ev)
        return out

    # -- joined rooms -----------------------------------------------------------------------------
    async def _joined(
        self, req: SyncRequest, changed: set[str], account_data: dict[str, list[JsonDict]]
    ) -> dict[str, JoinedRoom | Raw]:
        mem = req.probe.memberships
        everything = req.since is None or req.full_state
        # An incremental sync looks at the rooms with news only, never at every room the user is in.
        pool = mem if everything else {*req.probe.room_flags, *changed, *account_data}
        joined = [r for r in pool if req.probe.joined(r) and req.flt.room_allowed(r)]
        if not joined:
            return {}
        candidates = set(joined) if everything else set(req.probe.rooms_with(ROOM_EVENTS, joined))
        ephemeral = await self._ephemeral(req, joined)
        joined_set = set(joined)
        room_data = {r: evs for r, evs in account_data.items() if r in joined_set}
        candidates |= set(ephemeral) | set(room_data) | (changed & joined_set)
        if not candidates:
            return {}
        counts = await self._unread_counts(req, candidates)

        encode_now = len(candidates) > ENCODE_ROOMS_OVER

        async def room(room_id: str) -> JoinedRoom | Raw | None:
            membership_changed = room_id in changed
            # A room new to the client is sent from scratch. With full_state the state is sent whole,
            # but the timeline still starts at `since` (the spec's rule): a room with nothing new
            # costs its state, never its history.
            fresh = req.since is None or membership_changed
            delta = await self._room_delta(
                req, room_id, None if fresh else req.since, req.upto, full_state=req.full_state
            )
            room_ephemeral, room_account_data = ephemeral.get(room_id, []), room_data.get(room_id, [])
            if req.since is not None and not _room_has_news(
                delta, room_ephemeral, room_account_data, membership_changed
            ):
                return None
            rendered = await self._render_room(req, room_id, delta, fresh or req.full_state)
            built = JoinedRoom(
                timeline=rendered.timeline,
                state=rendered.state,
                summary=rendered.summary,
                ephemeral=Events(room_ephemeral),
                account_data=Events(room_account_data),
                unread_notifications=UnreadNotifications(*counts.get(room_id, (0, 0))),
            )
            return Raw(_encode(built)) if encode_now else built

        order = sorted(candidates)
        built = await in_flight(ROOMS_IN_FLIGHT, order, room)
        return {room_id: r for room_id, r in zip(order, built, strict=True) if r is not None}

    async def _unread_counts(self, req: SyncRequest, rooms: set[str]) -> Mapping[str, tuple[int, int]]:
        """room → (notifications, highlights). The probe counted the unread of rooms with news; others
        (ephemeral or account data only) are counted here. Unread counts start after the read receipt,
        or the joining if later."""
        counts = {r: c for r, c in req.probe.unread.items() if r in rooms}
        missing = sorted(rooms - set(counts))
        if missing:
            joined = {r: req.probe.joined_at.get(r, 0) for r in missing}
            counts.update(await self.streams.unread.unread_after_reads(req.requester.user_id, joined))
        return counts

    async def _room_delta(
        self, req: SyncRequest, room_id: str, since: int | None, upto: int, *, full_state: bool = False
    ) -> RoomDelta:
        """The room's timeline in (since, upto] and its state: the whole state before the timeline
        when initial (no `since`, or `full_state`), else the state changes a gap in it hid."""
        limit = req.flt.timeline_limit
        # Oldest first; one more than the limit, to tell whether the timeline is limited. An incremental
        # window is read once for all the syncs that wait on the room (sync/shared_reads.py).
        reads = self.events if since is None else self.shared
        recent, related = await reads.recent_with_relations(room_id, after=since, upto=upto, limit=limit + 1)
        limited = len(recent) > limit
        timeline = recent[-limit:] if limit else []
        start = (timeline[0].stream - 1) if timeline else upto
        timeline = (
            [e for e in timeline if req.flt.timeline_match_stored(e)] if req.flt.has_timeline_filter else timeline
        )
        initial = since is None or full_state
        delta = RoomDelta(timeline=timeline, limited=limited, prev_batch=start, initial=initial, related=related)
        lazy = req.flt.lazy_load_members
        # Lazy loading reads only the member events it may show (the timeline's senders and the user),
        # not every member of a big room.
        senders = sorted({e.sender for e in timeline} | {req.requester.user_id}) if lazy else None
        if initial:
            delta.state = await self.events.state_at(room_id, start, members=not lazy)
            if senders is not None:
                delta.state += await self.events.state_at_keys(room_id, start, "m.room.member", senders)
        elif since is not None and limited:
            changed = await self.events.state_changes(room_id, since, start, members_of=senders)
            latest: dict[tuple[str, str | None], StoredEvent] = {}
            for e in changed:
                latest[(e.type, e.state_key)] = e
            delta.state = list(latest.values())
        delta.members_changed = any(e.type == "m.room.member" for e in [*delta.timeline, *delta.state]) or (
            senders is not None
            and since is not None
            and limited  # members not read: did any change?
            and await self.events.members_changed(room_id, since, start)
        )
        if lazy:
            delta.state = await self._lazy(req, room_id, delta, start, upto)
        delta.state = [e for e in delta.state if req.flt.state_match_stored(e)]
        return delta

    async def _lazy(self, req: SyncRequest, room_id: str, delta: RoomDelta, start: int, upto: int) -> list[StoredEvent]:
        """The state a lazy-loading sync sends: of the member events, those of the timeline's senders
        (and the user's own when the room is new to the client: the initial state holds it).

        On an incremental sync the user's own member event is left out unless they sent something: the
        spec counts it as redundant like any other, and reading it would cost every member woken by a
        message in a big room a read of their own."""
        me = req.requester.user_id
        senders = {e.sender for e in delta.timeline}
        in_timeline = {e.state_key for e in delta.timeline if e.type == "m.room.member"}
        keep = [e for e in delta.state if e.type != "m.room.member" or e.state_key in senders or e.state_key == me]
        have = {e.state_key for e in keep if e.type == "m.room.member"}
        missing = senders - have - in_timeline
        if missing and not delta.initial:
            keep.extend(await self.shared.members_at(room_id, start, upto, sorted(missing)))
        return keep

    async def _render_room(self, req: SyncRequest, room_id: str, delta: RoomDelta, initial: bool) -> RenderedRoom:
        rq = req.requester
        timeline = strip_room_id(await self.serializer.serialize(delta.timeline, rq, related=delta.related))
        state = strip_room_id(await self.serializer.serialize(delta.state, rq, bundle=False))
        summary = await self._summary(room_id, rq.user_id, req.upto) if initial or delta.members_changed else UNSET
        return RenderedRoom(Timeline(timeline, delta.limited, make_token(delta.prev_batch)), Events(state), summary)

    async def _summary(self, room_id: str, user_id: str, upto: int) -> RoomSummary:
        # The counts and the name are the same for every member woken by a join: read once for them.
        counts, named = await self.shared.summary(room_id, upto)
        return RoomSummary(
            joined_member_count=counts.get("join", 0),
            invited_member_count=counts.get("invite", 0),
            heroes=UNSET if named else await self.events.heroes(room_id, user_id, 5),
        )

    async def _ephemeral(self, req: SyncRequest, rooms: list[str]) -> dict[str, list[JsonDict]]:
        out: dict[str, list[JsonDict]] = {}
        typing_rooms = await self.streams.typing.changed(req.probe.rooms_with(ROOM_TYPING, rooms), req.since, req.upto)
        if typing_rooms:
            users = await self.streams.typing.users(sorted(typing_rooms), now_ms())
            for room_id in typing_rooms:
                out.setdefault(room_id, []).append(
                    {"type": "m.typing", "content": {"user_ids": sorted(users.get(room_id, []))}}
                )
        me = req.requester.user_id
        for r in await self.streams.receipts.since(req.probe.rooms_with(ROOM_RECEIPTS, rooms), req.since, req.upto):
            if r.receipt_type == "m.read.private" and r.user_id != me:
                continue
            entry: JsonDict = {"ts": r.ts}
            if r.thread_id:
                entry["thread_id"] = r.thread_id
            content = {r.event_id: {r.receipt_type: {r.user_id: entry}}}
            out.setdefault(r.room_id, []).append({"type": "m.receipt", "content": content})
        return {room: _merge_receipts(evs) for room, evs in out.items()}

    # -- global account data and presence ----------------------------------------------------------
    async def _account_data(self, req: SyncRequest, global_events: list[JsonDict]) -> list[JsonDict]:
        evs = global_events
        # The effective ruleset is only built when it is sent (initial sync, or changed since).
        if req.since is None or req.probe.has(PUSH_RULES):
            rules, _ = await self.push_rules(req.requester.user_id)
            evs = [*evs, {"type": "m.push_rules", "content": rules}]
        return [e for e in evs if req.flt.account_data_match(e)]

    async def _presence(self, req: SyncRequest) -> list[JsonDict]:
        # Everyone sharing a joined room with the user, in one query (not one per room).
        rows = await self.streams.presence.of_co_members(req.requester.user_id, req.since, req.upto)
        now = now_ms()
        return [
            {
                "type": "m.presence",
                "sender": r.user_id,
                "content": {
                    "presence": r.state,
                    "last_active_ago": max(0, now - r.last_active_ts),
                    "currently_active": r.state == "online",
                    **({"status_msg": r.status_msg} if r.status_msg else {}),
                },
            }
            for r in rows
        ]

    # -- invites and leaves -------------------------------------------------------------------------
    async def _invited(self, req: SyncRequest) -> dict[str, InvitedRoom]:
        out: dict[str, InvitedRoom] = {}
        mem = req.probe.memberships
        for room_id in req.probe.moved:  # every room on a first sync; else those whose membership moved
            m, stream = mem[room_id]
            if m != "invite" or stream > req.upto:
                continue
            state = await self.events.state_at(room_id, stream)
            out[room_id] = InvitedRoom(Events(stripped_invite_state(state, req.requester.user_id)))
        return out

    async def _left(self, req: SyncRequest, changed: set[str]) -> dict[str, LeftRoom]:
        out: dict[str, LeftRoom] = {}
        mem = req.probe.memberships
        for room_id in req.probe.moved:  # every room on a first sync; else those whose membership moved
            m, stream = mem[room_id]
            if m not in LEFT:
                continue
            if req.since is None and not req.flt.include_leave:
                continue
            if req.since is not None and room_id not in changed:
                continue
            delta = await self._room_delta(req, room_id, req.since, stream)
            rendered = await self._render_room(req, room_id, delta, req.since is None)
            out[room_id] = LeftRoom(timeline=rendered.timeline, state=rendered.state, summary=rendered.summary)
        return out


def _merge_receipts(evs: list[JsonDict]) -> list[JsonDict]:
    merged: JsonDict = {}
    others = []
    for ev in evs:
        if ev["type"] != "m.receipt":
            others.append(ev)
            continue
        for event_id, by_type in ev["content"].items():
            for rtype, by_user in by_type.items():
                merged.setdefault(event_id, {}).setdefault(rtype, {}).update(by_user)
    if merged:
        others.append({"type": "m.receipt", "content": merged})
    return others
