"""GET /sync: what changed for one device between two stream positions, long-polling when nothing did.

Each section comes from its own small function over the stores; extensions (E2EE) add theirs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from paigham.clock import now_ms
from paigham.domain.stored_event import StoredEvent
from paigham.domain.tokens import make_token
from paigham.requester import Requester
from paigham.services.filtering import SyncFilterView
from paigham.services.serializer import EventSerializer, strip_room_id
from paigham.storage.account_data import AccountData, AccountDataStore
from paigham.storage.database import Database
from paigham.storage.events import EventStore
from paigham.storage.presence import PresenceStore
from paigham.storage.push_actions import PushActionStore
from paigham.storage.receipts import ReceiptStore
from paigham.storage.sync_probe import (
    ACCOUNT_DATA,
    PRESENCE,
    PUSH_RULES,
    ROOM_EVENTS,
    ROOM_RECEIPTS,
    ROOM_TYPING,
    SyncProbe,
    probe,
)
from paigham.storage.typing_notices import TypingStore
from paigham.sync.notifier import Notifier

STRIPPED_TYPES = (
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
)


@dataclass
class SyncRequest:
    requester: Requester
    since: int | None
    upto: int
    flt: SyncFilterView
    full_state: bool
    # Where the streams stand and which have news past `since` (read once, at the start).
    probe: SyncProbe


@dataclass
class SyncResult:
    body: dict[str, Any]
    has_data: bool
    since: int | None  # as used: a token from the future is taken as "now"
    upto: int
    # Rooms whose news should wake a long-poll (joined, invited, knocked), from the same read.
    wake_rooms: list[str] = field(default_factory=list)


# An extension adds its sections to the body and says whether it found anything new.
Extension = Callable[[SyncRequest, dict[str, Any]], Awaitable[bool]]
PushRulesProvider = Callable[[str], Awaitable[tuple[dict[str, Any], int]]]


@dataclass
class RoomDelta:
    timeline: list[StoredEvent] = field(default_factory=list)
    limited: bool = False
    state: list[StoredEvent] = field(default_factory=list)
    prev_batch: int = 0
    initial: bool = False
    # A membership changed in this delta (not counting members added by lazy-loading): the room's
    # summary (member counts, heroes) is sent again only then.
    members_changed: bool = False
    related: list[StoredEvent] = field(default_factory=list)  # the timeline's relations (bundled aggregations)


class SyncService:
    def __init__(
        self,
        db: Database,
        events: EventStore,
        account_data: AccountDataStore,
        receipts: ReceiptStore,
        typing: TypingStore,
        presence: PresenceStore,
        push_actions: PushActionStore,
        serializer: EventSerializer,
        notifier: Notifier,
        push_rules: PushRulesProvider,
        *,
        presence_enabled: bool,
    ) -> None:
        self.db = db
        self.events = events
        self.account_data = account_data
        self.receipts = receipts
        self.typing = typing
        self.presence = presence
        self.push_actions = push_actions
        self.serializer = serializer
        self.notifier = notifier
        self.push_rules = push_rules
        self.presence_enabled = presence_enabled
        self.extensions: list[Extension] = []

    async def sync(
        self, requester: Requester, since: int | None, timeout_ms: int, flt: SyncFilterView, full_state: bool
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            result = await self.compute(requester, since, flt, full_state)
            since = result.since
            remaining = deadline - time.monotonic()
            if result.has_data or since is None or full_state or remaining <= 0:
                return result.body
            keys = [f"u:{requester.user_id}", *(f"r:{r}" for r in result.wake_rooms)]
            if not await self.notifier.wait(keys, result.upto, remaining):
                # Time is up: one last look, so an update racing the timeout is not lost.
                return (await self.compute(requester, since, flt, full_state)).body
            await asyncio.sleep(0)

    async def compute(
        self, requester: Requester, since: int | None, flt: SyncFilterView, full_state: bool
    ) -> SyncResult:
        user_id = requester.user_id
        # One read says where the streams stand and which have news for this device (sync_probe.py).
        found = await probe(self.db, user_id, requester.device_id, since, ("join", "invite", "leave", "ban", "knock"))
        if since is not None and since > found.position:
            since = found.position  # a token from a rolled-back or restored database: treat as "now"
        req = SyncRequest(requester, since, found.position, flt, full_state, found)
        body: dict[str, Any] = {
            "next_batch": make_token(req.upto),
            "rooms": {"join": {}, "invite": {}, "leave": {}, "knock": {}},
            "account_data": {"events": []},
            "presence": {"events": []},
            "to_device": {"events": []},
            "device_lists": {"changed": [], "left": []},
            "device_one_time_keys_count": {},
            "device_unused_fallback_key_types": [],
        }
        changes = await self._membership_changes(req)
        # Room and global account data come from one read.
        acct = await self.account_data.since(user_id, req.since, req.upto) if found.has(ACCOUNT_DATA) else []
        has = False
        has |= await self._joined(req, changes, acct, body["rooms"]["join"])
        has |= await self._invited(req, body["rooms"]["invite"])
        has |= await self._left(req, changes, body["rooms"]["leave"])
        has |= await self._account_data(req, acct, body)
        if self.presence_enabled and found.has(PRESENCE):
            has |= await self._presence(req, body)
        for ext in self.extensions:
            has |= await ext(req, body)
        wake = [r for r, (m, _) in found.memberships.items() if m in ("join", "invite", "knock")]
        return SyncResult(body, has, since, req.upto, wake)

    async def _membership_changes(self, req: SyncRequest) -> set[str]:
        """Rooms whose membership state for this user is different now from at `since`.

        A join→join change (a new display name or avatar) is not a change: the room stays
        incremental, so nothing already delivered is sent again.
        """
        if req.since is None:
            return set()
        memberships = req.probe.memberships
        moved = [r for r, (_, stream) in memberships.items() if req.since < stream <= req.upto]
        before = await self.events.memberships_at(req.requester.user_id, moved, req.since)
        return {r for r in moved if before.get(r) != memberships[r][0]}

    # -- joined rooms -----------------------------------------------------------------------------
    async def _joined(self, req: SyncRequest, changed: set[str], acct: list[AccountData], out: dict[str, Any]) -> bool:
        joined = [r for r, (m, _) in req.probe.memberships.items() if m == "join" and req.flt.room_allowed(r)]
        if not joined:
            return False
        if req.since is None or req.full_state:
            candidates = set(joined)
        else:
            candidates = set(req.probe.rooms_with(ROOM_EVENTS, joined))
        ephemeral = await self._ephemeral(req, joined)
        room_data = self._room_account_data(acct, joined)
        candidates |= set(ephemeral) | set(room_data) | (changed & set(joined))
        if not candidates:
            return False
        # The probe counted the unread of rooms with news; others (ephemeral or account data only)
        # are counted here. Unread counts start after the read receipt, or the joining if later.
        counts = {r: c for r, c in req.probe.unread.items() if r in candidates}
        missing = sorted(candidates - set(counts))
        if missing:
            reads = await self.receipts.read_positions(req.requester.user_id, missing)
            counts.update(
                await self.push_actions.unread_counts(
                    req.requester.user_id, {r: max(reads.get(r, 0), req.probe.joined_at.get(r, 0)) for r in missing}
                )
            )
        has = False
        for room_id in sorted(candidates):
            initial = req.since is None or req.full_state or room_id in changed
            delta = await self._room_delta(req, room_id, req.since if not initial else None, req.upto)
            room = await self._render_room(req, room_id, delta, initial)
            room["ephemeral"] = {"events": ephemeral.get(room_id, [])}
            room["account_data"] = {"events": room_data.get(room_id, [])}
            n, h = counts.get(room_id, (0, 0))
            room["unread_notifications"] = {"notification_count": n, "highlight_count": h}
            if req.since is not None and not (
                delta.timeline
                or delta.state
                or room["ephemeral"]["events"]
                or room["account_data"]["events"]
                or room_id in changed
            ):
                continue
            out[room_id] = room
            has = True
        return has

    async def _room_delta(self, req: SyncRequest, room_id: str, since: int | None, upto: int) -> RoomDelta:
        limit = req.flt.timeline_limit
        # Oldest first; one more than the limit, to tell whether the timeline is limited.
        recent, related = await self.events.recent_with_relations(room_id, after=since, upto=upto, limit=limit + 1)
        limited = len(recent) > limit
        timeline = recent[-limit:] if limit else []
        start = (timeline[0].stream - 1) if timeline else upto
        timeline = (
            [e for e in timeline if req.flt.timeline_match_stored(e)] if req.flt.has_timeline_filter else timeline
        )
        delta = RoomDelta(timeline=timeline, limited=limited, prev_batch=start, initial=since is None, related=related)
        if since is None:
            delta.state = await self.events.state_at(room_id, start)
        elif limited:
            changed = await self.events.state_changes(room_id, since, start)
            latest: dict[tuple[str, str | None], StoredEvent] = {}
            for e in changed:
                latest[(e.type, e.state_key)] = e
            delta.state = list(latest.values())
        delta.members_changed = any(e.type == "m.room.member" for e in [*delta.timeline, *delta.state])
        if req.flt.lazy_load_members:
            delta.state = await self._lazy(req, room_id, delta, start)
        delta.state = [e for e in delta.state if req.flt.state_match_stored(e)]
        return delta

    async def _lazy(self, req: SyncRequest, room_id: str, delta: RoomDelta, start: int) -> list[StoredEvent]:
        senders = {e.sender for e in delta.timeline} | {req.requester.user_id}
        in_timeline = {e.state_key for e in delta.timeline if e.type == "m.room.member"}
        keep = [e for e in delta.state if e.type != "m.room.member" or e.state_key in senders]
        have = {e.state_key for e in keep if e.type == "m.room.member"}
        missing = senders - have - in_timeline
        if missing and not delta.initial:
            keep.extend(await self.events.state_at_keys(room_id, start, "m.room.member", sorted(missing)))
        return keep

    async def _render_room(self, req: SyncRequest, room_id: str, delta: RoomDelta, initial: bool) -> dict[str, Any]:
        rq = req.requester
        timeline = strip_room_id(await self.serializer.serialize(delta.timeline, rq, related=delta.related))
        state = strip_room_id(await self.serializer.serialize(delta.state, rq, bundle=False))
        room: dict[str, Any] = {
            "timeline": {"events": timeline, "limited": delta.limited, "prev_batch": make_token(delta.prev_batch)},
            "state": {"events": state},
        }
        if initial or delta.members_changed:
            room["summary"] = await self._summary(room_id, rq.user_id)
        return room

    async def _summary(self, room_id: str, user_id: str) -> dict[str, Any]:
        counts = await self.events.member_counts(room_id)
        summary: dict[str, Any] = {
            "m.joined_member_count": counts.get("join", 0),
            "m.invited_member_count": counts.get("invite", 0),
        }
        name = await self.events.current_state(room_id, ["m.room.name", "m.room.canonical_alias"])
        if not any(e.content.get("name") or e.content.get("alias") for e in name):
            summary["m.heroes"] = await self.events.heroes(room_id, user_id, 5)
        return summary

    async def _ephemeral(self, req: SyncRequest, rooms: list[str]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        typing_rooms = await self.typing.changed(req.probe.rooms_with(ROOM_TYPING, rooms), req.since, req.upto)
        if typing_rooms:
            users = await self.typing.users(sorted(typing_rooms), now_ms())
            for room_id in typing_rooms:
                out.setdefault(room_id, []).append(
                    {"type": "m.typing", "content": {"user_ids": sorted(users.get(room_id, []))}}
                )
        me = req.requester.user_id
        for r in await self.receipts.since(req.probe.rooms_with(ROOM_RECEIPTS, rooms), req.since, req.upto):
            if r.receipt_type == "m.read.private" and r.user_id != me:
                continue
            entry: dict[str, Any] = {"ts": r.ts}
            if r.thread_id:
                entry["thread_id"] = r.thread_id
            content = {r.event_id: {r.receipt_type: {r.user_id: entry}}}
            out.setdefault(r.room_id, []).append({"type": "m.receipt", "content": content})
        return {room: _merge_receipts(evs) for room, evs in out.items()}

    @staticmethod
    def _room_account_data(acct: list[AccountData], rooms: list[str]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        allowed = set(rooms)
        for room_id, type_, content in acct:
            if room_id and room_id in allowed:
                out.setdefault(room_id, []).append({"type": type_, "content": content})
        return out

    async def _account_data(self, req: SyncRequest, acct: list[AccountData], body: dict[str, Any]) -> bool:
        evs = [{"type": t, "content": c} for room_id, t, c in acct if not room_id]
        # The effective ruleset is only built when it is sent (initial sync, or changed since).
        if req.since is None or req.probe.has(PUSH_RULES):
            rules, _ = await self.push_rules(req.requester.user_id)
            evs.append({"type": "m.push_rules", "content": rules})
        evs = [e for e in evs if req.flt.account_data_match(e)]
        body["account_data"]["events"] = evs
        return bool(evs)

    # -- invites and leaves -------------------------------------------------------------------------
    async def _invited(self, req: SyncRequest, out: dict[str, Any]) -> bool:
        has = False
        for room_id, (m, stream) in req.probe.memberships.items():
            if m != "invite" or (req.since is not None and stream <= req.since) or stream > req.upto:
                continue
            state = await self.events.state_at(room_id, stream)
            stripped = [
                {"type": e.type, "state_key": e.state_key, "content": e.content, "sender": e.sender}
                for e in state
                if e.type in STRIPPED_TYPES or (e.type == "m.room.member" and e.state_key == req.requester.user_id)
            ]
            out[room_id] = {"invite_state": {"events": stripped}}
            has = True
        return has

    async def _left(self, req: SyncRequest, changed: set[str], out: dict[str, Any]) -> bool:
        has = False
        for room_id, (m, stream) in req.probe.memberships.items():
            if m not in ("leave", "ban"):
                continue
            if req.since is None and not req.flt.include_leave:
                continue
            if req.since is not None and room_id not in changed:
                continue
            delta = await self._room_delta(req, room_id, req.since, stream)
            out[room_id] = await self._render_room(req, room_id, delta, req.since is None)
            out[room_id]["account_data"] = {"events": []}
            has = True
        return has

    async def _presence(self, req: SyncRequest, body: dict[str, Any]) -> bool:
        # Everyone sharing a joined room with the user, in one query (not one per room).
        rows = await self.presence.of_co_members(req.requester.user_id, req.since, req.upto)
        now = now_ms()
        evs = [
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
        body["presence"]["events"] = evs
        return bool(evs) and req.since is not None


def _merge_receipts(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: dict[str, Any] = {}
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
