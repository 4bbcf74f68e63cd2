"""MatrixRTC: transport discovery, the built-in authorization service (LiveKit JWTs checked with
livekit-api's own verifier), call memberships in rooms Paigham creates, the call policy, the audit."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from livekit.api.access_token import TokenVerifier

from paigham.clock import now_ms
from paigham.domain.rtc import CALL_MEMBER
from tests.api.conftest import Harness, User, serve
from tests.api.test_policies import setup_org

V3 = "/_matrix/client/v3"
ADMIN = "/_paigham/admin/v1"
LK = "/_paigham/livekit"
TRANSPORTS = "/_matrix/client/unstable/org.matrix.msc4143/rtc/transports"
SFU = "wss://sfu.test.local"
KEY, SECRET = "APIkey1", "a-secret-of-at-least-thirty-two-characters"
LIVEKIT = {"livekit_url": SFU, "livekit_api_key": KEY, "livekit_api_secret": SECRET, "livekit_token_lifetime_s": 300}


@pytest.fixture
async def lk(database_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    async with serve(database_url, tmp_path, **LIVEKIT) as h:
        yield h


def b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")


async def openid(hs: Harness, user: User) -> dict[str, Any]:
    body = await hs.ok("POST", f"{V3}/user/{user.user_id}/openid/request_token", user, json={})
    assert isinstance(body, dict)
    return body


def get_token_body(room_id: str, token: dict[str, Any], user: User, member_id: str = "member1") -> dict[str, Any]:
    return {
        "room_id": room_id,
        "slot_id": "m.call#ROOM",
        "openid_token": token,
        "member": {"id": member_id, "claimed_user_id": user.user_id, "claimed_device_id": user.device_id},
    }


async def call_room(hs: Harness) -> tuple[User, User, str]:
    alice, bob = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(alice, preset="private_chat", invite=[bob.user_id])
    await hs.ok("POST", f"{V3}/rooms/{room}/join", bob, json={})
    return alice, bob, room


async def test_unconfigured_is_honest(hs: Harness) -> None:
    alice = await hs.register("alice")
    wk = await hs.ok("GET", "/.well-known/matrix/client")
    assert "org.matrix.msc4143.rtc_foci" not in wk
    await hs.err(404, "M_UNRECOGNIZED", "GET", TRANSPORTS, alice)
    await hs.err(404, "M_UNRECOGNIZED", "POST", f"{LK}/get_token", json={})
    await hs.err(404, "M_UNRECOGNIZED", "POST", f"{LK}/sfu/get", json={})
    await hs.err(404, "M_UNRECOGNIZED", "GET", f"{LK}/healthz")


async def test_discovery(lk: Harness) -> None:
    alice = await lk.register("alice")
    wk = await lk.ok("GET", "/.well-known/matrix/client")
    foci = [{"type": "livekit", "livekit_service_url": "http://127.0.0.1:8008/_paigham/livekit"}]
    assert wk["org.matrix.msc4143.rtc_foci"] == foci
    assert (await lk.ok("GET", TRANSPORTS, alice)) == {"rtc_transports": foci}
    await lk.err(401, "M_MISSING_TOKEN", "GET", TRANSPORTS)
    assert await lk.ok("GET", f"{LK}/healthz") == {}


async def test_get_token_jwt_verified_by_livekit(lk: Harness) -> None:
    _, bob, room = await call_room(lk)
    started = int(time.time())
    res = await lk.ok("POST", f"{LK}/get_token", json=get_token_body(room, await openid(lk, bob), bob))
    assert res["url"] == SFU
    claims = TokenVerifier(KEY, SECRET).verify(res["jwt"])
    identity = b64_sha256(f'["{bob.user_id}","{bob.device_id}","member1"]'.encode())
    assert claims.identity == identity
    video = claims.video
    assert video is not None
    assert video.room == b64_sha256(f'["{room}","m.call#ROOM"]'.encode())
    assert video.room_join is True and video.can_publish is True and video.can_subscribe is True
    assert video.can_publish_data is True and video.can_update_own_metadata is True
    assert not video.room_create and not video.room_admin and not video.room_list and not video.room_record
    raw = pyjwt.decode(res["jwt"], SECRET, algorithms=["HS256"], issuer=KEY)
    assert raw["iss"] == KEY and raw["sub"] == identity
    assert started <= raw["nbf"] <= started + 5 and raw["exp"] - raw["nbf"] == 300
    # Another key cannot verify it.
    with pytest.raises(pyjwt.InvalidSignatureError):
        TokenVerifier(KEY, SECRET + "x").verify(res["jwt"])


async def test_legacy_sfu_get(lk: Harness) -> None:
    _, bob, room = await call_room(lk)
    body = {"room": room, "openid_token": await openid(lk, bob), "device_id": bob.device_id}
    res = await lk.ok("POST", f"{LK}/sfu/get", json=body)
    assert res["url"] == SFU
    claims = TokenVerifier(KEY, SECRET).verify(res["jwt"])
    assert claims.identity == f"{bob.user_id}:{bob.device_id}"
    assert claims.video is not None and claims.video.room_join is True
    assert claims.video.room == b64_sha256(f'["{room}","m.call#ROOM"]'.encode())
    # Delegation of the delayed leave event is accepted and not acted on (the client restarts it).
    res = await lk.ok("POST", f"{LK}/sfu/get", json={**body, "delay_id": "d1", "delay_timeout": 5000})
    assert TokenVerifier(KEY, SECRET).verify(res["jwt"]).identity == f"{bob.user_id}:{bob.device_id}"


async def test_refusals(lk: Harness) -> None:
    alice, bob, room = await call_room(lk)
    carol = await lk.register("carol")
    token = await openid(lk, bob)
    url = f"{LK}/get_token"
    # Not in the room; invited but not joined; left.
    await lk.err(403, "M_FORBIDDEN", "POST", url, json=get_token_body(room, await openid(lk, carol), carol))
    await lk.ok("POST", f"{V3}/rooms/{room}/invite", alice, json={"user_id": carol.user_id})
    await lk.err(403, "M_FORBIDDEN", "POST", url, json=get_token_body(room, await openid(lk, carol), carol))
    other = await lk.create_room(alice)
    await lk.err(403, "M_FORBIDDEN", "POST", url, json=get_token_body(other, token, bob))
    # A forged token, an expired one, another server's, someone else's identity claimed.
    forged = {**token, "access_token": "oid_forged"}
    await lk.err(401, "M_UNAUTHORIZED", "POST", url, json=get_token_body(room, forged, bob))
    await lk.server.openid.store.add("oid_expired", bob.user_id, now_ms() - 1)
    expired = {**token, "access_token": "oid_expired"}
    await lk.err(401, "M_UNAUTHORIZED", "POST", url, json=get_token_body(room, expired, bob))
    elsewhere = {**token, "matrix_server_name": "evil.example"}
    await lk.err(401, "M_UNAUTHORIZED", "POST", url, json=get_token_body(room, elsewhere, bob))
    await lk.err(
        401, "M_UNAUTHORIZED", "POST", f"{LK}/sfu/get", json={"room": room, "openid_token": elsewhere, "device_id": "D"}
    )
    claimed = get_token_body(room, token, bob)
    claimed["member"]["claimed_user_id"] = alice.user_id
    await lk.err(401, "M_UNAUTHORIZED", "POST", url, json=claimed)
    # An access token is not an OpenID token.
    as_access = {**token, "access_token": bob.token}
    await lk.err(401, "M_UNAUTHORIZED", "POST", url, json=get_token_body(room, as_access, bob))
    # Bad bodies.
    await lk.err(400, "M_NOT_JSON", "POST", url, content=b"{nope")
    await lk.err(400, "M_BAD_JSON", "POST", url, json={"room_id": room})
    await lk.err(400, "M_BAD_JSON", "POST", url, json={**get_token_body(room, token, bob), "slot_id": ""})
    await lk.err(400, "M_BAD_JSON", "POST", url, json={**get_token_body(room, token, bob), "room_id": "!" * 300})
    await lk.err(400, "M_BAD_JSON", "POST", url, json={**get_token_body(room, token, bob), "member": {"id": "m"}})
    await lk.err(400, "M_BAD_JSON", "POST", url, json={**get_token_body(room, token, bob), "openid_token": {}})
    await lk.err(400, "M_BAD_JSON", "POST", url, json={**get_token_body(room, token, bob), "member": 3})
    await lk.err(400, "M_BAD_JSON", "POST", f"{LK}/sfu/get", json={"openid_token": token})
    await lk.err(405, "M_UNRECOGNIZED", "GET", url)
    # The valid request still works after all that.
    await lk.ok("POST", url, json=get_token_body(room, token, bob))


async def test_cors_preflight(lk: Harness) -> None:
    headers = {
        "Origin": "https://call.element.io",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    r = await lk.request("OPTIONS", f"{LK}/get_token", headers=headers)
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    assert "POST" in r.headers["access-control-allow-methods"]
    _, bob, room = await call_room(lk)
    body = get_token_body(room, await openid(lk, bob), bob)
    r = await lk.request("POST", f"{LK}/get_token", json=body, headers={"Origin": "https://call.element.io"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"


async def test_token_grants_are_audited_without_secrets(lk: Harness) -> None:
    _, bob, room = await call_room(lk)
    token = await openid(lk, bob)
    res = await lk.ok("POST", f"{LK}/get_token", json=get_token_body(room, token, bob))
    records = [r async for r in lk.server.audit.export(kinds=["call.token"])]
    assert len(records) == 1
    rec = records[0]
    assert rec["actor"] == bob.user_id and rec["target"] == room and rec["device"] == bob.device_id
    assert rec["details"]["endpoint"] == "get_token" and rec["details"]["expires_in"] == 300
    text = str(rec)
    assert res["jwt"] not in text and token["access_token"] not in text and SECRET not in text


def member_content(user: User) -> dict[str, Any]:
    """What matrix-js-sdk's MembershipManager sends (session membership, legacy state-event mode)."""
    return {
        "application": "m.call",
        "call_id": "",
        "scope": "m.room",
        "device_id": user.device_id,
        "expires": 14_400_000,
        "focus_active": {"type": "livekit", "focus_selection": "oldest_membership"},
        "foci_preferred": [{"type": "livekit", "livekit_service_url": "https://x/_paigham/livekit"}],
        "m.call.intent": "video",
    }


