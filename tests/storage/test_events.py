"""EventStore and EventWriteStore on both engines: state at a position, the writer's one-statement
room read, message batches with their transaction IDs and push actions, redactions, pagination."""

from __future__ import annotations

import json

import pytest

from paigham.domain.stored_event import StoredEvent
from paigham.storage.database import Database
from paigham.storage.event_writes import EventWriteStore
from paigham.storage.events import EventStore
from paigham.storage.push_actions import PushActionStore, PushRoomRow, PushUserRow
from paigham.storage.push_rules import PushRuleStore
from tests.storage.support import (
    ALICE,
    BOB,
    CARA,
    ROOM,
    add_messages,
    add_state,
    event,
    member,
    message,
    new_room,
    rows_read,
    rows_read_by_a_plan_made_small,
    spy_fetch,
    statements,
)


async def test_state_now_and_at_each_position(db: Database) -> None:
    events = EventStore(db)
    await new_room(db)
    create, join, first = await add_state(
        db,
        event("$create", "m.room.create", ALICE, {"creator": ALICE}, state_key=""),
        member(ALICE, "join", "$join"),
        event("$n1", "m.room.name", ALICE, {"name": "one"}, state_key=""),
    )
    await add_messages(db, message("$m1", ALICE, "hello"))
    (second,) = await add_state(db, event("$n2", "m.room.name", ALICE, {"name": "two"}, state_key=""))

    now = {(e.type, e.state_key): e.event_id for e in await events.current_state(ROOM)}
    assert now == {("m.room.create", ""): "$create", ("m.room.member", ALICE): "$join", ("m.room.name", ""): "$n2"}
    at_first = await events.state_at(ROOM, first.stream)
    assert {e.event_id for e in at_first} == {"$create", "$join", "$n1"}
    assert [e.event_id for e in await events.state_at(ROOM, first.stream, ["m.room.name"])] == ["$n1"]
    assert [e.event_id for e in await events.state_at(ROOM, create.stream)] == ["$create"]
    assert [e.event_id for e in await events.state_changes(ROOM, join.stream, second.stream)] == ["$n1", "$n2"]
    assert [e.event_id for e in await events.state_history(ROOM, "m.room.name")] == ["$n1", "$n2"]
    assert [e.event_id for e in await events.state_at_keys(ROOM, second.stream, "m.room.member", [ALICE, BOB])] == [
        "$join"
    ]
    found = await events.current_state_event(ROOM, "m.room.name", "")
    assert found is not None and found.content == {"name": "two"} and found.stream == second.stream
    assert await events.current_state_event(ROOM, "m.room.topic", "") is None
    # Only the asked-for (type, state key) pairs, even where the types and keys would cross.
    pairs = await events.state_for_keys(ROOM, [("m.room.name", ""), ("m.room.member", BOB)])
    assert list(pairs) == [("m.room.name", "")]


async def test_reads_inside_a_write_see_its_uncommitted_rows(db: Database) -> None:
    events = EventStore(db)
    await new_room(db)
    async with db.write() as conn:
        pos = await db.next_position(conn)
        e = member(BOB, "join", "$bob")
        e.stream = pos
        await EventWriteStore(db).insert_state_events(conn, [(e, None, None)])
        inside = await events.get_event("$bob", conn=conn)
        state = await events.state_for_keys(ROOM, [("m.room.member", BOB)], conn=conn)
        members = await events.room_members(ROOM, conn=conn)
        assert inside is not None and inside.stream == pos
        assert state[("m.room.member", BOB)].event_id == "$bob"
        assert members == [BOB] and await events.joined_count(ROOM, conn=conn) == 1
    assert (await events.get_events(["$bob", "$nothing"])).keys() == {"$bob"}


async def created_room(db: Database, *more: StoredEvent) -> None:
    """ROOM, created by alice, with alice and bob joined, then `more` state."""
    await new_room(db)
    await add_state(
        db,
        event("$create", "m.room.create", ALICE, {"creator": ALICE}, state_key=""),
        member(ALICE, "join", "$a"),
        member(BOB, "join", "$b"),
        *more,
    )


