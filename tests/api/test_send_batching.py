"""Messages into a busy room are written in batches (services/writer.py): one transaction for
everything that queued up while the room's previous write ran — and so are state events (a storm of
joins), in batches of their own. Each event must still be built, authorised and answered as if it had
been sent alone: one linear history, one event per transaction ID, a refused one refused without taking
the others down, and a batch the database rejects retried event by event."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from typing import Any

import pytest

from paigham.errors import MatrixError
from paigham.services.writer import EventSpec
from tests.api.conftest import Harness, User

V3 = "/_matrix/client/v3"


def batch_sizes(hs: Harness, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    writer = hs.server.writer
    real = writer._send_batch

    async def counting(room_id: str, batch: list[Any]) -> Any:
        sizes.append(len(batch))
        return await real(room_id, batch)

    monkeypatch.setattr(writer, "_send_batch", counting)
    return sizes


async def put(hs: Harness, user: User, room: str, txn: str, body: str) -> Any:
    return await hs.request(
        "PUT", f"{V3}/rooms/{room}/send/m.room.message/{txn}", user, json={"msgtype": "m.text", "body": body}
    )


async def timeline(hs: Harness, user: User, room: str) -> list[dict[str, Any]]:
    res = await hs.ok("GET", f"{V3}/rooms/{room}/messages", user, params={"dir": "f", "limit": 200})
    return [e for e in res["chunk"] if e["type"] == "m.room.message"]


async def test_concurrent_messages_share_transactions_and_keep_one_history(
    hs: Harness,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sizes = batch_sizes(hs, monkeypatch)
    users = [await hs.register(f"sender{i}") for i in range(5)]
    room = await hs.create_room(users[0], preset="public_chat")
    for u in users[1:]:
        await hs.ok("POST", f"{V3}/join/{room}", u, json={})
    sends = [put(hs, users[i % 5], room, f"t{i}", f"message {i}") for i in range(40)]
    answers = await asyncio.gather(*sends)
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers if r.status_code != 200]
    assert sizes and max(sizes) > 1, "nothing was batched"
    events = await timeline(hs, users[0], room)
    # Each answer names the event of its own request, each request made exactly one event.
    by_id = {e["event_id"]: e for e in events}
    assert len(by_id) == 40
    assert [by_id[r.json()["event_id"]]["content"]["body"] for r in answers] == [f"message {i}" for i in range(40)]
    # One linear history: every message's only prev_event is the one before it.
    pdus = [await hs.server.events.get_event(e["event_id"]) for e in events]
    for before, after in itertools.pairwise(pdus):
        assert after is not None and before is not None
        assert after.pdu["prev_events"] == [before.event_id]
        assert after.pdu["depth"] == before.pdu["depth"] + 1


async def test_a_refused_message_does_not_take_its_batch_down(hs: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = batch_sizes(hs, monkeypatch)
    alice, bob, eve = await hs.register("alice"), await hs.register("bob"), await hs.register("eve")
    room = await hs.create_room(alice, preset="public_chat")
    await hs.ok("POST", f"{V3}/join/{room}", bob, json={})
    senders = [alice, bob, eve] * 6  # eve is not in the room
    answers = await asyncio.gather(*(put(hs, u, room, f"r{i}", f"m{i}") for i, u in enumerate(senders)))
    assert sizes and max(sizes) > 1
    for u, r in zip(senders, answers, strict=True):
        if u is eve:
            assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
        else:
            assert r.status_code == 200
    assert len(await timeline(hs, alice, room)) == 12


async def test_the_same_transaction_id_twice_in_a_batch_is_one_event(
    hs: Harness,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sizes = batch_sizes(hs, monkeypatch)
    alice = await hs.register("alice")
    room = await hs.create_room(alice, preset="public_chat")
    sends = [put(hs, alice, room, "same" if i % 2 else f"other{i}", f"m{i}") for i in range(12)]
    answers = await asyncio.gather(*sends)
    assert sizes and max(sizes) > 1
    same = {r.json()["event_id"] for i, r in enumerate(answers) if i % 2}
    assert len(same) == 1  # six requests with one transaction ID: one event
    assert len(await timeline(hs, alice, room)) == 7
    again = await put(hs, alice, room, "same", "retried later")
    assert again.json()["event_id"] in same


async def test_a_batch_the_database_refuses_is_retried_message_by_message(
    hs: Harness,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice = await hs.register("alice")
    room = await hs.create_room(alice, preset="public_chat")
    writer = hs.server.writer
    failed: list[int] = []

    async def broken(room_id: str, batch: list[Any]) -> Any:
        failed.append(len(batch))
        raise RuntimeError("the database went away mid-batch")

    monkeypatch.setattr(writer, "_send_batch", broken)
    answers = await asyncio.gather(*(put(hs, alice, room, f"f{i}", f"m{i}") for i in range(10)))
    assert failed, "no batch was tried"
    assert all(r.status_code == 200 for r in answers)
    assert sorted(e["content"]["body"] for e in await timeline(hs, alice, room)) == sorted(f"m{i}" for i in range(10))


async def test_concurrent_joins_share_transactions_and_wake_the_room_once_per_batch(
    hs: Harness,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A storm of joins into one room: written in batches (the room's members woken once per batch, not
    per join), each join answered and counted, one linear history; messages sent meanwhile go in
    batches of their own."""
    sizes = batch_sizes(hs, monkeypatch)
    alice = await hs.register("alice")
    room = await hs.create_room(alice, preset="public_chat")
    users = [await hs.register(f"joiner{i}") for i in range(30)]
    wakes: list[int] = []
    writer = hs.server.writer

    async def counting_wake(events: list[Any]) -> None:
        wakes.append(len(events))

    counted = (*writer.stages.after_commit, ("count wake-ups", counting_wake))
    monkeypatch.setattr(writer, "stages", dataclasses.replace(writer.stages, after_commit=counted))
    answers = await asyncio.gather(
        *(hs.request("POST", f"{V3}/join/{room}", u, json={}) for u in users),
        *(put(hs, alice, room, f"j{i}", f"during {i}") for i in range(10)),
    )
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers if r.status_code != 200]
    assert sizes and max(sizes) > 1, "nothing was batched"
    assert sum(wakes) == 40 and len(wakes) < 40  # 40 events, fewer commits (each wakes the room's syncs once)
    joined = await hs.ok("GET", f"{V3}/rooms/{room}/joined_members", alice)
    assert set(joined["joined"]) == {alice.user_id, *(u.user_id for u in users)}
    assert (await hs.server.events.member_counts(room))["join"] == 31
    res = await hs.ok("GET", f"{V3}/rooms/{room}/messages", alice, params={"dir": "f", "limit": 200})
    pdus = [await hs.server.events.get_event(e["event_id"]) for e in res["chunk"]]
    for before, after in itertools.pairwise(pdus):
        assert after is not None and before is not None
        assert after.pdu["prev_events"] == [before.event_id] and after.stream > before.stream
    members = [e for e in res["chunk"] if e["type"] == "m.room.member" and e["state_key"] != alice.user_id]
    assert len(members) == 30 and all(e["content"]["membership"] == "join" for e in members)
    # Each joiner's sync shows the room joined.
    body = await hs.sync(users[7])
    assert room in body["rooms"]["join"]


