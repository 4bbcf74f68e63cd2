"""Large rooms (issue #18): a join and a send cost the same statements and read the same rows in a room of
2,000 members as in one of 20, and the member lists (/members, /joined_members, lazy-loaded /sync)
stay right in the big room. The members are written in bulk through the event writer (each event built,
authorised and signed as if sent alone), not registered one by one; how fast it all is at 10,000 and
50,000 members belongs to the benchmark (bench/workloads.py: large_room)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import event

from paigham.domain import push_rules as pr
from paigham.requester import Requester
from paigham.services.writer import EventSpec, Txn
from paigham.storage.database import Database
from paigham.storage.event_writes import members_with_rules
from tests.api.conftest import Harness, User, serve
from tests.storage.support import rows_read

V3 = "/_matrix/client/v3"
BIG, SMALL = 2_000, 20
# The room the plans are checked in: for the device-list changes of a woken sync, PostgreSQL chose a plan
# that read every member of the room at 5,000 members, and not yet at 2,000.
EXPLAINED = 5_000


@dataclass
class Reads:
    """What the database was asked while inside `measured`: each statement's SQL text (raw SQL, SQLAlchemy
    Core, and "<stream counter>" for each take of positions) and how many rows the raw reads returned."""

    sql: list[str] = field(default_factory=list)
    rows: int = 0


_MEASURING: ContextVar[Reads | None] = ContextVar("measuring", default=None)


@contextmanager
def measured(db: Database) -> Iterator[Reads]:
    """Statements of the code run inside, and of the tasks it starts (they inherit the context), not
    those of background tasks that happen to run meanwhile (schedulers, push delivery)."""
    reads = Reads()
    token = _MEASURING.set(reads)

    def spy(name: str, count_rows: bool) -> Callable[..., Coroutine[Any, Any, Any]]:
        real = getattr(db, name)

        async def counted(sql: str, *args: Any, **kw: Any) -> Any:
            mine = _MEASURING.get() is reads
            if mine:
                reads.sql.append(sql)
            out = await real(sql, *args, **kw)
            if count_rows and mine:
                reads.rows += len(out)
            return out

        return counted

    real_position = db.next_position

    async def next_position(conn: Any, count: int = 1) -> int:
        if _MEASURING.get() is reads:
            reads.sql.append("<stream counter>")
        return await real_position(conn, count)

    def core(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if _MEASURING.get() is reads and not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            reads.sql.append(statement)

    engine = db._sqlite if db._sqlite is not None else db.engine.sync_engine
    spies = {"fetch": spy("fetch", True), "run": spy("run", False), "run_many": spy("run_many", False)}
    spies["next_position"] = next_position
    for name, fn in spies.items():
        setattr(db, name, fn)  # instance attributes over the methods, removed below
    event.listen(engine, "before_cursor_execute", core)
    try:
        yield reads
    finally:
        _MEASURING.reset(token)
        event.remove(engine, "before_cursor_execute", core)
        for name in spies:
            delattr(db, name)


def member_id(room_tag: str, i: int) -> str:
    return f"@{room_tag}{i:05d}:test.local"


async def room_of(hs: Harness, owner: User, tag: str, n: int, *, muted: list[User]) -> str:
    """A public room of `owner` and `n` members in all: `muted` (registered, with push rules of their own
    that mute the room) and the rest written in bulk, 500 membership events per transaction."""
    room = await hs.create_room(owner, preset="public_chat", name=f"Room {tag}")
    for u in muted:
        await hs.ok("POST", f"{V3}/rooms/{room}/join", u, json={})
        await hs.ok("PUT", f"{V3}/pushrules/global/room/{room}", u, json={"actions": []})
    others = [member_id(tag, i) for i in range(n - 1 - len(muted))]
    for start in range(0, len(others), 500):
        specs = [
            EventSpec(u, "m.room.member", {"membership": "join", "displayname": f"Officer {u[1:7]}"}, u)
            for u in others[start : start + 500]
        ]
        await hs.server.writer.send_many(room, specs)
    return room


async def test_a_join_and_a_send_cost_the_same_in_a_room_of_2000_as_in_one_of_20(hs: Harness) -> None:
    srv = hs.server
    owner = await hs.register("owner")
    muted = [await hs.register("muted1"), await hs.register("muted2")]  # rules of their own in both rooms
    small = await room_of(hs, owner, "s", SMALL, muted=muted)
    big = await room_of(hs, owner, "b", BIG, muted=muted)
    assert (await srv.events.member_counts(big), await srv.events.member_counts(small)) == (
        {"join": BIG, "invite": 0},
        {"join": SMALL, "invite": 0},
    )

    async def join(room: str, who: str) -> Reads:
        with measured(srv.db) as reads:
            await srv.rooms.join(who, room)
        return reads

    async def send(room: str, mention: str, i: int) -> Reads:
        content = {"msgtype": "m.text", "body": "Circular 7", "m.mentions": {"user_ids": [mention]}}
        txn = Txn(owner.user_id, "D", "send", f"t{i}")
        with measured(srv.db) as reads:
            await srv.rooms.send_event(owner.user_id, room, "m.room.message", content, txn)
        return reads

    joins = [await join(room, f"@newcomer{i}:test.local") for i, room in enumerate((small, big, small, big))]
    pairs = ((small, "s"), (big, "b"), (small, "s"), (big, "b"))
    sends = [await send(room, member_id(tag, 3), i) for i, (room, tag) in enumerate(pairs)]
    # (the first of each pair warms what a process caches; the second is the one compared)
    for small_reads, big_reads in ((joins[2], joins[3]), (sends[2], sends[3])):
        assert big_reads.sql == small_reads.sql
        assert big_reads.rows == small_reads.rows, (small_reads.rows, big_reads.rows)
    assert len(sends[3].sql) <= 6 and sends[3].rows <= 8  # the room's facts, not its members
    assert await srv.events.joined_count(big) == BIG + 2

    # what a join costs each member's next /sync (every long-poll of the room wakes): the same too
    async def woken(room: str, watcher: User, newcomer: str) -> Reads:
        rq = Requester(watcher.user_id, watcher.device_id, watcher.token)
        flt = await srv.filters.sync_view(watcher.user_id, None)
        since = (await srv.sync.compute(rq, None, flt, False)).upto
        await srv.rooms.join(newcomer, room)
        with measured(srv.db) as reads:
            got = (await srv.sync.compute(rq, since, flt, False)).response
        assert newcomer in got.device_lists.changed  # (device lists: who now shares a room)
        return reads

    watchers = {small: await hs.register("watch_s"), big: await hs.register("watch_b")}
    for room, w in watchers.items():
        await hs.ok("POST", f"{V3}/rooms/{room}/join", w, json={})
    woke = [await woken(room, watchers[room], f"@late{i}:test.local") for i, room in enumerate((small, big))]
    assert woke[1].sql == woke[0].sql and woke[1].rows == woke[0].rows, (woke[0].rows, woke[1].rows)

    # Rows returned are not rows read: the members with rules of their own are found on the partial index,
    # not by filtering the room's 2,000 memberships (as both planners did with a plain index: every write
    # into a 16,000-member room then read 16,000 rows, measured in the benchmark).
    sql = f"SELECT m.user_id, p.json {members_with_rules(srv.db)}"
    explain = srv.db.per_engine(sqlite="EXPLAIN QUERY PLAN " + sql, postgresql="EXPLAIN " + sql)
    plan = " ".join(str(col) for row in await srv.db.fetch(explain, big) for col in row)
    assert "memberships_room_rules" in plan, plan


async def test_unread_counts_in_a_big_room(hs: Harness) -> None:
    """The members with the defaults share one row, the mentioned and the muted have their own."""
    owner, plain, named = await hs.register("owner"), await hs.register("plain"), await hs.register("named")
    muted = await hs.register("muted")
    room = await room_of(hs, owner, "u", BIG, muted=[muted])
    for u in (plain, named):
        await hs.ok("POST", f"{V3}/rooms/{room}/join", u, json={})
    content = {"msgtype": "m.text", "body": "To all, and Named", "m.mentions": {"user_ids": [named.user_id]}}
    await hs.ok("PUT", f"{V3}/rooms/{room}/send/m.room.message/t1", owner, json=content)
    for user, expected in ((plain, (1, 0)), (named, (1, 1)), (muted, (0, 0)), (owner, (0, 0))):
        got = (await hs.sync(user))["rooms"]["join"][room]["unread_notifications"]
        assert (got["notification_count"], got["highlight_count"]) == expected, user.user_id


async def test_member_lists_of_a_big_room(hs: Harness) -> None:
    owner, reader = await hs.register("owner"), await hs.register("reader")
    room = await room_of(hs, owner, "m", BIG, muted=[])
    await hs.ok("POST", f"{V3}/rooms/{room}/join", reader, json={})
    gone = member_id("m", 0)
    await hs.server.writer.send_many(room, [EventSpec(gone, "m.room.member", {"membership": "leave"}, gone)])
    expected_joined = {owner.user_id, reader.user_id} | {member_id("m", i) for i in range(1, BIG - 1)}

    chunk = (await hs.ok("GET", f"{V3}/rooms/{room}/members", reader))["chunk"]
    assert len(chunk) == BIG + 1
    assert {e["state_key"] for e in chunk if e["content"]["membership"] == "join"} == expected_joined
    only_left = (await hs.ok("GET", f"{V3}/rooms/{room}/members?membership=leave", reader))["chunk"]
    assert [e["state_key"] for e in only_left] == [gone]
    not_joined = (await hs.ok("GET", f"{V3}/rooms/{room}/members?not_membership=join", reader))["chunk"]
    assert [e["state_key"] for e in not_joined] == [gone]
    joined = (await hs.ok("GET", f"{V3}/rooms/{room}/joined_members", reader))["joined"]
    assert joined.keys() == expected_joined
    assert joined[member_id("m", 7)] == {"display_name": "Officer m00007"}

    # lazy loading: the timeline's senders and the user, never the 2,000; the summary counts them all
    lazy = json.dumps({"room": {"timeline": {"limit": 3}, "state": {"lazy_load_members": True}}})
    await hs.send(owner, room, "notice 1")
    first = await hs.sync(reader, filter=lazy)
    got = first["rooms"]["join"][room]
    senders = {e["sender"] for e in got["timeline"]["events"]}
    members = {e["state_key"] for e in got["state"]["events"] if e["type"] == "m.room.member"}
    assert owner.user_id in members and members <= senders | {reader.user_id}
    assert got["summary"]["m.joined_member_count"] == len(expected_joined)
    assert {e["type"] for e in got["state"]["events"]} >= {"m.room.create", "m.room.power_levels", "m.room.name"}

    # a join storm, then messages: a limited incremental sync shows the sender, not the storm, and the
    # summary counts the storm
    storm = [member_id("x", i) for i in range(50)]
    await hs.server.writer.send_many(room, [EventSpec(u, "m.room.member", {"membership": "join"}, u) for u in storm])
    for i in range(3):
        await hs.send(owner, room, f"notice {i + 2}")
    later = (await hs.sync(reader, since=first["next_batch"], filter=lazy))["rooms"]["join"][room]
    assert later["timeline"]["limited"] and {e["sender"] for e in later["timeline"]["events"]} == {owner.user_id}
    shown = {e["state_key"] for e in later["state"]["events"] if e["type"] == "m.room.member"}
    assert shown <= {owner.user_id, reader.user_id}
    assert later["summary"]["m.joined_member_count"] == len(expected_joined) + 50

    # without lazy loading the initial state has every member
    full = (await hs.sync(reader, filter=json.dumps({"room": {"timeline": {"limit": 1}}})))["rooms"]["join"][room]
    everyone = {e["state_key"] for e in full["state"]["events"] if e["content"].get("membership") == "join"}
    everyone |= {e["state_key"] for e in full["timeline"]["events"] if e["type"] == "m.room.member"}
    assert everyone >= expected_joined


def test_only_the_invitee_and_the_mentioned_can_differ_under_the_default_rules() -> None:
    """What `PushService.push_actions` relies on to evaluate everyone with the defaults once: every
    other default rule reads the same for every user."""
    alice, bob = pr.default_rules("@alice:x"), pr.default_rules("@bob:y")
    differ = {
        rule["rule_id"]
        for kind in pr.KINDS
        for rule, other in zip(alice["global"][kind], bob["global"][kind], strict=True)
        if rule != other
    }
    assert differ == pr.USER_DEPENDENT_DEFAULTS
    assert pr.mentioned_users({"m.mentions": {"user_ids": ["@a:x", 7, "@a:x", "@b:x"]}}) == ["@a:x", "@b:x"]
    assert pr.mentioned_users({"m.mentions": {"room": True}}) == pr.mentioned_users({"m.mentions": []}) == []


async def test_a_restricted_room_is_joined_through_a_member_who_may_invite(hs: Harness) -> None:
    """The authorising member is looked up among those who may invite, not among all members."""
    owner, mod = await hs.register("owner"), await hs.register("mod")
    guest, guest2 = await hs.register("guest"), await hs.register("guest2")
    space = await hs.create_room(owner, preset="public_chat")
    for u in (mod, guest, guest2):
        await hs.ok("POST", f"{V3}/rooms/{space}/join", u, json={})
    rule = {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]}
    room = await hs.create_room(
        owner,
        preset="public_chat",
        initial_state=[{"type": "m.room.join_rules", "content": rule}],
        power_level_content_override={"users": {owner.user_id: 100, mod.user_id: 50}, "invite": 50},
    )

    async def authoriser(user: User) -> str:
        await hs.ok("POST", f"{V3}/rooms/{room}/join", user, json={})
        state = await hs.ok("GET", f"{V3}/rooms/{room}/state/m.room.member/{user.user_id}", user)
        return str(state["join_authorised_via_users_server"])

    assert await authoriser(mod) == owner.user_id  # the creator first
    assert await authoriser(guest) == owner.user_id
    await hs.ok("POST", f"{V3}/rooms/{room}/leave", owner, json={})
    assert await authoriser(guest2) == mod.user_id  # raised to the invite level, and joined


def _scans(node: dict[str, Any]) -> list[str]:
    """The plan's scans, for a failure's message: type, table, index, rows read."""
    out = []
    if "Scan" in node.get("Node Type", ""):
        rows = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
        where = f"{node.get('Relation Name')} {node.get('Index Name')}"
        out.append(f"{node['Node Type']} {where} {rows}x{node.get('Actual Loops')}")
    return out + [s for child in node.get("Plans", []) for s in _scans(child)]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_no_statement_of_a_join_a_send_or_a_leave_reads_the_rooms_members(hs: Harness) -> None:
    """Rows returned are not rows read (a filter can drop thousands): every read a join, a send and a leave
    make in a room of 5,000 is run again under EXPLAIN ANALYZE, and none reads more than a few rows."""
    srv = hs.server
    owner = await hs.register("owner")
    big = await room_of(hs, owner, "b", EXPLAINED, muted=[await hs.register("muted1")])
    await srv.rooms.join("@warm:test.local", big)
    captured: list[tuple[str, tuple[Any, ...]]] = []
    real = srv.db.fetch

    async def spy(sql: str, *args: Any, **kw: Any) -> Any:
        captured.append((sql, args))
        return await real(sql, *args, **kw)

    watcher = await hs.register("watcher")
    await hs.ok("POST", f"{V3}/rooms/{big}/join", watcher, json={})
    rq = Requester(watcher.user_id, watcher.device_id, watcher.token)
    lazy = await srv.filters.sync_view(watcher.user_id, '{"room": {"state": {"lazy_load_members": true}}}')
    since = (await srv.sync.compute(rq, None, lazy, False)).upto
    srv.db.fetch = spy  # type: ignore[method-assign]
    try:
        await srv.rooms.join("@newcomer:test.local", big)
        content = {"msgtype": "m.text", "body": "Circular 8"}
        await srv.rooms.send_event(owner.user_id, big, "m.room.message", content, Txn(owner.user_id, "D", "send", "t"))
        await srv.rooms.leave("@newcomer:test.local", big)
        await srv.sync.compute(rq, since, lazy, False)  # a member's long-poll, woken by all of it
    finally:
        del srv.db.fetch
    reads = [(sql, args) for sql, args in captured if sql.lstrip().upper().startswith(("SELECT", "WITH"))]
    writes = ("FOR UPDATE", "INSERT ", "UPDATE ", "DELETE ", "PG_ADVISORY")  # run once only
    reads = [(sql, args) for sql, args in reads if not any(w in sql.upper() for w in writes)]
    assert len(reads) >= 4, captured  # (the spy saw the reads)
    for sql, args in reads:
        out = await real(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args)
        plan = json.loads(out[0][0]) if isinstance(out[0][0], str) else out[0][0]
        assert rows_read(plan[0]["Plan"]) <= 100, sql + " | " + "; ".join(_scans(plan[0]["Plan"]))


def _members_joined(sync: dict[str, Any], room: str) -> set[str]:
    timeline = sync["rooms"]["join"].get(room, {}).get("timeline", {}).get("events", [])
    return {e["state_key"] for e in timeline if e["type"] == "m.room.member"}


_HOLDING: dict[str, Any] = {"sync_big_room_watchers": 2, "presence_enabled": False}


async def _joins(hs: Harness, room: str, name: str) -> str:
    u = await hs.register(name)
    await hs.ok("POST", f"{V3}/rooms/{room}/join", u, json={})
    return u.user_id


def _held() -> float:
    return REGISTRY.get_sample_value("paigham_sync_held_total") or 0.0


async def _made_big(hs: Harness, tag: str) -> tuple[User, User, str, str]:
    """A room whose two members long-poll; a first join wakes both at once (the room is big from then
    on) and is answered at once. The owner, member a, the room, and a's token after that answer."""
    owner, a, b = [await hs.register(f"{name}{tag}") for name in ("owner", "a", "b")]
    room = await hs.create_room(owner, preset="public_chat")
    for u in (a, b):
        await hs.ok("POST", f"{V3}/rooms/{room}/join", u, json={})
    polls = [asyncio.create_task(hs.sync(u, (await hs.sync(u))["next_batch"], timeout=30_000)) for u in (a, b)]
    await asyncio.sleep(0.2)
    c = await _joins(hs, room, f"c{tag}")
    answered = await asyncio.wait_for(asyncio.gather(*polls), 10)
    assert all(c in _members_joined(got, room) for got in answered)
    return owner, a, room, answered[0]["next_batch"]


