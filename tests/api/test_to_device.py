"""Send-to-device: delivery in order, deletion only after acknowledgement, idempotency, the per-sync
limit, wake-ups, persistence across a restart, and bad input."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from paigham.app import Server, create_app
from tests.api.conftest import Harness, User
from tests.api.e2ee_support import spec_conformance  # noqa: F401 - autouse fixture

V3 = "/_matrix/client/v3"


async def send(hs: Harness, sender: User, txn: str, messages: dict[str, Any], type_: str = "m.test") -> None:
    await hs.ok("PUT", f"{V3}/sendToDevice/{type_}/{txn}", sender, json={"messages": messages})


def events(s: dict[str, Any]) -> list[dict[str, Any]]:
    return s["to_device"]["events"]  # type: ignore[no-any-return]


async def test_delivered_in_order_and_deleted_only_after_ack(hs: Harness) -> None:
    alice = await hs.register("alice")
    bob = await hs.register("bob")
    s0 = await hs.sync(bob)
    assert events(s0) == []
    for i in range(3):
        await send(hs, alice, f"t{i}", {bob.user_id: {bob.device_id: {"n": i}}})
    s1 = await hs.sync(bob, since=s0["next_batch"])
    assert [e["content"]["n"] for e in events(s1)] == [0, 1, 2]
    assert events(s1)[0] == {"sender": alice.user_id, "type": "m.test", "content": {"n": 0}}
    # the response was lost: syncing from the same token delivers the same messages again
    again = await hs.sync(bob, since=s0["next_batch"])
    assert [e["content"]["n"] for e in events(again)] == [0, 1, 2]
    # syncing past them acknowledges them
    s2 = await hs.sync(bob, since=s1["next_batch"])
    assert events(s2) == []
    assert events(await hs.sync(bob, since=s0["next_batch"])) == []


async def test_idempotent_star_and_unknown_targets(hs: Harness) -> None:
    alice = await hs.register("alice")
    bob = await hs.register("bob")
    second = await hs.server.auth.start_session(bob.user_id, None, None)
    bob2 = User(bob.user_id, second.access_token, second.device_id, bob.password)
    msg = {
        bob.user_id: {"*": {"x": 1}},
        "@ghost:test.local": {"D": {"x": 2}},
        "@far:elsewhere.example": {"D": {"x": 3}},
    }
    await send(hs, alice, "same", msg)
    await send(hs, alice, "same", msg)  # retried: not delivered twice
    await send(hs, alice, "named", {bob.user_id: {"*": {"x": "all"}, bob2.device_id: {"x": "named"}}})
    await send(hs, alice, "nodevice", {bob.user_id: {"NOSUCHDEVICE": {"x": 9}}})
    got1 = [e["content"]["x"] for e in events(await hs.sync(bob))]
    got2 = [e["content"]["x"] for e in events(await hs.sync(bob2))]
    assert got1 == [1, "all"] and got2 == [1, "named"]


async def test_queue_longer_than_one_sync_loses_nothing(hs: Harness) -> None:
    alice = await hs.register("alice")
    bob = await hs.register("bob")
    since = (await hs.sync(bob))["next_batch"]
    for i in range(150):
        await send(hs, alice, f"m{i}", {bob.user_id: {bob.device_id: {"n": i}}})
    s1 = await hs.sync(bob, since=since)
    assert [e["content"]["n"] for e in events(s1)] == list(range(100))
    retry = await hs.sync(bob, since=since)  # same token: same first 100
    assert [e["content"]["n"] for e in events(retry)] == list(range(100))
    s2 = await hs.sync(bob, since=s1["next_batch"], timeout=5000)
    assert [e["content"]["n"] for e in events(s2)] == list(range(100, 150))
    again = await hs.sync(bob, since=s1["next_batch"])  # retry of the second page: still there
    assert [e["content"]["n"] for e in events(again)] == list(range(100, 150))
    await send(hs, alice, "late", {bob.user_id: {bob.device_id: {"n": 150}}})
    s3 = await hs.sync(bob, since=s2["next_batch"])
    assert [e["content"]["n"] for e in events(s3)] == [150]
    assert events(await hs.sync(bob, since=s3["next_batch"])) == []


async def test_send_wakes_a_waiting_sync(hs: Harness) -> None:
    alice = await hs.register("alice")
    bob = await hs.register("bob")
    since = (await hs.sync(bob))["next_batch"]
    waiting = asyncio.create_task(hs.sync(bob, since=since, timeout=10_000))
    await asyncio.sleep(0.2)
    await send(hs, alice, "wake", {bob.user_id: {bob.device_id: {"hello": True}}})
    s = await asyncio.wait_for(waiting, 5)
    assert events(s) == [{"sender": alice.user_id, "type": "m.test", "content": {"hello": True}}]


async def test_pending_messages_survive_a_restart(hs: Harness) -> None:
    alice = await hs.register("alice")
    bob = await hs.register("bob")
    since = (await hs.sync(bob))["next_batch"]
    await send(hs, alice, "before-restart", {bob.user_id: {bob.device_id: {"kept": True}}})
    await hs.server.stop()
    restarted = Server(hs.server.config)
    await restarted.start()
    try:
        transport = httpx.ASGITransport(app=create_app(restarted.config, restarted))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            r = await client.get(
                f"{V3}/sync", params={"since": since, "timeout": 0}, headers={"Authorization": f"Bearer {bob.token}"}
            )
    finally:
        await restarted.stop()
        await hs.server.start()  # the fixture stops it again
    assert r.status_code == 200
    assert events(r.json()) == [{"sender": alice.user_id, "type": "m.test", "content": {"kept": True}}]


async def test_deleted_device_inbox_is_dropped(hs: Harness) -> None:
    alice = await hs.register("alice")
    bob = await hs.register("bob")
    second = await hs.server.auth.start_session(bob.user_id, "PHONE", None)
    await send(hs, alice, "t", {bob.user_id: {"PHONE": {"x": 1}}})
    await hs.server.auth.delete_devices(bob.user_id, ["PHONE"])
    again = await hs.server.auth.start_session(bob.user_id, "PHONE", None)  # same ID, a new device
    assert second.device_id == again.device_id
    phone = User(bob.user_id, again.access_token, "PHONE", bob.password)
    assert events(await hs.sync(phone)) == []


async def test_send_to_device_errors(hs: Harness) -> None:
    alice = await hs.register("alice")
    path = f"{V3}/sendToDevice/m.test/e1"
    await hs.err(400, "M_MISSING_PARAM", "PUT", path, alice, json={})
    await hs.err(400, "M_BAD_JSON", "PUT", path, alice, json={"messages": []})
    await hs.err(400, "M_INVALID_PARAM", "PUT", path, alice, json={"messages": {"bob": {"D": {}}}})
    await hs.err(400, "M_BAD_JSON", "PUT", path, alice, json={"messages": {alice.user_id: ["x"]}})
    await hs.err(400, "M_BAD_JSON", "PUT", path, alice, json={"messages": {alice.user_id: {"D": "text"}}})
    await hs.err(
        400,
        "M_TOO_LARGE",
        "PUT",
        path,
        alice,
        json={"messages": {alice.user_id: {alice.device_id: {"big": "x" * 70_000}}}},
    )
    await hs.err(400, "M_INVALID_PARAM", "PUT", f"{V3}/sendToDevice/m.test/{'t' * 300}", alice, json={"messages": {}})
    await hs.err(401, "M_MISSING_TOKEN", "PUT", path, None, json={"messages": {}})
    await hs.err(400, "M_NOT_JSON", "PUT", path, alice, content=b"nope")
    assert events(await hs.sync(alice)) == []  # nothing half-written
