"""Simplified Sliding Sync (MSC4186): the room list and rooms Element X asks for, on connections
whose state is kept in the database.

One request: read where the streams stand and the user's rooms (the same first read as /sync,
storage/sync_probe.py); order the rooms by `bump_stamp`; cut each list's windows; then send each room
in a window or subscription that is new to the connection (in full, `initial`), has news since it was
last sent (incrementally), or is asked for with more (a longer timeline, more state). What the
connection holds afterwards is saved as a new generation (storage/sliding_sync.py) named by the
response's `pos`. With a `pos` and nothing to send, the request long-polls like /sync.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
from msgspec import UNSET, Struct

from paigham.clock import now_ms
from paigham.domain.stored_event import StoredEvent
from paigham.domain.tokens import make_token, parse_token
from paigham.errors import MatrixError
from paigham.requester import Requester
from paigham.services.serializer import strip_room_id
from paigham.storage.database import Database
from paigham.storage.receipts import Receipt
from paigham.storage.sliding_sync import MAX_AGE_MS, SlidingSyncStore
from paigham.storage.sync_probe import (
    ACCOUNT_DATA,
    DEVICE_LISTS,
    PUSH_RULES,
    ROOM_EVENTS,
    ROOM_RECEIPTS,
    ROOM_TYPING,
    TO_DEVICE,
    ProbeBatcher,
    SyncProbe,
    first_probe,
    probe,
)
from paigham.sync.notifier import Notifier
from paigham.sync.sections import MEMBERSHIPS, stripped_invite_state
from paigham.sync.shared_reads import SharedReads
from paigham.sync.sliding_model import (
    AccountDataResponse,
    DeviceListsResponse,
    E2eeResponse,
    ExtensionsResponse,
    Filters,
    Hero,
    ListCount,
    RoomConfig,
    RoomEventsResponse,
    ScopedToggle,
    SlidingRequest,
    SlidingResponse,
    SlidingRoom,
    ToDeviceResponse,
    make_pos,
    parse_pos,
    unknown_pos,
)
from paigham.sync.sources import PushRulesProvider, RoomReads, Serializer, StreamReads
from paigham.types import JsonDict

# What moves a room up the list (Synapse's default set, with the unstable names clients still send).
BUMP_TYPES = (
    "m.room.create",
    "m.room.message",
    "m.room.encrypted",
    "m.sticker",
    "m.call.invite",
    "m.poll.start",
    "org.matrix.msc3381.poll.start",
    "m.beacon_info",
    "org.matrix.msc3672.beacon_info",
)
LIVE = ("join", "invite", "knock")  # rooms the lists show
CACHED_CONNECTIONS = 2_000  # connection states kept in memory (the newest of each)
LEFT = ("leave", "ban")
MEMBER = "m.room.member"
# State every room carries besides what was asked for: its name, avatar and whether it is encrypted.
BASICS = ("m.room.name", "m.room.avatar", "m.room.create", "m.room.encryption")
HEROES = 5


class SlidingReads(RoomReads, Protocol):
    """What sliding sync reads of rooms beyond /sync's reads (storage/events.py)."""

    async def bump_stamps(self, room_ids: Sequence[str], types: Sequence[str]) -> dict[str, int]: ...

    async def current_state_many(
        self, room_ids: Sequence[str], types: Sequence[str], member_keys: Sequence[str]
    ) -> dict[str, list[StoredEvent]]: ...

    async def current_state_and_counts_many(
        self, room_ids: Sequence[str], types: Sequence[str], member_keys: Sequence[str]
    ) -> tuple[dict[str, list[StoredEvent]], dict[str, dict[str, int]]]: ...

    async def heroes_many(self, room_ids: Sequence[str], exclude: str, limit: int = 5) -> dict[str, list[str]]: ...

    async def recent_many(
        self, room_ids: Sequence[str], *, upto: int, limit: int
    ) -> dict[str, tuple[list[StoredEvent], list[StoredEvent]]]: ...


class AccountDataGet(Protocol):
    async def get(self, user_id: str, room_id: str, type_: str) -> JsonDict | None: ...


class ReceiptsOnEvents(Protocol):
    async def on_events(self, room_ids: Sequence[str], event_ids: Sequence[str], user_id: str) -> list[Receipt]: ...


# The E2EE plug-in's parts (e2ee/wiring.py): to-device delivery and device-list changes.
ToDeviceDelivery = Callable[[str, str, int | None, int, int], Awaitable[list[JsonDict]]]
DeviceListDelta = Callable[[str, int, int], Awaitable[tuple[list[str], list[str]]]]


@dataclass(frozen=True, slots=True)
class E2eeParts:
    to_device: ToDeviceDelivery
    device_lists: DeviceListDelta


# -- what a connection holds (saved per generation) --------------------------------------------------
class RoomSent(Struct, array_like=True, gc=False):
    stream: int  # the room was sent up to this position
    membership: str
    timeline_limit: int
    required_state: str  # the required_state it was sent with (Wanted.key)
    bump: int
    # Whose member events this connection has for the room (the newest MEMBERS_KEPT): a $LAZY
    # member already sent is not read again for the next timeline of the same senders.
    members: list[str] = []


class ConnectionState(Struct, gc=False):
    rooms: dict[str, RoomSent] = {}
    bumps: dict[str, int] = {}  # every live room's bump stamp (the list order)
    counts: dict[str, int] = {}  # list → count as last sent


_encode = msgspec.msgpack.Encoder().encode
_decode_state = msgspec.msgpack.Decoder(ConnectionState).decode


