"""A user in hundreds of rooms (issue #18): an incremental /sync where one room changed sends the same
statements whether the user is in 10 rooms or 300 (its cost follows the changes, not the rooms), a
token far behind takes the probe's other road to the same answer, and the initial, incremental and
full_state syncs of that user are right. (How fast, at 1,000 rooms: bench `many_rooms`.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from paigham.services.rooms import CreateRoomRequest
from paigham.storage.database import Database
from paigham.storage.sync_probe import ROOM_EVENTS, probe
from paigham.storage.sync_rooms import RoomList
from paigham.sync.sections import MEMBERSHIPS
from tests.api.conftest import Harness, User, serve
from tests.storage.support import statements

V3 = "/_matrix/client/v3"
LAZY = json.dumps({"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 5}}})


async def add_rooms(hs: Harness, user: User, first: int, count: int) -> list[str]:
    """`count` named public rooms created by `user` through the room service (no HTTP: set-up only)."""
    gate = asyncio.Semaphore(4)

    async def one(i: int) -> str:
        async with gate:
            req = CreateRoomRequest(creator=user.user_id, preset="public_chat", name=f"room {i}")
            return await hs.server.rooms.create_room(req)

    return list(await asyncio.gather(*(one(i) for i in range(first, first + count))))


async def one_message(hs: Harness, reader: User, sender: User, room: str, since: str) -> tuple[list[str], Any]:
    """`sender` says one thing in `room`; the statements of `reader`'s incremental sync, and its body."""
    await hs.send(sender, room, "news")
    await hs.ok("GET", f"{V3}/account/whoami", reader)  # the access token cached: not what is counted
    with statements(hs.server.db, built=True) as sent:
        body = await hs.sync(reader, since=since)
    return sent, body


def timeline_bodies(body: Any, room: str) -> list[str]:
    return [e["content"].get("body") for e in body["rooms"]["join"][room]["timeline"]["events"]]


def state_types(room: Any) -> set[str]:
    return {e["type"] for e in room["state"]["events"]}


