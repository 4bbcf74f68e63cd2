"""The sync probe (storage/sync_probe.py): one read that tells /sync which streams have news past
`since`, so the rest is skipped. A bit it fails to set would lose that stream's updates for good
(the token moves past them), so each stream is changed on its own here and must (1) set its bit
and (2) reach an incremental /sync; and a range where nothing happened must set nothing."""

from __future__ import annotations

import asyncio
from typing import Any

from paigham.storage.sync_probe import (
    ACCOUNT_DATA,
    DEVICE_LISTS,
    PRESENCE,
    PUSH_RULES,
    ROOM_EVENTS,
    ROOM_RECEIPTS,
    ROOM_TYPING,
    TO_DEVICE,
    ProbeBatcher,
    SyncProbe,
    probe,
)
from paigham.storage.sync_rooms import RoomListCache
from tests.api.conftest import Harness, User
from tests.api.e2ee_support import Device

V3 = "/_matrix/client/v3"
STATES = ("join", "invite", "leave", "ban", "knock")


async def look(hs: Harness, user: User, since: int) -> SyncProbe:
    return await probe(hs.server.db, user.user_id, user.device_id, since, STATES)


async def test_each_stream_sets_its_bit_and_reaches_sync(hs: Harness) -> None:
    alice = await hs.register("alice")
    bob = await hs.register("bob")
    room = await hs.create_room(alice, preset="public_chat")
    await hs.ok("POST", f"{V3}/join/{room}", bob)
    quiet = await hs.create_room(alice, preset="public_chat")  # bob is in it; nothing happens there
    await hs.ok("POST", f"{V3}/join/{quiet}", bob)
    token = (await hs.sync(bob))["next_batch"]

    async def step() -> tuple[SyncProbe, dict[str, Any]]:
        """The probe and the incremental sync since the last step; the token moves on."""
        nonlocal token
        since = int(token[1:])
        found = await look(hs, bob, since)
        body = await hs.sync(bob, since=token)
        token = body["next_batch"]
        assert found.room_flags.get(quiet, 0) == 0
        return found, body

    found, body = await step()
    assert (found.user_flags, found.room_flags) == (0, {}), "a range where nothing happened must say so"
    assert body["rooms"]["join"] == {}

    event_id = await hs.send(alice, room, "hello")
    found, body = await step()
    assert found.room_flags[room] & ROOM_EVENTS
    assert [e["event_id"] for e in body["rooms"]["join"][room]["timeline"]["events"]] == [event_id]
    assert found.read_positions[room] == 0  # bob has read nothing: counting starts at his joining

    await hs.ok("PUT", f"{V3}/rooms/{room}/typing/{alice.user_id}", alice, json={"typing": True, "timeout": 30000})
    found, body = await step()
    assert found.room_flags[room] == ROOM_TYPING
    assert body["rooms"]["join"][room]["ephemeral"]["events"] == [
        {"type": "m.typing", "content": {"user_ids": [alice.user_id]}}
    ]

    await hs.ok("POST", f"{V3}/rooms/{room}/receipt/m.read/{event_id}", alice, json={})
    found, body = await step()
    assert found.room_flags[room] == ROOM_RECEIPTS
    receipts = [e for e in body["rooms"]["join"][room]["ephemeral"]["events"] if e["type"] == "m.receipt"]
    assert alice.user_id in receipts[0]["content"][event_id]["m.read"]

    await hs.ok("PUT", f"{V3}/user/{bob.user_id}/account_data/org.example.one", bob, json={"a": 1})
    found, body = await step()
    assert found.user_flags & ACCOUNT_DATA
    assert {"type": "org.example.one", "content": {"a": 1}} in body["account_data"]["events"]

    await hs.ok("PUT", f"{V3}/user/{bob.user_id}/rooms/{room}/tags/u.work", bob, json={"order": 0.5})
    found, body = await step()
    assert found.user_flags & ACCOUNT_DATA
    assert body["rooms"]["join"][room]["account_data"]["events"][0]["type"] == "m.tag"

    await hs.ok("PUT", f"{V3}/pushrules/global/content/budget", bob, json={"pattern": "budget", "actions": ["notify"]})
    found, body = await step()
    assert found.user_flags & PUSH_RULES
    assert any(e["type"] == "m.push_rules" for e in body["account_data"]["events"])

    await hs.ok("PUT", f"{V3}/presence/{alice.user_id}/status", alice, json={"presence": "unavailable"})
    found, body = await step()
    assert found.user_flags & PRESENCE
    assert any(
        e["sender"] == alice.user_id and e["content"]["presence"] == "unavailable" for e in body["presence"]["events"]
    )

    await hs.ok(
        "PUT", f"{V3}/sendToDevice/m.test/t1", alice, json={"messages": {bob.user_id: {bob.device_id: {"n": 1}}}}
    )
    found, body = await step()
    assert found.user_flags & TO_DEVICE
    assert [e["content"] for e in body["to_device"]["events"]] == [{"n": 1}]
    # Delivered but not yet acknowledged: the inbox still holds it, so the next sync still looks (and
    # acknowledges it); after that the inbox is empty and nothing is read.
    found, body = await step()
    assert found.user_flags & TO_DEVICE and body["to_device"]["events"] == []
    found, _ = await step()
    assert not found.user_flags & TO_DEVICE

    await Device.of(alice).upload(hs)
    found, body = await step()
    assert found.user_flags & DEVICE_LISTS
    assert alice.user_id in body["device_lists"]["changed"]

    carol = await hs.register("carol")
    await hs.ok("POST", f"{V3}/join/{room}", carol)
    found, body = await step()
    assert found.user_flags & DEVICE_LISTS and found.room_flags[room] & ROOM_EVENTS
    assert any(e["state_key"] == carol.user_id for e in body["rooms"]["join"][room]["timeline"]["events"])

    found, body = await step()
    assert (found.user_flags, found.room_flags) == (0, {})