@dataclass(slots=True)
class Wanted:
    """What a room in view is asked for: the merged config of every list window and subscription."""

    timeline_limit: int = 0
    pairs: set[tuple[str, str]] = field(default_factory=set)

    def add(self, cfg: RoomConfig) -> None:
        self.timeline_limit = max(self.timeline_limit, cfg.timeline_limit)
        self.pairs.update((t, k) for t, k in cfg.required_state)

    @property
    def batchable(self) -> bool:
        """Whether the state asked for is named by type (read for many rooms at once), not "all"."""
        return not any(t == "*" or (t == MEMBER and k == "*") for t, k in self.pairs)

    @property
    def key(self) -> str:
        """A short digest of the required state (saved for every room the connection holds)."""
        return _digest(frozenset(self.pairs))


@dataclass(slots=True)
class Pass:
    """One computation: the request, what the streams say, and what the connection holds."""

    rq: Requester
    body: SlidingRequest
    since: int | None
    upto: int
    found: SyncProbe
    prev: ConnectionState
    state: ConnectionState
    m_direct: set[str] | None = None
    account_data: list[tuple[str, str, Any]] | None = None  # all of it (a fresh connection's extension)
    initial_rooms: set[str] = field(default_factory=set)
    timelines: dict[str, list[str]] = field(default_factory=dict)  # room → event ids sent


@dataclass(slots=True)
class Computed:
    response: SlidingResponse
    state: ConnectionState
    upto: int
    has_news: bool
    wake_rooms: list[str]


