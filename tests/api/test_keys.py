"""E2EE keys: /keys/upload, /keys/query, /keys/claim (also under concurrency), /keys/changes and the
key fields of /sync — real signatures, both storage engines."""

from __future__ import annotations

import asyncio
from typing import Any

from paigham.domain.signing import sign_json
from tests.api.conftest import Harness
from tests.api.e2ee_support import (
    V3,
    Device,
    fake_curve25519,
    spec_conformance,  # noqa: F401 - autouse fixture
)


async def test_upload_query_and_sync_counts(hs: Harness) -> None:
    alice = await hs.register("alice")
    bob = await hs.register("bob")
    dev = Device.of(alice)
    res = await dev.upload(hs, otks=5, fallback=True)
    assert res == {"one_time_key_counts": {"signed_curve25519": 5}}
    # uploading the same keys again changes nothing
    again = await hs.ok("POST", f"{V3}/keys/upload", alice, json={"device_keys": dev.device_keys()})
    assert again["one_time_key_counts"] == {"signed_curve25519": 5}
    await hs.ok("PUT", f"{V3}/devices/{alice.device_id}", alice, json={"display_name": "Desk"})

    q = await hs.ok("POST", f"{V3}/keys/query", bob, json={"device_keys": {alice.user_id: []}})
    keys = q["device_keys"][alice.user_id][alice.device_id]
    assert keys["keys"][f"ed25519:{alice.device_id}"] == dev.ed25519
    assert keys["unsigned"] == {"device_display_name": "Desk"}
    assert keys["signatures"][alice.user_id][f"ed25519:{alice.device_id}"]
    only = await hs.ok("POST", f"{V3}/keys/query", bob, json={"device_keys": {alice.user_id: ["NOPE"]}})
    assert only["device_keys"] == {alice.user_id: {}}

    s = await hs.sync(alice)
    assert s["device_one_time_keys_count"] == {"signed_curve25519": 5}
    assert s["device_unused_fallback_key_types"] == ["signed_curve25519"]
    s = await hs.sync(bob)
    assert s["device_one_time_keys_count"] == {"signed_curve25519": 0}
    assert s["device_unused_fallback_key_types"] == []


async def test_upload_errors_write_nothing(hs: Harness) -> None:
    alice = await hs.register("alice")
    dev = Device.of(alice)
    await dev.upload(hs, otks=2)
    up = f"{V3}/keys/upload"
    other = dev.device_keys() | {"device_id": "OTHER"}
    await hs.err(400, "M_INVALID_PARAM", "POST", up, alice, json={"device_keys": other})
    tampered = dev.device_keys()
    tampered["keys"][f"curve25519:{alice.device_id}"] = fake_curve25519()
    await hs.err(400, "M_INVALID_SIGNATURE", "POST", up, alice, json={"device_keys": tampered})
    unsigned = {k: v for k, v in dev.device_keys().items() if k != "signatures"}
    await hs.err(400, "M_INVALID_SIGNATURE", "POST", up, alice, json={"device_keys": unsigned})
    await hs.err(400, "M_BAD_JSON", "POST", up, alice, json={"device_keys": "nope"})
    bad_key = dev.device_keys()
    bad_key["keys"][f"ed25519:{alice.device_id}"] = "!!!"
    await hs.err(400, "M_BAD_JSON", "POST", up, alice, json={"device_keys": bad_key})
    # a batch with one bad one-time key is refused whole: the good keys are not stored either
    good = dev.one_time_keys(3)
    forged = sign_json({"key": fake_curve25519()}, alice.user_id, Device.of(alice).key)
    forged["key"] = fake_curve25519()
    await hs.err(
        400,
        "M_INVALID_SIGNATURE",
        "POST",
        up,
        alice,
        json={"one_time_keys": {**good, "signed_curve25519:EVIL": forged}},
    )
    await hs.err(400, "M_BAD_JSON", "POST", up, alice, json={"one_time_keys": {"no-colon": "abc"}})
    await hs.err(400, "M_BAD_JSON", "POST", up, alice, json={"one_time_keys": {"alg:id": 5}})
    await hs.err(400, "M_BAD_JSON", "POST", up, alice, json={"one_time_keys": []})
    await hs.err(400, "M_BAD_JSON", "POST", up, alice, json={"fallback_keys": dev.one_time_keys(2, fallback=True)})
    await hs.err(400, "M_NOT_JSON", "POST", up, alice, content=b"{nope")
    changed = {next(iter(good)): sign_json({"key": fake_curve25519()}, alice.user_id, dev.key)}
    await hs.ok("POST", up, alice, json={"one_time_keys": good})
    await hs.err(400, "M_INVALID_PARAM", "POST", up, alice, json={"one_time_keys": changed})
    s = await hs.sync(alice)
    assert s["device_one_time_keys_count"] == {"signed_curve25519": 5}
    await hs.err(401, "M_MISSING_TOKEN", "POST", up, None, json={})