async def test_a_user_in_300_rooms_syncs_right_and_one_change_costs_the_same_as_in_10_rooms(hs: Harness) -> None:
    # No pushers here; the push dispatcher's sweep (every 30 s, and this test can take longer on a busy
    # machine) reads the stream position, which the statement counts below would take for the sync's.
    await hs.server.push_delivery.stop()
    alice, bob = await hs.register("alice"), await hs.register("bob")
    rooms = await add_rooms(hs, alice, 0, 10)
    busy, other = rooms[0], rooms[1]
    for room in (busy, other):
        await hs.ok("POST", f"{V3}/join/{room}", bob)
    first = await hs.sync(alice)
    assert sorted(first["rooms"]["join"]) == sorted(rooms)

    few, body = await one_message(hs, alice, bob, busy, first["next_batch"])
    assert list(body["rooms"]["join"]) == [busy] and timeline_bodies(body, busy) == ["news"]
    assert body["rooms"]["join"][busy]["unread_notifications"]["notification_count"] == 1

    # 290 rooms more, and a message in the busy room before alice looks again: her token is now
    # far behind (more positions than the probe reads changes for), so the probe looks in each room.
    since = body["next_batch"]
    await hs.send(bob, busy, "while you were away")
    rooms += await add_rooms(hs, alice, 10, 290)
    found = await probe(hs.server.db, alice.user_id, alice.device_id, int(since[1:]), MEMBERSHIPS)
    assert found.position - int(since[1:]) > 4 * len(rooms) + 64, "the far road must be the one taken"
    assert {r for r, f in found.room_flags.items() if f & ROOM_EVENTS} == {busy, *rooms[10:]}
    caught_up = await hs.sync(alice, since=since)
    assert sorted(caught_up["rooms"]["join"]) == sorted([busy, *rooms[10:]])
    assert timeline_bodies(caught_up, busy) == ["while you were away"]
    assert caught_up["rooms"]["join"][rooms[10]]["summary"]["m.joined_member_count"] == 1  # new: sent whole

    many, body = await one_message(hs, alice, bob, busy, caught_up["next_batch"])
    assert list(body["rooms"]["join"]) == [busy] and timeline_bodies(body, busy) == ["news"]
    assert many == few, "an incremental sync's statements must not depend on how many rooms the user is in"
    assert len(many) <= 3  # the probe, the timeline; on SQLite the unread counts' own read

    # The probe's rows follow the changes too: the busy room's own, the 299 others by ID only.
    found = await probe(hs.server.db, alice.user_id, alice.device_id, int(caught_up["next_batch"][1:]), MEMBERSHIPS)
    assert list(found.memberships) == [busy] and sorted(found.quiet) == sorted(rooms[1:])

    # Nothing new: one statement (the probe), whatever the rooms.
    with statements(hs.server.db, built=True) as sent:
        quiet = await hs.sync(alice, since=body["next_batch"])
    assert quiet["rooms"]["join"] == {} and len(sent) == 1

    # Room account data alone brings a quiet room back, with its unread counts (none).
    tag = f"{V3}/user/{alice.user_id}/rooms/{rooms[5]}/tags/u.work"
    await hs.ok("PUT", tag, alice, json={"order": 0.5})
    tagged = await hs.sync(alice, since=quiet["next_batch"])
    assert list(tagged["rooms"]["join"]) == [rooms[5]]
    assert tagged["rooms"]["join"][rooms[5]]["account_data"]["events"][0]["type"] == "m.tag"
    assert tagged["rooms"]["join"][rooms[5]]["unread_notifications"]["notification_count"] == 0
    # A room left: in `leave` once, then neither a row of the probe nor a quiet room.
    (gone,) = await add_rooms(hs, alice, 300, 1)
    await hs.ok("POST", f"{V3}/rooms/{gone}/leave", alice, json={})
    left = await hs.sync(alice, since=tagged["next_batch"])
    assert list(left["rooms"]["leave"]) == [gone] and gone not in left["rooms"]["join"]
    found = await probe(hs.server.db, alice.user_id, alice.device_id, int(left["next_batch"][1:]), MEMBERSHIPS)
    assert (found.memberships, sorted(found.quiet)) == ({}, sorted(rooms))
    quiet = await hs.sync(alice, since=left["next_batch"])
    assert quiet["rooms"] == {"join": {}, "invite": {}, "leave": {}, "knock": {}}

    # The typing in another room arrives on its own, with an empty timeline.
    await hs.ok("PUT", f"{V3}/rooms/{other}/typing/{bob.user_id}", bob, json={"typing": True, "timeout": 30000})
    typing = await hs.sync(alice, since=quiet["next_batch"], filter=LAZY)
    assert list(typing["rooms"]["join"]) == [other] and typing["rooms"]["join"][other]["timeline"]["events"] == []
    assert typing["rooms"]["join"][other]["ephemeral"]["events"] == [
        {"type": "m.typing", "content": {"user_ids": [bob.user_id]}}
    ]

    # full_state: every room with its whole state, but the timeline still starts at `since` (nothing
    # new: empty), and lazy loading keeps the members to the timeline's senders and alice herself.
    full = await hs.sync(alice, since=typing["next_batch"], full_state="true", filter=LAZY)
    assert sorted(full["rooms"]["join"]) == sorted(rooms)
    for room_id, room in full["rooms"]["join"].items():
        assert room["timeline"]["events"] == [], room_id
        assert {"m.room.create", "m.room.name", "m.room.power_levels", "m.room.join_rules"} <= state_types(room)
        members = [e["state_key"] for e in room["state"]["events"] if e["type"] == "m.room.member"]
        assert members == [alice.user_id], room_id
    # Without lazy loading, the state has every member.
    whole = (await hs.sync(alice, since=typing["next_batch"], full_state="true"))["rooms"]["join"][busy]
    assert {e["state_key"] for e in whole["state"]["events"] if e["type"] == "m.room.member"} == {
        alice.user_id,
        bob.user_id,
    }
    assert whole["timeline"]["events"] == [] and whole["summary"]["m.joined_member_count"] == 2

    # A new device's initial sync: all 300 rooms, each with its name and its newest events.
    session = await hs.server.auth.start_session(alice.user_id, None, None)
    device = User(alice.user_id, session.access_token, session.device_id, alice.password)
    joined = (await hs.sync(device, filter=LAZY))["rooms"]["join"]
    assert sorted(joined) == sorted(rooms)
    seen = [[*joined[r]["state"]["events"], *joined[r]["timeline"]["events"]] for r in rooms]
    assert [next(e["content"]["name"] for e in evs if e["type"] == "m.room.name") for evs in seen] == [
        f"room {i}" for i in range(300)
    ]
    assert [e["content"].get("body") for e in joined[busy]["timeline"]["events"]][-1] == "news"


# -- the rooms remembered between syncs (storage/sync_rooms.py) ------------------------------------


