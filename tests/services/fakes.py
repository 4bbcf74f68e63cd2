"""In-memory fakes of the interfaces the services read (sync/sources.py and friends): plain Python over
lists, following the stores' documented semantics, so a service can be tested without a database."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from paigham.domain.stored_event import StoredEvent
from paigham.requester import Requester
from paigham.storage.presence import PresenceRow
from paigham.storage.receipts import Receipt
from paigham.storage.sync_probe import (
    ACCOUNT_DATA,
    DEVICE_LISTS,
    PRESENCE,
    PUSH_RULES,
    ROOM_EVENTS,
    ROOM_RECEIPTS,
    ROOM_TYPING,
    TO_DEVICE,
    SyncProbe,
)
from paigham.sync.sources import StreamReads
from paigham.types import JsonDict

_END = 2**62


def requester(user_id: str) -> Requester:
    return Requester(user_id, "DEVICE", "token")


def stored(
    stream: int, room_id: str, type_: str, sender: str, content: JsonDict, state_key: str | None = None
) -> StoredEvent:
    pdu: JsonDict = {"type": type_, "sender": sender, "room_id": room_id, "content": content}
    if state_key is not None:
        pdu["state_key"] = state_key
    return StoredEvent(
        stream=stream,
        event_id=f"$e{stream}",
        room_id=room_id,
        type=type_,
        state_key=state_key,
        sender=sender,
        origin_server_ts=1000 + stream,
        pdu=pdu,
        unsigned=None,
        redacted_by=None,
        txn_id=None,
        device_id=None,
    )


class History:
    """Every room's linear history (the data model of storage/events.py): state at a position is the
    newest state event per (type, state_key) at or before it. Satisfies sync.sources.RoomReads and
    services.visibility.RoomHistory."""

    def __init__(self) -> None:
        self.events: list[StoredEvent] = []
        self.position = 0  # the stream counter, shared with the other streams (see `tick`)

    def tick(self) -> int:
        """The next stream position (for a row of another stream: account data, a receipt, …)."""
        self.position += 1
        return self.position

    def add(self, room_id: str, type_: str, sender: str, content: JsonDict, state_key: str | None = None) -> int:
        self.events.append(stored(self.tick(), room_id, type_, sender, content, state_key))
        return self.position

    def rooms(self) -> list[str]:
        return sorted({e.room_id for e in self.events})

    def membership(self, room_id: str, user_id: str) -> tuple[str, int] | None:
        """The user's current membership in the room and the stream of its event."""
        found = [e for e in self._room(room_id) if e.type == "m.room.member" and e.state_key == user_id]
        return (str(found[-1].content["membership"]), found[-1].stream) if found else None

    def join(self, room_id: str, user_id: str) -> int:
        return self.add(room_id, "m.room.member", user_id, {"membership": "join"}, user_id)

    def member(self, room_id: str, sender: str, user_id: str, membership: str) -> int:
        return self.add(room_id, "m.room.member", sender, {"membership": membership}, user_id)

    def say(self, room_id: str, sender: str, body: str) -> int:
        return self.add(room_id, "m.room.message", sender, {"msgtype": "m.text", "body": body})

    def _room(self, room_id: str, upto: int = _END) -> list[StoredEvent]:
        return [e for e in self.events if e.room_id == room_id and e.stream <= upto]

    async def membership_history(self, user_id: str, room_id: str) -> list[tuple[int, str]]:
        return [
            (e.stream, str(e.content["membership"]))
            for e in self._room(room_id)
            if e.type == "m.room.member" and e.state_key == user_id
        ]

    async def state_history(self, room_id: str, type_: str, state_key: str = "") -> list[StoredEvent]:
        return [e for e in self._room(room_id) if e.type == type_ and e.state_key == state_key]

    async def memberships_at(self, user_id: str, room_ids: Sequence[str], pos: int) -> dict[str, str]:
        out = {}
        for room_id in room_ids:
            found = await self.state_at_keys(room_id, pos, "m.room.member", [user_id])
            if found:
                out[room_id] = str(found[0].content["membership"])
        return out

    async def recent_with_relations(
        self, room_id: str, *, after: int | None, upto: int, limit: int
    ) -> tuple[list[StoredEvent], list[StoredEvent]]:
        evs = [e for e in self._room(room_id, upto) if after is None or e.stream > after]
        return evs[-limit:], []

    async def state_at(
        self, room_id: str, stream: int, types: Sequence[str] | None = None, *, members: bool = True
    ) -> list[StoredEvent]:
        latest: dict[tuple[str, str], StoredEvent] = {}
        for e in self._room(room_id, stream):
            wanted = (types is None or e.type in types) and (members or e.type != "m.room.member")
            if e.state_key is not None and wanted:
                latest[(e.type, e.state_key)] = e
        return sorted(latest.values(), key=lambda e: e.stream)

    async def state_changes(
        self, room_id: str, after: int, upto: int, *, members_of: Sequence[str] | None = None
    ) -> list[StoredEvent]:
        return [
            e
            for e in self._room(room_id, upto)
            if e.stream > after
            and e.state_key is not None
            and (members_of is None or e.type != "m.room.member" or e.state_key in members_of)
        ]

    async def members_changed(self, room_id: str, after: int, upto: int) -> bool:
        return any(e.stream > after and e.type == "m.room.member" for e in self._room(room_id, upto))

    async def state_at_keys(
        self, room_id: str, stream: int, type_: str, state_keys: Sequence[str]
    ) -> list[StoredEvent]:
        return [e for e in await self.state_at(room_id, stream, [type_]) if e.state_key in state_keys]

    async def member_counts(self, room_id: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in await self.state_at(room_id, _END, ["m.room.member"]):
            counts[e.content["membership"]] = counts.get(e.content["membership"], 0) + 1
        return counts

    async def current_state(self, room_id: str, types: Sequence[str] | None = None) -> list[StoredEvent]:
        return await self.state_at(room_id, _END, types)

    async def state_for_keys(self, room_id: str, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], StoredEvent]:
        wanted = set(keys)
        return {
            (e.type, e.state_key or ""): e for e in await self.current_state(room_id) if (e.type, e.state_key) in wanted
        }

    async def heroes(self, room_id: str, exclude: str, limit: int = 5) -> list[str]:
        members = await self.state_at(room_id, _END, ["m.room.member"])
        found = [e.state_key for e in members if e.content["membership"] in ("join", "invite")]
        return sorted(k for k in found if k is not None and k != exclude)[:limit]