async def test_key_counts_and_read_position_come_with_the_probe(hs: Harness) -> None:
    alice = await hs.register("alice")
    bob = await hs.register("bob")
    room = await hs.create_room(alice, preset="public_chat")
    await hs.ok("POST", f"{V3}/join/{room}", bob)
    first = await hs.send(alice, room, "one")
    await hs.send(alice, room, "two")
    await hs.ok("POST", f"{V3}/rooms/{room}/receipt/m.read/{first}", bob, json={})
    await Device.of(bob).upload(hs, otks=3, fallback=True)

    found = await look(hs, bob, 0)
    assert found.one_time_keys == {"signed_curve25519": 3}
    assert found.fallback_keys == ["signed_curve25519"]
    stream = (await hs.server.events.get_event(first)).stream  # type: ignore[union-attr]
    assert found.read_positions[room] == stream
    assert found.position == await hs.server.db.current_position()

    body = await hs.sync(bob)
    assert body["device_one_time_keys_count"] == {"signed_curve25519": 3}
    assert body["device_unused_fallback_key_types"] == ["signed_curve25519"]
    assert body["rooms"]["join"][room]["unread_notifications"]["notification_count"] == 1
    # another device of bob's sees its own (no) keys
    other = await hs.server.auth.start_session(bob.user_id, None, None)
    mine = await probe(hs.server.db, bob.user_id, other.device_id, None, STATES)
    assert (mine.one_time_keys, mine.fallback_keys) == ({}, [])