async def test_room_for_write_reads_room_tip_transaction_state_and_joined_members(db: Database) -> None:
    writes = EventWriteStore(db)
    await created_room(db, member(CARA, "leave", "$c"))
    txn = (ALICE, "DEV", "send", "t1")
    (sent,) = await add_messages(db, message("$m1", ALICE, "hi", txn=txn))
    await PushRuleStore(db).put(BOB, {"muted": True})
    keys = [("m.room.create", ""), ("m.room.member", ALICE), ("m.room.member", CARA), ("m.room.name", "")]
    async with db.write() as conn:
        with statements(db) as sent_sql:
            found = await writes.room_for_write(conn, ROOM, keys, txn)
            fresh = await writes.room_for_write(conn, ROOM, keys, (ALICE, "DEV", "send", "t2"))
            missing = await writes.room_for_write(conn, "!nowhere:test.local", keys, None)
    assert len(sent_sql) == 3  # one statement each
    assert found is not None and fresh is not None and missing is None
    assert (found.room.room_version, found.room.creator, found.room.is_public) == ("11", ALICE, False)
    assert found.tip == ("$m1", sent.pdu["depth"])
    assert found.txn_result == "$m1" and fresh.txn_result is None
    assert {k: e.event_id for k, e in found.state.items()} == {
        ("m.room.create", ""): "$create",
        ("m.room.member", ALICE): "$a",
        ("m.room.member", CARA): "$c",
    }
    assert found.joined_count == 2
    assert found.push_rules == {BOB: {"muted": True}}


async def test_a_batch_of_messages_gets_consecutive_positions_with_its_txn_ids_and_push_actions(
    db: Database,
) -> None:
    events, writes = EventStore(db), EventWriteStore(db)
    await new_room(db)
    await add_state(db, member(ALICE, "join", "$a"), member(BOB, "join", "$b"), member(CARA, "join", "$c"))
    t1, t2 = (ALICE, "DEV", "send", "t1"), (BOB, "DEV2", "send", "t1")
    batch = [
        # notifies everyone but the sender; cara muted the room
        message("$m1", ALICE, "one", txn=t1, push_room=PushRoomRow(ROOM, 0, ALICE, "", False),
                push_own=[PushUserRow(CARA, ROOM, 0, "", False, False)]),
        message("$m2", BOB, "two", txn=t2),  # notifies nobody
        # mentions cara: a highlight for her alone
        message("$m3", ALICE, "three", push_own=[PushUserRow(CARA, ROOM, 0, "", True, True)]),
    ]  # fmt: skip
    start = await db.current_position()
    with statements(db) as sent_sql:
        stored = await add_messages(db, *batch)
    assert [e.stream for e in stored] == [start + 1, start + 2, start + 3]
    assert await db.current_position() == start + 3
    if db.dialect.name == "postgresql":  # the measured hot path: one statement for the whole batch
        assert len(sent_sql) == 1

    got = await events.get_events(["$m1", "$m2", "$m3"])
    assert {i: (e.stream, e.sender, e.content["body"], e.txn_id) for i, e in got.items()} == {
        "$m1": (start + 1, ALICE, "one", "t1"),
        "$m2": (start + 2, BOB, "two", "t1"),
        "$m3": (start + 3, ALICE, "three", None),
    }
    async with db.write() as conn:
        done = await writes.txn_results(conn, [t1, t2, (ALICE, "DEV", "send", "t9"), (ALICE, "OTHER", "send", "t1")])
    assert done == {t1: "$m1", t2: "$m2"}

    actions = PushActionStore(db)
    counts = {u: await actions.unread_after_reads(u, {ROOM: start}) for u in (ALICE, BOB, CARA)}
    assert counts == {ALICE: {ROOM: (0, 0)}, BOB: {ROOM: (1, 0)}, CARA: {ROOM: (1, 1)}}


async def test_an_empty_batch_writes_nothing(db: Database) -> None:
    before = await db.current_position()
    with statements(db) as sent_sql:
        assert await add_messages(db) == []
    assert sent_sql == [] and await db.current_position() == before


