"""The /sync sections on their own (sync/sections.py): what each part of a response holds, built over
in-memory fakes of the stores, and the JSON layout the typed response encodes to."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import msgspec
import pytest
from msgspec.structs import astuple

from paigham.domain.filters import DEFAULT_FILTER, parse_filter
from paigham.domain.stored_event import StoredEvent
from paigham.domain.tokens import make_token
from paigham.services.filtering import SyncFilterView
from paigham.storage.presence import PresenceRow
from paigham.storage.receipts import Receipt
from paigham.sync import sections
from paigham.sync.model import DeviceLists, Events, JoinedRoom, RoomSummary, SyncRequest, SyncResponse
from paigham.sync.sections import Sections, in_flight
from paigham.types import JsonDict
from tests.services.fakes import History, Serializer, Streams, probe, push_rules, requester

ALICE, BOB, CAROL = "@alice:t", "@bob:t", "@carol:t"
ROOM, OTHER = "!room:t", "!other:t"


def bodies(evs: list[JsonDict]) -> list[str]:
    return [e["content"]["body"] for e in evs if e["type"] == "m.room.message"]


async def sync(
    h: History,
    s: Streams,
    since: int | None = None,
    *,
    user: str = ALICE,
    flt: JsonDict | None = None,
    full_state: bool = False,
    push_rules_changed: bool = False,
) -> SyncResponse:
    view = SyncFilterView(parse_filter(flt) if flt is not None else DEFAULT_FILTER)
    found = probe(h, s, user, since, push_rules_changed=push_rules_changed)
    req = SyncRequest(requester(user), since, found.position, view, full_state, found)
    return await Sections(h, s.reads(), Serializer(), push_rules, presence_enabled=True).build(req)


def joined(r: SyncResponse, room_id: str) -> JoinedRoom:
    """A joined room of a response built as a tree (a few rooms: none comes encoded already)."""
    room = r.rooms.join[room_id]
    assert isinstance(room, JoinedRoom)
    return room


def room_of(h: History, room_id: str, *members: str) -> None:
    h.add(room_id, "m.room.create", members[0], {"creator": members[0]}, "")
    for m in members:
        h.join(room_id, m)


async def test_initial_sync_sends_each_joined_room_with_timeline_summary_and_counts() -> None:
    h, s = History(), Streams()
    room_of(h, ROOM, ALICE, BOB)
    h.say(ROOM, BOB, "hello")
    s.unread[ROOM] = (1, 0)
    r = await sync(h, s)
    room = joined(r, ROOM)
    assert [e["type"] for e in room.timeline.events] == ["m.room.create", *["m.room.member"] * 2, "m.room.message"]
    assert all("room_id" not in e for e in room.timeline.events)
    # The whole room fits the timeline: the state before it is empty, and there is nothing earlier.
    assert room.state.events == [] and not room.timeline.limited and room.timeline.prev_batch == make_token(0)
    assert room.summary == RoomSummary(joined_member_count=2, invited_member_count=0, heroes=[BOB])
    assert astuple(room.unread_notifications) == (1, 0)
    assert r.next_batch == make_token(h.position)
    assert [e["type"] for e in r.account_data.events] == ["m.push_rules"]  # sent whole on a first sync


async def test_the_response_encodes_to_the_spec_layout_in_a_fixed_key_order() -> None:
    h, s = History(), Streams()
    room_of(h, ROOM, ALICE)
    h.add(ROOM, "m.room.name", ALICE, {"name": "Team"}, "")
    h.member(OTHER, BOB, ALICE, "invite")
    body = json.loads(msgspec.json.encode(await sync(h, s)))
    assert list(body) == [
        "next_batch",
        "rooms",
        "account_data",
        "presence",
        "to_device",
        "device_lists",
        "device_one_time_keys_count",
        "device_unused_fallback_key_types",
    ]
    assert list(body["rooms"]) == ["join", "invite", "leave", "knock"]
    room = body["rooms"]["join"][ROOM]
    assert list(room) == ["timeline", "state", "summary", "ephemeral", "account_data", "unread_notifications"]
    assert list(room["timeline"]) == ["events", "limited", "prev_batch"]
    # A named room has no heroes: the key is left out, not sent empty.
    assert room["summary"] == {"m.joined_member_count": 1, "m.invited_member_count": 0}
    assert list(body["rooms"]["invite"]) == [OTHER]
    invited = {"type": "m.room.member", "state_key": ALICE, "content": {"membership": "invite"}, "sender": BOB}
    assert body["rooms"]["invite"][OTHER] == {"invite_state": {"events": [invited]}}
    assert body["device_lists"] == {"changed": [], "left": []} and body["to_device"] == {"events": []}


async def test_incremental_sync_sends_only_rooms_with_news() -> None:
    h, s = History(), Streams()
    room_of(h, ROOM, ALICE, BOB)
    room_of(h, OTHER, ALICE, BOB)
    since = h.position
    h.say(ROOM, BOB, "new")
    r = await sync(h, s, since)
    assert list(r.rooms.join) == [ROOM]
    room = joined(r, ROOM)
    assert bodies(room.timeline.events) == ["new"] and room.state.events == []
    assert room.summary is msgspec.UNSET  # no membership changed: the summary is not sent again
    assert r.account_data.events == [] and r.has_news()

    quiet = await sync(h, s, h.position)
    assert quiet.rooms.join == {} and not quiet.has_news()
    # A room whose news the filter hides is left out too.
    hidden = await sync(h, s, since, flt={"room": {"timeline": {"not_types": ["m.room.message"]}}})
    assert hidden.rooms.join == {} and not hidden.has_news()


async def test_a_limited_timeline_comes_with_the_state_changed_before_it() -> None:
    h, s = History(), Streams()
    room_of(h, ROOM, ALICE, BOB)
    since = h.position
    h.add(ROOM, "m.room.topic", BOB, {"topic": "old"}, "")
    h.add(ROOM, "m.room.topic", BOB, {"topic": "new"}, "")
    for i in range(12):
        h.say(ROOM, BOB, f"m{i}")
    room = joined((await sync(h, s, since)), ROOM)
    assert room.timeline.limited and bodies(room.timeline.events) == [f"m{i}" for i in range(2, 12)]
    first = h.position - 9
    assert room.timeline.prev_batch == make_token(first - 1)
    # Only the newest state per key in the gap between `since` and the timeline.
    assert [e["content"] for e in room.state.events] == [{"topic": "new"}]


async def test_full_state_sends_every_room_whole_with_the_timeline_still_from_since() -> None:
    h, s = History(), Streams()
    room_of(h, ROOM, ALICE, BOB)
    room_of(h, OTHER, ALICE, BOB)
    h.add(OTHER, "m.room.name", BOB, {"name": "Quiet"}, "")
    since = h.position
    h.say(ROOM, BOB, "new")
    r = await sync(h, s, since, full_state=True)
    assert sorted(r.rooms.join) == sorted([ROOM, OTHER])
    busy, quiet = joined(r, ROOM), joined(r, OTHER)
    assert bodies(busy.timeline.events) == ["new"] and not busy.timeline.limited
    assert {(e["type"], e["state_key"]) for e in busy.state.events} == {
        ("m.room.create", ""),
        ("m.room.member", ALICE),
        ("m.room.member", BOB),
    }
    # Nothing new in the quiet room: no history, its whole state, its summary.
    assert quiet.timeline.events == [] and quiet.timeline.prev_batch == make_token(h.position)
    assert {e["type"] for e in quiet.state.events} == {"m.room.create", "m.room.member", "m.room.name"}
    assert quiet.summary == RoomSummary(joined_member_count=2, invited_member_count=0)


async def test_account_data_goes_to_the_top_level_or_to_its_joined_room() -> None:
    h, s = History(), Streams()
    room_of(h, ROOM, ALICE)
    room_of(h, OTHER, BOB)  # Alice is not in it
    since = h.position
    s.account_data += [
        (h.tick(), "", "m.direct", {"@bob:t": [ROOM]}),
        (h.tick(), ROOM, "m.tag", {"tags": {"u.work": {}}}),
        (h.tick(), OTHER, "m.tag", {"tags": {}}),
    ]
    r = await sync(h, s, since)
    assert r.account_data.events == [{"type": "m.direct", "content": {"@bob:t": [ROOM]}}]
    # A room with only account data is sent, with an empty timeline.
    assert list(r.rooms.join) == [ROOM]
    assert joined(r, ROOM).account_data.events == [{"type": "m.tag", "content": {"tags": {"u.work": {}}}}]
    assert joined(r, ROOM).timeline.events == []

    # The push rules are sent when they changed, and the account data filter applies to them too.
    r = await sync(h, s, h.position, push_rules_changed=True)
    assert [e["type"] for e in r.account_data.events] == ["m.push_rules"]
    r = await sync(h, s, h.position, push_rules_changed=True, flt={"account_data": {"not_types": ["m.push_rules"]}})
    assert r.account_data.events == [] and not r.has_news()


async def test_a_room_left_since_the_last_sync_moves_to_leave_with_its_last_events() -> None:
    h, s = History(), Streams()
    room_of(h, ROOM, ALICE, BOB)
    since = h.position
    h.say(ROOM, BOB, "before")
    h.member(ROOM, BOB, ALICE, "ban")
    h.say(ROOM, BOB, "after")  # not for Alice any more
    r = await sync(h, s, since)
    assert r.rooms.join == {}
    left = r.rooms.leave[ROOM]
    assert bodies(left.timeline.events) == ["before"]
    assert left.timeline.events[-1]["content"] == {"membership": "ban"}
    assert left.account_data == Events([])

    # A first sync shows left rooms only when the filter asks for them.
    assert (await sync(h, s)).rooms.leave == {}
    assert list((await sync(h, s, flt={"room": {"include_leave": True}})).rooms.leave) == [ROOM]


async def test_an_invite_carries_the_stripped_state_the_inviters_and_the_invitees_membership() -> None:
    h, s = History(), Streams()
    room_of(h, ROOM, BOB, CAROL)
    h.add(ROOM, "m.room.name", BOB, {"name": "Plans"}, "")
    h.add(ROOM, "m.room.power_levels", BOB, {"users": {BOB: 100}}, "")
    h.member(ROOM, BOB, ALICE, "invite")
    r = await sync(h, s)
    stripped = r.rooms.invite[ROOM].invite_state.events
    assert [(e["type"], e["state_key"]) for e in stripped] == [
        ("m.room.create", ""),
        ("m.room.member", BOB),  # the inviter (clients show "Empty room" without it)
        ("m.room.name", ""),
        ("m.room.member", ALICE),
    ]
    assert r.rooms.join == {} and r.has_news()
    assert (await sync(h, s, h.position)).rooms.invite == {}  # sent once


@pytest.mark.parametrize("initial", [True, False])
async def test_lazy_loading_sends_the_members_of_the_timelines_senders(initial: bool) -> None:
    h, s = History(), Streams()
    room_of(h, ROOM, ALICE, BOB, CAROL)
    since = h.position
    h.say(ROOM, BOB, "hi")
    flt = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 1}}}
    room = joined((await sync(h, s, None if initial else since, flt=flt)), ROOM)
    members = sorted(e["state_key"] for e in room.state.events if e["type"] == "m.room.member")
    # Bob sent the timeline; Carol is left out. Alice (asking) gets her own on the first sync only:
    # afterwards it is redundant (the spec's words), and reading it would cost every woken member a read.
    assert members == ([ALICE, BOB] if initial else [BOB])


async def test_lazy_loading_sends_the_users_own_member_event_when_it_changed_in_a_gap() -> None:
    h, s = History(), Streams()
    room_of(h, ROOM, ALICE, BOB, CAROL)
    since = h.position
    h.add(ROOM, "m.room.member", ALICE, {"membership": "join", "displayname": "Alice A."}, ALICE)
    for text in ("one", "two", "three"):
        h.say(ROOM, BOB, text)
    flt = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 1}}}
    room = joined((await sync(h, s, since, flt=flt)), ROOM)
    assert room.timeline.limited
    members = {e["state_key"]: e["content"] for e in room.state.events if e["type"] == "m.room.member"}
    assert sorted(members) == [ALICE, BOB] and members[ALICE]["displayname"] == "Alice A."


class CountingHistory(History):
    """History whose room reads suspend (as a database's do) and are counted."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: dict[str, int] = {}

    async def recent_with_relations(
        self, room_id: str, *, after: int | None, upto: int, limit: int
    ) -> tuple[list[StoredEvent], list[StoredEvent]]:
        self.reads["recent"] = self.reads.get("recent", 0) + 1
        await asyncio.sleep(0.01)
        return await super().recent_with_relations(room_id, after=after, upto=upto, limit=limit)

    async def state_at_keys(
        self, room_id: str, stream: int, type_: str, state_keys: Sequence[str]
    ) -> list[StoredEvent]:
        self.reads["members"] = self.reads.get("members", 0) + 1
        await asyncio.sleep(0.01)
        return await super().state_at_keys(room_id, stream, type_, state_keys)

    async def member_counts(self, room_id: str) -> dict[str, int]:
        self.reads["counts"] = self.reads.get("counts", 0) + 1
        await asyncio.sleep(0.01)
        return await super().member_counts(room_id)


async def test_members_woken_by_one_message_read_the_room_once_between_them() -> None:
    h, s = CountingHistory(), Streams()
    users = [f"@u{i}:t" for i in range(20)]
    room_of(h, ROOM, BOB, *users)
    since = h.position
    h.say(ROOM, BOB, "to everyone")
    flt = SyncFilterView(parse_filter({"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 1}}}))
    sections = Sections(h, s.reads(), Serializer(), push_rules, presence_enabled=True)

    async def one(user: str) -> SyncResponse:
        found = probe(h, s, user, since)
        return await sections.build(SyncRequest(requester(user), since, found.position, flt, False, found))

    answers = await asyncio.gather(*(one(u) for u in users))
    assert h.reads == {"recent": 1, "members": 1}
    for r in answers:
        room = joined(r, ROOM)
        assert bodies(room.timeline.events) == ["to everyone"]
        assert [(e["type"], e["state_key"]) for e in room.state.events] == [("m.room.member", BOB)]
    # Later syncs of the same window are answered from what was kept; a new window is read again.
    await one(users[0])
    assert h.reads == {"recent": 1, "members": 1}
    h.say(ROOM, BOB, "again")
    await one(users[0])
    assert h.reads == {"recent": 2, "members": 2}
    # A join changes the room's summary for everyone: its counts are read once for all.
    since = h.position
    h.join(ROOM, CAROL)
    answers = await asyncio.gather(*(one(u) for u in users))
    assert h.reads == {"recent": 3, "members": 2, "counts": 1}
    assert {joined(r, ROOM).summary.joined_member_count for r in answers} == {22}  # type: ignore[union-attr]


async def test_typing_and_receipts_arrive_as_ephemeral_events() -> None:
    h, s = History(), Streams()
    room_of(h, ROOM, ALICE, BOB, CAROL)
    msg = h.say(ROOM, BOB, "read me")
    since = h.position
    s.typing[ROOM] = (h.tick(), [CAROL, BOB])

    def receipt(user: str, kind: str) -> Receipt:
        return Receipt(ROOM, user, kind, "", f"$e{msg}", msg, 5, h.tick())

    s.receipts += [receipt(BOB, "m.read"), receipt(CAROL, "m.read"), receipt(BOB, "m.read.private")]
    s.unread[ROOM] = (0, 0)
    room = joined((await sync(h, s, since)), ROOM)
    assert room.timeline.events == []
    assert room.ephemeral.events == [
        {"type": "m.typing", "content": {"user_ids": [BOB, CAROL]}},
        # One receipt event for the room; someone else's private receipt is not shown.
        {"type": "m.receipt", "content": {f"$e{msg}": {"m.read": {BOB: {"ts": 5}, CAROL: {"ts": 5}}}}},
    ]


async def test_unread_counts_come_from_the_probe_and_are_read_only_for_other_rooms() -> None:
    h, s = History(), Streams()
    room_of(h, ROOM, ALICE, BOB)
    room_of(h, OTHER, ALICE, BOB)
    since = h.position
    h.say(ROOM, BOB, "news")
    s.unread.update({ROOM: (1, 1), OTHER: (4, 0)})
    s.account_data.append((h.tick(), OTHER, "m.tag", {"tags": {}}))  # OTHER has no events past `since`
    r = await sync(h, s, since)
    counts = {room: astuple(joined(r, room).unread_notifications) for room in r.rooms.join}
    assert counts == {ROOM: (1, 1), OTHER: (4, 0)}
    assert s.unread_asked == [OTHER]


async def test_presence_of_co_members_and_what_counts_as_news() -> None:
    h, s = History(), Streams()
    room_of(h, ROOM, ALICE, BOB)
    since = h.position
    s.presence.append(PresenceRow(BOB, "online", "busy", 0, h.tick()))
    r = await sync(h, s, since)
    assert [(e["sender"], e["content"]["presence"], e["content"]["status_msg"]) for e in r.presence.events] == [
        (BOB, "online", "busy")
    ]
    assert r.has_news()
    # The key counts are in every response and are never news; device list changes are.
    quiet = await sync(h, s, h.position)
    quiet.device_one_time_keys_count = {"signed_curve25519": 3}
    assert not quiet.has_news()
    quiet.device_lists = DeviceLists(changed=[BOB])
    assert quiet.has_news()


async def test_rooms_in_flight_keep_their_order_and_the_limit() -> None:
    running, most = 0, 0

    async def read(n: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.001 * (n % 3))  # finishing out of order
        running -= 1
        return n * 10

    assert await in_flight(4, list(range(20)), read) == [n * 10 for n in range(20)]
    assert most == 4
    assert await in_flight(4, [], read) == []

    async def fails(n: int) -> int:
        if n == 2:
            raise ValueError(n)
        await asyncio.sleep(1)
        return n

    with pytest.raises(ExceptionGroup):  # the others are cancelled, not left running
        await asyncio.wait_for(in_flight(3, list(range(6)), fails), 0.5)
    with pytest.raises(ValueError):  # one item: in the caller's task
        await in_flight(3, [2], fails)


async def test_one_room_is_read_in_the_callers_task() -> None:
    """An incremental sync woken by one room reads it without a task of its own (two passes of the
    event loop fewer, each of them every ready task's step under load)."""
    tasks: set[asyncio.Task[object] | None] = set()

    async def read(n: int) -> int:
        tasks.add(asyncio.current_task())
        return n

    assert await in_flight(4, [7], read) == [7]
    assert tasks == {asyncio.current_task()}
    assert await in_flight(4, [1, 2], read) == [1, 2] and len(tasks) > 1


async def test_a_response_of_many_rooms_keeps_each_room_encoded_and_encodes_to_the_same_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Over ENCODE_ROOMS_OVER joined rooms each room is kept as its JSON (msgspec.Raw) as soon as it
    is built, not as a tree of dicts until the response is encoded: the peak of a big initial sync is
    its JSON. The response encodes to the same document as one built the other way."""
    h, s = History(), Streams()
    rooms = [f"!r{i:03}:t" for i in range(sections.ENCODE_ROOMS_OVER + 5)]
    for i, r in enumerate(rooms):
        room_of(h, r, ALICE, BOB)
        h.say(r, BOB, f"hello {i}")
    kept = await sync(h, s)
    assert len(kept.rooms.join) == len(rooms) and all(isinstance(v, msgspec.Raw) for v in kept.rooms.join.values())
    monkeypatch.setattr(sections, "ENCODE_ROOMS_OVER", len(rooms))
    built = await sync(h, s)
    assert not any(isinstance(v, msgspec.Raw) for v in built.rooms.join.values())
    as_json = json.loads(msgspec.json.encode(kept))
    assert as_json == json.loads(msgspec.json.encode(built))
    assert bodies(as_json["rooms"]["join"][rooms[7]]["timeline"]["events"]) == ["hello 7"]
