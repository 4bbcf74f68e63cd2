"""RoomService.send_state: the same state again from the same sender sends no new event."""

from __future__ import annotations

from paigham.app import Server
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