async def test_claim_order_once_then_fallback(hs: Harness) -> None:
    alice = await hs.register("alice")
    bob = await hs.register("bob")
    dev = Device.of(alice)
    await dev.upload(hs, otks=2, fallback=True)
    claim = {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}}
    seen = []
    for _ in range(2):
        r = await hs.ok("POST", f"{V3}/keys/claim", bob, json=claim)
        ((key_id, key),) = r["one_time_keys"][alice.user_id][alice.device_id].items()
        assert "fallback" not in key
        seen.append(key_id)
    assert sorted(seen) == ["signed_curve25519:K00001", "signed_curve25519:K00002"]
    s = await hs.sync(alice)
    assert s["device_one_time_keys_count"] == {"signed_curve25519": 0}
    assert s["device_unused_fallback_key_types"] == ["signed_curve25519"]
    for _ in range(2):  # the fallback key is handed out again and again, and marked used
        r = await hs.ok("POST", f"{V3}/keys/claim", bob, json=claim)
        ((key_id, key),) = r["one_time_keys"][alice.user_id][alice.device_id].items()
        assert key_id == "signed_curve25519:K00003" and key["fallback"] is True
    assert (await hs.sync(alice))["device_unused_fallback_key_types"] == []
    await dev.upload(hs, fallback=True)  # a new fallback key is unused again
    assert (await hs.sync(alice))["device_unused_fallback_key_types"] == ["signed_curve25519"]

    unknown = {
        "one_time_keys": {
            "@ghost:test.local": {"X": "signed_curve25519"},
            alice.user_id: {"NODEVICE": "signed_curve25519"},
            "@far:elsewhere.example": {"D": "signed_curve25519"},
        }
    }
    r = await hs.ok("POST", f"{V3}/keys/claim", bob, json=unknown)
    assert r["one_time_keys"] == {}
    assert "elsewhere.example" in r["failures"]
    await hs.err(400, "M_INVALID_PARAM", "POST", f"{V3}/keys/claim", bob, json={"one_time_keys": {"not-a-user": {}}})
    await hs.err(
        400,
        "M_BAD_JSON",
        "POST",
        f"{V3}/keys/claim",
        bob,
        json={"one_time_keys": {alice.user_id: {alice.device_id: 7}}},
    )
    await hs.err(400, "M_BAD_JSON", "POST", f"{V3}/keys/claim", bob, json={})
    await hs.err(400, "M_BAD_JSON", "POST", f"{V3}/keys/query", bob, json={"device_keys": {alice.user_id: "x"}})


async def test_parallel_claims_never_hand_out_a_key_twice(hs: Harness) -> None:
    alice = await hs.register("alice")
    claimers = [await hs.register(f"c{i}") for i in range(2)]
    dev = Device.of(alice)
    await dev.upload(hs, otks=40, fallback=True)
    body = {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}}

    async def claim(i: int) -> tuple[str, dict[str, Any]]:
        r = await hs.ok("POST", f"{V3}/keys/claim", claimers[i % 2], json=body)
        ((key_id, key),) = r["one_time_keys"][alice.user_id][alice.device_id].items()
        return key_id, key

    results = await asyncio.gather(*(claim(i) for i in range(60)))
    one_time = [k for k, v in results if "fallback" not in v]
    fallback = [k for k, v in results if v.get("fallback")]
    assert len(one_time) == 40 and len(set(one_time)) == 40  # every key exactly once
    assert len(fallback) == 20 and set(fallback) == {"signed_curve25519:K00041"}
    assert (await hs.sync(alice))["device_one_time_keys_count"] == {"signed_curve25519": 0}


