"""The event pipeline's stages (services/stages.py, run by services/writer.py): every check runs before
any effect and before anything of the event is written, for messages and state events alike; each kind
runs in the declared order; a refused event costs no push evaluation and leaves nothing behind. And the
membership preconditions that are not stages (services/rooms.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.clock import now_ms
from paigham.domain.stored_event import StoredEvent
from paigham.errors import Codes, MatrixError
from paigham.services.stages import NO_ROWS, EffectRows, RoomCtx, Stages
from paigham.services.writer import EventSpec, EventWriter, Txn
from paigham.storage.event_writes import EventWriteStore
from tests.api.conftest import Harness

V3 = "/_matrix/client/v3"
Seen = tuple[str, str, bool, bool]  # (stage, event type, its row written yet?, in ctx.state?)


def recording_writer(hs: Harness, seen: list[Seen], committed: list[list[str]]) -> EventWriter:
    """A writer over the test server's database whose stages only note what they see."""

    def stage(name: str) -> Any:
        async def run(conn: AsyncConnection, event: StoredEvent, ctx: RoomCtx) -> Any:
            written = await hs.server.events.get_event(event.event_id, conn=conn) is not None
            in_state = event.state_key is not None and ctx.state.get((event.type, event.state_key)) is event
            seen.append((name, event.type, written, in_state))
            return NO_ROWS

        return run

    async def after_commit(events: list[StoredEvent]) -> None:
        committed.append([e.event_id for e in events])

    srv = hs.server
    stages = Stages(
        checks=(("first check", stage("first check")), ("second check", stage("second check"))),
        effects=(("the effect", stage("the effect")),),
        after_commit=(("after commit", after_commit),),
    )
    return EventWriter(
        srv.db, srv.events, EventWriteStore(srv.db), srv.config.server_name, srv.secrets.signing_key, stages
    )


async def test_the_server_declares_its_stages_in_order(hs: Harness) -> None:
    stages = hs.server.writer.stages
    assert [name for name, _ in stages.checks] == [
        "blocked room",
        "suspended sender",
        "encryption lock",
        "organisation policy",
        "call membership keys",
    ]
    assert [name for name, _ in stages.effects] == ["push actions"]
    assert [name for name, _ in stages.after_commit] == [
        "publish to sync",
        "count events",
        "audit",
        "delayed state overrides",
    ]


async def test_a_failing_commit_hook_fails_no_request_and_writes_nothing_twice(hs: Harness) -> None:
    """After commit the events are there: a hook that raises is logged, the hooks after it still run,
    the callers get their events, and nothing is written again (a batch whose hook failed used to be
    taken for a batch that failed, and each of its events was sent once more on its own)."""
    alice = await hs.register("alice")
    room = await hs.create_room(alice, preset="public_chat")
    ran: list[int] = []

    async def broken(events: list[StoredEvent]) -> None:
        raise RuntimeError("a hook failed")

    async def note(events: list[StoredEvent]) -> None:
        ran.append(len(events))

    srv = hs.server
    stages = Stages(after_commit=(("broken", broken), ("note", note)))
    writer = EventWriter(
        srv.db, srv.events, EventWriteStore(srv.db), srv.config.server_name, srv.secrets.signing_key, stages
    )
    # One alone, then three queued before their batch starts (one transaction).
    for n in (1, 3):
        ran.clear()
        specs = [EventSpec(alice.user_id, "m.room.message", {"body": f"{n}-{i}"}) for i in range(n)]
        sent = await asyncio.gather(*(writer.send(room, spec) for spec in specs))
        assert ran == [n] and all(e.stream > 0 for e in sent)
    res = await hs.ok("GET", f"{V3}/rooms/{room}/messages", alice, params={"dir": "f", "limit": 50})
    bodies = [e["content"]["body"] for e in res["chunk"] if e["type"] == "m.room.message"]
    assert sorted(bodies) == ["1-0", "3-0", "3-1", "3-2"]