async def test_memberships(db: Database) -> None:
    events = EventStore(db)
    await new_room(db)
    other = "!other:test.local"
    await new_room(db, other)
    a, b, _ = await add_state(db, member(ALICE, "join", "$a"), member(BOB, "invite", "$b"), member(CARA, "ban", "$c"))
    assert await events.member_counts(ROOM) == {"join": 1, "invite": 1}  # kept with each write, not counted
    await add_state(db, member(ALICE, "join", "$oa", other), member(BOB, "join", "$ob", other))
    (b_join,) = await add_state(db, member(BOB, "join", "$b2"))

    alice = await events.membership(ALICE, ROOM)
    assert alice is not None and (alice.membership, alice.stream, alice.forgotten) == ("join", a.stream, False)
    assert await events.membership(ALICE, "!nowhere:test.local") is None
    assert await events.user_rooms(BOB) == {ROOM: ("join", b_join.stream), other: ("join", b_join.stream - 1)}
    assert sorted(await events.room_members(ROOM)) == [ALICE, BOB]
    assert await events.room_members(ROOM, ("ban",)) == [CARA]
    assert await events.member_counts(ROOM) == {"join": 2, "invite": 0}
    assert await events.member_counts_many([ROOM, other, "!nowhere:test.local"]) == {
        ROOM: {"join": 2, "invite": 0},
        other: {"join": 2, "invite": 0},
        "!nowhere:test.local": {},
    }
    with statements(db) as sent:
        state, counts = await events.current_state_and_counts_many(
            [ROOM, other, "!nowhere:test.local"], ["m.room.create"], [BOB]
        )
    assert len(sent) == 1
    assert counts == await events.member_counts_many([ROOM, other, "!nowhere:test.local"])
    assert {r: sorted(e.event_id for e in evs) for r, evs in state.items()} == {
        ROOM: ["$b2"],
        other: ["$ob"],
        "!nowhere:test.local": [],
    }
    assert {r: [e.event_id for e in evs] for r, evs in state.items()} == {
        r: [e.event_id for e in evs]
        for r, evs in (
            await events.current_state_many([ROOM, other, "!nowhere:test.local"], ["m.room.create"], [BOB])
        ).items()
    }
    assert await events.heroes(ROOM, ALICE) == [BOB]
    assert await events.shares_room(ALICE, BOB) and not await events.shares_room(ALICE, CARA)
    assert await events.membership_history(BOB, ROOM) == [(b.stream, "invite"), (b_join.stream, "join")]
    assert await events.memberships_at(BOB, [ROOM, other], b.stream) == {ROOM: "invite"}
    assert await events.memberships_at(BOB, [ROOM, other], b_join.stream) == {ROOM: "join", other: "join"}

    (left,) = await add_state(db, member(BOB, "leave", "$b3"))
    await events.forget(BOB, ROOM)
    bob = await events.membership(BOB, ROOM)
    assert bob is not None and (bob.membership, bob.stream, bob.forgotten) == ("leave", left.stream, True)
    assert ROOM not in await events.user_rooms(BOB, ("join", "leave"))
    assert await events.member_counts(ROOM) == {"join": 1, "invite": 0}
    await add_state(db, member(ALICE, "join", "$a2"))  # join → join (a profile change): no new member
    assert await events.joined_count(ROOM) == 1


async def test_joined_stream_moves_only_when_a_member_joins_again(db: Database) -> None:
    """Unread counts start at a member's joining: a profile change (join → join) keeps it."""
    await new_room(db)

    async def joined_stream() -> int:
        row = await db.fetchrow("SELECT joined_stream FROM memberships WHERE user_id = $1", BOB)
        assert row is not None
        return int(row[0])

    (join,) = await add_state(db, member(BOB, "join", "$j1"))
    await add_state(db, event("$j2", "m.room.member", BOB, {"membership": "join", "displayname": "B"}, state_key=BOB))
    assert await joined_stream() == join.stream
    await add_state(db, member(BOB, "leave", "$l"))
    (again,) = await add_state(db, member(BOB, "join", "$j3"))
    assert await joined_stream() == again.stream


async def test_relations_threads_and_the_timeline_with_its_relations(db: Database) -> None:
    events = EventStore(db)
    await new_room(db)
    root, reply1, edit, reply2, other = await add_messages(
        db,
        message("$root", ALICE, "root"),
        message("$r1", BOB, "reply", relates_to=("m.thread", "$root")),
        message("$edit", ALICE, "root!", relates_to=("m.replace", "$root")),
        message("$r2", CARA, "reply", relates_to=("m.thread", "$root")),
        message("$x", ALICE, "unrelated"),
    )
    assert [e.event_id for e in await events.relations("$root")] == ["$r2", "$edit", "$r1"]
    assert [e.event_id for e in await events.relations("$root", "m.thread", backwards=False)] == ["$r1", "$r2"]
    assert [e.event_id for e in await events.relations("$root", before=reply2.stream, limit=1)] == ["$edit"]
    assert [e.event_id for e in await events.relations("$root", after=edit.stream)] == ["$r2"]
    assert [e.event_id for e in await events.relation_summaries(["$root", "$x"])] == ["$r1", "$edit", "$r2"]
    assert await events.thread_roots(ROOM, 10, None) == [("$root", reply2.stream)]
    assert await events.thread_roots(ROOM, 10, reply1.stream) == []

    timeline, related = await events.recent_with_relations(ROOM, after=None, upto=other.stream, limit=3)
    assert [e.event_id for e in timeline] == ["$edit", "$r2", "$x"]
    assert related == []  # the root is not in this timeline
    timeline, related = await events.recent_with_relations(ROOM, after=None, upto=other.stream, limit=5)
    assert timeline[0].event_id == root.event_id
    assert [e.event_id for e in related] == ["$r1", "$edit", "$r2"]

    # the same for many rooms in one read (sliding sync's first window)
    await new_room(db, "!two:test.local")
    (lone,) = await add_messages(db, message("$lone", BOB, "hi", room_id="!two:test.local"))
    with statements(db) as sent:
        many = await events.recent_many([ROOM, "!two:test.local", "!none:test.local"], upto=lone.stream, limit=5)
    assert len(sent) == 1
    assert {r: ([e.event_id for e in t], [e.event_id for e in rel]) for r, (t, rel) in many.items()} == {
        ROOM: (["$root", "$r1", "$edit", "$r2", "$x"], ["$r1", "$edit", "$r2"]),
        "!two:test.local": (["$lone"], []),
        "!none:test.local": ([], []),
    }
    many = await events.recent_many([ROOM], upto=other.stream, limit=3)
    assert [e.event_id for e in many[ROOM][0]] == ["$edit", "$r2", "$x"] and many[ROOM][1] == []


