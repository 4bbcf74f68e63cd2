"""AdminRooms without HTTP: the room list's search, sort orders and pages, and one room's details."""

from __future__ import annotations

from paigham.app import Server
from paigham.services.admin_rooms import ROOM_ORDERS, AdminRooms, RoomQuery
from paigham.services.rooms import CreateRoomRequest
from paigham.storage.admin import AdminStore
from tests.services.admin.conftest import ADMIN, refused


async def three_rooms(server: Server) -> tuple[AdminRooms, dict[str, str]]:
    alice = await server.auth.create_user("alice", "pw-alice-1")
    bob = await server.auth.create_user("bob", "pw-bob-1")
    rooms = {
        "budget": await server.rooms.create_room(
            CreateRoomRequest(alice, name="Budget", preset="public_chat", room_alias_name="budget")
        ),
        "archive": await server.rooms.create_room(CreateRoomRequest(bob, name="archive", preset="public_chat")),
        "unnamed": await server.rooms.create_room(CreateRoomRequest(bob)),
    }
    await server.rooms.join(bob, rooms["budget"])
    return AdminRooms("test.local", AdminStore(server.db)), rooms


async def test_list_sorts_searches_and_pages(server: Server) -> None:
    admin_rooms, ids = await three_rooms(server)
    page = await admin_rooms.list_rooms(RoomQuery(0, 100))
    # text sorts case-insensitively and rooms without the value come last
    assert [r["name"] for r in page.rooms] == ["archive", "Budget", None] and page.total == 3
    by_members = await admin_rooms.list_rooms(RoomQuery(0, 100, "joined_members", descending=True))
    assert by_members.rooms[0]["room_id"] == ids["budget"] and by_members.rooms[0]["joined_members"] == 2
    created = [r["room_id"] for r in (await admin_rooms.list_rooms(RoomQuery(0, 100, "created"))).rooms]
    newest_first = [r["room_id"] for r in (await admin_rooms.list_rooms(RoomQuery(0, 100, "created", True))).rooms]
    assert newest_first == created[::-1] and set(created) == set(ids.values())
    for order in ROOM_ORDERS:  # every accepted order sorts without error, rooms with None included
        assert (await admin_rooms.list_rooms(RoomQuery(0, 100, order))).total == 3
    # the term is matched in the name, the canonical alias and the room ID
    assert [r["room_id"] for r in (await admin_rooms.list_rooms(RoomQuery(0, 100, search_term="arch"))).rooms] == [
        ids["archive"]
    ]
    assert (await admin_rooms.list_rooms(RoomQuery(0, 100, search_term="#budget"))).total == 1
    localpart = ids["unnamed"][1:].split(":")[0].lower()
    assert (await admin_rooms.list_rooms(RoomQuery(0, 100, search_term=localpart))).total == 1
    second = await admin_rooms.list_rooms(RoomQuery(1, 1))
    assert [r["name"] for r in second.rooms] == ["Budget"] and second.total == 3


async def test_details_include_blocked_and_unknown_rooms_are_404(server: Server) -> None:
    admin_rooms, ids = await three_rooms(server)
    budget = await admin_rooms.room(ids["budget"])
    assert budget["canonical_alias"] == "#budget:test.local" and budget["join_rules"] == "public"
    assert budget["blocked"] is False and budget["state_events"] > 0
    await server.admin.delete_room(ids["archive"], ADMIN, block=True, purge=False)
    assert (await admin_rooms.room(ids["archive"]))["blocked"] is True
    await refused(404, admin_rooms.room("!nope:test.local"))