def member_key(user: User) -> str:
    return f"_{user.user_id}_{user.device_id}_m.call"


async def test_ordinary_members_join_calls_in_rooms_we_create(hs: Harness) -> None:
    alice, bob, room = await call_room(hs)
    pl = await hs.ok("GET", f"{V3}/rooms/{room}/state/m.room.power_levels", alice)
    assert pl["events"][CALL_MEMBER] == 0 and pl["state_default"] == 50
    assert bob.user_id not in pl["users"]
    # Bob, at level 0, joins the call (state key as matrix-js-sdk makes it), refreshes it, leaves it.
    path = f"{V3}/rooms/{room}/state/{CALL_MEMBER}/{member_key(bob)}"
    await hs.ok("PUT", path, bob, json=member_content(bob))
    await hs.ok("PUT", path, bob, json={**member_content(bob), "expires": 28_800_000})
    await hs.ok("PUT", path, bob, json={})
    # The first MSC3401 form (the bare user ID) is his too. The MSC3757 form (no leading `_`) is for
    # the MSC3757 room versions only: room version 11's auth rules reserve `@…` keys for that exact user.
    msc3757 = f"{V3}/rooms/{room}/state/{CALL_MEMBER}/{bob.user_id}_{bob.device_id}_m.call"
    await hs.err(403, "M_FORBIDDEN", "PUT", msc3757, bob, json={})
    await hs.ok("PUT", f"{V3}/rooms/{room}/state/{CALL_MEMBER}/{bob.user_id}", bob, json={"memberships": []})
    # Nobody writes another's membership: not Bob for Alice, not Alice (the room's admin) for Bob.
    await hs.err(403, "M_FORBIDDEN", "PUT", f"{V3}/rooms/{room}/state/{CALL_MEMBER}/{member_key(alice)}", bob, json={})
    await hs.err(403, "M_FORBIDDEN", "PUT", path, alice, json={})
    await hs.err(403, "M_FORBIDDEN", "PUT", f"{V3}/rooms/{room}/state/{CALL_MEMBER}/_x", bob, json={})
    # Joining is audited once per join (not per refresh, not on leaving), metadata only.
    await hs.ok("PUT", path, bob, json=member_content(bob))
    joined = [r async for r in hs.server.audit.export(kinds=["call.joined"])]
    assert [(r["actor"], r["target"], r["device"]) for r in joined] == [(bob.user_id, room, bob.device_id)] * 2
    assert set(joined[0]["details"]) == {"event_id", "application"}
    assert joined[0]["details"]["application"] == "m.call"