async def test_redaction_marks_the_original_and_keeps_it(db: Database) -> None:
    events = EventStore(db)
    await new_room(db)
    (target,) = await add_messages(db, message("$t", BOB, "oops"))
    async with db.write() as conn:
        await EventWriteStore(db).mark_redacted(conn, "$t", "$redaction")
    found = await events.get_event("$t")
    assert found is not None and found.redacted_by == "$redaction" and found.content == target.content


@pytest.mark.parametrize("backwards", [False, True])
async def test_room_events_pages_through_a_range(db: Database, backwards: bool) -> None:
    events = EventStore(db)
    await new_room(db)
    sent = await add_messages(db, *(message(f"$m{i}", ALICE, str(i)) for i in range(5)))
    page = await events.room_events(ROOM, after=sent[0].stream, upto=sent[3].stream, limit=2, backwards=backwards)
    assert [e.event_id for e in page] == (["$m3", "$m2"] if backwards else ["$m1", "$m2"])
    assert len(await events.room_events(ROOM, limit=10, backwards=True)) == 5


async def test_rooms(db: Database) -> None:
    events = EventStore(db)
    await new_room(db)
    await new_room(db, "!two:test.local", BOB)
    await events.set_room_public("!two:test.local", True)
    two = await events.get_room("!two:test.local")
    assert two is not None and (two.room_version, two.creator, two.is_public) == ("11", BOB, True)
    assert await events.public_rooms() == ["!two:test.local"]
    assert await events.get_room("!nowhere:test.local") is None


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_looking_up_a_batchs_transaction_ids_reads_those_keys_not_the_senders_history(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch asks which of its transaction IDs were used already. Matching the senders and the IDs
    apart read every transaction the senders ever made (PostgreSQL scanned the table, a little more
    for every batch of the benchmark's run); each key is looked up in the primary key instead."""
    writes = EventWriteStore(db)
    async with db.write() as conn:
        await db.run_many(
            "INSERT INTO event_txns (user_id, device_id, scope, txn_id, result, created_ts) "
            "VALUES ($1, $2, $3, $4, $5, 0)",
            [(ALICE, "DEV", "send", f"t{i}", f"$e{i}") for i in range(3_000)],
            conn=conn,
        )
    await db.fetch("ANALYZE event_txns")
    keys = [(ALICE, "DEV", "send", "t7"), (ALICE, "DEV", "send", "new"), (ALICE, "OTHER", "send", "t8")]
    sent = spy_fetch(db, monkeypatch)
    async with db.write() as conn:
        assert await writes.txn_results(conn, keys) == {keys[0]: "$e7"}
    monkeypatch.undo()
    ((sql, args),) = sent
    plan = (await db.fetch("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args))[0][0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    assert rows_read(plan[0]["Plan"]) <= 2 * len(keys), plan


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("read", ["room_for_write", "txn_results", "state_for_keys", "state_at_keys", "get_events"])
async def test_the_writes_key_lookups_probe_the_keys_with_plans_made_when_the_tables_were_small(
    db: Database, monkeypatch: pytest.MonkeyPatch, read: str
) -> None:
    """The reads of every write look up a few keys: a room's state events at (type, state key)s, the
    newest member events of a few users, a batch's transaction IDs. Joined to `events` or
    `event_txns`, PostgreSQL hashed the whole table whenever it planned them while the table was small
    and kept that plan: on the benchmark's fresh database (never analyzed) every write of the run read
    every event so far (a third of the database's CPU). Each key is probed in its index instead."""
    events, writes = EventStore(db), EventWriteStore(db)
    await created_room(db)
    txn = (ALICE, "DEV", "send", "t0")
    await add_messages(db, message("$m0", ALICE, "hi", txn=txn))
    keys = [("m.room.create", ""), ("m.room.member", ALICE), ("m.room.member", BOB)]
    other = "!other:test.local"
    await new_room(db, other)

    async def grow() -> None:  # 3,000 messages (and transaction IDs) in another room
        await add_messages(
            db, *(message(f"$o{i}", BOB, "x", room_id=other, txn=(BOB, "D", "send", f"o{i}")) for i in range(3_000))
        )

    at = await db.current_position()
    sent = spy_fetch(db, monkeypatch)
    async with db.write() as conn:
        if read == "room_for_write":
            found = await writes.room_for_write(conn, ROOM, keys, txn)
            assert found is not None and set(found.state) == set(keys) and found.txn_result == "$m0"
        elif read == "txn_results":
            assert await writes.txn_results(conn, [txn, (BOB, "D", "send", "new")]) == {txn: "$m0"}
    if read == "state_for_keys":
        assert set(await events.state_for_keys(ROOM, keys)) == set(keys)
    elif read == "state_at_keys":
        assert {e.event_id for e in await events.state_at_keys(ROOM, at, "m.room.member", [ALICE, BOB])} == {"$a", "$b"}
    elif read == "get_events":
        assert set(await events.get_events(["$m0", "$a", "$nowhere"])) == {"$m0", "$a"}
    monkeypatch.undo()
    ((sql, args),) = sent
    assert await rows_read_by_a_plan_made_small(db, sql, args, grow) <= 20  # of the 3,000 added


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("read", ["state_and_counts", "state", "counts", "recent", "heroes", "bump_stamps"])
async def test_the_room_lists_reads_probe_each_room_with_plans_made_when_the_tables_were_small(
    db: Database, monkeypatch: pytest.MonkeyPatch, read: str
) -> None:
    """Sliding sync's room list reads a window of rooms at once: their state, member counts, newest
    events, heroes and bump stamps. Written as a filter of whole tables (`room_id = ANY(…)`, a join to
    `rooms`), PostgreSQL scanned current_state, memberships and rooms whenever it planned them while
    they were small (a fresh database never analyzed) and kept that plan. Each room is probed in the
    indexes instead: the rows read stay those of the rooms asked for, however many others there are."""
    events = EventStore(db)
    await created_room(db, event("$topic", "m.room.topic", ALICE, {"topic": "t"}, state_key=""))
    await add_messages(db, message("$m0", BOB, "hi"))

    async def grow() -> None:  # 100 more rooms of three members, and 2,000 messages in one of them
        for i in range(100):
            room = f"!r{i}:test.local"
            await new_room(db, room)
            await add_state(
                db,
                event(f"$c{i}", "m.room.create", ALICE, {"creator": ALICE}, state_key="", room_id=room),
                *(member(u, "join", f"$j{i}-{k}", room_id=room) for k, u in enumerate((ALICE, BOB, CARA))),
            )
        await add_messages(db, *(message(f"$o{i}", BOB, "x", room_id="!r0:test.local") for i in range(2_000)))

    at = await db.current_position()
    sent = spy_fetch(db, monkeypatch)
    if read == "state_and_counts":
        state, counts = await events.current_state_and_counts_many([ROOM], ["m.room.create"], [ALICE])
        assert {e.event_id for e in state[ROOM]} == {"$create", "$a"} and counts[ROOM] == {"join": 2, "invite": 0}
    elif read == "state":
        assert {e.event_id for e in (await events.current_state_many([ROOM], ["m.room.topic"], [BOB]))[ROOM]} == {
            "$topic",
            "$b",
        }
    elif read == "counts":
        assert await events.member_counts_many([ROOM]) == {ROOM: {"join": 2, "invite": 0}}
    elif read == "recent":
        assert [e.event_id for e in (await events.recent_many([ROOM], upto=at, limit=2))[ROOM][0]] == ["$topic", "$m0"]
    elif read == "heroes":
        assert await events.heroes_many([ROOM], ALICE) == {ROOM: [BOB]}
    else:
        assert await events.bump_stamps([ROOM], ["m.room.message"]) == {ROOM: at}
    monkeypatch.undo()
    ((sql, args),) = sent
    assert await rows_read_by_a_plan_made_small(db, sql, args, grow) <= 20  # of the 2,400 added