async def test_unread_counts_come_with_the_probe_and_agree_with_the_store(hs: Harness) -> None:
    """Rooms with news are counted inside the probe, others (a new tag only, say) by the store; both
    counts must be the same numbers, highlights and the members' own results included."""
    alice, bob, cara = await hs.register("alice"), await hs.register("bob"), await hs.register("cara")
    room = await hs.create_room(alice, preset="public_chat")
    for u in (bob, cara):
        await hs.ok("POST", f"{V3}/join/{room}", u)
    first = await hs.send(alice, room, "one")
    await hs.ok(
        "PUT",
        f"{V3}/rooms/{room}/send/m.room.message/t2",
        alice,
        json={"msgtype": "m.text", "body": "bob, look", "m.mentions": {"user_ids": [bob.user_id]}},
    )
    await hs.send(cara, room, "three")
    await hs.ok("PUT", f"{V3}/pushrules/global/room/{room}", cara, json={"actions": []})  # cara mutes it
    await hs.send(alice, room, "four")
    await hs.ok("POST", f"{V3}/rooms/{room}/receipt/m.read/{first}", bob, json={})

    found = await look(hs, bob, 0)
    stored = await hs.server.push_actions.unread_after_reads(bob.user_id, {room: found.joined_at[room]})
    assert found.unread[room] == stored[room] == (3, 1)
    assert (await look(hs, cara, 0)).unread[room] == (2, 0)  # alice's first two; not her own, not after muting

    # An incremental sync where only the room's account data moved (a tag): counted by the store.
    token = (await hs.sync(bob))["next_batch"]
    await hs.ok("PUT", f"{V3}/user/{bob.user_id}/rooms/{room}/tags/m.favourite", bob, json={})
    found = await look(hs, bob, int(token[1:]))
    assert room not in found.room_flags and room not in found.unread and found.user_flags == ACCOUNT_DATA
    body = await hs.sync(bob, since=token)
    counts = body["rooms"]["join"][room]["unread_notifications"]
    assert (counts["notification_count"], counts["highlight_count"]) == (3, 1)


async def test_probes_asked_together_go_as_one_statement_and_answer_each_as_alone(hs: Harness) -> None:
    """ProbeBatcher: the syncs one message wakes probe in one statement on PostgreSQL (one by one on
    SQLite); each gets what its own probe would have read, whatever its news."""
    alice = await hs.register("alice")
    users = [await hs.register(f"u{i}") for i in range(5)]
    room = await hs.create_room(alice, preset="public_chat")
    other = await hs.create_room(alice, preset="public_chat")
    for u in users:
        await hs.ok("POST", f"{V3}/join/{room}", u)
    await hs.ok("POST", f"{V3}/join/{other}", users[0])
    since = await hs.server.db.current_position()
    db = hs.server.db
    alone, together = RoomListCache(), RoomListCache()
    for cache in (alone, together):  # both remember every user's rooms at `since`
        for u in users:
            await probe(db, u.user_id, u.device_id, since, STATES, rooms=cache)

    # Different news for different users: a message for all, more for some.
    await hs.send(alice, room, "to everyone")
    await hs.send(alice, other, "to u0 only")
    await hs.ok("PUT", f"{V3}/user/{users[1].user_id}/account_data/org.example.x", users[1], json={"a": 1})
    await Device.of(users[2]).upload(hs, otks=2, fallback=True)
    await hs.ok("POST", f"{V3}/rooms/{room}/leave", users[3])
    await hs.ok("POST", f"{V3}/rooms/{room}/receipt/m.read/{await hs.send(alice, room, 'two')}", users[4], json={})

    expected = [await probe(db, u.user_id, u.device_id, since, STATES, rooms=alone) for u in users]
    batcher = ProbeBatcher(db)
    got = await asyncio.gather(
        *(probe(db, u.user_id, u.device_id, since, STATES, rooms=together, batcher=batcher) for u in users)
    )
    assert got == expected
    assert expected[0].room_flags.keys() == {room, other} and expected[1].user_flags & ACCOUNT_DATA
    assert expected[2].one_time_keys == {"signed_curve25519": 2} and expected[3].memberships[room][0] == "leave"
    assert batcher.statements == (1 if db.dialect.name == "postgresql" else 0)

    # Sliding sync's probes (with bump stamps, another shape) asked in the same turn as /sync's: one
    # statement per shape, each answer as its own probe's.
    bump_types = ("m.room.message",)
    expected_bumps = [await probe(db, u.user_id, u.device_id, since, STATES, bump_types) for u in users]
    both = await asyncio.gather(
        *(probe(db, u.user_id, u.device_id, since, STATES, bump_types, batcher=batcher) for u in users),
        *(probe(db, u.user_id, u.device_id, since, STATES, rooms=together, batcher=batcher) for u in users),
    )
    assert list(both[: len(users)]) == expected_bumps and list(both[len(users) :]) == expected
    assert expected_bumps[0].bumps.keys() == {room, other} and expected_bumps[3].memberships[room][0] == "leave"
    assert batcher.statements == (3 if db.dialect.name == "postgresql" else 0)