async def test_device_lists_follow_keys_and_shared_rooms(hs: Harness) -> None:
    alice = await hs.register("alice")
    bob = await hs.register("bob")
    carol = await hs.register("carol")
    room = await hs.create_room(alice, invite=[bob.user_id])
    await hs.ok("POST", f"{V3}/rooms/{room}/join", bob)
    start = (await hs.sync(alice))["next_batch"]

    await Device.of(bob).upload(hs, otks=1)
    s = await hs.sync(alice, since=start)
    assert s["device_lists"] == {"changed": [bob.user_id], "left": []}
    await Device.of(carol).upload(hs)  # shares no room with alice: not her business
    s2 = await hs.sync(alice, since=s["next_batch"])
    assert s2["device_lists"] == {"changed": [], "left": []}

    # carol joins: alice now shares a room with her and must fetch her devices
    await hs.ok("POST", f"{V3}/rooms/{room}/invite", alice, json={"user_id": carol.user_id})
    await hs.ok("POST", f"{V3}/rooms/{room}/join", carol)
    s3 = await hs.sync(alice, since=s2["next_batch"])
    assert s3["device_lists"]["changed"] == [carol.user_id]
    carol_view = await hs.sync(carol, since=s2["next_batch"])
    assert set(carol_view["device_lists"]["changed"]) == {alice.user_id, bob.user_id}

    # bob logs in a second device and deletes it: both are changes
    second = await hs.server.auth.start_session(bob.user_id, None, None)
    await hs.server.auth.delete_devices(bob.user_id, [second.device_id])
    s4 = await hs.sync(alice, since=s3["next_batch"])
    assert s4["device_lists"]["changed"] == [bob.user_id]

    # bob leaves the only shared room: he is "left" for alice and carol
    await hs.ok("POST", f"{V3}/rooms/{room}/leave", bob)
    s5 = await hs.sync(alice, since=s4["next_batch"])
    assert s5["device_lists"] == {"changed": [], "left": [bob.user_id]}
    bob_view = await hs.sync(bob, since=s4["next_batch"])
    assert set(bob_view["device_lists"]["left"]) == {alice.user_id, carol.user_id}

    changes = await hs.ok("GET", f"{V3}/keys/changes", alice, params={"from": start, "to": s5["next_batch"]})
    assert changes == {"changed": [carol.user_id], "left": [bob.user_id]}
    mid = await hs.ok("GET", f"{V3}/keys/changes", alice, params={"from": s2["next_batch"], "to": s3["next_batch"]})
    assert mid == {"changed": [carol.user_id], "left": []}
    await hs.err(400, "M_MISSING_PARAM", "GET", f"{V3}/keys/changes", alice, params={"from": start})
    await hs.err(400, "M_INVALID_PARAM", "GET", f"{V3}/keys/changes", alice, params={"from": "x", "to": "y"})


async def test_key_upload_wakes_a_waiting_sync(hs: Harness) -> None:
    alice = await hs.register("alice")
    bob = await hs.register("bob")
    room = await hs.create_room(alice, invite=[bob.user_id])
    await hs.ok("POST", f"{V3}/rooms/{room}/join", bob)
    since = (await hs.sync(alice))["next_batch"]
    waiting = asyncio.create_task(hs.sync(alice, since=since, timeout=10_000))
    await asyncio.sleep(0.2)
    await Device.of(bob).upload(hs)
    s = await asyncio.wait_for(waiting, 5)
    assert s["device_lists"]["changed"] == [bob.user_id]


async def test_own_new_device_and_logout_clear_keys(hs: Harness) -> None:
    alice = await hs.register("alice")
    bob = await hs.register("bob")
    dev = Device.of(alice)
    await dev.upload(hs, otks=3, fallback=True)
    since = (await hs.sync(alice))["next_batch"]
    alice2_session = await hs.server.auth.start_session(alice.user_id, None, None)
    from tests.api.conftest import User

    alice2 = User(alice.user_id, alice2_session.access_token, alice2_session.device_id, alice.password)
    await Device.of(alice2).upload(hs)
    s = await hs.sync(alice, since=since)
    assert s["device_lists"]["changed"] == [alice.user_id]
    await hs.ok("POST", f"{V3}/logout", alice)
    q = await hs.ok("POST", f"{V3}/keys/query", bob, json={"device_keys": {alice.user_id: []}})
    assert list(q["device_keys"][alice.user_id]) == [alice2.device_id]
    claim = {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}}
    assert (await hs.ok("POST", f"{V3}/keys/claim", bob, json=claim))["one_time_keys"] == {}
