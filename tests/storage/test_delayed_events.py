"""DelayedEventStore on both engines: scheduling (a retried transaction, the per-user limit),
claiming due rows with a lease (one owner at a time; an expired lease is taken over), restart and
cancel refused while a row is being sent, finalising only under the lease, another user's state
update, and the purge of finalised rows."""

from __future__ import annotations

import asyncio

from paigham.storage.database import Database
from paigham.storage.delayed_events import CANCELLED, SCHEDULED, SENT, DelayedEvent, DelayedEventStore

ROOM = "!room:test.local"
ALICE, BOB = "@alice:test.local", "@bob:test.local"


def delayed(delay_id: str, fire_at: int, user: str = ALICE, state_key: str | None = None) -> DelayedEvent:
    return DelayedEvent(
        delay_id, user, "DEV", ROOM, "m.room.message" if state_key is None else "m.call.member", state_key,
        {"body": delay_id}, 1000, fire_at - 1000, fire_at, SCHEDULED,
    )  # fmt: skip


async def test_schedule_is_idempotent_per_transaction_and_limited(db: Database) -> None:
    store = DelayedEventStore(db)
    assert await store.schedule(delayed("a", 5000), "txn1", 2) == "a"
    assert await store.schedule(delayed("a2", 5000), "txn1", 2) == "a"  # the same request again
    assert await store.schedule(delayed("b", 3000), None, 2) == "b"
    assert await store.schedule(delayed("c", 9000), None, 2) == 3000  # refused: when the next one fires
    assert await store.schedule(delayed("c", 9000, user=BOB), None, 2) == "c"
    got = await store.get("a")
    assert got is not None and got.content == {"body": "a"} and got.state == SCHEDULED


async def test_due_rows_are_claimed_once(db: Database) -> None:
    store = DelayedEventStore(db)
    for i in range(5):
        await store.schedule(delayed(f"d{i}", 1000 + i), None, 100)
    await store.schedule(delayed("later", 10_000), None, 100)
    assert await store.next_fire_at(2000) == 1000
    one, two = await asyncio.gather(store.claim_due("w1", 2000, 60_000, 3), store.claim_due("w2", 2000, 60_000, 3))
    ids = [d.delay_id for d in one + two]
    assert sorted(ids) == [f"d{i}" for i in range(5)] and len(set(ids)) == 5
    assert await store.claim_due("w3", 2000, 60_000, 10) == []
    assert await store.next_fire_at(2000) == 10_000  # the leased ones are someone's
    # a lease that ran out (its worker died) is taken over
    again = await store.claim_due("w3", 70_000, 60_000, 10)
    assert sorted(d.delay_id for d in again) == [f"d{i}" for i in range(5)] + ["later"]


async def test_finalise_needs_the_lease_and_leased_rows_cannot_change(db: Database) -> None:
    store = DelayedEventStore(db)
    await store.schedule(delayed("x", 1000), None, 100)
    assert [d.delay_id for d in await store.claim_due("w1", 1500, 60_000, 10)] == ["x"]
    assert await store.restart("x", 1600) is None and not await store.cancel("x", 1600)
    await store.finalise("x", "w2", SENT, "delay", 1700, event_id="$nope")  # not the holder: nothing
    assert (await store.get("x")).state == SCHEDULED  # type: ignore[union-attr]
    await store.finalise("x", "w1", SENT, "delay", 1700, event_id="$e")
    got = await store.get("x")
    assert got is not None and got.state == SENT and got.event_id == "$e" and got.finalised_ts == 1700
    assert await store.restart("x", 1800) is None  # finalised


async def test_restart_cancel_and_the_listing(db: Database) -> None:
    store = DelayedEventStore(db)
    await store.schedule(delayed("r", 1000), None, 100)
    await store.schedule(delayed("c", 2000), None, 100)
    assert await store.restart("r", 5000) == 6000
    assert await store.cancel("c", 5000)
    scheduled = await store.of_user(ALICE, [SCHEDULED], [], 10)
    assert [(d.delay_id, d.running_since, d.fire_at) for d in scheduled] == [("r", 5000, 6000)]
    assert [d.delay_id for d in await store.of_user(ALICE, [CANCELLED], ["c", "r"], 10)] == ["c"]
    assert await store.of_user(BOB, [SCHEDULED, CANCELLED], [], 10) == []


async def test_another_users_state_cancels_and_purge(db: Database) -> None:
    store = DelayedEventStore(db)
    await store.schedule(delayed("mine", 9000, ALICE, "slot"), None, 100)
    await store.schedule(delayed("other", 9000, ALICE, "elsewhere"), None, 100)
    expected = {("m.call.member", "slot", ALICE), ("m.call.member", "elsewhere", ALICE)}
    assert await store.scheduled_state_slots(ROOM) == expected
    assert await store.scheduled_state_slots("!elsewhere:test") == set()
    assert await store.cancel_state_slot(ROOM, "m.call.member", "slot", ALICE, {"errcode": "M_UNKNOWN"}, 100) == 0
    assert await store.cancel_state_slot(ROOM, "m.call.member", "slot", BOB, {"errcode": "M_UNKNOWN"}, 100) == 1
    got = await store.get("mine")
    assert got is not None and (got.state, got.reason, got.error) == (CANCELLED, "error", {"errcode": "M_UNKNOWN"})
    assert (await store.get("other")).state == SCHEDULED  # type: ignore[union-attr]
    assert await store.scheduled_state_slots(ROOM) == {("m.call.member", "elsewhere", ALICE)}
    assert await store.purge_finalised(100) == 0
    assert await store.purge_finalised(101) == 1
    assert await store.get("mine") is None and await store.count_scheduled() == 1