async def test_checks_then_effects_before_any_write_for_every_kind_of_event(hs: Harness) -> None:
    alice = await hs.register("alice")
    room = await hs.create_room(alice, preset="public_chat")
    seen: list[Seen] = []
    committed: list[list[str]] = []
    writer = recording_writer(hs, seen, committed)
    order = ["first check", "second check", "the effect"]

    # A state event: the checks see the room before it, the effect the room after it; no row yet.
    topic = await writer.send(room, EventSpec(alice.user_id, "m.room.topic", {"topic": "t"}, ""))
    assert seen == [
        ("first check", "m.room.topic", False, False),
        ("second check", "m.room.topic", False, False),
        ("the effect", "m.room.topic", False, True),
    ]
    assert committed == [[topic.event_id]] and topic.stream > 0
    # A message alone, then messages batched in one transaction: each admitted in the same order.
    seen.clear()
    specs = [EventSpec(alice.user_id, "m.room.message", {"body": str(i)}) for i in range(6)]
    txns = [Txn(alice.user_id, alice.device_id, "send", f"t{i}") for i in range(6)]
    sent = await asyncio.gather(*(writer.send(room, spec, t) for spec, t in zip(specs, txns, strict=True)))
    assert [s[0] for s in seen] == order * 6
    assert all(s[1:] == ("m.room.message", False, False) for s in seen)
    assert sorted(e for batch in committed[1:] for e in batch) == sorted(e.event_id for e in sent)
    # Many state events in one transaction (bulk memberships): every event's checks before its rows.
    seen.clear()
    bob = await hs.register("bob")
    await writer.send_many(room, [EventSpec(bob.user_id, "m.room.member", {"membership": "join"}, bob.user_id)])
    assert [s[0] for s in seen] == order and not any(s[2] for s in seen)
    assert await hs.server.events.membership(bob.user_id, room) is not None


async def test_a_refused_event_runs_no_effect_and_is_not_committed(hs: Harness) -> None:
    alice = await hs.register("alice")
    room = await hs.create_room(alice, preset="public_chat")
    ran: list[str] = []

    async def refuse(_conn: AsyncConnection, event: StoredEvent, _ctx: RoomCtx) -> None:
        if event.content.get("body") == "no":
            raise MatrixError(403, Codes.FORBIDDEN, "refused")

    async def effect(_conn: AsyncConnection, event: StoredEvent, _ctx: RoomCtx) -> EffectRows:
        ran.append(event.content["body"])
        return NO_ROWS

    srv = hs.server
    stages = Stages(checks=(("refuse", refuse),), effects=(("note", effect),))
    writer = EventWriter(
        srv.db, srv.events, EventWriteStore(srv.db), srv.config.server_name, srv.secrets.signing_key, stages
    )
    with pytest.raises(MatrixError):
        await writer.send(room, EventSpec(alice.user_id, "m.room.message", {"body": "no"}))
    await writer.send(room, EventSpec(alice.user_id, "m.room.message", {"body": "yes"}))
    assert ran == ["yes"]