class Streams:
    """Account data, receipts, typing, unread counts and presence as lists and dicts. `reads()` gives
    them as sync.sources.StreamReads. Rows carry their stream position; reads return those in the window."""

    def __init__(self) -> None:
        self.account_data: list[tuple[int, str, str, JsonDict]] = []  # (stream, room_id, type, content)
        self.receipts: list[Receipt] = []
        self.typing: dict[str, tuple[int, list[str]]] = {}  # room → (stream, user IDs)
        self.unread: dict[str, tuple[int, int]] = {}  # room → (notifications, highlights)
        self.presence: list[PresenceRow] = []
        self.unread_asked: list[str] = []  # rooms whose counts were asked for (not known from the probe)

    async def account_data_since(self, user_id: str, after: int | None, upto: int) -> list[tuple[str, str, Any]]:
        return [(r, t, c) for s, r, t, c in self.account_data if (after is None or s > after) and s <= upto]

    async def unread_after_reads(self, user_id: str, joined: Mapping[str, int]) -> dict[str, tuple[int, int]]:
        self.unread_asked += joined
        return {r: self.unread[r] for r in joined if r in self.unread}

    async def typing_changed(self, room_ids: Sequence[str], after: int | None, upto: int) -> set[str]:
        return {r for r in room_ids if r in self.typing and (after is None or self.typing[r][0] > after)}

    async def typing_users(self, room_ids: Sequence[str], now: int) -> dict[str, list[str]]:
        return {r: self.typing[r][1] for r in room_ids}

    async def receipts_since(self, room_ids: Sequence[str], after: int | None, upto: int) -> list[Receipt]:
        return [r for r in self.receipts if r.room_id in room_ids and (after is None or r.stream > after)]

    async def co_member_presence(self, user_id: str, after: int | None, upto: int) -> list[PresenceRow]:
        return [p for p in self.presence if (after is None or p.stream > after) and p.stream <= upto]

    def reads(self) -> StreamReads:
        """These lists seen through the per-store interfaces the sections read."""
        return StreamReads(_AccountData(self), _Receipts(self), _Unread(self), _Typing(self), _Presence(self))


