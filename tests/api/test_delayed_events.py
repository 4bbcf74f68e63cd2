"""Delayed events (MSC4140) as matrix-js-sdk and Element Call use them: PUT /send and PUT /state with
`org.matrix.msc4140.delay`, the list, and the restart / cancel / send actions (path and body
forms). Delays are short real delays: the scheduler sleeps until the earliest one."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from paigham.app import Server, create_app
from tests.api.conftest import Harness, User, serve

V3 = "/_matrix/client/v3"
UNSTABLE = "/_matrix/client/unstable/org.matrix.msc4140"
DELAY = "org.matrix.msc4140.delay"
MEMBER = "org.matrix.msc3401.call.member"


def send_path(room: str, event_type: str = "m.room.message") -> str:
    return f"{V3}/rooms/{room}/send/{event_type}/{uuid.uuid4().hex}"


async def schedule(hs: Harness, user: User, room: str, delay: int, body: str = "later") -> str:
    res = await hs.ok("PUT", send_path(room), user, params={DELAY: delay}, json={"msgtype": "m.text", "body": body})
    return str(res["delay_id"])


async def schedule_state(
    hs: Harness, user: User, room: str, delay: int, content: dict[str, Any], key: str, type_: str = MEMBER
) -> str:
    path = f"{V3}/rooms/{room}/state/{type_}/{key}"
    return str((await hs.ok("PUT", path, user, params={DELAY: delay}, json=content))["delay_id"])


async def listing(hs: Harness, user: User, **params: Any) -> Any:
    return await hs.ok("GET", f"{UNSTABLE}/delayed_events", user, params=params)


async def bodies(hs: Harness, user: User, room: str) -> list[str]:
    res = await hs.ok("GET", f"{V3}/rooms/{room}/messages", user, params={"dir": "b", "limit": 50})
    return [e["content"].get("body") for e in res["chunk"] if e["type"] == "m.room.message"][::-1]


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def finalised(hs: Harness, user: User, delay_id: str) -> dict[str, Any] | None:
    res = await listing(hs, user, status="finalised", delay_id=delay_id)
    return res["finalised"][0] if res["finalised"] else None


async def test_a_delayed_message_is_listed_then_fires(hs: Harness) -> None:
    alice = await hs.register("alice")
    room = await hs.create_room(alice)
    before = int(time.time() * 1000)
    delay_id = await schedule(hs, alice, room, 400, "I am now offline")
    res = await listing(hs, alice)
    [item] = res["scheduled"]
    assert res["delayed_events"] == res["scheduled"]  # Synapse's name for the same list
    assert item["delay_id"] == delay_id and item["room_id"] == room and item["type"] == "m.room.message"
    assert item["delay"] == 400 and item["running_since"] >= before and "state_key" not in item
    assert item["content"] == {"msgtype": "m.text", "body": "I am now offline"}
    assert "I am now offline" not in await bodies(hs, alice, room)

    async def fired() -> bool:
        return "I am now offline" in await bodies(hs, alice, room)

    await eventually(fired)
    assert int(time.time() * 1000) - before >= 400  # never before the delay

    async def recorded() -> bool:  # the scheduler records the outcome just after the send commits
        return await finalised(hs, alice, delay_id) is not None

    await eventually(recorded)
    done = await finalised(hs, alice, delay_id)
    assert done is not None and done["outcome"] == "send" and done["reason"] == "delay"
    assert done["event_id"].startswith("$") and done["delayed_event"]["delay_id"] == delay_id
    assert (await listing(hs, alice, status="scheduled")) == {"scheduled": [], "delayed_events": []}
    # no transaction_id leaks into the sender's view (the delay_id is not their txn)
    event = await hs.ok("GET", f"{V3}/rooms/{room}/event/{done['event_id']}", alice)
    assert "transaction_id" not in event.get("unsigned", {})


async def test_a_delayed_state_event_fires(hs: Harness) -> None:
    alice = await hs.register("alice")
    room = await hs.create_room(alice)
    key = f"_{alice.user_id}_DEVICE"
    await hs.ok("PUT", f"{V3}/rooms/{room}/state/{MEMBER}/{key}", alice, json={"application": "m.call"})
    delay_id = await schedule_state(hs, alice, room, 300, {}, key)
    [item] = (await listing(hs, alice))["scheduled"]
    assert item["state_key"] == key and item["type"] == MEMBER and item["delay_id"] == delay_id

    async def left() -> bool:
        return bool(await hs.ok("GET", f"{V3}/rooms/{room}/state/{MEMBER}/{key}", alice) == {})

    await eventually(left)


async def test_restart_postpones(hs: Harness) -> None:
    alice = await hs.register("alice")
    room = await hs.create_room(alice)
    delay_id = await schedule(hs, alice, room, 2000, "hangup")
    first = (await listing(hs, alice))["scheduled"][0]["running_since"]
    await asyncio.sleep(1.2)
    await hs.ok("POST", f"{UNSTABLE}/delayed_events/{delay_id}/restart", alice, json={})
    assert (await listing(hs, alice))["scheduled"][0]["running_since"] > first
    await asyncio.sleep(1.2)  # past the first deadline, before the new one
    assert "hangup" not in await bodies(hs, alice, room)
    assert [i["delay_id"] for i in (await listing(hs, alice))["scheduled"]] == [delay_id]

    async def fired() -> bool:
        return "hangup" in await bodies(hs, alice, room)

    await eventually(fired)


async def test_cancel_prevents(hs: Harness) -> None:
    alice = await hs.register("alice")
    room = await hs.create_room(alice)
    delay_id = await schedule(hs, alice, room, 1000, "never")
    await hs.ok("POST", f"{UNSTABLE}/delayed_events/{delay_id}/cancel", alice, json={})
    await asyncio.sleep(1.5)
    assert "never" not in await bodies(hs, alice, room)
    done = await finalised(hs, alice, delay_id)
    assert done is not None and done["outcome"] == "cancel" and done["reason"] == "action"
    await hs.ok("POST", f"{UNSTABLE}/delayed_events/{delay_id}/cancel", alice, json={})  # a retry succeeds
    # restarting or sending a finalised one: M_NOT_FOUND, which js-sdk takes as "schedule a new one"
    for action in ("restart", "send"):
        await hs.err(404, "M_NOT_FOUND", "POST", f"{UNSTABLE}/delayed_events/{delay_id}/{action}", alice, json={})


async def test_send_now(hs: Harness) -> None:
    alice = await hs.register("alice")
    room = await hs.create_room(alice)
    delay_id = await schedule(hs, alice, room, 600_000, "now")
    await hs.ok("POST", f"{UNSTABLE}/delayed_events/{delay_id}/send", alice, json={})
    assert "now" in await bodies(hs, alice, room)
    done = await finalised(hs, alice, delay_id)
    assert done is not None and done["outcome"] == "send" and done["reason"] == "action"
    await hs.err(404, "M_NOT_FOUND", "POST", f"{UNSTABLE}/delayed_events/{delay_id}/send", alice, json={})
    assert (await bodies(hs, alice, room)).count("now") == 1
    one = await hs.ok("GET", f"{UNSTABLE}/delayed_events/{delay_id}", alice)  # the single lookup
    assert one["delay_id"] == delay_id and one["event_id"] == done["event_id"] and one["origin_server_ts"] > 0
    bob = await hs.register("bob")
    await hs.err(404, "M_NOT_FOUND", "GET", f"{UNSTABLE}/delayed_events/{delay_id}", bob)


async def test_the_action_in_the_body_form(hs: Harness) -> None:
    """The earlier form Element Call's widget driver and js-sdk's fallback use: signed in."""
    alice = await hs.register("alice")
    room = await hs.create_room(alice)
    delay_id = await schedule(hs, alice, room, 600_000, "body form")
    path = f"{UNSTABLE}/delayed_events/{delay_id}"
    # js-sdk tries without a token first and signs in on M_MISSING_TOKEN
    await hs.err(401, "M_MISSING_TOKEN", "POST", path, json={"action": "restart"})
    await hs.ok("POST", path, alice, json={"action": "restart"})
    await hs.err(400, "M_INVALID_PARAM", "POST", path, alice, json={"action": "explode"})
    await hs.err(400, "M_MISSING_PARAM", "POST", path, alice, json={})
    await hs.ok("POST", path, alice, json={"action": "send"})
    assert "body form" in await bodies(hs, alice, room)


async def test_who_may_act(hs: Harness) -> None:
    alice, mallory = await hs.register("alice"), await hs.register("mallory")
    room = await hs.create_room(alice)
    delay_id = await schedule(hs, alice, room, 600_000)
    for path, kw in (
        (f"{UNSTABLE}/delayed_events/{delay_id}/cancel", {"json": {}}),
        (f"{UNSTABLE}/delayed_events/{delay_id}", {"json": {"action": "cancel"}}),
    ):
        await hs.err(404, "M_NOT_FOUND", "POST", path, mallory, **kw)
    assert (await listing(hs, mallory)) == {"scheduled": [], "delayed_events": [], "finalised": []}
    await hs.err(404, "M_NOT_FOUND", "POST", f"{UNSTABLE}/delayed_events/nope/restart", alice, json={})
    await hs.err(400, "M_INVALID_PARAM", "POST", f"{UNSTABLE}/delayed_events/{delay_id}/explode", alice, json={})
    await hs.err(401, "M_UNKNOWN_TOKEN", "POST", f"{UNSTABLE}/delayed_events/{delay_id}/restart",
                 headers={"Authorization": "Bearer wrong"}, json={})  # fmt: skip
    # no token: the delay_id is the capability (an SFU may hold it)
    await hs.ok("POST", f"{UNSTABLE}/delayed_events/{delay_id}/restart", json={})
    await hs.ok("POST", f"{UNSTABLE}/delayed_events/{delay_id}/cancel")
    await hs.err(401, "M_MISSING_TOKEN", "GET", f"{UNSTABLE}/delayed_events")


async def test_limits(database_url: str, tmp_path: Path) -> None:
    async with serve(database_url, tmp_path, max_event_delay_ms=60_000, delayed_events_max_per_user=3) as hs:
        alice = await hs.register("alice")
        room = await hs.create_room(alice)
        body = {"msgtype": "m.text", "body": "x"}
        err = await hs.err(400, "M_UNKNOWN", "PUT", send_path(room), alice, params={DELAY: 60_001}, json=body)
        assert err["org.matrix.msc4140.errcode"] == "M_MAX_DELAY_EXCEEDED"
        assert err["org.matrix.msc4140.max_delay"] == 60_000
        for bad in ("0", "-5", "soon", "1.5"):
            await hs.err(400, "M_INVALID_PARAM", "PUT", send_path(room), alice, params={DELAY: bad}, json=body)
        await hs.err(400, "M_INVALID_PARAM", "PUT", send_path(room), alice,
                     params={"org.matrix.msc4140.parent_delay_id": "x"}, json=body)  # fmt: skip
        # the size limit is the event's, as for the normal send
        big = {"msgtype": "m.text", "body": "x" * 70_000}
        await hs.err(413, "M_TOO_LARGE", "PUT", send_path(room), alice, params={DELAY: 1000}, json=big)
        for _ in range(3):
            await schedule(hs, alice, room, 60_000)
        err = await hs.err(429, "M_LIMIT_EXCEEDED", "PUT", send_path(room), alice, params={DELAY: 1000}, json=body)
        assert 0 < err["retry_after_ms"] <= 60_000


async def test_the_per_user_limit_holds_under_concurrent_requests(database_url: str, tmp_path: Path) -> None:
    """Requests racing each other cannot pass the limit together (on PostgreSQL each counts and inserts in
    its own transaction: without a lock per user, several saw room for one more)."""
    async with serve(database_url, tmp_path, max_event_delay_ms=60_000, delayed_events_max_per_user=3) as hs:
        alice = await hs.register("alice")
        room = await hs.create_room(alice)
        body = {"msgtype": "m.text", "body": "x"}
        answers = await asyncio.gather(
            *(hs.request("PUT", send_path(room), alice, params={DELAY: 30_000}, json=body) for _ in range(12))
        )
        assert sorted(r.status_code for r in answers) == [200] * 3 + [429] * 9
        assert len((await listing(hs, alice))["scheduled"]) == 3


async def test_a_retried_transaction_gets_the_same_delay_id(hs: Harness) -> None:
    alice = await hs.register("alice")
    room = await hs.create_room(alice)
    path = send_path(room)
    body = {"msgtype": "m.text", "body": "once"}
    first = await hs.ok("PUT", path, alice, params={DELAY: 600_000}, json=body)
    assert await hs.ok("PUT", path, alice, params={DELAY: 600_000}, json=body) == first
    assert len((await listing(hs, alice))["scheduled"]) == 1


async def test_a_refusal_at_fire_time_is_recorded(hs: Harness) -> None:
    """Power levels and membership are checked when it fires, not when it is scheduled."""
    alice, bob = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(alice, preset="public_chat")
    await hs.ok("POST", f"{V3}/join/{room}", bob, json={})
    delay_id = await schedule(hs, bob, room, 1000, "from bob")
    await hs.ok("POST", f"{V3}/rooms/{room}/leave", bob, json={})

    async def failed() -> bool:
        return await finalised(hs, bob, delay_id) is not None

    await eventually(failed)
    done = await finalised(hs, bob, delay_id)
    assert done is not None and done["outcome"] == "cancel" and done["reason"] == "error"
    assert done["error"]["errcode"] == "M_FORBIDDEN" and "event_id" not in done
    assert "from bob" not in await bodies(hs, alice, room)


async def test_the_send_action_answers_the_refusal_and_keeps_it_scheduled(hs: Harness) -> None:
    alice, bob = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(alice)
    delay_id = await schedule(hs, bob, room, 600_000, "not a member")
    await hs.err(403, "M_FORBIDDEN", "POST", f"{UNSTABLE}/delayed_events/{delay_id}/send", bob, json={})
    assert [i["delay_id"] for i in (await listing(hs, bob))["scheduled"]] == [delay_id]


async def test_another_users_state_update_cancels_a_delayed_state_event(hs: Harness) -> None:
    alice, bob = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(alice, preset="public_chat")
    await hs.ok("POST", f"{V3}/join/{room}", bob, json={})
    pl = await hs.ok("GET", f"{V3}/rooms/{room}/state/m.room.power_levels/", alice)
    # A state key both may write (a call membership's is its owner's alone: services/rtc.py).
    slot = "org.example.slot"
    pl["events"][slot] = 0
    await hs.ok("PUT", f"{V3}/rooms/{room}/state/m.room.power_levels/", alice, json=pl)
    own = await schedule_state(hs, bob, room, 600_000, {}, "slot", slot)
    await hs.ok("PUT", f"{V3}/rooms/{room}/state/{slot}/slot", bob, json={"mine": True})
    assert [i["delay_id"] for i in (await listing(hs, bob))["scheduled"]] == [own]  # the user's own: kept
    await hs.ok("PUT", f"{V3}/rooms/{room}/state/{slot}/slot", alice, json={"theirs": True})
    done = await finalised(hs, bob, own)
    assert done is not None and done["outcome"] == "cancel" and done["reason"] == "error"
    assert done["error"]["org.matrix.msc4140.errcode"] == "M_CANCELLED_BY_STATE_UPDATE"


async def test_deactivation_cancels_them(hs: Harness) -> None:
    alice = await hs.register("alice")
    room = await hs.create_room(alice)
    delay_id = await schedule(hs, alice, room, 600_000)
    await hs.server.auth.deactivate(alice.user_id)
    got = await hs.server.delayed_store.get(delay_id)
    assert got is not None and got.state == "cancelled"


async def test_the_newest_msc_endpoint(hs: Harness) -> None:
    alice = await hs.register("alice")
    room = await hs.create_room(alice)
    path = f"{UNSTABLE}/rooms/{room}/delayed_event/m.room.message/{uuid.uuid4().hex}"
    res = await hs.ok("PUT", path, alice, json={"delay": 600_000, "content": {"msgtype": "m.text", "body": "n"}})
    [item] = (await listing(hs, alice))["scheduled"]
    assert item["delay_id"] == res["delay_id"]
    bads: list[dict[str, Any]] = [
        {"content": {}},
        {"delay": "1", "content": {}},
        {"delay": 5, "content": []},
        {"delay": 5, "state_key": 3, "content": {}},
    ]
    for bad in bads:
        await hs.err(400, "M_BAD_JSON", "PUT", path + "x", alice, json=bad)


async def test_listing_filters(hs: Harness) -> None:
    alice = await hs.register("alice")
    room = await hs.create_room(alice)
    a, b = await schedule(hs, alice, room, 600_000), await schedule(hs, alice, room, 500_000)
    res = await listing(hs, alice, status="scheduled")
    assert [i["delay_id"] for i in res["scheduled"]] == [b, a] and "finalised" not in res  # by send time
    assert [i["delay_id"] for i in (await listing(hs, alice, delay_id=a))["scheduled"]] == [a]
    assert "scheduled" not in await listing(hs, alice, status="finalised")
    await hs.err(400, "M_INVALID_PARAM", "GET", f"{UNSTABLE}/delayed_events", alice, params={"status": "later"})


async def test_it_fires_after_a_server_restart(hs: Harness) -> None:
    alice = await hs.register("alice")
    room = await hs.create_room(alice)
    await schedule(hs, alice, room, 1500, "after restart")
    config = hs.server.config
    await hs.server.stop()
    await asyncio.sleep(1.6)  # it came due while no server ran
    server = Server(config)
    app = create_app(config, server)
    await server.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            other = Harness(server, client)

            async def fired() -> bool:
                return "after restart" in await bodies(other, alice, room)

            await eventually(fired)
            assert (await bodies(other, alice, room)).count("after restart") == 1
    finally:
        await server.stop()
        await hs.server.start()


@pytest.fixture
async def disabled(database_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    async with serve(database_url, tmp_path, delayed_events_enabled=False) as h:
        yield h


async def test_switched_off(disabled: Harness) -> None:
    hs = disabled
    assert "org.matrix.msc4140" not in (await hs.ok("GET", "/_matrix/client/versions"))["unstable_features"]
    alice = await hs.register("alice")
    room = await hs.create_room(alice)
    await hs.err(400, "M_UNRECOGNIZED", "PUT", send_path(room), alice, params={DELAY: 1000}, json={"body": "x"})
    await hs.err(404, "M_UNRECOGNIZED", "GET", f"{UNSTABLE}/delayed_events", alice)