async def test_policy_refuses_calls_per_unit(lk: Harness) -> None:
    boss, people = await setup_org(lk)
    fin1, fin2, home1 = people["fin1"], people["fin2"], people["home1"]
    room = await lk.create_room(fin1, preset="private_chat", invite=[fin2.user_id, home1.user_id])
    for u in (fin2, home1):
        await lk.ok("POST", f"{V3}/rooms/{room}/join", u, json={})
    await lk.ok("PUT", f"{ADMIN}/policies/units/MOF", boss, json={"calls_allowed": False})
    assert await lk.server.policies.calls_allowed(fin1.user_id) is False  # MOF-BUD inherits from MOF
    assert await lk.server.policies.calls_allowed(home1.user_id) is True
    assert await lk.server.policies.calls_allowed(boss.user_id) is True  # not an official: the global policy
    # No LiveKit token for Finance.
    asked = get_token_body(room, await openid(lk, fin1), fin1)
    err = await lk.err(403, "M_FORBIDDEN", "POST", f"{LK}/get_token", json=asked)
    assert "does not allow calls" in err["error"]
    body = {"room": room, "openid_token": await openid(lk, fin2), "device_id": fin2.device_id}
    await lk.err(403, "M_FORBIDDEN", "POST", f"{LK}/sfu/get", json=body)
    await lk.ok("POST", f"{LK}/get_token", json=get_token_body(room, await openid(lk, home1), home1))
    # No joining a call, no 1:1 call invite, no ringing; leaving is always allowed.
    path = f"{V3}/rooms/{room}/state/{CALL_MEMBER}/{member_key(fin1)}"
    err = await lk.err(403, "M_FORBIDDEN", "PUT", path, fin1, json=member_content(fin1))
    assert "does not allow calls" in err["error"]
    await lk.ok("PUT", path, fin1, json={})
    invite = {"call_id": "c1", "version": "1", "lifetime": 60000, "offer": {"type": "offer", "sdp": "v=0"}}
    await lk.err(403, "M_FORBIDDEN", "PUT", f"{V3}/rooms/{room}/send/m.call.invite/t1", fin1, json=invite)
    ring = {"notification_type": "ring", "m.mentions": {"room": True}, "sender_ts": 1, "lifetime": 30000}
    await lk.err(
        403, "M_FORBIDDEN", "PUT", f"{V3}/rooms/{room}/send/org.matrix.msc4075.rtc.notification/t2", fin1, json=ring
    )
    await lk.ok("PUT", f"{V3}/rooms/{room}/state/{CALL_MEMBER}/{member_key(home1)}", home1, json=member_content(home1))
    await lk.ok("PUT", f"{V3}/rooms/{room}/send/m.call.invite/t3", home1, json=invite)
    # Allowed again once the override is removed.
    await lk.ok("PUT", f"{ADMIN}/policies/units/MOF", boss, json={})
    await lk.ok("PUT", path, fin1, json=member_content(fin1))