class _View:
    def __init__(self, streams: Streams) -> None:
        self.s = streams


class _AccountData(_View):
    async def since(self, user_id: str, after: int | None, upto: int) -> list[tuple[str, str, Any]]:
        return await self.s.account_data_since(user_id, after, upto)


class _Receipts(_View):
    async def since(self, room_ids: Sequence[str], after: int | None, upto: int) -> list[Receipt]:
        return await self.s.receipts_since(room_ids, after, upto)


class _Unread(_View):
    async def unread_after_reads(self, user_id: str, joined: Mapping[str, int]) -> dict[str, tuple[int, int]]:
        return await self.s.unread_after_reads(user_id, joined)


class _Typing(_View):
    async def changed(self, room_ids: Sequence[str], after: int | None, upto: int) -> set[str]:
        return await self.s.typing_changed(room_ids, after, upto)

    async def users(self, room_ids: Sequence[str], now: int) -> dict[str, list[str]]:
        return await self.s.typing_users(room_ids, now)


class _Presence(_View):
    async def of_co_members(self, user_id: str, after: int | None, upto: int) -> list[PresenceRow]:
        return await self.s.co_member_presence(user_id, after, upto)


class Serializer:
    """The client format, reduced to what the sections pass through (no redaction, no aggregations)."""

    async def serialize(
        self,
        evs: Sequence[StoredEvent],
        requester: Requester | None,
        *,
        bundle: bool = True,
        related: Sequence[StoredEvent] | None = None,
    ) -> list[JsonDict]:
        return [{**e.pdu, "event_id": e.event_id} for e in evs]


async def push_rules(user_id: str) -> tuple[JsonDict, int]:
    return {"global": {"override": []}}, 0


def probe(
    history: History, streams: Streams, user_id: str, since: int | None, *, push_rules_changed: bool = False
) -> SyncProbe:
    """What storage/sync_probe.py reads in one statement, computed from the fakes."""
    after = -1 if since is None else since
    out = SyncProbe(history.position)
    for room_id in history.rooms():
        found = history.membership(room_id, user_id)
        if found is None:
            continue
        out.memberships[room_id] = found
        if found[1] > after:
            out.moved.append(room_id)
        if found[0] != "join":
            continue
        out.joined_at[room_id] = found[1]
        flags = ROOM_EVENTS if any(e.room_id == room_id and e.stream > after for e in history.events) else 0
        flags |= ROOM_TYPING if streams.typing.get(room_id, (0, []))[0] > after else 0
        flags |= ROOM_RECEIPTS if any(r.room_id == room_id and r.stream > after for r in streams.receipts) else 0
        if flags:
            out.room_flags[room_id] = flags
            out.unread[room_id] = streams.unread.get(room_id, (0, 0))
    if since is None:
        out.user_flags = ACCOUNT_DATA | PUSH_RULES | PRESENCE | TO_DEVICE | DEVICE_LISTS
    else:
        out.user_flags |= ACCOUNT_DATA if any(row[0] > after for row in streams.account_data) else 0
        out.user_flags |= PRESENCE if any(p.stream > after for p in streams.presence) else 0
        out.user_flags |= PUSH_RULES if push_rules_changed else 0
    return out
