"""/versions `unstable_features`: exactly the flags whose code exists, and that code at work (the
flags matrix-js-sdk, Element Web and matrix-rust-sdk act on; see discovery.UNSTABLE_FEATURES)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from paigham.api.client.discovery import UNSTABLE_FEATURES, unstable_features
from paigham.config import Config
from tests.api.conftest import Harness, User, serve
from tests.api.e2ee_support import CrossSigning

V1 = "/_matrix/client/v1"
V3 = "/_matrix/client/v3"
UNSTABLE_UPLOAD = "/_matrix/client/unstable/keys/device_signing/upload"
CROSS_SIGNING_UPLOAD = f"{V3}/keys/device_signing/upload"

IMPLEMENTED = {
    "org.matrix.e2e_cross_signing",
    "org.matrix.msc2285.stable",
    "org.matrix.msc3440.stable",
    "org.matrix.msc3715.stable",
    "org.matrix.msc3827.stable",
    "org.matrix.msc3856.stable",
    "org.matrix.msc3916.stable",
    "org.matrix.msc3952_intentional_mentions",
    "org.matrix.msc4140",
    "org.matrix.simplified_msc3575",
    "uk.half-shot.msc2666.query_mutual_rooms",
}
FORCED = {"io.element.e2ee_forced.private", "io.element.e2ee_forced.trusted_private"}


async def test_versions_lists_exactly_the_implemented_features(hs: Harness) -> None:
    body = await hs.ok("GET", "/_matrix/client/versions")
    features = body["unstable_features"]
    assert set(features) == IMPLEMENTED  # the harness runs with encryption_by_default off
    assert all(v is True for v in features.values())
    # not (yet) implemented here, or added with their own endpoints by other work
    for absent in (
        "org.matrix.msc3771",  # threaded receipts are stored, but thread notification counts are not kept
        "org.matrix.msc3773",  # no unread_thread_notifications in /sync
        "org.matrix.msc3882",  # no login tokens (m.get_login_token is disabled)
        "org.matrix.msc3030",  # timestamp_to_event only on its stable v1 path (spec v1.6)
        "org.matrix.msc3881",  # no pushers
        "org.matrix.msc3391",  # no account data deletion endpoint
        "org.matrix.msc3981",  # no recurse on /relations
        "org.matrix.label_based_filtering",
        "uk.tcpip.msc4133",  # custom profile fields cannot be set (only displayname and avatar_url)
        "uk.tcpip.msc4133.stable",
        "io.element.e2ee_forced.public",
    ):
        assert absent not in features


def test_every_flag_names_its_code() -> None:
    assert set(UNSTABLE_FEATURES) == IMPLEMENTED
    assert all(reason.strip() for reason in UNSTABLE_FEATURES.values())


def test_forced_encryption_flags_follow_the_config(tmp_path: Path) -> None:
    on = Config(data_dir=str(tmp_path), encryption_by_default=True)
    assert set(unstable_features(on)) == IMPLEMENTED | FORCED
    assert set(unstable_features(Config(data_dir=str(tmp_path), encryption_by_default=False))) == IMPLEMENTED


def test_delayed_events_flag_follows_the_config(tmp_path: Path) -> None:
    """org.matrix.msc4140 (tests/api/test_delayed_events.py): listed only while delayed events are on."""
    off = Config(data_dir=str(tmp_path), delayed_events_enabled=False, encryption_by_default=False)
    assert set(unstable_features(off)) == IMPLEMENTED - {"org.matrix.msc4140"}


@pytest.fixture
async def encrypting_hs(database_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    async with serve(database_url, tmp_path, encryption_by_default=True) as h:
        yield h


async def test_forced_presets_really_encrypt(encrypting_hs: Harness) -> None:
    hs = encrypting_hs
    features = (await hs.ok("GET", "/_matrix/client/versions"))["unstable_features"]
    assert set(features) >= FORCED and "io.element.e2ee_forced.public" not in features
    alice = await hs.register("alice")
    for preset in ("private_chat", "trusted_private_chat", None):  # None: private_chat by default
        room = await hs.create_room(alice, **({"preset": preset} if preset else {}))
        enc = await hs.ok("GET", f"{V3}/rooms/{room}/state/m.room.encryption/", alice)
        assert enc["algorithm"] == "m.megolm.v1.aes-sha2"
    public = await hs.create_room(alice, preset="public_chat")
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/rooms/{public}/state/m.room.encryption/", alice)


async def query_master(hs: Harness, who: User, target: User) -> Any:
    keys = await hs.ok("POST", f"{V3}/keys/query", who, json={"device_keys": {target.user_id: []}})
    return keys["master_keys"].get(target.user_id, {}).get("keys")


def password_auth(user: User, session: str) -> dict[str, Any]:
    ident = {"type": "m.id.user", "user": user.user_id}
    return {"type": "m.login.password", "identifier": ident, "password": user.password, "session": session}


async def test_device_signing_upload_on_the_unstable_prefix(hs: Harness) -> None:
    """matrix-js-sdk's `uploadDeviceSigningKeys` (Element Web's probe) posts to /unstable: same handler."""
    alice, bob = await hs.register("alice"), await hs.register("bob")
    # Element's probe before any key exists: no keys and no UIA to offer (the first upload needs none)
    await hs.err(400, "M_MISSING_PARAM", "POST", UNSTABLE_UPLOAD, alice, json={})
    xs = CrossSigning.new(alice)
    await hs.ok("POST", UNSTABLE_UPLOAD, alice, json=xs.body())
    assert await query_master(hs, bob, alice) == {f"ed25519:{xs.master_pub}": xs.master_pub}
    # once keys exist the empty probe learns the flows: Element then resets with the password alone
    for path in (UNSTABLE_UPLOAD, CROSS_SIGNING_UPLOAD):
        r = await hs.request("POST", path, alice, json={})
        assert r.status_code == 401 and r.json()["flows"] == [{"stages": ["m.login.password"]}], r.text
        auth = password_auth(alice, r.json()["session"])
        await hs.err(400, "M_MISSING_PARAM", "POST", path, alice, json={"auth": auth})
    new = CrossSigning.new(alice)
    r = await hs.request("POST", UNSTABLE_UPLOAD, alice, json=new.body())
    assert r.status_code == 401 and r.json()["flows"] == [{"stages": ["m.login.password"]}]
    await hs.ok("POST", UNSTABLE_UPLOAD, alice, json={**new.body(), "auth": password_auth(alice, r.json()["session"])})
    assert await query_master(hs, bob, alice) == {f"ed25519:{new.master_pub}": new.master_pub}
    # only this route gained the prefix: js-sdk posts /keys/signatures/upload to /v3
    await hs.err(404, "M_UNRECOGNIZED", "POST", "/_matrix/client/unstable/keys/signatures/upload", alice, json={})


async def send(hs: Harness, user: User, room: str, content: dict[str, Any]) -> str:
    path = f"{V3}/rooms/{room}/send/m.room.message/{uuid.uuid4().hex}"
    return str((await hs.ok("PUT", path, user, json=content))["event_id"])


async def test_relations_paginate_forwards(hs: Harness) -> None:
    """org.matrix.msc3715.stable: `dir=f` on /relations, oldest first."""
    alice = await hs.register("alice")
    room = await hs.create_room(alice)
    root = await hs.send(alice, room, "root")
    thread = {"rel_type": "m.thread", "event_id": root}
    replies = [
        await send(hs, alice, room, {"msgtype": "m.text", "body": f"r{i}", "m.relates_to": thread}) for i in range(3)
    ]
    path = f"{V1}/rooms/{room}/relations/{root}"
    fwd = await hs.ok("GET", path, alice, params={"dir": "f", "limit": 2})
    assert [e["event_id"] for e in fwd["chunk"]] == replies[:2]
    rest = await hs.ok("GET", path, alice, params={"dir": "f", "from": fwd["next_batch"]})
    assert [e["event_id"] for e in rest["chunk"]] == replies[2:]
    back = await hs.ok("GET", path, alice, params={"dir": "b"})
    assert [e["event_id"] for e in back["chunk"]] == replies[::-1]


async def test_public_rooms_room_types_filter(hs: Harness) -> None:
    """org.matrix.msc3827.stable: `room_type` in publicRooms entries and the `room_types` filter."""
    alice = await hs.register("alice")
    space = await hs.create_room(alice, preset="public_chat", visibility="public", creation_content={"type": "m.space"})
    plain = await hs.create_room(alice, preset="public_chat", visibility="public")

    async def listed(flt: dict[str, Any] | None) -> dict[str, Any]:
        body = await hs.ok("POST", f"{V3}/publicRooms", alice, json={"filter": flt} if flt is not None else {})
        return {e["room_id"]: e.get("room_type") for e in body["chunk"]}

    assert await listed(None) == {space: "m.space", plain: None}
    assert await listed({"room_types": ["m.space"]}) == {space: "m.space"}
    assert await listed({"room_types": [None]}) == {plain: None}
    assert await listed({"room_types": [None, "m.space"]}) == {space: "m.space", plain: None}
    assert await listed({"room_types": []}) == {space: "m.space", plain: None}  # as if absent
    assert await listed({"room_types": ["org.example.other"]}) == {}
    for bad in ("m.space", [1], ["x" * 256], [None] * 51):
        await hs.err(400, "M_BAD_JSON", "POST", f"{V3}/publicRooms", alice, json={"filter": {"room_types": bad}})


async def test_profile_fields_capability_lists_the_settable_fields(hs: Harness) -> None:
    """Why `uk.tcpip.msc4133` is not listed: only these fields can be set, and the capability says so."""
    alice = await hs.register("alice")
    caps = (await hs.ok("GET", f"{V3}/capabilities", alice))["capabilities"]
    assert caps["m.profile_fields"] == {"enabled": True, "allowed": ["avatar_url", "displayname"]}
    await hs.ok("PUT", f"{V3}/profile/{alice.user_id}/displayname", alice, json={"displayname": "Alice"})
    await hs.err(400, "M_UNRECOGNIZED", "PUT", f"{V3}/profile/{alice.user_id}/m.tz", alice, json={"m.tz": "UTC"})