class SlidingSyncService:
    def __init__(
        self,
        db: Database,
        events: SlidingReads,
        streams: StreamReads,
        account_data: AccountDataGet,
        receipts: ReceiptsOnEvents,
        serializer: Serializer,
        notifier: Notifier,
        push_rules: PushRulesProvider,
        store: SlidingSyncStore,
        e2ee: E2eeParts | None = None,
    ) -> None:
        self.db = db
        self.events = events
        self.streams = streams
        self.account_data = account_data
        self.receipts = receipts
        self.serializer = serializer
        self.notifier = notifier
        self.push_rules = push_rules
        self.store = store
        self.e2ee = e2ee
        # One message wakes the long-polls of every member holding the room: their probes go as one
        # statement (PostgreSQL), and the room's new events are read once for those at the same point.
        self.probes = ProbeBatcher(db)
        self.shared = SharedReads(events)
        # (user, device, conn_id) → (generation, stream, state, saved at): the newest saved here.
        self._recent: OrderedDict[tuple[str, str, str], tuple[int, int, ConnectionState, int]] = OrderedDict()

    async def sync(self, rq: Requester, body: SlidingRequest, pos: str | None, timeout_ms: int) -> SlidingResponse:
        conn_id = body.conn_id or ""
        generation: int | None = None
        prev, since = ConnectionState(), None
        if pos:
            generation, stream = parse_pos(pos)
            prev = await self._load(rq, conn_id, generation, stream)
            since = stream
        deadline = time.monotonic() + timeout_ms / 1000
        held = False  # a big room's membership news is held at most once per request (as /sync's)
        while True:
            found, used = await self._probe(rq, since)
            if not held and used is not None and self.notifier.holds_news:
                waking = _wake_keys(rq.user_id, [r for r, (m, _) in found.memberships.items() if m in LIVE])
                held = await self.notifier.held(waking, used, found.position, deadline - time.monotonic())
                if held:
                    continue
            out = await self._build(rq, body, prev, used, found)
            del found
            remaining = deadline - time.monotonic()
            if out.has_news or since is None or remaining <= 0:
                break
            if not await self.notifier.wait(_wake_keys(rq.user_id, out.wake_rooms), out.upto, remaining):
                out = await self._compute(rq, body, prev, since)  # one last look, as /sync does
                break
            if not self.db.reads_suspend:  # as /sync does (sync/service.py)
                await asyncio.sleep(0)
        response = out.response
        if out.has_news or since is None:
            new_generation = await self.store.save(
                rq.user_id,
                rq.device_id,
                conn_id,
                generation + 1 if generation is not None else _fresh_generation(),
                out.upto,
                _encode(out.state),
                used=generation,
            )
            self._remember((rq.user_id, rq.device_id, conn_id), new_generation, out.upto, out.state)
            response.pos = make_pos(new_generation, out.upto)
        else:
            assert pos is not None
            response.pos = pos  # nothing new: the same position (nothing to save)
        return response

    async def _load(self, rq: Requester, conn_id: str, generation: int, stream: int) -> ConnectionState:
        """The state a `pos` names: from this process's memory when it issued that pos last for the
        connection (every generation is immutable once saved), else from the database."""
        key = (rq.user_id, rq.device_id, conn_id)
        cached = self._recent.get(key)
        if cached is not None and cached[0] == generation and cached[3] > now_ms() - MAX_AGE_MS:
            self._recent.move_to_end(key)
            if cached[1] != stream:
                raise unknown_pos()
            return cached[2]
        saved = await self.store.load(rq.user_id, rq.device_id, conn_id, generation)
        if saved is None or saved.stream != stream:
            raise unknown_pos()
        try:
            return _decode_state(saved.state)
        except msgspec.DecodeError:
            raise unknown_pos() from None

    def _remember(self, key: tuple[str, str, str], generation: int, stream: int, state: ConnectionState) -> None:
        """Keep the newest saved state of a connection (bounded: the least recently used go first), so
        the next request with its pos reads nothing. In a cluster the next request may go to another
        worker, which reads the database."""
        self._recent[key] = (generation, stream, state, now_ms())
        self._recent.move_to_end(key)
        while len(self._recent) > CACHED_CONNECTIONS:
            self._recent.popitem(last=False)

    async def purge(self) -> None:
        await self.store.purge()

    # -- one pass --------------------------------------------------------------------------------------
    async def _compute(self, rq: Requester, body: SlidingRequest, prev: ConnectionState, since: int | None) -> Computed:
        found, since = await self._probe(rq, since)
        return await self._build(rq, body, prev, since, found)

    async def _probe(self, rq: Requester, since: int | None) -> tuple[SyncProbe, int | None]:
        """Where the streams stand and which rooms have news; with `since` as used."""
        # A fresh connection sends every room in view in full and counts their unread itself: its
        # first probe reads the rooms and their bump stamps only, nothing out of view is counted.
        if since is None:
            found = await first_probe(self.db, rq.user_id, rq.device_id, MEMBERSHIPS, BUMP_TYPES)
        else:
            found = await probe(self.db, rq.user_id, rq.device_id, since, MEMBERSHIPS, BUMP_TYPES, batcher=self.probes)
        if since is None:
            found.user_flags = ACCOUNT_DATA | PUSH_RULES | TO_DEVICE | DEVICE_LISTS
        elif since > found.position:
            since = found.position  # a position from a restored database: take it as "now"
        return found, since

    async def _build(
        self, rq: Requester, body: SlidingRequest, prev: ConnectionState, since: int | None, found: SyncProbe
    ) -> Computed:
        p = Pass(rq, body, since, found.position, found, prev, ConnectionState(dict(prev.rooms)))
        live = {r: m for r, (m, _) in found.memberships.items() if m in LIVE}
        await self._bump_stamps(p, live)
        order = sorted(live, key=lambda r: (-p.state.bumps[r], r))
        in_view: dict[str, Wanted] = {}
        lists: dict[str, ListCount] = {}
        in_list: dict[str, set[str]] = {}
        for name, cfg in body.lists.items():
            matched = await self._filtered(p, cfg.filters, order, live)
            lists[name] = ListCount(len(matched))
            p.state.counts[name] = len(matched)
            in_list[name] = set()
            for lo, hi in cfg.ranges:
                for room_id in matched[lo : hi + 1]:
                    in_view.setdefault(room_id, Wanted()).add(cfg)
                    in_list[name].add(room_id)
        for room_id, sub in body.room_subscriptions.items():
            if room_id in live:  # a subscription to a room one is not in is ignored (no peeking)
                in_view.setdefault(room_id, Wanted()).add(sub)
        await self._count_unread(p, in_view)
        rooms: dict[str, SlidingRoom] = {}
        fresh: list[tuple[str, Wanted]] = []  # joined rooms new to the connection: sent in full, together
        for room_id, wanted in in_view.items():
            sent = prev.rooms.get(room_id)
            new_to_connection = sent is None or sent.membership != "join"
            if found.memberships[room_id][0] == "join" and new_to_connection and wanted.batchable:
                fresh.append((room_id, wanted))
                continue
            room = await self._room(p, room_id, wanted)
            if room is not None:
                rooms[room_id] = room
        rooms.update(await self._joined_initial_many(p, fresh))
        rooms.update(await self._left_rooms(p, live))
        extensions = await self._extensions(p, in_view, in_list, rooms)
        counts_changed = p.state.counts != prev.counts
        has_news = bool(rooms) or counts_changed or extensions.has_news()
        response = SlidingResponse(pos="", lists=lists, rooms=rooms, extensions=extensions)
        return Computed(response, p.state, p.upto, has_news, list(live))

    async def _bump_stamps(self, p: Pass, live: Mapping[str, str]) -> None:
        """Each live room's bump stamp: a room the connection has one for takes the probe's newest
        bump event past `since` (if any); the others are looked up."""
        bumps = {r: b for r, b in p.prev.bumps.items() if r in live}
        if p.since is None:  # the first probe read every joined room's
            for room_id in live:
                bumps[room_id] = p.found.bumps.get(room_id, p.found.memberships[room_id][1])
            p.state.bumps = bumps
            return
        bumps.update((r, b) for r, b in p.found.bumps.items() if r in bumps)
        since = -1 if p.since is None else p.since
        stale = [
            r
            for r, m in live.items()
            # new to the connection, or joined since (an invite's stamp was when it came)
            if m == "join" and (r not in bumps or p.since is None or p.found.memberships[r][1] > since)
        ]
        found = await self.events.bump_stamps(stale, BUMP_TYPES) if stale else {}
        for room_id, m in live.items():
            stream = p.found.memberships[room_id][1]
            if m != "join":
                bumps[room_id] = stream  # an invite or knock: when it came
            elif room_id in found or room_id not in bumps:
                bumps[room_id] = found.get(room_id, stream)
        p.state.bumps = bumps

    async def _filtered(self, p: Pass, flt: Filters | None, order: list[str], live: Mapping[str, str]) -> list[str]:
        if flt is None:
            return order
        out = []
        for room_id in order:
            if await self._matches(p, flt, room_id, live[room_id]):
                out.append(room_id)
        return out

    async def _matches(self, p: Pass, flt: Filters, room_id: str, membership: str) -> bool:
        if flt.is_invite is not None and flt.is_invite != (membership == "invite"):
            return False
        if flt.is_dm is not None and flt.is_dm != (room_id in await self._direct_rooms(p)):
            return False
        needs_state = flt.is_encrypted is not None or flt.room_types is not None or flt.not_room_types is not None
        if needs_state:
            state = {e.type: e for e in await self._state_upto(p, room_id, ("m.room.create", "m.room.encryption"))}
            if flt.is_encrypted is not None and flt.is_encrypted != ("m.room.encryption" in state):
                return False
            create = state.get("m.room.create")
            room_type = create.content.get("type") if create else None
            if flt.room_types is not None and room_type not in flt.room_types:
                return False
            if flt.not_room_types is not None and room_type in flt.not_room_types:
                return False
        if flt.tags is not None or flt.not_tags is not None:
            tags = set((await self.account_data.get(p.rq.user_id, room_id, "m.tag") or {}).get("tags", {}) or {})
            if flt.tags is not None and not tags & set(flt.tags):
                return False
            if flt.not_tags is not None and tags & set(flt.not_tags):
                return False
        if flt.spaces is not None:
            parents = {e.state_key for e in await self._state_upto(p, room_id, ("m.space.parent",))}
            if not parents & set(flt.spaces):
                return False
        return True

    async def _direct_rooms(self, p: Pass) -> set[str]:
        """The rooms the user's m.direct account data names (read once per pass)."""
        if p.m_direct is None:
            if self._sends_all_account_data(p):  # read anyway for the extension: m.direct is in it
                all_data = await self._all_account_data(p)
                content = next((c for r, t, c in all_data if not r and t == "m.direct"), None) or {}
            else:
                content = await self.account_data.get(p.rq.user_id, "", "m.direct") or {}
            p.m_direct = {
                r for rooms in content.values() if isinstance(rooms, list) for r in rooms if isinstance(r, str)
            }
        return p.m_direct

    @staticmethod
    def _sends_all_account_data(p: Pass) -> bool:
        ext = p.body.extensions.account_data
        return p.since is None and ext is not None and bool(ext.enabled)

    async def _all_account_data(self, p: Pass) -> list[tuple[str, str, Any]]:
        """All of the user's account data, read once per pass."""
        if p.account_data is None:
            p.account_data = list(await self.streams.account_data.since(p.rq.user_id, None, p.upto))
        return p.account_data

    async def _state_upto(self, p: Pass, room_id: str, types: Sequence[str]) -> list[StoredEvent]:
        stream = p.found.memberships[room_id][1] if p.found.memberships[room_id][0] != "join" else p.upto
        return await self.events.state_at(room_id, stream, types)

    # -- rooms -------------------------------------------------------------------------------------------
    async def _room(self, p: Pass, room_id: str, wanted: Wanted) -> SlidingRoom | None:
        membership, stream = p.found.memberships[room_id]
        sent = p.prev.rooms.get(room_id)
        bump = p.state.bumps[room_id]
        if membership != "join":
            if sent is not None and sent.membership == membership and sent.stream >= stream:
                return None
            p.state.rooms[room_id] = RoomSent(p.upto, membership, wanted.timeline_limit, wanted.key, bump)
            return await self._invited(p, room_id, stream, bump)
        p.state.rooms[room_id] = RoomSent(p.upto, "join", wanted.timeline_limit, wanted.key, bump)
        if sent is None or sent.membership != "join":
            return await self._joined_initial(p, room_id, wanted, bump)
        return await self._joined_update(p, room_id, wanted, sent, bump)

    async def _invited(self, p: Pass, room_id: str, stream: int, bump: int) -> SlidingRoom:
        state = await self.events.state_at(room_id, stream)
        stripped = stripped_invite_state(state, p.rq.user_id)
        by_type = {(e["type"], e["state_key"]): e for e in stripped}
        me = by_type.get((MEMBER, p.rq.user_id))
        name = (by_type.get(("m.room.name", "")) or {}).get("content", {}).get("name")
        avatar = (by_type.get(("m.room.avatar", "")) or {}).get("content", {}).get("url")
        is_dm = bool(me and me["content"].get("is_direct")) or room_id in await self._direct_rooms(p)
        return SlidingRoom(
            name=name if isinstance(name, str) and name else UNSET,
            avatar=avatar if isinstance(avatar, str) and avatar else UNSET,
            is_dm=is_dm,
            initial=True,
            invite_state=stripped,
            bump_stamp=bump,
        )

    async def _joined_initial(self, p: Pass, room_id: str, wanted: Wanted, bump: int) -> SlidingRoom:
        p.initial_rooms.add(room_id)
        limit = wanted.timeline_limit
        recent, related = await self.events.recent_with_relations(room_id, after=None, upto=p.upto, limit=limit + 1)
        timeline = recent[-limit:] if limit else []
        state, basics = await self._required_state(p, room_id, wanted, timeline, everything=True)
        _keep_members(p.state.rooms[room_id], state, [])
        room = await self._render(p, room_id, timeline, related, len(recent) > limit, state)
        room.initial = True
        room.bump_stamp = bump
        room.num_live = 0
        await self._describe(p, room_id, room, basics, counts=True)
        return room

    async def _joined_update(
        self, p: Pass, room_id: str, wanted: Wanted, sent: RoomSent, bump: int
    ) -> SlidingRoom | None:
        limit = wanted.timeline_limit
        expanded = limit > sent.timeline_limit
        new_config = wanted.key != sent.required_state
        quiet = (
            sent.stream == p.since and not p.found.room_flags.get(room_id, 0) & ROOM_EVENTS
        ) or sent.stream >= p.upto
        if quiet and not expanded and not new_config:
            return None
        after = None if expanded else sent.stream
        recent, related = await self.shared.recent_with_relations(room_id, after=after, upto=p.upto, limit=limit + 1)
        timeline = recent[-limit:] if limit else []
        fresh = [e for e in recent if e.stream > sent.stream]
        if not fresh and not expanded and not new_config:
            return None
        if new_config:
            state, basics = await self._required_state(p, room_id, wanted, timeline, everything=True)
            _keep_members(p.state.rooms[room_id], state, [])
        else:
            if len(recent) > limit:  # a gap: state may have changed in it
                changed = await self.events.state_changes(room_id, sent.stream, p.upto)
            else:  # every event since the room was sent is at hand
                changed = [e for e in fresh if e.state_key is not None]
            state, basics = await self._required_state(
                p, room_id, wanted, timeline, changed=changed, known=set(sent.members)
            )
            _keep_members(p.state.rooms[room_id], state, sent.members)
        room = await self._render(p, room_id, timeline, related, len(recent) > limit, state)
        room.num_live = sum(1 for e in timeline if e.stream > sent.stream)
        if expanded:
            room.unstable_expanded_timeline = True
        if bump != sent.bump:
            room.bump_stamp = bump
        changed_types = {e.type for e in fresh if e.state_key is not None}
        if changed_types & {"m.room.name", "m.room.avatar", MEMBER}:
            await self._describe(p, room_id, room, basics, counts=MEMBER in changed_types)
        return room

    async def _required_state(
        self,
        p: Pass,
        room_id: str,
        wanted: Wanted,
        timeline: Sequence[StoredEvent],
        *,
        everything: bool = False,
        changed: Sequence[StoredEvent] = (),
        known: Collection[str] = (),
    ) -> tuple[list[StoredEvent], dict[str, StoredEvent]]:
        """The state the room is asked for (all of it, or what changed — with $LAZY, the member events
        of the timeline's senders the connection does not have yet, `known` being those it has)."""
        me = p.rq.user_id
        lazy = {e.sender for e in timeline} | {e.state_key for e in timeline if e.type == MEMBER and e.state_key}
        match = _matcher(wanted.pairs, me, lazy)
        if not everything:
            latest: dict[tuple[str, str | None], StoredEvent] = {}
            for e in changed:
                latest[(e.type, e.state_key)] = e
            picked = [e for e in latest.values() if match(e)]
            if ("m.room.member", "$LAZY") in wanted.pairs:
                have = {e.state_key for e in picked if e.type == MEMBER}
                missing = lazy - have - set(known)
                if missing:
                    picked += await self.events.state_at_keys(room_id, p.upto, MEMBER, sorted(missing))
            return picked, {e.type: e for e in latest.values() if e.type in BASICS and e.state_key == ""}
        if ("*", "*") in wanted.pairs:
            state = await self.events.state_at(room_id, p.upto)
            return [e for e in state if match(e)], {e.type: e for e in state if e.type in BASICS and e.state_key == ""}
        types = {t for t, _ in wanted.pairs if t != MEMBER and t != "*"} | set(BASICS)
        if any(t == "*" for t, _ in wanted.pairs):
            types = set()  # ["*", key]: any type with that key — read all but members
        state = await self.events.state_at(room_id, p.upto, sorted(types) if types else None)
        members: list[StoredEvent] = []
        if (MEMBER, "*") in wanted.pairs:
            members = [e for e in state if e.type == MEMBER] or await self.events.state_at(room_id, p.upto, [MEMBER])
        else:
            keys = {k for t, k in wanted.pairs if t in (MEMBER, "*") and not k.startswith("$") and k != "*"}
            if (MEMBER, "$ME") in wanted.pairs:
                keys.add(me)
            if (MEMBER, "$LAZY") in wanted.pairs:
                keys |= lazy
            members = await self.events.state_at_keys(room_id, p.upto, MEMBER, sorted(keys)) if keys else []
        others = [e for e in state if e.type != MEMBER and match(e)]
        basics = {e.type: e for e in state if e.type in BASICS and e.state_key == ""}
        return others + [e for e in members if match(e)], basics

    async def _render(
        self,
        p: Pass,
        room_id: str,
        timeline: list[StoredEvent],
        related: list[StoredEvent],
        limited: bool,
        state: list[StoredEvent],
    ) -> SlidingRoom:
        rq = p.rq
        p.timelines[room_id] = [e.event_id for e in timeline]
        prev_batch = (timeline[0].stream - 1) if timeline else p.upto
        notifications, highlights = await self._unread(p, room_id)
        return SlidingRoom(
            required_state=strip_room_id(await self.serializer.serialize(state, rq, bundle=False)),
            timeline=strip_room_id(await self.serializer.serialize(timeline, rq, related=related)),
            prev_batch=make_token(prev_batch),
            limited=limited,
            notification_count=notifications,
            highlight_count=highlights,
        )

    async def _joined_initial_many(self, p: Pass, items: Sequence[tuple[str, Wanted]]) -> dict[str, SlidingRoom]:
        """Joined rooms new to the connection, in full: one read of their timelines (by timeline limit),
        then one of the asked-for current state (and the members it names) and member counts of all of
        them, and heroes for the unnamed ones. A room's state may be a little newer than its timeline (a
        state event after this response's position): the next response sends it again, harmlessly."""
        if not items:
            return {}
        me = p.rq.user_id
        timelines: dict[str, tuple[list[StoredEvent], list[StoredEvent], bool]] = {}
        lazies: dict[str, set[str]] = {}
        types, keys = set(BASICS), set()
        by_limit: dict[int, list[str]] = {}
        for room_id, wanted in items:
            by_limit.setdefault(wanted.timeline_limit, []).append(room_id)
        recents: dict[str, tuple[list[StoredEvent], list[StoredEvent]]] = {}
        for limit, rooms in by_limit.items():  # nearly always one limit for all
            recents.update(await self.events.recent_many(rooms, upto=p.upto, limit=limit + 1))
        for room_id, wanted in items:
            limit = wanted.timeline_limit
            recent, related = recents[room_id]
            timeline = recent[-limit:] if limit else []
            timelines[room_id] = (timeline, related, len(recent) > limit)
            lazies[room_id] = _lazy_members(timeline)
            types |= {t for t, _ in wanted.pairs if t != MEMBER}
            keys |= _member_keys(wanted, me, lazies[room_id])
        room_ids = [r for r, _ in items]
        state, counts = await self.events.current_state_and_counts_many(room_ids, sorted(types), sorted(keys))
        unnamed = [r for r in room_ids if not _name(_basics(state[r]))]
        heroes = await self.events.heroes_many(unnamed, me, HEROES) if unnamed else {}
        hero_members = await self._hero_members(heroes, state, keys)
        out: dict[str, SlidingRoom] = {}
        for room_id, wanted in items:
            p.initial_rooms.add(room_id)
            timeline, related, limited = timelines[room_id]
            match = _matcher(wanted.pairs, me, lazies[room_id])
            picked = [e for e in state[room_id] if match(e)]
            room = await self._render(p, room_id, timeline, related, limited, picked)
            room.initial, room.bump_stamp, room.num_live = True, p.state.bumps[room_id], 0
            _describe(room, _basics(state[room_id]), counts.get(room_id, {}))
            if room_id in heroes:
                room.heroes = [_hero(u, hero_members.get((room_id, u), {})) for u in heroes[room_id]]
            room.is_dm = room_id in await self._direct_rooms(p)
            p.state.rooms[room_id] = RoomSent(p.upto, "join", wanted.timeline_limit, wanted.key, p.state.bumps[room_id])
            _keep_members(p.state.rooms[room_id], picked, [])
            out[room_id] = room
        return out

    async def _hero_members(
        self, heroes: Mapping[str, list[str]], state: Mapping[str, list[StoredEvent]], have: set[str]
    ) -> dict[tuple[str, str], JsonDict]:
        """(room, user) → the member event content of each hero (from the state read, or one more read)."""
        out = {
            (room_id, e.state_key): e.content
            for room_id in heroes
            for e in state[room_id]
            if e.type == MEMBER and e.state_key is not None
        }
        missing = sorted({u for users in heroes.values() for u in users} - have)
        if missing:
            extra = await self.events.current_state_many(list(heroes), [], missing)
            out.update({(r, e.state_key): e.content for r, evs in extra.items() for e in evs if e.state_key})
        return out

    async def _describe(
        self, p: Pass, room_id: str, room: SlidingRoom, basics: dict[str, StoredEvent], *, counts: bool
    ) -> None:
        """Name, avatar, heroes, DM flag and member counts of a room sent incrementally."""
        if not {"m.room.name", "m.room.avatar"} <= basics.keys():
            have = {**{e.type: e for e in await self.events.state_at(room_id, p.upto, BASICS)}, **basics}
            basics = have
        if counts or room.initial:
            _describe(room, basics, await self.events.member_counts(room_id))
            if not _name(basics):
                heroes = await self.events.heroes(room_id, p.rq.user_id, HEROES)
                events = await self.events.state_at_keys(room_id, p.upto, MEMBER, heroes) if heroes else []
                by_user = {e.state_key: e.content for e in events}
                room.heroes = [_hero(u, by_user.get(u, {})) for u in heroes]
        else:
            _describe(room, basics, None)
        room.is_dm = room_id in await self._direct_rooms(p)

    async def _count_unread(self, p: Pass, in_view: Mapping[str, Wanted]) -> None:
        """Unread counts of the joined rooms in view new to the connection that the first read did not
        count (it counts rooms with news only), in two reads for all of them."""
        missing = [
            r
            for r in in_view
            if r not in p.found.unread
            and p.found.memberships[r][0] == "join"
            and (r not in p.prev.rooms or p.prev.rooms[r].membership != "join")
        ]
        if missing:
            await self._unread_of(p, missing)

    async def _unread_of(self, p: Pass, rooms: list[str]) -> None:
        joined = {r: p.found.joined_at.get(r, 0) for r in rooms}
        counts = await self.streams.unread.unread_after_reads(p.rq.user_id, joined)
        for r in rooms:
            p.found.unread[r] = tuple(counts.get(r, (0, 0)))  # type: ignore[assignment]

    async def _unread(self, p: Pass, room_id: str) -> tuple[int, int]:
        if room_id not in p.found.unread:
            await self._unread_of(p, [room_id])
        return p.found.unread[room_id]

    async def _left_rooms(self, p: Pass, live: Mapping[str, str]) -> dict[str, SlidingRoom]:
        """Rooms the connection had that the user has left since: sent once, with the leave."""
        out: dict[str, SlidingRoom] = {}
        for room_id, sent in p.prev.rooms.items():
            if room_id in live:
                continue
            p.state.rooms.pop(room_id, None)
            current = p.found.memberships.get(room_id)
            if current is None or current[0] not in LEFT or sent.membership not in LIVE:
                continue  # forgotten, or already reported
            stream = current[1]
            limit = max(1, sent.timeline_limit)
            recent, related = await self.events.recent_with_relations(
                room_id, after=sent.stream, upto=stream, limit=limit + 1
            )
            timeline = recent[-limit:]
            room = await self._render(p, room_id, timeline, related, len(recent) > limit, [])
            room.bump_stamp = stream
            room.num_live = len(timeline)
            out[room_id] = room
        return out

    # -- extensions --------------------------------------------------------------------------------------
    async def _extensions(
        self,
        p: Pass,
        in_view: Mapping[str, Wanted],
        in_list: Mapping[str, set[str]],
        rooms: Mapping[str, SlidingRoom],
    ) -> ExtensionsResponse:
        ext = p.body.extensions
        out = ExtensionsResponse()
        if ext.to_device is not None and ext.to_device.enabled and self.e2ee is not None:
            out.to_device = await self._to_device(p, ext.to_device.since, ext.to_device.limit)
        if ext.e2ee is not None and ext.e2ee.enabled:
            out.e2ee = await self._e2ee(p)
        if ext.account_data is not None and ext.account_data.enabled:
            scope = _scope(ext.account_data, in_view, in_list)
            out.account_data = await self._account_data(p, scope)
        if ext.receipts is not None and ext.receipts.enabled:
            out.receipts = await self._receipts(p, _scope(ext.receipts, in_view, in_list))
        if ext.typing is not None and ext.typing.enabled:
            out.typing = await self._typing(p, _scope(ext.typing, in_view, in_list))
        return out

    async def _to_device(self, p: Pass, since_token: str | None, limit: int) -> ToDeviceResponse:
        assert self.e2ee is not None
        since = None
        if since_token:
            try:
                since = parse_token(since_token, "to_device.since")
            except MatrixError:
                since = None  # an unparsable token: deliver from the oldest queued message
        events: list[JsonDict] = []
        if p.found.has(TO_DEVICE) or p.since is None:
            events = await self.e2ee.to_device(p.rq.user_id, p.rq.device_id, since, p.upto, min(limit, 100))
        return ToDeviceResponse(next_batch=make_token(p.upto), events=events)

    async def _e2ee(self, p: Pass) -> E2eeResponse:
        out = E2eeResponse(
            device_one_time_keys_count={"signed_curve25519": 0, **p.found.one_time_keys},
            device_unused_fallback_key_types=list(p.found.fallback_keys),
        )
        if p.since is not None and self.e2ee is not None:
            changed: list[str] = []
            left: list[str] = []
            if p.found.has(DEVICE_LISTS):
                changed, left = await self.e2ee.device_lists(p.rq.user_id, p.since, p.upto)
            out.device_lists = DeviceListsResponse(changed, left)
        return out

    async def _account_data(self, p: Pass, scope: set[str]) -> AccountDataResponse:
        """All of it on a fresh connection, then what changed; all of a room's when the room is new to
        the connection."""
        user_id = p.rq.user_id
        glob: list[JsonDict] = []
        by_room: dict[str, list[JsonDict]] = {}
        if p.since is None or p.found.has(ACCOUNT_DATA):
            changed = (
                await self._all_account_data(p)
                if p.since is None
                else await self.streams.account_data.since(user_id, p.since, p.upto)
            )
            for room_id, type_, content in changed:
                ev = {"type": type_, "content": content}
                if not room_id:
                    glob.append(ev)
                elif room_id in scope:
                    by_room.setdefault(room_id, []).append(ev)
        new_rooms = scope & p.initial_rooms
        if p.since is not None and new_rooms:
            whole: dict[str, list[JsonDict]] = {}
            for room_id, type_, content in await self.streams.account_data.since(user_id, None, p.upto):
                if room_id in new_rooms:
                    whole.setdefault(room_id, []).append({"type": type_, "content": content})
            by_room.update(whole)
        if p.since is None or p.found.has(PUSH_RULES):
            rules, _ = await self.push_rules(user_id)
            glob.append({"type": "m.push_rules", "content": rules})
        return AccountDataResponse(glob, by_room)

    async def _receipts(self, p: Pass, scope: set[str]) -> RoomEventsResponse:
        me = p.rq.user_id
        found: list[Receipt] = []
        fresh = sorted(scope & p.initial_rooms)
        if fresh:
            event_ids = [e for r in fresh for e in p.timelines.get(r, [])]
            found += await self.receipts.on_events(fresh, event_ids, me)
        if p.since is not None:
            rooms = [r for r in p.found.rooms_with(ROOM_RECEIPTS, sorted(scope)) if r not in p.initial_rooms]
            found += await self.streams.receipts.since(rooms, p.since, p.upto)
        out: dict[str, JsonDict] = {}
        for r in found:
            if r.receipt_type == "m.read.private" and r.user_id != me:
                continue
            entry: JsonDict = {"ts": r.ts}
            if r.thread_id:
                entry["thread_id"] = r.thread_id
            content = out.setdefault(r.room_id, {"type": "m.receipt", "content": {}})["content"]
            content.setdefault(r.event_id, {}).setdefault(r.receipt_type, {})[r.user_id] = entry
        return RoomEventsResponse(out)

    async def _typing(self, p: Pass, scope: set[str]) -> RoomEventsResponse:
        if p.since is None:
            rooms = sorted(scope)
        else:
            rooms = sorted(
                set(await self.streams.typing.changed(p.found.rooms_with(ROOM_TYPING, sorted(scope)), p.since, p.upto))
            )
        users = await self.streams.typing.users(rooms, now_ms()) if rooms else {}
        out: dict[str, JsonDict] = {}
        for room_id in rooms:
            who = sorted(users.get(room_id, []))
            if who or p.since is not None:
                out[room_id] = {"type": "m.typing", "content": {"user_ids": who}}
        return RoomEventsResponse(out)


