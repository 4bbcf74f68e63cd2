"""SpaceHierarchy: the /hierarchy walk, its child order, depth, pagination and who may see what."""

from __future__ import annotations

import pytest

from paigham.app import Server
from paigham.errors import MatrixError
from paigham.services.spaces import HierarchyRequest
from tests.services.conftest import make_room, make_user

ALL = HierarchyRequest(limit=50, max_depth=10)


async def space(server: Server, creator: str, name: str, preset: str = "public_chat") -> str:
    return await make_room(server, creator, preset=preset, name=name, creation_content={"type": "m.space"})


async def add_child(server: Server, sender: str, parent: str, child: str, **extra: object) -> None:
    await server.rooms.send_state(sender, parent, "m.space.child", child, {"via": ["test.local"], **extra})


async def ids(server: Server, user: str, root: str, req: HierarchyRequest = ALL) -> list[str]:
    return [r["room_id"] for r in (await server.hierarchy.page(user, root, req))["rooms"]]


async def test_breadth_first_in_the_spec_child_order(server: Server) -> None:
    alice = await make_user(server, "alice")
    root = await space(server, alice, "Root")
    first, second, third, grandchild = [await make_room(server, alice, preset="public_chat") for _ in range(4)]
    await add_child(server, alice, root, third)  # no `order`: after the ordered ones, by timestamp
    await add_child(server, alice, root, second, order="b")
    await add_child(server, alice, root, first, order="a")
    await add_child(server, alice, first, grandchild)
    assert await ids(server, alice, root) == [root, first, second, third, grandchild]
    page = await server.hierarchy.page(alice, root, ALL)
    children = [c["state_key"] for c in page["rooms"][0]["children_state"]]
    assert children == [first, second, third]


async def test_removed_children_cycles_and_depth(server: Server) -> None:
    alice = await make_user(server, "alice")
    root, sub = await space(server, alice, "Root"), await space(server, alice, "Sub")
    leaf = await make_room(server, alice, preset="public_chat")
    removed = await make_room(server, alice, preset="public_chat")
    await add_child(server, alice, root, sub)
    await add_child(server, alice, sub, leaf, suggested=True)
    await add_child(server, alice, sub, root)  # a cycle: each room is listed once
    await server.rooms.send_state(alice, root, "m.space.child", removed, {})  # no `via`: removed
    assert await ids(server, alice, root) == [root, sub, leaf]
    assert await ids(server, alice, root, HierarchyRequest(limit=50, max_depth=1)) == [root, sub]
    assert await ids(server, alice, root, HierarchyRequest(limit=50, max_depth=0)) == [root]
    suggested = HierarchyRequest(limit=50, max_depth=10, suggested_only=True)
    assert await ids(server, alice, root, suggested) == [root]  # `sub` is not a suggested child


async def test_pages_are_offsets_into_the_walk(server: Server) -> None:
    alice = await make_user(server, "alice")
    root = await space(server, alice, "Root")
    children = [await make_room(server, alice, preset="public_chat") for _ in range(4)]
    for i, child in enumerate(children):
        await add_child(server, alice, root, child, order=str(i))
    seen, start = [], None
    while True:
        page = await server.hierarchy.page(alice, root, HierarchyRequest(limit=2, max_depth=10, start=start))
        seen += [r["room_id"] for r in page["rooms"]]
        start = page.get("next_batch")
        if start is None:
            break
    assert seen == [root, *children]
    for bad in ("0", "x", "-1", "1234567", "²"):
        with pytest.raises(MatrixError) as err:
            await server.hierarchy.page(alice, root, HierarchyRequest(limit=2, max_depth=10, start=bad))
        assert (err.value.status, err.value.errcode) == (400, "M_INVALID_PARAM")


async def test_only_rooms_the_user_may_peek_into(server: Server) -> None:
    alice, bob = await make_user(server, "alice"), await make_user(server, "bob")
    root = await space(server, alice, "Root")
    private = await make_room(server, alice, preset="private_chat")
    invited = await make_room(server, alice, preset="private_chat", invite=[bob])
    await add_child(server, alice, root, private)
    await add_child(server, alice, root, invited)
    assert set(await ids(server, alice, root)) == {root, private, invited}
    assert await ids(server, bob, root) == [root, invited]  # invitees may peek, strangers not
    with pytest.raises(MatrixError) as err:
        await server.hierarchy.page(bob, private, ALL)
    assert (err.value.status, err.value.errcode) == (403, "M_FORBIDDEN")
    with pytest.raises(MatrixError) as err:
        await server.hierarchy.page(bob, "!nowhere:test.local", ALL)
    assert (err.value.status, err.value.errcode) == (404, "M_NOT_FOUND")