async def test_state_events_of_a_batch_are_authorised_against_the_ones_before_them(hs: Harness) -> None:
    """A ban and the banned user's join in one batch: the join is refused as it would be after the
    ban alone; another user's join in the same batch goes through; a refused one changes nothing."""
    alice, bob, eve = await hs.register("alice"), await hs.register("bob"), await hs.register("eve")
    room = await hs.create_room(alice, preset="public_chat")
    writer = hs.server.writer

    def member(sender: User, target: User, membership: str) -> EventSpec:
        return EventSpec(sender.user_id, "m.room.member", {"membership": membership}, target.user_id)

    results = await asyncio.gather(
        writer.send(room, member(alice, eve, "ban")),
        writer.send(room, member(eve, eve, "join")),
        writer.send(room, member(bob, bob, "join")),
        return_exceptions=True,
    )
    ban, eve_join, bob_join = results
    assert isinstance(eve_join, MatrixError) and eve_join.errcode == "M_FORBIDDEN"
    assert not isinstance(ban, BaseException) and not isinstance(bob_join, BaseException)
    assert bob_join.pdu["prev_events"] == [ban.event_id]  # one history: the refused join left no trace
    assert bob_join.stream == ban.stream + 1
    state = await hs.ok("GET", f"{V3}/rooms/{room}/state/m.room.member/{eve.user_id}", alice)
    assert state["membership"] == "ban"
    assert set((await hs.ok("GET", f"{V3}/rooms/{room}/joined_members", alice))["joined"]) == {
        alice.user_id,
        bob.user_id,
    }


async def test_messages_queued_while_a_batch_reads_the_room_ride_that_batch(
    hs: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Senders answered together send again together: the first starts a batch, and those that
    arrive while it takes the lock and reads the room join it (one transaction, one wake-up) instead
    of waiting for all of its round trips; a state event queued behind them waits for its own."""
    alice = await hs.register("alice")
    room = await hs.create_room(alice, preset="public_chat")
    writer = hs.server.writer
    commits: list[list[str]] = []

    async def note(events: list[Any]) -> None:
        commits.append([e.type for e in events])

    monkeypatch.setattr(
        writer, "stages", dataclasses.replace(writer.stages, after_commit=(*writer.stages.after_commit, ("note", note)))
    )
    reading, release = asyncio.Event(), asyncio.Event()
    real_load = writer._load_room

    async def slow_load(*args: Any) -> Any:
        out = await real_load(*args)
        reading.set()
        await release.wait()
        return out

    monkeypatch.setattr(writer, "_load_room", slow_load)
    first = asyncio.ensure_future(put(hs, alice, room, "t0", "first"))
    await asyncio.wait_for(reading.wait(), 5)
    later = [asyncio.ensure_future(put(hs, alice, room, f"t{i}", f"later {i}")) for i in range(1, 4)]
    topic = asyncio.ensure_future(
        hs.request("PUT", f"{V3}/rooms/{room}/state/m.room.topic", alice, json={"topic": "t"})
    )
    again = asyncio.ensure_future(put(hs, alice, room, "t1", "later 1"))  # a resend: the same event
    for _ in range(20):
        await asyncio.sleep(0.01)
    release.set()
    answers = await asyncio.gather(first, *later, topic, again)
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    assert answers[1].json()["event_id"] == answers[-1].json()["event_id"]
    assert commits[0] == ["m.room.message"] * 4  # the first and the three that came meanwhile
    assert ["m.room.topic"] in commits[1:]
    assert sorted(e["content"]["body"] for e in await timeline(hs, alice, room)) == [
        "first",
        "later 1",
        "later 2",
        "later 3",
    ]
