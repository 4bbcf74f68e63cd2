"""Cross-signing keys and signatures, and the rule that encryption once on stays on."""

from __future__ import annotations

from typing import Any

from paigham.domain.signing import encode_verify_key_base64, sign_json
from tests.api.conftest import Harness, User
from tests.api.e2ee_support import (
    V3,
    CrossSigning,
    Device,
    spec_conformance,  # noqa: F401 - autouse fixture
)

UPLOAD = f"{V3}/keys/device_signing/upload"
SIGS = f"{V3}/keys/signatures/upload"


def password_auth(user: User, session: str) -> dict[str, Any]:
    return {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user.user_id},
        "password": user.password,
        "session": session,
    }


async def query(hs: Harness, who: User, target: User) -> Any:
    return await hs.ok("POST", f"{V3}/keys/query", who, json={"device_keys": {target.user_id: []}})


async def test_upload_cross_signing_keys_and_uia_on_replace(hs: Harness) -> None:
    alice = await hs.register("alice")
    bob = await hs.register("bob")
    xs = CrossSigning.new(alice)
    await hs.ok("POST", UPLOAD, alice, json=xs.body())  # first upload: no UIA
    await hs.ok("POST", UPLOAD, alice, json=xs.body())  # identical retry: no UIA either

    mine = await query(hs, alice, alice)
    assert mine["master_keys"][alice.user_id]["keys"] == {f"ed25519:{xs.master_pub}": xs.master_pub}
    assert alice.user_id in mine["self_signing_keys"] and alice.user_id in mine["user_signing_keys"]
    theirs = await query(hs, bob, alice)
    assert alice.user_id in theirs["master_keys"] and alice.user_id in theirs["self_signing_keys"]
    assert theirs["user_signing_keys"] == {}  # only visible to its owner

    new = CrossSigning.new(alice)
    r = await hs.request("POST", UPLOAD, alice, json=new.body())
    assert r.status_code == 401 and r.json()["flows"] == [{"stages": ["m.login.password"]}]
    session = r.json()["session"]
    wrong = password_auth(alice, session) | {"password": "wrong"}
    await hs.err(401, "M_FORBIDDEN", "POST", UPLOAD, alice, json={**new.body(), "auth": wrong})
    await hs.ok("POST", UPLOAD, alice, json={**new.body(), "auth": password_auth(alice, session)})
    again = await query(hs, bob, alice)
    assert again["master_keys"][alice.user_id]["keys"] == {f"ed25519:{new.master_pub}": new.master_pub}


async def test_cross_signing_upload_errors(hs: Harness) -> None:
    alice = await hs.register("alice")
    xs = CrossSigning.new(alice)
    body = xs.body()
    # the self-signing key signed by some other key
    bad = xs.obj("self_signing", xs.self_signing, xs.user_signing)
    await hs.err(400, "M_INVALID_SIGNATURE", "POST", UPLOAD, alice, json={**body, "self_signing_key": bad})
    await hs.err(400, "M_MISSING_PARAM", "POST", UPLOAD, alice, json={"self_signing_key": body["self_signing_key"]})
    await hs.err(400, "M_MISSING_PARAM", "POST", UPLOAD, alice, json={})
    two_keys = {**body["master_key"], "keys": {**body["master_key"]["keys"], "ed25519:x": "x"}}
    await hs.err(400, "M_BAD_JSON", "POST", UPLOAD, alice, json={"master_key": two_keys})
    await hs.err(
        400, "M_BAD_JSON", "POST", UPLOAD, alice, json={"master_key": {**body["master_key"], "usage": ["self_signing"]}}
    )
    await hs.err(
        400,
        "M_INVALID_PARAM",
        "POST",
        UPLOAD,
        alice,
        json={"master_key": {**body["master_key"], "user_id": "@bob:test.local"}},
    )
    await hs.err(400, "M_BAD_JSON", "POST", UPLOAD, alice, json={"master_key": "nope"})
    assert (await query(hs, alice, alice))["master_keys"] == {}  # nothing was stored


async def test_signatures_upload_verified_and_visible(hs: Harness) -> None:
    alice = await hs.register("alice")
    bob = await hs.register("bob")
    carol = await hs.register("carol")
    a_dev, b_dev = Device.of(alice), Device.of(bob)
    await a_dev.upload(hs)
    await b_dev.upload(hs)
    a_xs, b_xs = CrossSigning.new(alice), CrossSigning.new(bob)
    await hs.ok("POST", UPLOAD, alice, json=a_xs.body())
    await hs.ok("POST", UPLOAD, bob, json=b_xs.body())
    ssk_id = f"ed25519:{encode_verify_key_base64(a_xs.self_signing)}"
    usk_id = f"ed25519:{encode_verify_key_base64(a_xs.user_signing)}"

    # alice's device signed with her self-signing key; her master key signed by her device
    signed_device = sign_json(a_dev.device_keys(), alice.user_id, a_xs.self_signing)
    signed_master = sign_json(a_xs.obj("master", a_xs.master, None), alice.user_id, a_dev.key)
    # bob's master key signed by alice's user-signing key
    bob_master = (await query(hs, alice, bob))["master_keys"][bob.user_id]
    signed_bob = sign_json(bob_master, alice.user_id, a_xs.user_signing)
    r = await hs.ok(
        "POST",
        SIGS,
        alice,
        json={
            alice.user_id: {alice.device_id: signed_device, a_xs.master_pub: signed_master},
            bob.user_id: {b_xs.master_pub: signed_bob},
        },
    )
    assert r == {"failures": {}}
    seen_by_carol = await hs.ok(
        "POST", f"{V3}/keys/query", carol, json={"device_keys": {alice.user_id: [], bob.user_id: []}}
    )
    dev_sigs = seen_by_carol["device_keys"][alice.user_id][alice.device_id]["signatures"][alice.user_id]
    assert ssk_id in dev_sigs
    master_sigs = seen_by_carol["master_keys"][alice.user_id]["signatures"][alice.user_id]
    assert f"ed25519:{alice.device_id}" in master_sigs
    assert alice.user_id not in seen_by_carol["master_keys"][bob.user_id].get("signatures", {})
    seen_by_alice = await query(hs, alice, bob)
    assert usk_id in seen_by_alice["master_keys"][bob.user_id]["signatures"][alice.user_id]


