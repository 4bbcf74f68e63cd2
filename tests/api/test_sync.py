"""/sync: initial and incremental, long-poll wake-ups, filters, lazy-loading, ephemeral, account data."""

from __future__ import annotations

import asyncio
import json
import time

from paigham.types import JsonDict
from tests.api.conftest import Harness, User

V3 = "/_matrix/client/v3"


def timeline_bodies(sync: JsonDict, room: str) -> list[str]:
    room_data = sync["rooms"]["join"].get(room, {})
    return [
        e["content"].get("body")
        for e in room_data.get("timeline", {}).get("events", [])
        if e["type"] == "m.room.message"
    ]


async def test_initial_and_incremental_sync(hs: Harness) -> None:
    a, b = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(a, preset="private_chat", invite=[b.user_id], name="Desk")
    s_b = await hs.sync(b)
    assert room in s_b["rooms"]["invite"]
    stripped = s_b["rooms"]["invite"][room]["invite_state"]["events"]
    assert {e["type"] for e in stripped} >= {"m.room.create", "m.room.name", "m.room.member"}
    await hs.ok("POST", f"{V3}/rooms/{room}/join", b, json={})
    s_b2 = await hs.sync(b, s_b["next_batch"])
    assert room in s_b2["rooms"]["join"]
    state_types = {e["type"] for e in s_b2["rooms"]["join"][room]["state"]["events"]}
    timeline_types = {e["type"] for e in s_b2["rooms"]["join"][room]["timeline"]["events"]}
    assert "m.room.create" in state_types | timeline_types
    await hs.send(a, room, "one")
    s_b3 = await hs.sync(b, s_b2["next_batch"])
    assert timeline_bodies(s_b3, room) == ["one"]
    s_b4 = await hs.sync(b, s_b3["next_batch"])
    assert room not in s_b4["rooms"]["join"]
    assert s_b4["next_batch"] == s_b3["next_batch"]


async def test_limited_timeline_and_prev_batch(hs: Harness) -> None:
    a = await hs.register("alice")
    room = await hs.create_room(a)
    first = await hs.sync(a)
    for i in range(15):
        await hs.send(a, room, f"m{i}")
    flt = json.dumps({"room": {"timeline": {"limit": 5}}})
    s = await hs.sync(a, first["next_batch"], filter=flt)
    tl = s["rooms"]["join"][room]["timeline"]
    assert tl["limited"] is True and [e["content"]["body"] for e in tl["events"]] == [f"m{i}" for i in range(10, 15)]
    page = await hs.ok(
        "GET", f"{V3}/rooms/{room}/messages", a, params={"from": tl["prev_batch"], "dir": "b", "limit": 5}
    )
    assert [e["content"]["body"] for e in page["chunk"]] == [f"m{i}" for i in range(9, 4, -1)]


async def test_long_poll_wakes_on_message(hs: Harness) -> None:
    a, b = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(a, preset="public_chat")
    await hs.ok("POST", f"{V3}/rooms/{room}/join", b, json={})
    since = (await hs.sync(b))["next_batch"]
    started = time.monotonic()
    waiter = asyncio.create_task(hs.sync(b, since, timeout=10_000))
    await asyncio.sleep(0.2)
    await hs.send(a, room, "wake up")
    result = await asyncio.wait_for(waiter, 5)
    assert timeline_bodies(result, room) == ["wake up"]
    assert time.monotonic() - started < 5


async def test_long_poll_times_out_empty(hs: Harness) -> None:
    a = await hs.register("alice")
    await hs.create_room(a)
    since = (await hs.sync(a))["next_batch"]
    started = time.monotonic()
    result = await hs.sync(a, since, timeout=300)
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 3
    assert result["rooms"]["join"] == {}