@functools.lru_cache(maxsize=1024)
def _digest(pairs: frozenset[tuple[str, str]]) -> str:
    """`Wanted.key` of these pairs (the windows of a request mostly share one config: worked out once)."""
    text = "\x1f".join(sorted(f"{t}\x1e{k}" for t, k in pairs))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _scope(toggle: ScopedToggle, in_view: Mapping[str, Wanted], in_list: Mapping[str, set[str]]) -> set[str]:
    """The rooms an extension covers: those of the named lists' windows and the named subscriptions."""
    lists = toggle.lists if toggle.lists is not None else ["*"]
    rooms = toggle.rooms if toggle.rooms is not None else ["*"]
    out: set[str] = set()
    for name in in_list if "*" in lists else lists:
        out |= in_list.get(name, set())
    if "*" in rooms:
        out |= set(in_view)
    else:
        out |= {r for r in rooms if r in in_view}
    return out


def _matcher(pairs: Iterable[tuple[str, str]], me: str, lazy: set[str]) -> Callable[[StoredEvent], bool]:
    exact, any_key, any_type, everything, lazy_members = _match_parts(frozenset(pairs), me)
    if lazy_members and lazy:
        exact = exact | {(MEMBER, u) for u in lazy}

    def match(e: StoredEvent) -> bool:
        key = e.state_key or ""
        return everything or e.type in any_key or key in any_type or (e.type, key) in exact

    return match


