"""A user in hundreds of rooms (issue #18): an incremental /sync where one room changed sends the same
statements whether the user is in 10 rooms or 300 (its cost follows the changes, not the rooms), a
token far behind takes the probe's other road to the same answer, and the initial, incremental and
full_state syncs of that user are right. (How fast, at 1,000 rooms: bench `many_rooms`.)"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from paigham.services.rooms import CreateRoomRequest
from paigham.storage.sync_probe import ROOM_EVENTS, probe
from paigham.sync.sections import MEMBERSHIPS
from tests.api.conftest import Harness, User
from tests.storage.support import statements

V3 = "/_matrix/client/v3"
LAZY = json.dumps({"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 5}}})


async def add_rooms(hs: Harness, user: User, first: int, count: int) -> list[str]:
    """`count` named public rooms created by `user` through the room service (no HTTP: set-up only)."""
    gate = asyncio.Semaphore(4)

    async def one(i: int) -> str:
        async with gate:
            req = CreateRoomRequest(creator=user.user_id, preset="public_chat", name=f"room {i}")
            return await hs.server.rooms.create_room(req)

    return list(await asyncio.gather(*(one(i) for i in range(first, first + count))))


async def one_message(hs: Harness, reader: User, sender: User, room: str, since: str) -> tuple[list[str], Any]:
    """`sender` says one thing in `room`; the statements of `reader`'s incremental sync, and its body."""
    await hs.send(sender, room, "news")
    await hs.ok("GET", f"{V3}/account/whoami", reader)  # the access token cached: not what is counted
    with statements(hs.server.db, built=True) as sent:
        body = await hs.sync(reader, since=since)
    return sent, body


def timeline_bodies(body: Any, room: str) -> list[str]:
    return [e["content"].get("body") for e in body["rooms"]["join"][room]["timeline"]["events"]]


def state_types(room: Any) -> set[str]:
    return {e["type"] for e in room["state"]["events"]}


