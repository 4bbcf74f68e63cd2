"""RoomDirectoryService: the public room list (search, order, pages), aliases and who may change them."""

from __future__ import annotations

from paigham.app import Server
from paigham.requester import Requester
from tests.services.conftest import make_room, make_user, refused


def who(user_id: str, *, admin: bool = False) -> Requester:
    return Requester(user_id, "DEVICE", "token", admin)


async def test_public_rooms_most_members_first_searched_and_paged(server: Server) -> None:
    alice, bob = await make_user(server, "alice"), await make_user(server, "bob")
    budget = await make_room(server, alice, visibility="public", name="Budget 2026", topic="Figures")
    notices = await make_room(server, alice, visibility="public", name="Notices", room_alias_name="notices")
    quiet = await make_room(server, alice, visibility="public", name="Quiet")
    await make_room(server, alice, name="Unlisted")
    await server.rooms.join(bob, notices)
    directory = server.room_directory
    everything = await directory.public_rooms(10, None, None)
    # Most members first, then by room ID.
    assert [e["room_id"] for e in everything["chunk"]] == [notices, *sorted([budget, quiet])]
    assert everything["total_room_count_estimate"] == 3 and "next_batch" not in everything
    assert [e["room_id"] for e in (await directory.public_rooms(10, None, "FIGURES"))["chunk"]] == [budget]
    by_alias = await directory.public_rooms(10, None, "#notices:")
    assert [e["room_id"] for e in by_alias["chunk"]] == [notices]
    first = await directory.public_rooms(2, None, None)
    assert len(first["chunk"]) == 2 and first["next_batch"] == "2" and "prev_batch" not in first
    last = await directory.public_rooms(2, first["next_batch"], None)
    assert [e["room_id"] for e in last["chunk"]] == [e["room_id"] for e in everything["chunk"][2:]]
    assert last["prev_batch"] == "0" and "next_batch" not in last
    for bad in ("x", "-1", "9" * 10, "²"):
        await refused(400, "M_INVALID_PARAM", directory.public_rooms(2, bad, None))


async def test_visibility_needs_power_or_admin(server: Server) -> None:
    alice, bob = await make_user(server, "alice"), await make_user(server, "bob")
    admin = await make_user(server, "root", admin=True)
    room = await make_room(server, alice, preset="public_chat")
    await server.rooms.join(bob, room)
    directory = server.room_directory
    assert await directory.visibility(room) == "private"
    await refused(403, "M_FORBIDDEN", directory.set_visibility(who(bob), room, "public"))
    await refused(400, "M_INVALID_PARAM", directory.set_visibility(who(alice), room, "open"))
    await refused(404, "M_NOT_FOUND", directory.set_visibility(who(alice), "!gone:test.local", "public"))
    await directory.set_visibility(who(alice), room, "public")
    assert await directory.visibility(room) == "public"
    await directory.set_visibility(who(admin, admin=True), room, "private")  # admins need no power
    assert await directory.visibility(room) == "private"


async def test_aliases_for_joined_members_deleted_by_creator_power_or_admin(server: Server) -> None:
    alice, bob, carol = [await make_user(server, n) for n in ("alice", "bob", "carol")]
    room = await make_room(server, alice, preset="public_chat")
    await server.rooms.join(bob, room)
    directory = server.room_directory
    await refused(403, "M_FORBIDDEN", directory.create_alias(carol, "#c:test.local", room))  # not joined
    await refused(400, "M_INVALID_PARAM", directory.create_alias(bob, "#b:elsewhere.org", room))
    await directory.create_alias(bob, "#b:test.local", room)
    await directory.create_alias(bob, "#b2:test.local", room)
    await refused(409, "M_UNKNOWN", directory.create_alias(alice, "#b:test.local", room))
    assert await directory.resolve("#b:test.local") == {"room_id": room, "servers": ["test.local"]}
    assert sorted(await directory.room_aliases(alice, room)) == ["#b2:test.local", "#b:test.local"]
    await refused(403, "M_FORBIDDEN", directory.room_aliases(carol, room))
    await refused(403, "M_FORBIDDEN", directory.delete_alias(who(carol), "#b:test.local"))
    await directory.delete_alias(who(alice), "#b:test.local")  # power to send m.room.canonical_alias
    await directory.delete_alias(who(bob), "#b2:test.local")  # its creator
    await refused(404, "M_NOT_FOUND", directory.resolve("#b:test.local"))
    await refused(404, "M_NOT_FOUND", directory.delete_alias(who(alice), "#b2:test.local"))
