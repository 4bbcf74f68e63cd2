"""Simplified Sliding Sync (MSC4186) as Element X speaks it: lists, rooms, required state, extensions,
connections and `pos` (research/element-x.md §2). Both engines."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from paigham.app import Server, create_app
from paigham.clock import now_ms
from paigham.storage import sliding_sync as sliding_store
from paigham.storage.sliding_sync import MAX_AGE_MS
from paigham.sync import sliding
from tests.api.conftest import Harness, User, serve
from tests.api.e2ee_support import Device

SS = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"

# The room-list connection's required state, exactly as matrix-rust-sdk's room list service asks
# (crates/matrix-sdk-ui/src/room_list_service/mod.rs).
ROOM_LIST_STATE = [
    ["m.room.name", ""],
    ["m.room.encryption", ""],
    ["m.room.member", "$LAZY"],
    ["m.room.member", "$ME"],
    ["m.room.topic", ""],
    ["m.room.avatar", ""],
    ["m.room.canonical_alias", ""],
    ["m.room.power_levels", ""],
    ["org.matrix.msc3401.call.member", "*"],
    ["m.room.join_rules", ""],
    ["m.room.tombstone", ""],
    ["m.room.create", ""],
    ["m.room.history_visibility", ""],
    ["io.element.functional_members", ""],
    ["m.space.parent", "*"],
    ["m.space.child", "*"],
    ["org.matrix.msc3672.beacon_info", "*"],
]


def room_list(ranges: list[list[int]], timeline_limit: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "conn_id": "room-list",
        "lists": {
            "all_rooms": {
                "ranges": ranges,
                "timeline_limit": timeline_limit,
                "required_state": ROOM_LIST_STATE,
                "filters": {},
            }
        },
        **extra,
    }


async def ss(hs: Harness, user: User, body: dict[str, Any], pos: str | None = None, timeout: int = 0) -> Any:
    params: dict[str, Any] = {"timeout": timeout}
    if pos is not None:
        params["pos"] = pos
    return await hs.ok("POST", SS, user, json=body, params=params)


async def three_rooms(hs: Harness) -> tuple[User, User, list[str]]:
    alice, bob = await hs.register("alice"), await hs.register("bob")
    rooms = []
    for i in range(3):
        room = await hs.create_room(alice, name=f"Room {i}", invite=[bob.user_id])
        await hs.ok("POST", f"/_matrix/client/v3/join/{room}", bob)
        await hs.send(bob, room, f"hello {i}")
        rooms.append(room)
    return alice, bob, rooms


def timeline_bodies(room: dict[str, Any]) -> list[str]:
    return [e["content"].get("body") for e in room.get("timeline", []) if e["type"] == "m.room.message"]


async def test_versions_advertise_simplified_sliding_sync(hs: Harness) -> None:
    body = await hs.ok("GET", "/_matrix/client/versions")
    assert body["unstable_features"].get("org.matrix.simplified_msc3575") is True


async def test_first_window_ordered_by_recency_with_what_the_room_list_needs(hs: Harness) -> None:
    alice, bob, rooms = await three_rooms(hs)
    res = await ss(hs, alice, room_list([[0, 1]]))
    assert res["lists"]["all_rooms"]["count"] == 3
    assert isinstance(res["pos"], str) and res["pos"]
    # The two most recently active rooms, newest first by bump_stamp.
    assert set(res["rooms"]) == {rooms[2], rooms[1]}
    r2 = res["rooms"][rooms[2]]
    assert r2["initial"] is True
    assert r2["name"] == "Room 2"
    assert timeline_bodies(r2) == ["hello 2"] and len(r2["timeline"]) == 1
    assert r2["limited"] is True
    assert r2["bump_stamp"] > res["rooms"][rooms[1]]["bump_stamp"]
    assert r2["joined_count"] == 2 and r2["invited_count"] == 0
    assert r2["num_live"] == 0
    assert r2["notification_count"] == 1 and r2["highlight_count"] == 0  # bob's message, unread
    assert "room_id" not in r2["timeline"][0]
    state = {(e["type"], e["state_key"]) for e in r2["required_state"]}
    # $ME and $LAZY (the timeline's sender) memberships, the room's description; no call members.
    assert {("m.room.member", alice.user_id), ("m.room.member", bob.user_id)} <= state
    assert {("m.room.name", ""), ("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.join_rules", "")} <= state
    # prev_batch pages back with /messages.
    page = await hs.ok(
        "GET",
        f"/_matrix/client/v3/rooms/{rooms[2]}/messages",
        alice,
        params={"from": r2["prev_batch"], "dir": "b", "limit": 50},
    )
    assert any(e["type"] == "m.room.create" for e in page["chunk"])
    assert all(e["event_id"] != r2["timeline"][0]["event_id"] for e in page["chunk"])


async def test_incremental_sends_only_what_changed_and_quiet_keeps_pos(hs: Harness) -> None:
    alice, bob, rooms = await three_rooms(hs)
    first = await ss(hs, alice, room_list([[0, 2]]))
    assert len(first["rooms"]) == 3
    quiet = await ss(hs, alice, room_list([[0, 2]]), first["pos"])
    assert quiet["rooms"] == {} and quiet["pos"] == first["pos"]
    await hs.send(bob, rooms[0], "news")
    nxt = await ss(hs, alice, room_list([[0, 2]]), first["pos"])
    assert set(nxt["rooms"]) == {rooms[0]}
    room = nxt["rooms"][rooms[0]]
    assert "initial" not in room
    assert timeline_bodies(room) == ["news"] and room["num_live"] == 1 and room["limited"] is False
    assert room["bump_stamp"] > first["rooms"][rooms[2]]["bump_stamp"]  # moved to the top
    assert nxt["pos"] != first["pos"]


async def test_growing_the_window_sends_only_the_new_rooms(hs: Harness) -> None:
    alice, _, rooms = await three_rooms(hs)
    first = await ss(hs, alice, room_list([[0, 0]]))
    assert set(first["rooms"]) == {rooms[2]}
    event_id = (await hs.ok("GET", f"/_matrix/client/v3/rooms/{rooms[0]}/messages", alice, params={"dir": "b"}))[
        "chunk"
    ][0]["event_id"]
    await hs.ok("POST", f"/_matrix/client/v3/rooms/{rooms[0]}/receipt/m.read/{event_id}", alice, json={})
    grown = await ss(hs, alice, room_list([[0, 2]]), first["pos"])
    assert set(grown["rooms"]) == {rooms[0], rooms[1]}
    assert grown["rooms"][rooms[0]]["notification_count"] == 0  # read up to the newest
    assert grown["rooms"][rooms[1]]["notification_count"] == 1
    assert all(r["initial"] for r in grown["rooms"].values())


async def test_long_poll_wakes_on_a_message_and_times_out_otherwise(hs: Harness) -> None:
    alice, bob, rooms = await three_rooms(hs)
    first = await ss(hs, alice, room_list([[0, 2]]))
    waiting = asyncio.create_task(ss(hs, alice, room_list([[0, 2]]), first["pos"], timeout=10_000))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await hs.send(bob, rooms[1], "wake up")
    res = await asyncio.wait_for(waiting, 5)
    assert timeline_bodies(res["rooms"][rooms[1]]) == ["wake up"]
    loop = asyncio.get_running_loop()
    started = loop.time()
    idle = await ss(hs, alice, room_list([[0, 2]]), res["pos"], timeout=300)
    assert idle["rooms"] == {} and loop.time() - started >= 0.25


async def test_invites_carry_invite_state_with_the_inviter_and_no_timeline(hs: Harness) -> None:
    alice, bob = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(alice, name="Budget", invite=[bob.user_id])
    body = {
        "conn_id": "notifications",
        "lists": {"invites": {"ranges": [[0, 16]], "timeline_limit": 8, "filters": {"is_invite": True}}},
    }
    res = await ss(hs, bob, body)
    assert res["lists"]["invites"]["count"] == 1
    inv = res["rooms"][room]
    assert "timeline" not in inv
    members = {e["state_key"] for e in inv["invite_state"] if e["type"] == "m.room.member"}
    assert members == {alice.user_id, bob.user_id}
    assert {e["type"] for e in inv["invite_state"]} >= {"m.room.create", "m.room.join_rules", "m.room.name"}
    assert inv["name"] == "Budget"
    # Joined rooms do not match is_invite.
    joined = await hs.create_room(bob)
    res2 = await ss(hs, bob, {**body, "conn_id": "other"})
    assert joined not in res2["rooms"] and res2["lists"]["invites"]["count"] == 1


async def test_invite_then_join_comes_as_a_joined_room(hs: Harness) -> None:
    alice, bob = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(alice, name="Budget", invite=[bob.user_id])
    first = await ss(hs, bob, room_list([[0, 9]]))
    assert "invite_state" in first["rooms"][room]
    await hs.ok("POST", f"/_matrix/client/v3/join/{room}", bob)
    nxt = await ss(hs, bob, room_list([[0, 9]]), first["pos"])
    joined = nxt["rooms"][room]
    assert joined["initial"] is True and "invite_state" not in joined
    assert joined["timeline"][-1]["type"] == "m.room.member"


async def test_a_left_room_is_sent_once_with_the_leave(hs: Harness) -> None:
    _alice, bob, rooms = await three_rooms(hs)
    first = await ss(hs, bob, room_list([[0, 9]]))
    assert len(first["rooms"]) == 3
    await hs.ok("POST", f"/_matrix/client/v3/rooms/{rooms[1]}/leave", bob)
    nxt = await ss(hs, bob, room_list([[0, 9]]), first["pos"])
    assert nxt["lists"]["all_rooms"]["count"] == 2
    left = nxt["rooms"][rooms[1]]
    assert left["timeline"][-1]["type"] == "m.room.member"
    assert left["timeline"][-1]["content"]["membership"] == "leave"
    again = await ss(hs, bob, room_list([[0, 9]]), nxt["pos"])
    assert rooms[1] not in again["rooms"]
    fresh = await ss(hs, bob, room_list([[0, 9]], conn_id="fresh"))
    assert rooms[1] not in fresh["rooms"]


async def test_required_state_forms(hs: Harness) -> None:
    alice, bob, rooms = await three_rooms(hs)
    carol = await hs.register("carol")
    await hs.ok("POST", f"/_matrix/client/v3/rooms/{rooms[0]}/invite", alice, json={"user_id": carol.user_id})

    async def state_of(pairs: list[list[str]], conn: str) -> set[tuple[str, str]]:
        body = {"conn_id": conn, "room_subscriptions": {rooms[0]: {"timeline_limit": 1, "required_state": pairs}}}
        res = await ss(hs, alice, body)
        return {(e["type"], e["state_key"]) for e in res["rooms"][rooms[0]]["required_state"]}

    everything = await state_of([["*", "*"]], "a")
    assert ("m.room.member", carol.user_id) in everything and ("m.room.create", "") in everything
    members = await state_of([["m.room.member", "*"]], "b")
    assert members == {("m.room.member", u.user_id) for u in (alice, bob, carol)}
    me = await state_of([["m.room.member", "$ME"]], "c")
    assert me == {("m.room.member", alice.user_id)}
    lazy = await state_of([["m.room.member", "$LAZY"]], "d")
    # The last event is carol's invite: its sender (alice) and its target (carol).
    assert lazy == {("m.room.member", alice.user_id), ("m.room.member", carol.user_id)}
    assert await state_of([["m.room.topic", ""]], "e") == set()


async def test_lazy_members_are_sent_once_per_connection(hs: Harness) -> None:
    alice, bob, rooms = await three_rooms(hs)
    carol = await hs.register("carol")
    await hs.ok("POST", f"/_matrix/client/v3/rooms/{rooms[0]}/invite", alice, json={"user_id": carol.user_id})
    await hs.ok("POST", f"/_matrix/client/v3/join/{rooms[0]}", carol)
    pairs = [["m.room.member", "$LAZY"]]
    body = {"conn_id": "lazy", "room_subscriptions": {rooms[0]: {"timeline_limit": 1, "required_state": pairs}}}

    def members(res: Any) -> set[str]:
        room = res["rooms"].get(rooms[0], {})
        return {e["state_key"] for e in room.get("required_state", []) if e["type"] == "m.room.member"}

    first = await ss(hs, alice, body)
    assert members(first) == {carol.user_id}  # the last event: carol's join
    await hs.send(bob, rooms[0], "from bob")
    second = await ss(hs, alice, body, first["pos"])
    assert members(second) == {bob.user_id}  # a sender the connection does not have yet
    await hs.send(bob, rooms[0], "bob again")
    third = await ss(hs, alice, body, second["pos"])
    assert timeline_bodies(third["rooms"][rooms[0]]) == ["bob again"]
    assert members(third) == set()  # bob's member event was sent already on this connection
    await hs.ok("PUT", f"/_matrix/client/v3/profile/{bob.user_id}/displayname", bob, json={"displayname": "Bobby"})
    fourth = await ss(hs, alice, body, third["pos"])
    assert members(fourth) == {bob.user_id}  # but a change of it is
    # Another connection has nothing yet: it gets bob's member event with the next message.
    await hs.send(bob, rooms[0], "third")
    other = await ss(hs, alice, {**body, "conn_id": "other"})
    assert members(other) == {bob.user_id}


async def test_subscription_with_a_longer_timeline_expands_it(hs: Harness) -> None:
    alice, bob, rooms = await three_rooms(hs)
    for i in range(5):
        await hs.send(bob, rooms[2], f"more {i}")
    first = await ss(hs, alice, room_list([[0, 2]]))
    assert len(first["rooms"][rooms[2]]["timeline"]) == 1
    body = room_list([[0, 2]], room_subscriptions={rooms[2]: {"timeline_limit": 20, "required_state": ROOM_LIST_STATE}})
    opened = await ss(hs, alice, body, first["pos"])
    room = opened["rooms"][rooms[2]]
    assert room["unstable_expanded_timeline"] is True
    assert timeline_bodies(room) == ["hello 2", "more 0", "more 1", "more 2", "more 3", "more 4"]
    assert room["limited"] is False
    assert set(opened["rooms"]) == {rooms[2]}


async def test_heroes_for_an_unnamed_room_and_dm_flag(hs: Harness) -> None:
    alice, bob = await hs.register("alice"), await hs.register("bob")
    await hs.ok("PUT", f"/_matrix/client/v3/profile/{bob.user_id}/displayname", bob, json={"displayname": "Bob B"})
    room = await hs.create_room(alice, invite=[bob.user_id], is_direct=True)
    await hs.ok("POST", f"/_matrix/client/v3/join/{room}", bob)
    await hs.ok(
        "PUT", f"/_matrix/client/v3/user/{alice.user_id}/account_data/m.direct", alice, json={bob.user_id: [room]}
    )
    res = await ss(hs, alice, room_list([[0, 9]]))
    r = res["rooms"][room]
    assert "name" not in r
    assert r["heroes"] == [{"user_id": bob.user_id, "displayname": "Bob B"}]
    assert r["is_dm"] is True
    dms = await ss(hs, alice, {"conn_id": "x", "lists": {"dms": {"ranges": [[0, 9]], "filters": {"is_dm": True}}}})
    assert dms["lists"]["dms"]["count"] == 1
    # With the account data extension (Element X's room list), m.direct comes from the extension's read.
    ext = {"account_data": {"enabled": True}}
    with_ext = await ss(hs, alice, {**room_list([[0, 9]]), "conn_id": "y", "extensions": ext})
    assert with_ext["rooms"][room]["is_dm"] is True
    assert {"type": "m.direct", "content": {bob.user_id: [room]}} in with_ext["extensions"]["account_data"]["global"]
    other = await hs.create_room(alice)
    plain = await ss(hs, alice, {**room_list([[0, 9]]), "conn_id": "z", "extensions": ext})
    assert plain["rooms"][room]["is_dm"] is True and plain["rooms"][other]["is_dm"] is False


async def test_pos_errors_are_unknown_pos(hs: Harness) -> None:
    alice, bob, _ = await three_rooms(hs)
    body = room_list([[0, 2]])
    for garbage in ("nonsense", "1/x", "99999/1", "-1/2"):
        await hs.err(400, "M_UNKNOWN_POS", "POST", SS, alice, json=body, params={"pos": garbage})
    first = await ss(hs, alice, body)
    # Another user (or device) cannot use it.
    await hs.err(400, "M_UNKNOWN_POS", "POST", SS, bob, json=body, params={"pos": first["pos"]})
    await hs.err(
        400, "M_UNKNOWN_POS", "POST", SS, alice, json={**body, "conn_id": "other"}, params={"pos": first["pos"]}
    )
    await hs.send(bob, _[0], "x")
    second = await ss(hs, alice, body, first["pos"])
    retried = await ss(hs, alice, body, first["pos"])  # the latest used pos may be retried
    assert set(retried["rooms"]) == set(second["rooms"])
    await hs.send(bob, _[0], "y")
    await ss(hs, alice, body, second["pos"])  # using the next one supersedes the first
    await hs.err(400, "M_UNKNOWN_POS", "POST", SS, alice, json=body, params={"pos": first["pos"]})


async def test_bad_bodies_are_matrix_errors(hs: Harness) -> None:
    alice = await hs.register("alice")
    bodies: list[dict[str, Any]] = [
        {"lists": {"a": {"ranges": [[0]]}}},
        {"lists": {"a": {"ranges": [[-1, 3]]}}},
        {"lists": {"a": {"timeline_limit": "x"}}},
        {"lists": {"a": {"required_state": [["only-type"]]}}},
        {"room_subscriptions": {"!r:x": {"timeline_limit": 100_000}}},
        {"conn_id": "x" * 100},
        {"extensions": {"to_device": {"enabled": "yes"}}},
        {"lists": {f"l{i}": {} for i in range(101)}},
    ]
    for body in bodies:
        await hs.err(400, "M_BAD_JSON", "POST", SS, alice, json=body)
    await hs.err(400, "M_NOT_JSON", "POST", SS, alice, content=b"{nope")
    await hs.err(401, "M_MISSING_TOKEN", "POST", SS, None, json={})


async def test_to_device_is_redelivered_until_acknowledged(hs: Harness) -> None:
    alice, bob = await hs.register("alice"), await hs.register("bob")
    for i in range(3):
        await hs.ok(
            "PUT",
            f"/_matrix/client/v3/sendToDevice/m.test/t{i}",
            alice,
            json={"messages": {bob.user_id: {bob.device_id: {"n": i}}}},
        )
    body: dict[str, Any] = {"conn_id": "encryption", "extensions": {"to_device": {"enabled": True, "limit": 2}}}
    first = await ss(hs, bob, body)
    td = first["extensions"]["to_device"]
    assert [e["content"]["n"] for e in td["events"]] == [0, 1]
    lost = await ss(hs, bob, body, first["pos"])  # `since` not advanced: the same again
    assert [e["content"]["n"] for e in lost["extensions"]["to_device"]["events"]] == [0, 1]
    body["extensions"]["to_device"]["since"] = td["next_batch"]
    nxt = await ss(hs, bob, body, first["pos"])
    assert [e["content"]["n"] for e in nxt["extensions"]["to_device"]["events"]] == [2]
    body["extensions"]["to_device"]["since"] = nxt["extensions"]["to_device"]["next_batch"]
    done = await ss(hs, bob, body, nxt["pos"])
    assert done["extensions"]["to_device"]["events"] == []


async def test_e2ee_extension_counts_and_device_lists(hs: Harness) -> None:
    alice, bob, _rooms = await three_rooms(hs)
    body = {"conn_id": "encryption", "extensions": {"e2ee": {"enabled": True}}}
    first = await ss(hs, alice, body)
    e2ee = first["extensions"]["e2ee"]
    assert e2ee["device_one_time_keys_count"] == {"signed_curve25519": 0}
    assert e2ee["device_unused_fallback_key_types"] == []
    assert "device_lists" not in e2ee  # only with a pos
    await Device.of(alice).upload(hs, otks=3, fallback=True)
    await Device.of(bob).upload(hs)
    nxt = await ss(hs, alice, body, first["pos"])
    assert nxt["extensions"]["e2ee"]["device_lists"]["changed"] == sorted([alice.user_id, bob.user_id])
    assert nxt["extensions"]["e2ee"]["device_one_time_keys_count"] == {"signed_curve25519": 3}
    assert nxt["extensions"]["e2ee"]["device_unused_fallback_key_types"] == ["signed_curve25519"]


async def test_account_data_all_first_then_changes(hs: Harness) -> None:
    alice, _, rooms = await three_rooms(hs)
    await hs.ok("PUT", f"/_matrix/client/v3/user/{alice.user_id}/account_data/org.example.a", alice, json={"a": 1})
    await hs.ok(
        "PUT",
        f"/_matrix/client/v3/user/{alice.user_id}/rooms/{rooms[0]}/account_data/org.example.r",
        alice,
        json={"r": 1},
    )
    body = room_list([[0, 9]], extensions={"account_data": {"enabled": True}})
    first = await ss(hs, alice, body)
    ad = first["extensions"]["account_data"]
    assert {e["type"] for e in ad["global"]} >= {"org.example.a", "m.push_rules"}
    assert ad["rooms"][rooms[0]] == [{"type": "org.example.r", "content": {"r": 1}}]
    await hs.ok("PUT", f"/_matrix/client/v3/user/{alice.user_id}/account_data/org.example.b", alice, json={"b": 2})
    nxt = await ss(hs, alice, body, first["pos"])
    assert nxt["extensions"]["account_data"]["global"] == [{"type": "org.example.b", "content": {"b": 2}}]
    assert nxt["extensions"]["account_data"]["rooms"] == {}


async def test_receipts_and_typing_extensions(hs: Harness) -> None:
    alice, bob, rooms = await three_rooms(hs)
    body = room_list([[0, 9]], extensions={"receipts": {"enabled": True, "rooms": ["*"]}, "typing": {"enabled": True}})
    first = await ss(hs, alice, body)
    event_id = first["rooms"][rooms[0]]["timeline"][-1]["event_id"]
    await hs.ok("POST", f"/_matrix/client/v3/rooms/{rooms[0]}/receipt/m.read/{event_id}", bob, json={})
    await hs.ok("PUT", f"/_matrix/client/v3/rooms/{rooms[1]}/typing/{bob.user_id}", bob, json={"typing": True})
    nxt = await ss(hs, alice, body, first["pos"])
    receipts = nxt["extensions"]["receipts"]["rooms"]
    assert bob.user_id in receipts[rooms[0]]["content"][event_id]["m.read"]
    assert nxt["extensions"]["typing"]["rooms"][rooms[1]]["content"]["user_ids"] == [bob.user_id]
    # A fresh connection sends the receipts on the rooms' timelines.
    fresh = await ss(hs, alice, {**body, "conn_id": "fresh"})
    assert bob.user_id in fresh["extensions"]["receipts"]["rooms"][rooms[0]]["content"][event_id]["m.read"]


async def test_three_connections_long_poll_concurrently(hs: Harness) -> None:
    alice, bob, rooms = await three_rooms(hs)
    bodies = [room_list([[0, 9]], conn_id=c) for c in ("room-list", "encryption", "notifications")]
    firsts = [await ss(hs, alice, b) for b in bodies]
    polls = [
        asyncio.create_task(ss(hs, alice, b, f["pos"], timeout=10_000)) for b, f in zip(bodies, firsts, strict=True)
    ]
    await asyncio.sleep(0.2)
    # A request on a fourth connection is answered while three long-poll.
    other = await ss(hs, alice, room_list([[0, 0]], conn_id="fourth"))
    assert other["lists"]["all_rooms"]["count"] == 3
    await hs.send(bob, rooms[0], "to all")
    done = await asyncio.wait_for(asyncio.gather(*polls), 5)
    assert all(timeline_bodies(d["rooms"][rooms[0]]) == ["to all"] for d in done)


async def test_pos_survives_a_restart(hs: Harness) -> None:
    alice, bob, rooms = await three_rooms(hs)
    first = await ss(hs, alice, room_list([[0, 2]]))
    await hs.send(bob, rooms[0], "while down")
    config = hs.server.config
    await hs.server.stop()
    server = Server(config)
    app = create_app(config, server)
    await server.start()
    try:
        import httpx

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            other = Harness(server, client)
            res = await ss(other, alice, room_list([[0, 2]]), first["pos"])
            assert set(res["rooms"]) == {rooms[0]}
            assert timeline_bodies(res["rooms"][rooms[0]]) == ["while down"]
    finally:
        await server.stop()
        await hs.server.start()


# The other two connections matrix-rust-sdk opens, shaped as it sends them.
async def test_encryption_connection_as_the_sdk_sends_it_wakes_on_a_to_device_message(hs: Harness) -> None:
    """crates/matrix-sdk-ui/src/encryption_sync_service.rs: no lists; to_device with the saved
    `since` and e2ee; a 30 s long-poll (nulls where the SDK has nothing yet)."""
    alice, bob = await hs.register("alice"), await hs.register("bob")
    body: dict[str, Any] = {
        "conn_id": "encryption",
        "txn_id": "t1",
        "extensions": {"to_device": {"enabled": True, "since": None}, "e2ee": {"enabled": True}},
    }
    first = await ss(hs, bob, body)
    assert "txn_id" not in first and first["rooms"] == {} and first["lists"] == {}
    body["extensions"]["to_device"]["since"] = first["extensions"]["to_device"]["next_batch"]
    waiting = asyncio.create_task(ss(hs, bob, body, first["pos"], timeout=30_000))
    await asyncio.sleep(0.2)
    await hs.ok(
        "PUT",
        "/_matrix/client/v3/sendToDevice/m.room_key_request/r1",
        alice,
        json={"messages": {bob.user_id: {"*": {"action": "request"}}}},
    )
    res = await asyncio.wait_for(waiting, 5)
    assert [e["type"] for e in res["extensions"]["to_device"]["events"]] == ["m.room_key_request"]
    assert res["extensions"]["e2ee"]["device_lists"] == {"changed": [], "left": []}


async def test_notification_connection_as_the_sdk_sends_it(hs: Harness) -> None:
    """crates/matrix-sdk-ui/src/notification_client.rs: an `invites` list and a subscription to the
    pushed room, polled with a short timeout."""
    alice, bob, rooms = await three_rooms(hs)
    invited = await hs.create_room(alice, name="Invite", invite=[bob.user_id])
    event_id = await hs.send(alice, rooms[1], "pushed")
    state = [["m.room.member", "$LAZY"], ["m.room.encryption", ""], ["m.room.name", ""], ["m.room.power_levels", ""]]
    body = {
        "conn_id": "notifications",
        "lists": {
            "invites": {
                "ranges": [[0, 16]],
                "timeline_limit": 8,
                "required_state": [["m.room.member", "$ME"], *state],
                "filters": {"is_invite": True},
            }
        },
        "room_subscriptions": {rooms[1]: {"timeline_limit": 16, "required_state": state}},
        "extensions": {"account_data": {"enabled": True}},
    }
    res = await ss(hs, bob, body, timeout=1000)
    assert set(res["rooms"]) == {invited, rooms[1]}
    assert event_id in [e["event_id"] for e in res["rooms"][rooms[1]]["timeline"]]
    senders = {e["state_key"] for e in res["rooms"][rooms[1]]["required_state"] if e["type"] == "m.room.member"}
    assert alice.user_id in senders
    assert "invite_state" in res["rooms"][invited]


async def test_list_filters(hs: Harness) -> None:
    alice, bob = await hs.register("alice"), await hs.register("bob")
    # Public rooms are created unencrypted (policy_require_encryption covers private rooms and DMs).
    plain = await hs.create_room(alice, name="plain", preset="public_chat")
    encrypted = await hs.create_room(
        alice,
        name="secret",
        preset="public_chat",
        initial_state=[
            {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
        ],
    )
    space = await hs.create_room(alice, name="space", preset="public_chat", creation_content={"type": "m.space"})
    await hs.ok(
        "PUT", f"/_matrix/client/v3/user/{alice.user_id}/rooms/{plain}/tags/m.favourite", alice, json={"order": 0.5}
    )
    invited = await hs.create_room(bob, invite=[alice.user_id])  # private: encrypted

    async def rooms_of(filters: dict[str, Any]) -> set[str]:
        body = {
            "conn_id": f"f{len(filters)}{sorted(filters)}"[:60],
            "lists": {"l": {"ranges": [[0, 9]], "filters": filters}},
        }
        res = await ss(hs, alice, body)
        assert res["lists"]["l"]["count"] == len(res["rooms"])
        return set(res["rooms"])

    assert await rooms_of({"is_encrypted": True}) == {encrypted, invited}
    assert await rooms_of({"is_invite": True}) == {invited}
    assert await rooms_of({"room_types": ["m.space"]}) == {space}
    assert await rooms_of({"not_room_types": ["m.space"], "is_invite": False}) == {plain, encrypted}
    assert await rooms_of({"tags": ["m.favourite"]}) == {plain}
    assert await rooms_of({"not_tags": ["m.favourite"], "is_invite": False}) == {encrypted, space}


async def test_long_poll_wakes_on_account_data_and_device_lists(hs: Harness) -> None:
    alice, bob, _ = await three_rooms(hs)
    body = {
        "conn_id": "c",
        "extensions": {"account_data": {"enabled": True}, "e2ee": {"enabled": True}},
    }
    first = await ss(hs, alice, body)
    waiting = asyncio.create_task(ss(hs, alice, body, first["pos"], timeout=10_000))
    await asyncio.sleep(0.2)
    await hs.ok("PUT", f"/_matrix/client/v3/user/{alice.user_id}/account_data/org.example.x", alice, json={"x": 1})
    res = await asyncio.wait_for(waiting, 5)
    assert res["extensions"]["account_data"]["global"] == [{"type": "org.example.x", "content": {"x": 1}}]
    waiting = asyncio.create_task(ss(hs, alice, body, res["pos"], timeout=10_000))
    await asyncio.sleep(0.2)
    await Device.of(bob).upload(hs)
    res = await asyncio.wait_for(waiting, 5)
    assert res["extensions"]["e2ee"]["device_lists"]["changed"] == [bob.user_id]


async def test_an_expired_pos_is_unknown(hs: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    alice, _, _ = await three_rooms(hs)
    first = await ss(hs, alice, room_list([[0, 2]]))
    later = now_ms() + MAX_AGE_MS + 60_000  # a week and a minute without using it
    monkeypatch.setattr(sliding, "now_ms", lambda: later)
    monkeypatch.setattr(sliding_store, "now_ms", lambda: later)
    await hs.err(400, "M_UNKNOWN_POS", "POST", SS, alice, json=room_list([[0, 2]]), params={"pos": first["pos"]})
    await hs.server.sliding_sync.purge()
    row = await hs.server.db.fetchrow("SELECT count(*) FROM sliding_sync_positions")
    assert row is not None and row[0] == 0


async def test_a_cancelled_long_poll_and_its_resend_each_get_their_own_pos(hs: Harness) -> None:
    """A client that changes its request cancels the long-poll in flight and sends the new body with
    the same pos (matrix-js-sdk's SlidingSync on every room subscription change); the cancelled
    request still runs on the server and answers when news comes. Each answer's pos must name what
    that answer sent: no 500 (PostgreSQL: both saved the same generation), and the pos of the answer
    the client kept goes on (SQLite: the later save replaced it, M_UNKNOWN_POS)."""
    alice, bob, rooms = await three_rooms(hs)
    body = room_list([[0, 2]])
    first = await ss(hs, alice, body)
    cancelled = asyncio.create_task(ss(hs, alice, body, first["pos"], timeout=10_000))
    await asyncio.sleep(0.2)
    resent = await ss(hs, alice, {**body, "room_subscriptions": {rooms[0]: {"timeline_limit": 5}}}, first["pos"])
    assert resent["rooms"][rooms[0]]["unstable_expanded_timeline"] is True
    await hs.send(bob, rooms[1], "wakes the cancelled request")
    abandoned = await asyncio.wait_for(cancelled, 5)
    assert timeline_bodies(abandoned["rooms"][rooms[1]]) == ["wakes the cancelled request"]
    assert abandoned["pos"] != resent["pos"]
    nxt = await ss(hs, alice, body, resent["pos"])  # the client goes on from the answer it kept
    assert timeline_bodies(nxt["rooms"][rooms[1]]) == ["wakes the cancelled request"]
    await hs.err(400, "M_UNKNOWN_POS", "POST", SS, alice, json=body, params={"pos": first["pos"]})


async def test_members_woken_by_one_message_probe_together_and_read_the_room_once(hs: Harness) -> None:
    """One message wakes every member's long-poll: their probes go as one statement on PostgreSQL
    (storage/sync_probe.py ProbeBatcher; one by one on SQLite) and the room's new events are read
    once for all of them (sync/shared_reads.py); each still gets the message, and only once."""
    alice = await hs.register("alice")
    members = [await hs.register(f"m{i}") for i in range(6)]
    room = await hs.create_room(alice, name="Announcements", preset="public_chat")
    for m in members:
        await hs.ok("POST", f"/_matrix/client/v3/join/{room}", m)
    await hs.send(alice, room, "before")
    body = room_list([[0, 0]], room_subscriptions={room: {"timeline_limit": 5, "required_state": []}})
    poss = []
    for m in members:
        first = await ss(hs, m, body)
        poss.append((await ss(hs, m, body, first["pos"]))["pos"])  # caught up: the next one waits
    service = hs.server.sliding_sync
    statements, reads = service.probes.statements, len(service.shared.recent_answers)
    polls = [asyncio.create_task(ss(hs, m, body, pos, timeout=10_000)) for m, pos in zip(members, poss, strict=True)]
    await asyncio.sleep(0.3)
    assert not any(p.done() for p in polls)
    await hs.send(alice, room, "to everyone")
    answers = await asyncio.wait_for(asyncio.gather(*polls), 10)
    assert [timeline_bodies(a["rooms"][room]) for a in answers] == [["to everyone"]] * len(members)
    assert len(service.shared.recent_answers) == reads + 1  # one read of the room's new events
    if hs.server.db.dialect.name == "postgresql":
        assert 1 <= service.probes.statements - statements < len(members)
    else:
        assert service.probes.statements == statements == 0
    # Each connection moves on from its own answer: nothing is sent twice.
    again = await asyncio.gather(*(ss(hs, m, body, a["pos"]) for m, a in zip(members, answers, strict=True)))
    assert all(room not in a["rooms"] for a in again)


async def test_a_state_event_redacted_after_a_room_list_showed_it_comes_redacted_on_a_fresh_connection(
    hs: Harness,
) -> None:
    """The room list's state events are decoded once per process (storage/event_rows.py
    ClientStateEvents): a redaction still shows on the next connection's first window."""
    alice = await hs.register("alice")
    room = await hs.create_room(alice, name="Room", preset="public_chat")
    topic_id = (
        await hs.ok("PUT", f"/_matrix/client/v3/rooms/{room}/state/m.room.topic", alice, json={"topic": "secret"})
    )["event_id"]

    def topic(answer: Any) -> dict[str, Any]:
        (ev,) = [e for e in answer["rooms"][room]["required_state"] if e["type"] == "m.room.topic"]
        return dict(ev)

    assert topic(await ss(hs, alice, room_list([[0, 9]], conn_id="a")))["content"] == {"topic": "secret"}
    await hs.ok("PUT", f"/_matrix/client/v3/rooms/{room}/redact/{topic_id}/t1", alice, json={})
    shown = topic(await ss(hs, alice, room_list([[0, 9]], conn_id="b")))
    assert shown["event_id"] == topic_id and shown["content"] == {}
    assert shown["unsigned"]["redacted_because"]["redacts"] == topic_id