async def test_signatures_that_do_not_verify_are_failures(hs: Harness) -> None:
    alice = await hs.register("alice")
    bob = await hs.register("bob")
    a_dev = Device.of(alice)
    await a_dev.upload(hs)
    a_xs, b_xs = CrossSigning.new(alice), CrossSigning.new(bob)
    await hs.ok("POST", UPLOAD, alice, json=a_xs.body())
    await hs.ok("POST", UPLOAD, bob, json=b_xs.body())
    forged = sign_json(a_dev.device_keys(), alice.user_id, a_xs.self_signing)
    forged["algorithms"] = ["evil"]  # no longer the stored key
    wrong_key = sign_json(a_dev.device_keys(), alice.user_id, a_xs.user_signing)
    wrong_key["signatures"][alice.user_id] = {
        f"ed25519:{encode_verify_key_base64(a_xs.self_signing)}": next(
            iter(wrong_key["signatures"][alice.user_id].values())
        )
    }
    bob_master = b_xs.obj("master", b_xs.master, None)
    by_ssk = sign_json(bob_master, alice.user_id, a_xs.self_signing)
    r = await hs.ok(
        "POST",
        SIGS,
        alice,
        json={
            alice.user_id: {alice.device_id: forged, "UNKNOWN": {"signatures": {}}},
            bob.user_id: {b_xs.master_pub: by_ssk, bob.device_id: by_ssk},
        },
    )
    f = r["failures"]
    assert f[alice.user_id][alice.device_id]["errcode"] == "M_INVALID_SIGNATURE"
    assert f[alice.user_id]["UNKNOWN"]["errcode"] in ("M_INVALID_SIGNATURE", "M_NOT_FOUND", "M_BAD_JSON")
    assert f[bob.user_id][b_xs.master_pub]["errcode"] == "M_INVALID_SIGNATURE"
    assert f[bob.user_id][bob.device_id]["errcode"] == "M_NOT_FOUND"
    r2 = await hs.ok("POST", SIGS, alice, json={alice.user_id: {alice.device_id: wrong_key}})
    assert r2["failures"][alice.user_id][alice.device_id]["errcode"] == "M_INVALID_SIGNATURE"
    dev = (await query(hs, bob, alice))["device_keys"][alice.user_id][alice.device_id]
    assert list(dev["signatures"][alice.user_id]) == [f"ed25519:{alice.device_id}"]  # nothing stored
    await hs.err(400, "M_INVALID_PARAM", "POST", SIGS, alice, json={"bob": {}})
    await hs.err(400, "M_BAD_JSON", "POST", SIGS, alice, json={bob.user_id: "x"})


async def test_encryption_cannot_be_switched_off(hs: Harness) -> None:
    alice = await hs.register("alice")
    megolm = {"algorithm": "m.megolm.v1.aes-sha2"}
    room = await hs.create_room(alice, initial_state=[{"type": "m.room.encryption", "content": megolm}])
    path = f"{V3}/rooms/{room}/state/m.room.encryption/"
    await hs.err(403, "M_FORBIDDEN", "PUT", path, alice, json={})
    await hs.err(403, "M_FORBIDDEN", "PUT", path, alice, json={"algorithm": "m.none"})
    await hs.ok("PUT", path, alice, json={**megolm, "rotation_period_ms": 3_600_000})
    assert (await hs.ok("GET", path, alice))["algorithm"] == megolm["algorithm"]
    event_id = next(
        e["event_id"]
        for e in (await hs.ok("GET", f"{V3}/rooms/{room}/state", alice))
        if e["type"] == "m.room.encryption"
    )
    await hs.err(403, "M_FORBIDDEN", "PUT", f"{V3}/rooms/{room}/redact/{event_id}/t1", alice, json={})
    await hs.err(
        403,
        "M_FORBIDDEN",
        "POST",
        f"{V3}/createRoom",
        alice,
        json={"initial_state": [{"type": "m.room.encryption", "content": {}}]},
    )


async def test_deactivation_removes_keys_signatures_and_backups(hs: Harness) -> None:
    alice = await hs.register("alice")
    bob = await hs.register("bob")
    await Device.of(alice).upload(hs, otks=2, fallback=True)
    await hs.ok("POST", UPLOAD, alice, json=CrossSigning.new(alice).body())
    await hs.ok(
        "POST",
        f"{V3}/room_keys/version",
        alice,
        json={"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {}},
    )
    await hs.server.auth.deactivate(alice.user_id)
    q = await query(hs, bob, alice)
    assert q["device_keys"] == {alice.user_id: {}} and q["master_keys"] == {} and q["self_signing_keys"] == {}
    claim = {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}}
    assert (await hs.ok("POST", f"{V3}/keys/claim", bob, json=claim))["one_time_keys"] == {}
    assert await hs.server.e2ee.backup_store.get(alice.user_id, None) is None