@functools.lru_cache(maxsize=1024)
def _match_parts(
    pairs: frozenset[tuple[str, str]], me: str
) -> tuple[frozenset[tuple[str, str]], frozenset[str], frozenset[str], bool, bool]:
    """What `_matcher` matches of a required state, but the lazy members: the exact (type, state key)
    pairs, the types of any key, the keys of any type, whether everything, whether $LAZY members (the
    windows of a request share one config: worked out once)."""
    exact: set[tuple[str, str]] = set()
    any_key: set[str] = set()
    any_type: set[str] = set()
    everything = lazy = False
    for t, k in pairs:
        if t == "*" and k == "*":
            everything = True
        elif k == "*":
            any_key.add(t)
        elif t == "*":
            any_type.add(me if k == "$ME" else k)
        elif t == MEMBER and k == "$LAZY":
            lazy = True
        else:
            exact.add((t, me if k == "$ME" else k))
    return frozenset(exact), frozenset(any_key), frozenset(any_type), everything, lazy


MEMBERS_KEPT = 100


def _keep_members(sent: RoomSent, state: Sequence[StoredEvent], before: Sequence[str]) -> None:
    """Record the member events `state` carries as the connection's (after those it had, `before`)."""
    sent_now = [e.state_key for e in state if e.type == MEMBER and e.state_key]
    if not sent_now and not before:
        return
    keep = dict.fromkeys(k for k in before if k not in sent_now)
    keep.update(dict.fromkeys(sent_now))
    sent.members = list(keep)[-MEMBERS_KEPT:]