async def test_a_join_storms_news_is_held_as_in_sync(database_url: str, tmp_path: Path) -> None:
    """As /sync's (tests/api/test_large_rooms.py): in a big room (two long-polls woken at once here), a
    connection answered moments ago gets a further join with the next other news, not at once."""
    settings = {"sync_big_room_watchers": 2, "sync_member_news_hold_ms": 60_000, "presence_enabled": False}
    async with serve(database_url, tmp_path, **settings) as hs:
        owner, a, b = await hs.register("owner"), await hs.register("a"), await hs.register("b")
        room = await hs.create_room(owner, preset="public_chat")
        for u in (a, b):
            await hs.ok("POST", f"/_matrix/client/v3/rooms/{room}/join", u, json={})
        pos = {u.user_id: (await ss(hs, u, room_list([[0, 0]])))["pos"] for u in (a, b)}
        polls = [asyncio.create_task(ss(hs, u, room_list([[0, 0]]), pos[u.user_id], timeout=30_000)) for u in (a, b)]
        await asyncio.sleep(0.2)
        await hs.ok("POST", f"/_matrix/client/v3/rooms/{room}/join", await hs.register("c"), json={})
        first = await asyncio.wait_for(polls[0], 10)
        await asyncio.wait_for(polls[1], 10)
        assert room in first["rooms"]  # the first join: at once (the room became big with it)
        poll = asyncio.create_task(ss(hs, a, room_list([[0, 0]]), first["pos"], timeout=30_000))
        await hs.ok("POST", f"/_matrix/client/v3/rooms/{room}/join", await hs.register("d"), json={})
        await asyncio.sleep(0.5)
        assert not poll.done()
        await hs.send(owner, room, "news")
        got = await asyncio.wait_for(poll, 10)
        assert timeline_bodies(got["rooms"][room]) == ["news"]
