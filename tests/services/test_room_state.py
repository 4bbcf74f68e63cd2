"""RoomService.send_state: the same state again from the same sender sends no new event."""

from __future__ import annotations

from paigham.app import Server
from paigham.services.timeline import JoinedMembers
from tests.services.conftest import make_room, make_user, refused


async def test_the_same_state_again_sends_no_event(server: Server) -> None:
    alice, bob = await make_user(server, "alice"), await make_user(server, "bob")
    room = await make_room(server, alice, preset="public_chat")
    await server.rooms.join(bob, room)
    first = await server.rooms.send_state(alice, room, "org.example.x", "", {"a": 1})
    assert await server.rooms.send_state(alice, room, "org.example.x", "", {"a": 1}) == first
    assert await server.rooms.send_state(alice, room, "org.example.x", "", {"a": 2}) != first
    topic = await server.rooms.send_state(alice, room, "m.room.topic", "", {"topic": "t"})
    assert await server.rooms.send_state(alice, room, "m.room.topic", "", {"topic": "t"}) == topic
    # Membership is never deduplicated, and its values are checked.
    member = await server.rooms.send_state(bob, room, "m.room.member", bob, {"membership": "join"})
    assert await server.rooms.send_state(bob, room, "m.room.member", bob, {"membership": "join"}) != member
    await refused(400, "M_BAD_JSON", server.rooms.send_state(bob, room, "m.room.member", bob, {"membership": "x"}))


def test_kept_joined_member_lists_are_bounded_by_the_members_they_hold() -> None:
    kept = JoinedMembers(max_members=10, kept_from=3)
    members: dict[str, dict[str, str]] = {f"@u{i}:t": {} for i in range(4)}
    kept.put("!small:t", 1, dict(list(members.items())[:2]))  # below kept_from: not kept
    for r in ("!a:t", "!b:t", "!c:t"):
        kept.put(r, 1, members)
    assert kept.get("!small:t", 1) is None and kept.get("!a:t", 1) is None  # 12 > 10: the oldest went
    assert kept.get("!b:t", 1) == members and kept.get("!b:t", 2) is None  # another stream: not this list
    kept.put("!d:t", 5, members)  # !c (least recently used) goes, !b stays
    assert (kept.get("!c:t", 1), kept.get("!b:t", 1), kept.get("!d:t", 5)) == (None, members, members)