async def test_a_join_storms_news_reaches_a_device_once_per_hold(database_url: str, tmp_path: Path) -> None:
    """In a big room (here: two long-polls woken at once make it big), a device answered moments ago
    gets further joins once the hold is over, or at once with any other news (a message)."""
    async with serve(database_url, tmp_path, **_HOLDING, sync_member_news_hold_ms=60_000) as hs:
        owner, a, room, since = await _made_big(hs, "")
        held_before = _held()
        # The next join is held for a device answered moments ago (the hold here: 30 to 60 s) ...
        poll = asyncio.create_task(hs.sync(a, since, timeout=30_000))
        d = await _joins(hs, room, "d")
        await asyncio.sleep(0.5)
        assert not poll.done() and _held() == held_before + 1
        # ... and comes at once with other news for it.
        await hs.send(owner, room, "news")
        got = await asyncio.wait_for(poll, 10)
        assert d in _members_joined(got, room)
        assert [e["content"]["body"] for e in got["rooms"]["join"][room]["timeline"]["events"][-1:]] == ["news"]

    # With a short hold (here: 1.5 to 3 s after the device's last answer), the held join arrives by
    # itself once the hold is over.
    async with serve(database_url, tmp_path, **_HOLDING, sync_member_news_hold_ms=3_000) as hs:
        owner, a, room, since = await _made_big(hs, "2")
        held_before, started = _held(), time.monotonic()
        poll = asyncio.create_task(hs.sync(a, since, timeout=30_000))
        d = await _joins(hs, room, "d2")
        got = await asyncio.wait_for(poll, 10)
        assert d in _members_joined(got, room) and _held() == held_before + 1
        assert time.monotonic() - started >= 0.3
