"""Spaces: the room hierarchy."""

from __future__ import annotations

from tests.api.conftest import Harness

V3 = "/_matrix/client/v3"
V1 = "/_matrix/client/v1"


async def test_space_hierarchy(hs: Harness) -> None:
    a, b = await hs.register("alice"), await hs.register("bob")
    space = await hs.create_room(a, preset="public_chat", name="Ministry", creation_content={"type": "m.space"})
    dept = await hs.create_room(a, preset="public_chat", name="Department", creation_content={"type": "m.space"})
    notices = await hs.create_room(a, preset="public_chat", name="Notices")
    private = await hs.create_room(a, preset="private_chat", name="Secret")
    for parent, child, extra in (
        (space, dept, {"order": "a"}),
        (space, private, {}),
        (dept, notices, {"suggested": True}),
    ):
        await hs.ok("PUT", f"{V3}/rooms/{parent}/state/m.space.child/{child}", a, json={"via": ["test.local"], **extra})
    res = await hs.ok("GET", f"{V1}/rooms/{space}/hierarchy", b)
    ids = [r["room_id"] for r in res["rooms"]]
    assert ids == [space, dept, notices]  # bob cannot see the private room
    assert res["rooms"][0]["room_type"] == "m.space" and res["rooms"][0]["name"] == "Ministry"
    assert {c["state_key"] for c in res["rooms"][0]["children_state"]} == {dept, private}
    shallow = await hs.ok("GET", f"{V1}/rooms/{space}/hierarchy", b, params={"max_depth": 1})
    assert [r["room_id"] for r in shallow["rooms"]] == [space, dept]
    page = await hs.ok("GET", f"{V1}/rooms/{space}/hierarchy", a, params={"limit": 2})
    assert len(page["rooms"]) == 2 and page["next_batch"]
    rest = await hs.ok("GET", f"{V1}/rooms/{space}/hierarchy", a, params={"limit": 2, "from": page["next_batch"]})
    assert {r["room_id"] for r in page["rooms"] + rest["rooms"]} == {space, dept, notices, private}
    await hs.err(403, "M_FORBIDDEN", "GET", f"{V1}/rooms/{private}/hierarchy", b)
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V1}/rooms/!nope:test.local/hierarchy", b)
