"""OpenID tokens: requested by a signed-in user for themselves, checked by a third party through the
federation userinfo endpoint, stored hashed, expiring, purged, and dead with their account."""

from __future__ import annotations

from sqlalchemy import select

from paigham.clock import now_ms
from paigham.storage.openid_schema import openid_tokens
from tests.api.conftest import Harness, User

V3 = "/_matrix/client/v3"
USERINFO = "/_matrix/federation/v1/openid/userinfo"


async def request_token(hs: Harness, user: User) -> dict[str, object]:
    body = await hs.ok("POST", f"{V3}/user/{user.user_id}/openid/request_token", user, json={})
    assert isinstance(body, dict)
    return body


async def test_request_token_and_userinfo(hs: Harness) -> None:
    alice = await hs.register("alice")
    token = await request_token(hs, alice)
    assert token["token_type"] == "Bearer"
    assert token["matrix_server_name"] == "test.local"
    assert token["expires_in"] == 3600
    assert isinstance(token["access_token"], str) and len(token["access_token"]) > 30
    assert await hs.ok("GET", USERINFO, params={"access_token": token["access_token"]}) == {"sub": alice.user_id}
    # Each request gives a new token; both work.
    again = await request_token(hs, alice)
    assert again["access_token"] != token["access_token"]
    assert (await hs.ok("GET", USERINFO, params={"access_token": again["access_token"]}))["sub"] == alice.user_id
    # r0 too, and an empty body is accepted.
    r = await hs.request("POST", f"/_matrix/client/r0/user/{alice.user_id}/openid/request_token", alice)
    assert r.status_code == 200, r.text


async def test_request_token_only_for_oneself(hs: Harness) -> None:
    alice, bob = await hs.register("alice"), await hs.register("bob")
    await hs.err(403, "M_FORBIDDEN", "POST", f"{V3}/user/{bob.user_id}/openid/request_token", alice, json={})
    await hs.err(401, "M_MISSING_TOKEN", "POST", f"{V3}/user/{bob.user_id}/openid/request_token", json={})
    await hs.err(400, "M_NOT_JSON", "POST", f"{V3}/user/{alice.user_id}/openid/request_token", alice, content=b"{x")
    await hs.err(400, "M_BAD_JSON", "POST", f"{V3}/user/{alice.user_id}/openid/request_token", alice, json=[1])


async def test_unknown_expired_and_missing_tokens(hs: Harness) -> None:
    alice = await hs.register("alice")
    await hs.err(401, "M_UNKNOWN_TOKEN", "GET", USERINFO, params={"access_token": "oid_forged"})
    await hs.err(401, "M_UNKNOWN_TOKEN", "GET", USERINFO)
    await hs.err(401, "M_UNKNOWN_TOKEN", "GET", USERINFO, params={"access_token": "x" * 5000})
    # An expired token (stored with an expiry in the past) is unknown.
    await hs.server.openid.store.add("oid_old", alice.user_id, now_ms() - 1)
    await hs.err(401, "M_UNKNOWN_TOKEN", "GET", USERINFO, params={"access_token": "oid_old"})
    # An OpenID token is not an access token, nor the other way round.
    token = str((await request_token(hs, alice))["access_token"])
    r = await hs.request("GET", f"{V3}/account/whoami", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    await hs.err(401, "M_UNKNOWN_TOKEN", "GET", USERINFO, params={"access_token": alice.token})


async def test_tokens_stored_hashed_and_purged(hs: Harness) -> None:
    alice = await hs.register("alice")
    token = str((await request_token(hs, alice))["access_token"])
    await hs.server.openid.store.add("oid_old", alice.user_id, now_ms() - 1)
    async with hs.server.db.read() as conn:
        rows = (await conn.execute(select(openid_tokens.c.token_hash, openid_tokens.c.user_id))).all()
    assert len(rows) == 2 and {r.user_id for r in rows} == {alice.user_id}
    assert all(token not in r.token_hash and len(r.token_hash) == 64 for r in rows)
    assert await hs.server.openid.purge_expired() == 1
    assert (await hs.ok("GET", USERINFO, params={"access_token": token}))["sub"] == alice.user_id
    assert await hs.server.openid.purge_expired() == 0


async def test_live_tokens_per_user_are_bounded(hs: Harness) -> None:
    from paigham.services.openid import MAX_LIVE_PER_USER

    alice, bob = await hs.register("alice"), await hs.register("bob")
    bobs = str((await request_token(hs, bob))["access_token"])
    first = str((await request_token(hs, alice))["access_token"])
    for _ in range(MAX_LIVE_PER_USER):
        last = str((await request_token(hs, alice))["access_token"])
    await hs.err(401, "M_UNKNOWN_TOKEN", "GET", USERINFO, params={"access_token": first})  # the oldest went
    assert (await hs.ok("GET", USERINFO, params={"access_token": last}))["sub"] == alice.user_id
    assert (await hs.ok("GET", USERINFO, params={"access_token": bobs}))["sub"] == bob.user_id
    async with hs.server.db.read() as conn:
        mine = select(openid_tokens.c.user_id).where(openid_tokens.c.user_id == alice.user_id)
        rows = (await conn.execute(mine)).all()
    assert len(rows) == MAX_LIVE_PER_USER


async def test_deactivated_accounts_tokens_stop_working(hs: Harness) -> None:
    alice = await hs.register("alice")
    token = str((await request_token(hs, alice))["access_token"])
    await hs.ok(
        "POST",
        f"{V3}/account/deactivate",
        alice,
        json={"auth": {"type": "m.login.password", "user": alice.user_id, "password": alice.password}},
    )
    await hs.err(401, "M_UNKNOWN_TOKEN", "GET", USERINFO, params={"access_token": token})