async def test_every_event_exactly_once_under_concurrency(hs: Harness) -> None:
    users = [await hs.register(f"w{i}") for i in range(3)]
    reader = await hs.register("reader")
    rooms = []
    for u in users:
        room = await hs.create_room(u, preset="public_chat")
        await hs.ok("POST", f"{V3}/rooms/{room}/join", reader, json={})
        rooms.append(room)
    since = (await hs.sync(reader))["next_batch"]
    sent: dict[str, list[str]] = {r: [] for r in rooms}
    seen: dict[str, list[str]] = {r: [] for r in rooms}

    async def writer(u: User, room: str) -> None:
        for i in range(15):
            sent[room].append(await hs.send(u, room, f"{i}"))

    async def read_loop(stop: asyncio.Event) -> None:
        nonlocal since
        flt = json.dumps({"room": {"timeline": {"limit": 1000}}})
        while not stop.is_set():
            s = await hs.sync(reader, since, timeout=200, filter=flt)
            for r in rooms:
                seen[r] += [
                    e["event_id"]
                    for e in s["rooms"]["join"].get(r, {}).get("timeline", {}).get("events", [])
                    if e["type"] == "m.room.message"
                ]
            since = s["next_batch"]

    stop = asyncio.Event()
    reader_task = asyncio.create_task(read_loop(stop))
    await asyncio.gather(*(writer(u, r) for u, r in zip(users, rooms, strict=True)))
    await asyncio.sleep(0.5)
    stop.set()
    await reader_task
    final = await hs.sync(reader, since, filter=json.dumps({"room": {"timeline": {"limit": 1000}}}))
    for r in rooms:
        seen[r] += [
            e["event_id"]
            for e in final["rooms"]["join"].get(r, {}).get("timeline", {}).get("events", [])
            if e["type"] == "m.room.message"
        ]
        assert seen[r] == sent[r]


