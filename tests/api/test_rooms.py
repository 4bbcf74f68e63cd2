"""Rooms: creation presets, membership, sending, state, redaction, reading, pagination."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from tests.api.conftest import Harness, User

V3 = "/_matrix/client/v3"


@pytest.mark.parametrize("version", ["10", "11", "12"])
async def test_create_room_each_version(hs: Harness, version: str) -> None:
    u = await hs.register("alice")
    room = await hs.create_room(u, room_version=version, name="Cabinet", topic="Agenda", preset="private_chat")
    if version == "12":
        assert ":" not in room
    state = await hs.ok("GET", f"{V3}/rooms/{room}/state", u)
    types = {(e["type"], e["state_key"]) for e in state}
    assert ("m.room.create", "") in types and ("m.room.power_levels", "") in types
    assert ("m.room.join_rules", "") in types and ("m.room.name", "") in types
    create = next(e for e in state if e["type"] == "m.room.create")
    assert create["content"]["room_version"] == version
    name = await hs.ok("GET", f"{V3}/rooms/{room}/state/m.room.name", u)
    assert name == {"name": "Cabinet"}
    pl = await hs.ok("GET", f"{V3}/rooms/{room}/state/m.room.power_levels/", u)
    if version == "12":
        assert u.user_id not in pl["users"]
    else:
        assert pl["users"][u.user_id] == 100


async def test_create_room_errors(hs: Harness) -> None:
    u = await hs.register("alice")
    await hs.err(400, "M_UNSUPPORTED_ROOM_VERSION", "POST", f"{V3}/createRoom", u, json={"room_version": "1"})
    await hs.err(400, "M_INVALID_PARAM", "POST", f"{V3}/createRoom", u, json={"preset": "nope"})
    await hs.err(400, "M_INVALID_PARAM", "POST", f"{V3}/createRoom", u, json={"invite": ["not-a-user"]})
    await hs.err(400, "M_BAD_JSON", "POST", f"{V3}/createRoom", u, json={"name": 5})
    await hs.err(400, "M_BAD_JSON", "POST", f"{V3}/createRoom", u, json={"creation_content": {"x": 1.5}})
    await hs.err(
        400,
        "M_BAD_JSON",
        "POST",
        f"{V3}/createRoom",
        u,
        json={"initial_state": [{"type": "m.room.power_levels", "content": {}}]},
    )
    # Nothing half-written: a failing createRoom leaves no room behind.
    assert await hs.server.events.user_rooms(u.user_id) == {}


async def test_alias_creation_and_join_by_alias(hs: Harness) -> None:
    a = await hs.register("alice")
    b = await hs.register("bob")
    room = await hs.create_room(a, preset="public_chat", room_alias_name="ministry")
    got = await hs.ok("GET", f"{V3}/directory/room/%23ministry:test.local")
    assert got["room_id"] == room
    joined = await hs.ok("POST", f"{V3}/join/%23ministry:test.local", b, json={})
    assert joined["room_id"] == room
    await hs.err(400, "M_ROOM_IN_USE", "POST", f"{V3}/createRoom", a, json={"room_alias_name": "ministry"})
    await hs.err(404, "M_NOT_FOUND", "POST", f"{V3}/join/%23nothing:test.local", b, json={})


async def test_invite_join_leave_kick_ban(hs: Harness) -> None:
    a, b, c = await hs.register("alice"), await hs.register("bob"), await hs.register("carol")
    room = await hs.create_room(a, preset="private_chat")
    await hs.err(403, "M_FORBIDDEN", "POST", f"{V3}/rooms/{room}/join", b, json={})
    await hs.ok("POST", f"{V3}/rooms/{room}/invite", a, json={"user_id": b.user_id})
    await hs.err(403, "M_FORBIDDEN", "POST", f"{V3}/rooms/{room}/invite", c, json={"user_id": c.user_id})
    await hs.ok("POST", f"{V3}/rooms/{room}/join", b, json={})
    joined = await hs.ok("GET", f"{V3}/rooms/{room}/joined_members", b)
    assert set(joined["joined"]) == {a.user_id, b.user_id}
    assert room in (await hs.ok("GET", f"{V3}/joined_rooms", b))["joined_rooms"]
    # b (power 0) may not kick a (power 100)
    await hs.err(403, "M_FORBIDDEN", "POST", f"{V3}/rooms/{room}/kick", b, json={"user_id": a.user_id})
    await hs.ok("POST", f"{V3}/rooms/{room}/kick", a, json={"user_id": b.user_id, "reason": "test"})
    assert (await hs.server.events.membership(b.user_id, room))[0] == "leave"  # type: ignore[index]
    await hs.ok("POST", f"{V3}/rooms/{room}/ban", a, json={"user_id": b.user_id})
    await hs.ok("POST", f"{V3}/rooms/{room}/invite", a, json={"user_id": c.user_id})
    await hs.err(403, "M_FORBIDDEN", "POST", f"{V3}/rooms/{room}/invite", a, json={"user_id": b.user_id})
    await hs.ok("POST", f"{V3}/rooms/{room}/unban", a, json={"user_id": b.user_id})
    await hs.err(403, "M_FORBIDDEN", "POST", f"{V3}/rooms/{room}/unban", a, json={"user_id": b.user_id})
    await hs.ok("POST", f"{V3}/rooms/{room}/join", c, json={})
    await hs.ok("POST", f"{V3}/rooms/{room}/leave", c, json={})
    await hs.ok("POST", f"{V3}/rooms/{room}/forget", c, json={})
    assert room not in (await hs.ok("GET", f"{V3}/joined_rooms", c))["joined_rooms"]
    await hs.err(404, "M_NOT_FOUND", "POST", f"{V3}/rooms/!nope:test.local/join", c, json={})
    await hs.err(400, "M_INVALID_PARAM", "POST", f"{V3}/rooms/{room}/invite", a, json={"user_id": "bad"})
    await hs.err(404, "M_NOT_FOUND", "POST", f"{V3}/rooms/{room}/invite", a, json={"user_id": "@ghost:test.local"})


async def test_send_is_idempotent_per_device(hs: Harness) -> None:
    a = await hs.register("alice")
    room = await hs.create_room(a)
    e1 = await hs.send(a, room, "hello", txn="t1")
    e2 = await hs.send(a, room, "hello again", txn="t1")
    assert e1 == e2
    other = await hs.server.auth.start_session(a.user_id, None, None)
    r = await hs.http.put(
        f"{V3}/rooms/{room}/send/m.room.message/t1",
        json={"msgtype": "m.text", "body": "x"},
        headers={"Authorization": f"Bearer {other.access_token}"},
    )
    assert r.json()["event_id"] != e1
    ev = await hs.ok("GET", f"{V3}/rooms/{room}/event/{e1}", a)
    assert ev["content"]["body"] == "hello" and ev["unsigned"]["transaction_id"] == "t1"


async def test_send_errors(hs: Harness) -> None:
    a, b = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(a)
    await hs.err(403, "M_FORBIDDEN", "PUT", f"{V3}/rooms/{room}/send/m.room.message/1", b, json={"body": "x"})
    await hs.err(
        404, "M_NOT_FOUND", "PUT", f"{V3}/rooms/!missing:test.local/send/m.room.message/1", a, json={"body": "x"}
    )
    await hs.err(400, "M_INVALID_PARAM", "PUT", f"{V3}/rooms/notaroom/send/m.room.message/1", a, json={})
    await hs.err(400, "M_NOT_JSON", "PUT", f"{V3}/rooms/{room}/send/m.room.message/2", a, content=b"nope")
    await hs.err(400, "M_BAD_JSON", "PUT", f"{V3}/rooms/{room}/send/m.room.message/3", a, json={"n": 1.5})
    await hs.err(400, "M_BAD_JSON", "PUT", f"{V3}/rooms/{room}/send/m.room.message/4", a, json={"n": 2**60})
    await hs.err(413, "M_TOO_LARGE", "PUT", f"{V3}/rooms/{room}/send/m.room.message/5", a, json={"body": "x" * 70000})
    # The failed requests left no event behind.
    msgs = await hs.ok("GET", f"{V3}/rooms/{room}/messages", a, params={"dir": "b", "limit": 50})
    assert not [e for e in msgs["chunk"] if e["type"] == "m.room.message"]


async def test_state_put_get_and_power(hs: Harness) -> None:
    a, b = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(a, preset="public_chat")
    await hs.ok("POST", f"{V3}/rooms/{room}/join", b, json={})
    await hs.ok("PUT", f"{V3}/rooms/{room}/state/m.room.topic", a, json={"topic": "Budget"})
    assert (await hs.ok("GET", f"{V3}/rooms/{room}/state/m.room.topic", b))["topic"] == "Budget"
    await hs.err(403, "M_FORBIDDEN", "PUT", f"{V3}/rooms/{room}/state/m.room.topic", b, json={"topic": "x"})
    await hs.ok("PUT", f"{V3}/rooms/{room}/state/org.example.custom/key1", a, json={"v": 1})
    ev = await hs.ok("GET", f"{V3}/rooms/{room}/state/org.example.custom/key1", a, params={"format": "event"})
    assert ev["content"] == {"v": 1} and ev["state_key"] == "key1"
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/rooms/{room}/state/org.example.custom/other", a)


async def test_redaction(hs: Harness) -> None:
    a, b = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(a, preset="public_chat")
    await hs.ok("POST", f"{V3}/rooms/{room}/join", b, json={})
    eid = await hs.send(b, room, "secret plan")
    other = await hs.send(a, room, "admin message")
    await hs.err(403, "M_FORBIDDEN", "PUT", f"{V3}/rooms/{room}/redact/{other}/r1", b, json={})
    red = await hs.ok("PUT", f"{V3}/rooms/{room}/redact/{eid}/r2", b, json={"reason": "oops"})
    again = await hs.ok("PUT", f"{V3}/rooms/{room}/redact/{eid}/r2", b, json={"reason": "oops"})
    assert red == again
    ev = await hs.ok("GET", f"{V3}/rooms/{room}/event/{eid}", a)
    assert ev["content"] == {}
    assert ev["unsigned"]["redacted_because"]["event_id"] == red["event_id"]
    await hs.err(404, "M_NOT_FOUND", "PUT", f"{V3}/rooms/{room}/redact/$unknown/r3", a, json={})


async def test_messages_pagination_both_directions(hs: Harness) -> None:
    a = await hs.register("alice")
    room = await hs.create_room(a)
    ids = [await hs.send(a, room, f"m{i}") for i in range(25)]
    seen: list[str] = []
    token = None
    while True:
        params = {"dir": "b", "limit": 10, "filter": '{"types":["m.room.message"]}'}
        if token:
            params["from"] = token
        page = await hs.ok("GET", f"{V3}/rooms/{room}/messages", a, params=params)
        seen.extend(e["event_id"] for e in page["chunk"])
        if "end" not in page:
            break
        token = page["end"]
    assert seen == list(reversed(ids))
    fwd = await hs.ok("GET", f"{V3}/rooms/{room}/messages", a, params={"dir": "f", "limit": 100})
    msg_ids = [e["event_id"] for e in fwd["chunk"] if e["type"] == "m.room.message"]
    assert msg_ids == ids
    await hs.err(400, "M_INVALID_PARAM", "GET", f"{V3}/rooms/{room}/messages", a, params={"dir": "x"})
    await hs.err(400, "M_INVALID_PARAM", "GET", f"{V3}/rooms/{room}/messages", a, params={"from": "garbage"})
    await hs.err(400, "M_NOT_JSON", "GET", f"{V3}/rooms/{room}/messages", a, params={"filter": "{bad"})


async def test_history_visibility_joined(hs: Harness) -> None:
    a, b = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(
        a,
        preset="public_chat",
        initial_state=[{"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}],
    )
    await hs.send(a, room, "before bob")
    await hs.ok("POST", f"{V3}/rooms/{room}/join", b, json={})
    await hs.send(a, room, "after bob")
    page = await hs.ok("GET", f"{V3}/rooms/{room}/messages", b, params={"dir": "b", "limit": 50})
    bodies = [e["content"].get("body") for e in page["chunk"] if e["type"] == "m.room.message"]
    assert bodies == ["after bob"]


async def test_context_and_members(hs: Harness) -> None:
    a, b = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(a, preset="public_chat")
    await hs.ok("POST", f"{V3}/rooms/{room}/join", b, json={})
    ids = [await hs.send(a, room, f"c{i}") for i in range(7)]
    ctx = await hs.ok("GET", f"{V3}/rooms/{room}/context/{ids[3]}", b, params={"limit": 4})
    assert ctx["event"]["event_id"] == ids[3]
    assert [e["event_id"] for e in ctx["events_before"]] == [ids[2], ids[1]]
    assert [e["event_id"] for e in ctx["events_after"]] == [ids[4], ids[5]]
    nxt = await hs.ok("GET", f"{V3}/rooms/{room}/messages", b, params={"from": ctx["end"], "dir": "f"})
    assert nxt["chunk"][0]["event_id"] == ids[6]
    members = await hs.ok("GET", f"{V3}/rooms/{room}/members", b)
    assert {m["state_key"] for m in members["chunk"]} == {a.user_id, b.user_id}
    only_join = await hs.ok("GET", f"{V3}/rooms/{room}/members", b, params={"not_membership": "join"})
    assert only_join["chunk"] == []


async def test_non_member_cannot_read(hs: Harness) -> None:
    a, b = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(a)
    eid = await hs.send(a, room, "private")
    await hs.err(403, "M_FORBIDDEN", "GET", f"{V3}/rooms/{room}/messages", b)
    await hs.err(403, "M_FORBIDDEN", "GET", f"{V3}/rooms/{room}/state", b)
    # Spec: 404 "The event was not found or you do not have permission to read this event" — the same
    # answer as for a missing event, so an outsider cannot probe event IDs (tests/api/test_outsiders.py).
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/rooms/{room}/event/{eid}", b)


async def test_concurrent_senders_keep_one_linear_history(hs: Harness) -> None:
    users = [await hs.register(f"u{i}") for i in range(4)]
    room = await hs.create_room(users[0], preset="public_chat")
    for u in users[1:]:
        await hs.ok("POST", f"{V3}/rooms/{room}/join", u, json={})
    await asyncio.gather(*(hs.send(u, room, f"{u.user_id}-{i}") for u in users for i in range(10)))
    evs = await hs.server.events.room_events(room, limit=1000, backwards=False)
    depths = [e.pdu["depth"] for e in evs]
    assert depths == list(range(1, len(evs) + 1))
    for prev, cur in itertools.pairwise(evs):
        assert cur.pdu["prev_events"] == [prev.event_id]


async def test_public_room_directory(hs: Harness) -> None:
    a = await hs.register("alice")
    pub = await hs.create_room(a, visibility="public", name="Notices", room_alias_name="notices")
    await hs.create_room(a, name="Hidden")
    listing = await hs.ok("GET", f"{V3}/publicRooms")
    assert [r["room_id"] for r in listing["chunk"]] == [pub]
    assert listing["chunk"][0]["name"] == "Notices"
    search = await hs.ok("POST", f"{V3}/publicRooms", a, json={"filter": {"generic_search_term": "notic"}})
    assert len(search["chunk"]) == 1
    vis = await hs.ok("GET", f"{V3}/directory/list/room/{pub}")
    assert vis["visibility"] == "public"
    await hs.ok("PUT", f"{V3}/directory/list/room/{pub}", a, json={"visibility": "private"})
    assert (await hs.ok("GET", f"{V3}/publicRooms"))["chunk"] == []


async def test_context_limit_zero_tokens(hs: Harness) -> None:
    a = await hs.register("alice")
    room = await hs.create_room(a)
    ids = [await hs.send(a, room, f"z{i}") for i in range(3)]
    ctx = await hs.ok("GET", f"{V3}/rooms/{room}/context/{ids[1]}", a, params={"limit": 0})
    assert ctx["events_before"] == [] and ctx["events_after"] == []
    fwd = await hs.ok("GET", f"{V3}/rooms/{room}/messages", a, params={"from": ctx["end"], "dir": "f", "limit": 1})
    assert fwd["chunk"][0]["event_id"] == ids[2]
    back = await hs.ok("GET", f"{V3}/rooms/{room}/messages", a, params={"from": ctx["start"], "dir": "b", "limit": 1})
    assert back["chunk"][0]["event_id"] == ids[0]


async def test_state_change_carries_prev_content(hs: Harness) -> None:
    a = await hs.register("alice")
    room = await hs.create_room(a, name="Old name")
    await hs.ok("PUT", f"{V3}/rooms/{room}/state/m.room.name", a, json={"name": "New name"})
    ev = await hs.ok("GET", f"{V3}/rooms/{room}/state/m.room.name", a, params={"format": "event"})
    assert ev["unsigned"]["prev_content"] == {"name": "Old name"}
    assert ev["unsigned"]["replaces_state"]


async def test_a_kept_joined_member_list_follows_every_membership_write(hs: Harness) -> None:
    """GET /joined_members keeps a big room's list (services/timeline.py JoinedMembers; here from 1
    member) and checks it against the room's members_stream at each request: nothing tells the copy
    of a change, as nothing would on another worker, yet joins, leaves, kicks and profile changes show
    at once; a former member sees the room as they left it."""
    hs.server.timeline.joined.kept_from = 1
    a, b, c = await hs.register("alice"), await hs.register("bob"), await hs.register("carol")
    room = await hs.create_room(a, preset="public_chat")
    await hs.ok("POST", f"{V3}/join/{room}", b, json={})

    async def joined(user: User = a) -> dict[str, Any]:
        return dict((await hs.ok("GET", f"{V3}/rooms/{room}/joined_members", user))["joined"])

    assert set(await joined()) == {a.user_id, b.user_id} and len(hs.server.timeline.joined) == 1
    assert set(await joined()) == {a.user_id, b.user_id}  # from the copy
    await hs.ok("PUT", f"{V3}/profile/{b.user_id}/displayname", b, json={"displayname": "Bob B."})
    assert (await joined())[b.user_id] == {"display_name": "Bob B."}
    await hs.ok("POST", f"{V3}/join/{room}", c, json={})
    assert set(await joined()) == {a.user_id, b.user_id, c.user_id}
    await hs.ok("POST", f"{V3}/rooms/{room}/kick", a, json={"user_id": b.user_id})
    assert set(await joined()) == {a.user_id, c.user_id}
    await hs.ok("POST", f"{V3}/rooms/{room}/leave", c, json={})
    assert set(await joined()) == {a.user_id}
    await hs.ok("POST", f"{V3}/join/{room}", b, json={})
    assert set(await joined()) == {a.user_id, b.user_id}
    assert set(await joined(c)) == {a.user_id}  # carol sees the room as it was once she had left