@pytest.fixture
def evaluations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many push-rule evaluations ran (one entry each)."""
    from paigham.domain.push_evaluator import evaluate as real
    from paigham.services import push

    calls: list[int] = []

    def counting(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(push, "evaluate", counting)
    return calls


async def test_refused_events_run_no_push_evaluation(hs: Harness, evaluations: list[int]) -> None:
    boss, sus, friend = await hs.register("boss"), await hs.register("suspect"), await hs.register("friend")
    await hs.server.accounts.update_user(boss.user_id, admin=True)
    room = await hs.create_room(friend, preset="public_chat")
    await hs.ok("POST", f"{V3}/rooms/{room}/join", sus, json={})
    await hs.ok("PUT", f"/_matrix/client/v1/admin/suspend/{sus.user_id}", boss, json={"suspended": True})
    evaluations.clear()
    body = {"msgtype": "m.text", "body": "hi"}
    await hs.err(403, "M_USER_SUSPENDED", "PUT", f"{V3}/rooms/{room}/send/m.room.message/t1", sus, json=body)
    assert evaluations == []  # a refused message: its recipients' rules were never evaluated
    await hs.send(friend, room, "still here")
    assert evaluations  # (a message that passes is evaluated)
    # A state event refused by a check: an invitation into a blocked room (the invitee is evaluated
    # for an invitation that passes).
    other = await hs.create_room(friend)
    await hs.server.admin.store.block_room(other, boss.user_id, now_ms())
    await hs.server.moderation.invalidate()
    evaluations.clear()
    err = await hs.err(403, "M_FORBIDDEN", "POST", f"{V3}/rooms/{other}/invite", friend, json={"user_id": boss.user_id})
    assert "blocked" in err["error"] and evaluations == []


async def test_a_refused_state_event_leaves_no_row_and_a_refused_room_no_room(hs: Harness) -> None:
    alice = await hs.register("alice")
    megolm = {"algorithm": "m.megolm.v1.aes-sha2"}
    room = await hs.create_room(alice, initial_state=[{"type": "m.room.encryption", "content": megolm}])

    async def count(sql: str, *args: Any) -> int:
        row = await hs.server.db.fetchrow(sql, *args)
        assert row is not None
        return int(row[0])

    events_before = await count("SELECT count(*) FROM events WHERE room_id = $1", room)
    rooms_before = await count("SELECT count(*) FROM rooms")
    position = await hs.server.db.current_position()
    path = f"{V3}/rooms/{room}/state/m.room.encryption/"
    await hs.err(403, "M_FORBIDDEN", "PUT", path, alice, json={"algorithm": "m.none"})
    assert await count("SELECT count(*) FROM events WHERE room_id = $1", room) == events_before
    # The encryption lock refuses inside createRoom: the room, its row and its first events go too.
    body = {"initial_state": [{"type": "m.room.encryption", "content": {}}]}
    await hs.err(403, "M_FORBIDDEN", "POST", f"{V3}/createRoom", alice, json=body)
    assert await count("SELECT count(*) FROM rooms") == rooms_before
    assert await hs.server.db.current_position() == position  # nothing took a stream position


async def test_kick_unban_leave_and_forget_preconditions(hs: Harness) -> None:
    alice, bob, carol = await hs.register("alice"), await hs.register("bob"), await hs.register("carol")
    room = await hs.create_room(alice, preset="public_chat")
    kick, unban = f"{V3}/rooms/{room}/kick", f"{V3}/rooms/{room}/unban"
    err = await hs.err(403, "M_FORBIDDEN", "POST", kick, alice, json={"user_id": bob.user_id})
    assert err["error"] == "The user is not in the room"
    err = await hs.err(403, "M_FORBIDDEN", "POST", unban, alice, json={"user_id": bob.user_id})
    assert err["error"] == "The user is not banned"
    await hs.ok("POST", f"{V3}/rooms/{room}/join", bob, json={})
    await hs.err(403, "M_FORBIDDEN", "POST", unban, alice, json={"user_id": bob.user_id})
    await hs.ok("POST", kick, alice, json={"user_id": bob.user_id, "reason": "quiet"})
    await hs.err(403, "M_FORBIDDEN", "POST", kick, alice, json={"user_id": bob.user_id})
    await hs.ok("POST", f"{V3}/rooms/{room}/ban", alice, json={"user_id": bob.user_id})
    await hs.err(403, "M_FORBIDDEN", "POST", kick, alice, json={"user_id": bob.user_id})
    await hs.ok("POST", unban, alice, json={"user_id": bob.user_id})
    assert (await hs.server.events.membership(bob.user_id, room) or ("",))[0] == "leave"
    # Leaving twice is a no-op; forgetting needs the room left first.
    await hs.ok("POST", f"{V3}/rooms/{room}/leave", bob, json={})
    err = await hs.err(403, "M_FORBIDDEN", "POST", f"{V3}/rooms/{room}/leave", carol, json={})
    assert err["error"] == "You are not a member of this room"
    await hs.err(400, "M_UNKNOWN", "POST", f"{V3}/rooms/{room}/forget", alice, json={})
    await hs.err(404, "M_NOT_FOUND", "POST", f"{V3}/rooms/{room}/forget", carol, json={})
    await hs.ok("POST", f"{V3}/rooms/{room}/forget", bob, json={})
