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
    assert [name for name, _ in stages.after_commit] == ["count events", "audit", "delayed state overrides"]
    assert [name for name, _ in stages.after_answer] == ["publish to sync"]


async def test_callers_are_answered_after_the_commit_hooks_and_before_the_wake_ups(hs: Harness) -> None:
    """A sender waits for the hooks whose effects it may read at once (`after_commit`), not for the
    ones that wake others (`after_answer`), which run after it has its answer, in the batch's task;
    a hook that fails after commit does not fail the request nor stop the hooks after it."""
    alice = await hs.register("alice")
    room = await hs.create_room(alice, preset="public_chat")
    commit_gate, wake_gate = asyncio.Event(), asyncio.Event()
    ran: list[tuple[str, int]] = []

    async def read_at_once(events: list[StoredEvent]) -> None:
        await commit_gate.wait()
        ran.append(("after commit", len(events)))

    async def broken(events: list[StoredEvent]) -> None:
        raise RuntimeError("a hook failed")

    async def wake_others(events: list[StoredEvent]) -> None:
        await wake_gate.wait()
        ran.append(("after answer", len(events)))

    srv = hs.server
    stages = Stages(
        after_commit=(("read at once", read_at_once), ("broken", broken)),
        after_answer=(("broken", broken), ("wake others", wake_others)),
    )
    writer = EventWriter(
        srv.db, srv.events, EventWriteStore(srv.db), srv.config.server_name, srv.secrets.signing_key, stages
    )
    for n in (1, 3):  # an event alone, then three queued before their batch starts (one transaction)
        ran.clear()
        commit_gate.clear()
        wake_gate.clear()
        sends = [
            asyncio.ensure_future(writer.send(room, EventSpec(alice.user_id, "m.room.message", {"body": str(i)})))
            for i in range(n)
        ]
        await asyncio.sleep(0.3)
        assert not any(s.done() for s in sends), "answered before the after-commit hooks ran"
        commit_gate.set()
        sent = await asyncio.wait_for(asyncio.gather(*sends), 5)  # while the wake-up hook still waits
        assert all(e.stream > 0 for e in sent)
        assert ("after answer", n) not in ran and ("after commit", n) in ran
        wake_gate.set()
        for _ in range(50):
            if ("after answer", n) in ran:
                break
            await asyncio.sleep(0.02)
        assert ran == [("after commit", n), ("after answer", n)]  # one transaction: hooks once


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