def _lazy_members(timeline: Sequence[StoredEvent]) -> set[str]:
    """$LAZY: the timeline's senders and the targets of its membership events."""
    return {e.sender for e in timeline} | {e.state_key for e in timeline if e.type == MEMBER and e.state_key}


def _member_keys(wanted: Wanted, me: str, lazy: set[str]) -> set[str]:
    keys = {k for t, k in wanted.pairs if t == MEMBER and not k.startswith("$") and k != "*"}
    if (MEMBER, "$ME") in wanted.pairs:
        keys.add(me)
    if (MEMBER, "$LAZY") in wanted.pairs:
        keys |= lazy
    return keys


def _basics(state: Iterable[StoredEvent]) -> dict[str, StoredEvent]:
    return {e.type: e for e in state if e.type in BASICS and e.state_key == ""}


def _name(basics: Mapping[str, StoredEvent]) -> str | None:
    name = basics["m.room.name"].content.get("name") if "m.room.name" in basics else None
    return name if isinstance(name, str) and name else None


def _describe(room: SlidingRoom, basics: Mapping[str, StoredEvent], counts: Mapping[str, int] | None) -> None:
    """Name and avatar from the room's basic state; member counts when given."""
    name = _name(basics)
    avatar = basics["m.room.avatar"].content.get("url") if "m.room.avatar" in basics else None
    if name:
        room.name = name
    if isinstance(avatar, str) and avatar:
        room.avatar = avatar
    if counts is not None:
        room.joined_count = counts.get("join", 0)
        room.invited_count = counts.get("invite", 0)


def _hero(user_id: str, content: JsonDict) -> Hero:
    name, avatar = content.get("displayname"), content.get("avatar_url")
    return Hero(
        user_id=user_id,
        displayname=name if isinstance(name, str) and name else UNSET,
        avatar_url=avatar if isinstance(avatar, str) and avatar else UNSET,
    )


def _fresh_generation() -> int:
    """A new connection's first generation: above any earlier one of the same conn_id (time-based),
    so the old ones are dropped when it is saved, and an old `pos` cannot name it."""
    return now_ms() * 1000 + random.randrange(1000)


def _wake_keys(user_id: str, rooms: list[str]) -> set[str]:
    """The notifier keys of news for this connection: the user's own and its live rooms'."""
    return {f"u:{user_id}", *(f"r:{r}" for r in rooms)}