async def test_lazy_loading_members(hs: Harness) -> None:
    a = await hs.register("alice")
    others = [await hs.register(f"m{i}") for i in range(5)]
    room = await hs.create_room(a, preset="public_chat")
    for o in others:
        await hs.ok("POST", f"{V3}/rooms/{room}/join", o, json={})
    await hs.send(others[0], room, "hi")
    flt = json.dumps({"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 1}}})
    s = await hs.sync(a, filter=flt)
    members = {e["state_key"] for e in s["rooms"]["join"][room]["state"]["events"] if e["type"] == "m.room.member"}
    assert members == {others[0].user_id, a.user_id}
    assert s["rooms"]["join"][room]["summary"]["m.joined_member_count"] == 6


async def test_filter_create_get_and_errors(hs: Harness) -> None:
    a, b = await hs.register("alice"), await hs.register("bob")
    body = {"room": {"timeline": {"limit": 3, "types": ["m.room.message"]}}}
    fid = (await hs.ok("POST", f"{V3}/user/{a.user_id}/filter", a, json=body))["filter_id"]
    got = await hs.ok("GET", f"{V3}/user/{a.user_id}/filter/{fid}", a)
    assert got["room"]["timeline"]["limit"] == 3
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/user/{a.user_id}/filter/999", a)
    await hs.err(403, "M_FORBIDDEN", "POST", f"{V3}/user/{a.user_id}/filter", b, json=body)
    await hs.err(400, "M_BAD_JSON", "POST", f"{V3}/user/{a.user_id}/filter", a, json={"room": {"timeline": 5}})
    room = await hs.create_room(a)
    await hs.send(a, room, "x")
    s = await hs.sync(a, filter=fid)
    assert all(e["type"] == "m.room.message" for e in s["rooms"]["join"][room]["timeline"]["events"])
    await hs.err(400, "M_INVALID_PARAM", "GET", f"{V3}/sync", a, params={"since": "bogus"})


async def test_parsed_filters_are_reused_per_user_and_bad_ones_always_refused(hs: Harness) -> None:
    a, b = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(a, preset="public_chat")
    await hs.ok("POST", f"{V3}/rooms/{room}/join", b, json={})
    for i in range(3):
        await hs.send(a, room, f"m{i}")
    fa = await hs.ok("POST", f"{V3}/user/{a.user_id}/filter", a, json={"room": {"timeline": {"limit": 1}}})
    fb = await hs.ok("POST", f"{V3}/user/{b.user_id}/filter", b, json={"room": {"timeline": {"limit": 2}}})
    for _ in range(2):  # the second time from the cache: still each user's own filter
        assert len((await hs.sync(a, filter=fa["filter_id"]))["rooms"]["join"][room]["timeline"]["events"]) == 1
        assert len((await hs.sync(b, filter=fb["filter_id"]))["rooms"]["join"][room]["timeline"]["events"]) == 2
    if fa["filter_id"] != fb["filter_id"]:  # IDs are per user: Bob cannot use Alice's
        await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/sync", b, params={"filter": fa["filter_id"], "timeout": 0})
    inline = '{"room": {"timeline": {"limit": 1}}}'
    for _ in range(2):
        assert len((await hs.sync(b, filter=inline))["rooms"]["join"][room]["timeline"]["events"]) == 1
        await hs.err(400, "M_NOT_JSON", "GET", f"{V3}/sync", b, params={"filter": "{bad", "timeout": 0})
        await hs.err(400, "M_BAD_JSON", "GET", f"{V3}/sync", b, params={"filter": '{"room": {"timeline": 5}}'})


async def test_typing_and_receipts_in_sync(hs: Harness) -> None:
    a, b = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(a, preset="public_chat")
    await hs.ok("POST", f"{V3}/rooms/{room}/join", b, json={})
    eid = await hs.send(a, room, "read me")
    since = (await hs.sync(a))["next_batch"]
    await hs.ok("PUT", f"{V3}/rooms/{room}/typing/{b.user_id}", b, json={"typing": True, "timeout": 10000})
    await hs.ok("POST", f"{V3}/rooms/{room}/receipt/m.read/{eid}", b, json={})
    s = await hs.sync(a, since)
    eph = {e["type"]: e["content"] for e in s["rooms"]["join"][room]["ephemeral"]["events"]}
    assert eph["m.typing"]["user_ids"] == [b.user_id]
    assert b.user_id in eph["m.receipt"][eid]["m.read"]
    await hs.ok("PUT", f"{V3}/rooms/{room}/typing/{b.user_id}", b, json={"typing": False})
    s2 = await hs.sync(a, s["next_batch"])
    eph2 = {e["type"]: e["content"] for e in s2["rooms"]["join"][room]["ephemeral"]["events"]}
    assert eph2["m.typing"]["user_ids"] == []
    await hs.err(403, "M_FORBIDDEN", "PUT", f"{V3}/rooms/{room}/typing/{a.user_id}", b, json={"typing": True})
    await hs.err(400, "M_INVALID_PARAM", "POST", f"{V3}/rooms/{room}/receipt/m.bogus/{eid}", b, json={})
    await hs.err(404, "M_NOT_FOUND", "POST", f"{V3}/rooms/{room}/receipt/m.read/$nope", b, json={})


async def test_private_receipt_only_for_self(hs: Harness) -> None:
    a, b = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(a, preset="public_chat")
    await hs.ok("POST", f"{V3}/rooms/{room}/join", b, json={})
    eid = await hs.send(a, room, "x")
    since_a = (await hs.sync(a))["next_batch"]
    await hs.ok("POST", f"{V3}/rooms/{room}/receipt/m.read.private/{eid}", b, json={})
    s_a = await hs.sync(a, since_a)
    assert room not in s_a["rooms"]["join"] or not any(
        e["type"] == "m.receipt" for e in s_a["rooms"]["join"][room]["ephemeral"]["events"]
    )
    s_b = await hs.sync(b)
    receipts = [e for e in s_b["rooms"]["join"][room]["ephemeral"]["events"] if e["type"] == "m.receipt"]
    assert b.user_id in receipts[0]["content"][eid]["m.read.private"]


async def test_unread_counts_and_read_receipt(hs: Harness) -> None:
    a, b = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(a, preset="public_chat")
    await hs.ok("POST", f"{V3}/rooms/{room}/join", b, json={})
    await hs.send(a, room, "one")
    last = await hs.send(a, room, f"hey {b.user_id}")
    s = await hs.sync(b)
    counts = s["rooms"]["join"][room]["unread_notifications"]
    assert counts["notification_count"] >= 2
    await hs.ok("POST", f"{V3}/rooms/{room}/read_markers", b, json={"m.fully_read": last, "m.read": last})
    s2 = await hs.sync(b, s["next_batch"])
    assert s2["rooms"]["join"][room]["unread_notifications"]["notification_count"] == 0
    fully = [e for e in s2["rooms"]["join"][room]["account_data"]["events"] if e["type"] == "m.fully_read"]
    assert fully and fully[0]["content"]["event_id"] == last


async def test_account_data_and_tags(hs: Harness) -> None:
    a = await hs.register("alice")
    room = await hs.create_room(a)
    since = (await hs.sync(a))["next_batch"]
    await hs.ok("PUT", f"{V3}/user/{a.user_id}/account_data/m.direct", a, json={"@b:test.local": [room]})
    await hs.ok("PUT", f"{V3}/user/{a.user_id}/rooms/{room}/tags/m.favourite", a, json={"order": 0.5})
    s = await hs.sync(a, since)
    assert {"type": "m.direct", "content": {"@b:test.local": [room]}} in s["account_data"]["events"]
    tags = [e for e in s["rooms"]["join"][room]["account_data"]["events"] if e["type"] == "m.tag"]
    assert tags[0]["content"]["tags"] == {"m.favourite": {"order": 0.5}}
    assert (await hs.ok("GET", f"{V3}/user/{a.user_id}/rooms/{room}/tags", a))["tags"] == {
        "m.favourite": {"order": 0.5}
    }
    await hs.ok("DELETE", f"{V3}/user/{a.user_id}/rooms/{room}/tags/m.favourite", a)
    assert (await hs.ok("GET", f"{V3}/user/{a.user_id}/rooms/{room}/tags", a))["tags"] == {}
    assert (await hs.ok("GET", f"{V3}/user/{a.user_id}/account_data/m.direct", a)) == {"@b:test.local": [room]}
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/user/{a.user_id}/account_data/m.unset", a)
    await hs.err(405, "M_BAD_JSON", "PUT", f"{V3}/user/{a.user_id}/account_data/m.push_rules", a, json={})


async def test_initial_sync_has_push_rules(hs: Harness) -> None:
    a = await hs.register("alice")
    s = await hs.sync(a)
    rules = [e for e in s["account_data"]["events"] if e["type"] == "m.push_rules"]
    assert rules and rules[0]["content"]["global"]["override"][0]["rule_id"] == ".m.rule.master"


async def test_leave_appears_in_leave_section(hs: Harness) -> None:
    a, b = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(a, preset="public_chat")
    await hs.ok("POST", f"{V3}/rooms/{room}/join", b, json={})
    since = (await hs.sync(b))["next_batch"]
    await hs.ok("POST", f"{V3}/rooms/{room}/leave", b, json={})
    s = await hs.sync(b, since)
    assert room in s["rooms"]["leave"]
    assert room not in s["rooms"]["join"]


async def test_sync_token_survives_restart(hs: Harness) -> None:
    a = await hs.register("alice")
    room = await hs.create_room(a)
    since = (await hs.sync(a))["next_batch"]
    await hs.server.stop()
    await hs.server.start()
    await hs.send(a, room, "after restart")
    assert timeline_bodies(await hs.sync(a, since), room) == ["after restart"]


async def test_profile_change_does_not_resend_history(hs: Harness) -> None:
    a = await hs.register("alice")
    room = await hs.create_room(a)
    for i in range(12):
        await hs.send(a, room, f"h{i}")
    since = (await hs.sync(a))["next_batch"]
    await hs.ok("PUT", f"{V3}/profile/{a.user_id}/displayname", a, json={"displayname": "Alice V"})
    s = await hs.sync(a, since)
    tl = s["rooms"]["join"][room]["timeline"]
    assert tl["limited"] is False
    assert [e["type"] for e in tl["events"]] == ["m.room.member"]


async def test_invite_state_carries_the_inviters_membership(hs: Harness) -> None:
    """Without the inviter's m.room.member event Element Web shows an invite as "Empty room"."""
    alice, bob = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(alice, invite=[bob.user_id])
    body = await hs.sync(bob)
    stripped = body["rooms"]["invite"][room]["invite_state"]["events"]
    members = {e["state_key"]: e for e in stripped if e["type"] == "m.room.member"}
    assert set(members) == {alice.user_id, bob.user_id}
    assert members[alice.user_id]["content"]["membership"] == "join"
    assert members[bob.user_id]["content"]["membership"] == "invite"
    assert {"m.room.create", "m.room.join_rules"} <= {e["type"] for e in stripped}