async def test_a_user_in_300_rooms_syncs_right_and_one_change_costs_the_same_as_in_10_rooms(hs: Harness) -> None:
    alice, bob = await hs.register("alice"), await hs.register("bob")
    rooms = await add_rooms(hs, alice, 0, 10)
    busy, other = rooms[0], rooms[1]
    for room in (busy, other):
        await hs.ok("POST", f"{V3}/join/{room}", bob)
    first = await hs.sync(alice)
    assert sorted(first["rooms"]["join"]) == sorted(rooms)

    few, body = await one_message(hs, alice, bob, busy, first["next_batch"])
    assert list(body["rooms"]["join"]) == [busy] and timeline_bodies(body, busy) == ["news"]
    assert body["rooms"]["join"][busy]["unread_notifications"]["notification_count"] == 1

    # 290 rooms more, and a message in the busy room before alice looks again: her token is now
    # far behind (more positions than the probe reads changes for), so the probe looks in each room.
    since = body["next_batch"]
    await hs.send(bob, busy, "while you were away")
    rooms += await add_rooms(hs, alice, 10, 290)
    found = await probe(hs.server.db, alice.user_id, alice.device_id, int(since[1:]), MEMBERSHIPS)
    assert found.position - int(since[1:]) > 4 * len(rooms) + 64, "the far road must be the one taken"
    assert {r for r, f in found.room_flags.items() if f & ROOM_EVENTS} == {busy, *rooms[10:]}
    caught_up = await hs.sync(alice, since=since)
    assert sorted(caught_up["rooms"]["join"]) == sorted([busy, *rooms[10:]])
    assert timeline_bodies(caught_up, busy) == ["while you were away"]
    assert caught_up["rooms"]["join"][rooms[10]]["summary"]["m.joined_member_count"] == 1  # new: sent whole

    many, body = await one_message(hs, alice, bob, busy, caught_up["next_batch"])
    assert list(body["rooms"]["join"]) == [busy] and timeline_bodies(body, busy) == ["news"]
    assert many == few, "an incremental sync's statements must not depend on how many rooms the user is in"
    assert len(many) <= 3  # the probe, the timeline; on SQLite the unread counts' own read

    # The probe's rows follow the changes too: the busy room's own, the 299 others by ID only.
    found = await probe(hs.server.db, alice.user_id, alice.device_id, int(caught_up["next_batch"][1:]), MEMBERSHIPS)
    assert list(found.memberships) == [busy] and sorted(found.quiet) == sorted(rooms[1:])

    # Nothing new: one statement (the probe), whatever the rooms.
    with statements(hs.server.db, built=True) as sent:
        quiet = await hs.sync(alice, since=body["next_batch"])
    assert quiet["rooms"]["join"] == {} and len(sent) == 1

    # Room account data alone brings a quiet room back, with its unread counts (none).
    tag = f"{V3}/user/{alice.user_id}/rooms/{rooms[5]}/tags/u.work"
    await hs.ok("PUT", tag, alice, json={"order": 0.5})
    tagged = await hs.sync(alice, since=quiet["next_batch"])
    assert list(tagged["rooms"]["join"]) == [rooms[5]]
    assert tagged["rooms"]["join"][rooms[5]]["account_data"]["events"][0]["type"] == "m.tag"
    assert tagged["rooms"]["join"][rooms[5]]["unread_notifications"]["notification_count"] == 0
    # A room left: in `leave` once, then neither a row of the probe nor a quiet room.
    (gone,) = await add_rooms(hs, alice, 300, 1)
    await hs.ok("POST", f"{V3}/rooms/{gone}/leave", alice, json={})
    left = await hs.sync(alice, since=tagged["next_batch"])
    assert list(left["rooms"]["leave"]) == [gone] and gone not in left["rooms"]["join"]
    found = await probe(hs.server.db, alice.user_id, alice.device_id, int(left["next_batch"][1:]), MEMBERSHIPS)
    assert (found.memberships, sorted(found.quiet)) == ({}, sorted(rooms))
    quiet = await hs.sync(alice, since=left["next_batch"])
    assert quiet["rooms"] == {"join": {}, "invite": {}, "leave": {}, "knock": {}}

    # The typing in another room arrives on its own, with an empty timeline.
    await hs.ok("PUT", f"{V3}/rooms/{other}/typing/{bob.user_id}", bob, json={"typing": True, "timeout": 30000})
    typing = await hs.sync(alice, since=quiet["next_batch"], filter=LAZY)
    assert list(typing["rooms"]["join"]) == [other] and typing["rooms"]["join"][other]["timeline"]["events"] == []
    assert typing["rooms"]["join"][other]["ephemeral"]["events"] == [
        {"type": "m.typing", "content": {"user_ids": [bob.user_id]}}
    ]

    # full_state: every room with its whole state, but the timeline still starts at `since` (nothing
    # new: empty), and lazy loading keeps the members to the timeline's senders and alice herself.
    full = await hs.sync(alice, since=typing["next_batch"], full_state="true", filter=LAZY)
    assert sorted(full["rooms"]["join"]) == sorted(rooms)
    for room_id, room in full["rooms"]["join"].items():
        assert room["timeline"]["events"] == [], room_id
        assert {"m.room.create", "m.room.name", "m.room.power_levels", "m.room.join_rules"} <= state_types(room)
        members = [e["state_key"] for e in room["state"]["events"] if e["type"] == "m.room.member"]
        assert members == [alice.user_id], room_id
    # Without lazy loading, the state has every member.
    whole = (await hs.sync(alice, since=typing["next_batch"], full_state="true"))["rooms"]["join"][busy]
    assert {e["state_key"] for e in whole["state"]["events"] if e["type"] == "m.room.member"} == {
        alice.user_id,
        bob.user_id,
    }
    assert whole["timeline"]["events"] == [] and whole["summary"]["m.joined_member_count"] == 2

    # A new device's initial sync: all 300 rooms, each with its name and its newest events.
    session = await hs.server.auth.start_session(alice.user_id, None, None)
    device = User(alice.user_id, session.access_token, session.device_id, alice.password)
    joined = (await hs.sync(device, filter=LAZY))["rooms"]["join"]
    assert sorted(joined) == sorted(rooms)
    seen = [[*joined[r]["state"]["events"], *joined[r]["timeline"]["events"]] for r in rooms]
    assert [next(e["content"]["name"] for e in evs if e["type"] == "m.room.name") for evs in seen] == [
        f"room {i}" for i in range(300)
    ]
    assert [e["content"].get("body") for e in joined[busy]["timeline"]["events"]][-1] == "news"