async def test_global_policy_from_config(database_url: str, tmp_path: Path) -> None:
    async with serve(database_url, tmp_path, policy_calls_allowed=False, **LIVEKIT) as h:
        _, bob, room = await call_room(h)
        assert await h.server.policies.calls_allowed(bob.user_id) is False
        await h.err(403, "M_FORBIDDEN", "POST", f"{LK}/get_token", json=get_token_body(room, await openid(h, bob), bob))


def test_bad_livekit_settings_stop_the_server(tmp_path: Path) -> None:
    from paigham.config import Config
    from paigham.services.rtc import LiveKitSettings

    with pytest.raises(ValueError, match="livekit_api_key"):
        LiveKitSettings.from_config(Config(livekit_url=SFU))
    with pytest.raises(ValueError, match="wss://"):
        LiveKitSettings.from_config(Config(livekit_url="sfu.example", livekit_api_key=KEY, livekit_api_secret=SECRET))
    secret_file = tmp_path / "lk-secret"
    secret_file.write_text(SECRET + "\n")
    lk_file = str(secret_file)
    config = Config(livekit_url=SFU, livekit_api_key=KEY, livekit_api_secret="x", livekit_api_secret_file=lk_file)
    settings = LiveKitSettings.from_config(config)
    assert settings is not None and settings.api_secret == SECRET
    assert LiveKitSettings.from_config(Config()) is None