@contextmanager
def probes(db: Database) -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
    """The statements (and their arguments) that read memberships while inside: the sync's probe."""
    seen: list[tuple[str, tuple[Any, ...]]] = []
    real = db.fetch

    async def spy(sql: str, *args: Any, **kw: Any) -> Any:
        if "memberships" in sql:
            seen.append((sql, args))
        return await real(sql, *args, **kw)

    db.fetch = spy  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        del db.fetch


def _rows_read(plan: Any, table: str) -> int:
    """Rows the scans of `table` produced in an EXPLAIN (ANALYZE, FORMAT JSON) plan node, and below."""
    own = plan["Actual Rows"] * plan["Actual Loops"] if plan.get("Relation Name") == table else 0
    return int(own) + sum(_rows_read(p, table) for p in plan.get("Plans", ()))


async def work(db: Database, sql: str, args: tuple[Any, ...]) -> int:
    """What the database does to run `sql` again: on SQLite, its virtual machine's steps (tens of
    them); on PostgreSQL, the rows its plan reads from memberships."""
    if db.dialect.name == "sqlite":
        steps = [0]

        def step() -> int:
            steps[0] += 1
            return 0

        async with db.read() as conn:
            conn.dbapi.set_progress_handler(step, 10)  # type: ignore[attr-defined]
            try:
                await db.fetch(sql, *args, conn=conn)
            finally:
                conn.dbapi.set_progress_handler(None, 0)  # type: ignore[attr-defined]
        return steps[0]
    ((plan,),) = await db.fetch("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args)
    return _rows_read((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"], "memberships")


async def probe_work(hs: Harness, reader: User, sender: User, room: str, since: str) -> tuple[int, str]:
    """`sender` says one thing in `room`; what `reader`'s incremental sync's probe costs, and its token."""
    await hs.send(sender, room, "news")
    with probes(hs.server.db) as seen:
        body = await hs.sync(reader, since=since)
    assert list(body["rooms"]["join"]) == [room]
    ((sql, args),) = seen
    return await work(hs.server.db, sql, args), body["next_batch"]


async def test_an_incremental_sync_reads_the_rooms_that_moved_not_every_room_of_the_user(hs: Harness) -> None:
    alice, bob = await hs.register("alice"), await hs.register("bob")
    rooms = await add_rooms(hs, alice, 0, 10)
    busy = rooms[0]
    await hs.ok("POST", f"{V3}/join/{busy}", bob)
    since = (await hs.sync(alice))["next_batch"]
    few, since = await probe_work(hs, alice, bob, busy, since)

    rooms += await add_rooms(hs, alice, 10, 290)
    since = (await hs.sync(alice, since=since))["next_batch"]  # far behind: the rooms read whole again
    many, since = await probe_work(hs, alice, bob, busy, since)
    assert many <= few * 1.2 + 20, f"an incremental sync's probe grew from {few} at 10 rooms to {many} at 300"

    # The measure sees a read of every room: the probe without remembered rooms costs ~30 times more.
    with probes(hs.server.db) as seen:
        await probe(hs.server.db, alice.user_id, alice.device_id, int(since[1:]), MEMBERSHIPS)
    ((sql, args),) = seen
    assert await work(hs.server.db, sql, args) > 5 * many


async def check_remembered(hs: Harness, user: User) -> RoomList:
    """The rooms this server remembers for `user` are those a whole read finds (Zulip's check:
    applying the changes to what was held equals a fresh fetch)."""
    held = hs.server.sync.rooms.get(user.user_id)
    assert held is not None
    fresh = await probe(hs.server.db, user.user_id, user.device_id, None, MEMBERSHIPS)
    assert held.joined == {r for r, (m, _) in fresh.memberships.items() if m == "join"}
    assert dict(held.offered) == {r: v for r, v in fresh.memberships.items() if v[0] in ("invite", "knock")}
    return held


async def test_membership_changes_between_syncs_reach_the_remembered_rooms(hs: Harness) -> None:
    alice, bob = await hs.register("alice"), await hs.register("bob")
    mine = await add_rooms(hs, alice, 0, 5)
    first = await hs.sync(alice)
    assert (await check_remembered(hs, alice)).joined == set(mine)

    async def changes(since: str) -> Any:
        body = await hs.sync(alice, since=since)
        await check_remembered(hs, alice)
        return body

    theirs = await hs.create_room(bob, preset="private_chat")
    await hs.ok("POST", f"{V3}/rooms/{theirs}/invite", bob, json={"user_id": alice.user_id})
    invited = await changes(first["next_batch"])
    assert list(invited["rooms"]["invite"]) == [theirs] and invited["rooms"]["join"] == {}
    assert list((await check_remembered(hs, alice)).offered) == [theirs]

    await hs.ok("POST", f"{V3}/join/{theirs}", alice)
    joined = await changes(invited["next_batch"])
    assert list(joined["rooms"]["join"]) == [theirs] and joined["rooms"]["invite"] == {}
    fresh = joined["rooms"]["join"][theirs]  # new to the client: sent whole
    assert "m.room.create" in state_types(fresh) | {e["type"] for e in fresh["timeline"]["events"]}
    # A long-poll waits on the room just joined (one of the remembered rooms) and wakes on its news.
    waiting = asyncio.ensure_future(hs.sync(alice, since=joined["next_batch"], timeout=20_000))
    await hs.send(bob, theirs, "welcome")
    woken = await asyncio.wait_for(waiting, 10)
    assert timeline_bodies(woken, theirs) == ["welcome"]

    await hs.ok("POST", f"{V3}/rooms/{theirs}/kick", bob, json={"user_id": alice.user_id})
    kicked = await changes(woken["next_batch"])
    assert list(kicked["rooms"]["leave"]) == [theirs] and kicked["rooms"]["join"] == {}

    await hs.ok("POST", f"{V3}/rooms/{mine[1]}/leave", alice, json={})
    left = await changes(kicked["next_batch"])
    assert list(left["rooms"]["leave"]) == [mine[1]]

    public = await hs.create_room(bob, preset="public_chat")
    await hs.ok("POST", f"{V3}/join/{public}", alice)
    await hs.ok("POST", f"{V3}/rooms/{public}/ban", bob, json={"user_id": alice.user_id})
    banned = await changes(left["next_batch"])  # joined and banned in one window: only the leave
    assert list(banned["rooms"]["leave"]) == [public] and banned["rooms"]["join"] == {}

    knocking = await hs.create_room(bob, preset="private_chat")
    await hs.ok("PUT", f"{V3}/rooms/{knocking}/state/m.room.join_rules/", bob, json={"join_rule": "knock"})
    await hs.ok("POST", f"{V3}/knock/{knocking}", alice, json={})
    knocked = await changes(banned["next_batch"])  # (/sync has no `knock` section yet: remembered only)
    assert [m for m, _ in (await check_remembered(hs, alice)).offered.values()] == ["knock"]

    await hs.ok("POST", f"{V3}/rooms/{mine[2]}/leave", alice, json={})
    await hs.ok("POST", f"{V3}/rooms/{mine[2]}/forget", alice, json={})
    await hs.send(alice, mine[3], "still here")
    forgotten = await changes(knocked["next_batch"])  # left and forgotten in one window: gone
    assert mine[2] not in forgotten["rooms"]["leave"] and list(forgotten["rooms"]["join"]) == [mine[3]]
    assert (await check_remembered(hs, alice)).joined == {mine[0], mine[3], mine[4]}


async def test_a_membership_change_through_another_worker_is_found_by_stream_position(
    database_url: str, tmp_path: Path
) -> None:
    """Two servers on one database with no bus between them: what one remembers is checked against
    the rows the other writes, by their positions alone."""
    async with serve(database_url, tmp_path / "a") as here, serve(database_url, tmp_path / "b") as there:
        alice, bob = await here.register("alice"), await here.register("bob")
        mine = await add_rooms(here, alice, 0, 3)
        since = (await here.sync(alice))["next_batch"]
        room = await there.create_room(bob, preset="private_chat")
        await there.ok("POST", f"{V3}/rooms/{room}/invite", bob, json={"user_id": alice.user_id})
        body = await here.sync(alice, since=since)
        assert list(body["rooms"]["invite"]) == [room]
        await there.ok("POST", f"{V3}/join/{room}", alice)
        body = await here.sync(alice, since=body["next_batch"])
        assert list(body["rooms"]["join"]) == [room]
        assert (await check_remembered(here, alice)).joined == {*mine, room}
        await there.ok("POST", f"{V3}/rooms/{room}/kick", bob, json={"user_id": alice.user_id})
        await there.ok("POST", f"{V3}/rooms/{mine[0]}/leave", alice, json={})
        body = await here.sync(alice, since=body["next_batch"])
        assert sorted(body["rooms"]["leave"]) == sorted([room, mine[0]]) and body["rooms"]["join"] == {}
        assert (await check_remembered(here, alice)).joined == {mine[1], mine[2]}
