"""TagService: room tags kept as the room's m.tag account data."""

from __future__ import annotations

from paigham.app import Server
from paigham.services.tags import MAX_TAGS
from tests.services.conftest import make_room, make_user, refused


async def test_tags_are_the_rooms_m_tag_account_data(server: Server) -> None:
    alice = await make_user(server, "alice")
    room = await make_room(server, alice)
    tags = server.tags
    assert await tags.tags(alice, room) == {}
    await tags.put(alice, room, "u.work", {"order": 0.5})
    await tags.put(alice, room, "m.favourite", {})
    assert await tags.tags(alice, room) == {"u.work": {"order": 0.5}, "m.favourite": {}}
    assert await server.ephemeral.get_account_data(alice, room, "m.tag") == {
        "tags": {"u.work": {"order": 0.5}, "m.favourite": {}}
    }
    await tags.delete(alice, room, "u.work")
    await tags.delete(alice, room, "u.never")
    assert await tags.tags(alice, room) == {"m.favourite": {}}
    await refused(400, "M_BAD_JSON", tags.put(alice, room, "u.x", {"order": "first"}))
    await refused(400, "M_INVALID_PARAM", tags.put(alice, room, "", {}))
    for i in range(MAX_TAGS - 1):
        await tags.put(alice, room, f"u.{i}", {})
    await refused(400, "M_INVALID_PARAM", tags.put(alice, room, "u.one-too-many", {}))
    await tags.put(alice, room, "m.favourite", {"order": 1})  # changing a tag is no new tag
