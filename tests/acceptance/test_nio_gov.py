"""The government layer seen by a real client (matrix-nio) against a running server: suspension and
deactivation of a signed-in user, lockout after failed sign-ins, and each policy enforced.

Policies are set per unit through the admin API on a unit made for each test, so the other
acceptance tests sharing this server keep the global policy.
"""

from __future__ import annotations

import asyncio
import io
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from acc_support import ServerInfo
from nio import (
    AsyncClient,
    AsyncClientConfig,
    LoginError,
    LoginResponse,
    RoomCreateResponse,
    RoomGetStateEventResponse,
    RoomInviteError,
    RoomInviteResponse,
    RoomMessagesResponse,
    RoomPreset,
    RoomSendError,
    RoomSendResponse,
    SyncError,
    SyncResponse,
    UploadError,
    UploadResponse,
    WhoamiError,
    WhoamiResponse,
)
from nio_support import Tracked, login_tracked, make_client, register_with_token

pytestmark = pytest.mark.acceptance
PASSWORD = "correct horse battery staple 42"
ADMIN = "/_paigham/admin/v1"


class Admin:
    """The server's first admin, over plain HTTP (the admin API is not part of nio)."""

    def __init__(self, server: ServerInfo, http: aiohttp.ClientSession, token: str) -> None:
        self.server, self.http, self.token = server, http, token

    async def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        async with self.http.request(
            method, self.server.base_url + path, json=body, headers={"Authorization": f"Bearer {self.token}"}
        ) as r:
            data = await r.json(content_type=None)
            assert r.status == expect, f"{method} {path} -> {r.status} {data}"
            return data


@pytest.fixture
async def admin(server: ServerInfo) -> AsyncIterator[Admin]:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{server.base_url}/_matrix/client/v3/login",
            json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": server.admin_user},
                "password": server.admin_password,
            },
        ) as r:
            assert r.status == 200, await r.text()
            token = (await r.json())["access_token"]
        yield Admin(server, http, token)


@pytest.fixture
async def people(server: ServerInfo, unique: str) -> AsyncIterator[Callable[[str], Awaitable[Tracked]]]:
    made: list[Tracked] = []

    async def new(name: str) -> Tracked:
        acct = await register_with_token(server.base_url, f"{name}{unique}", PASSWORD, server.registration_token)
        t = await login_tracked(server.base_url, acct)
        made.append(t)
        await t.sync_once(timeout_ms=0)
        return t

    yield new
    for t in made:
        await t.client.close()


async def unit_with(
    admin: Admin, unit: str, users: list[Tracked], policy: dict[str, Any], ministry: str | None = None
) -> None:
    """A ministry-level unit holding these (already registered) users as officials, with a policy."""
    doc = {
        "units": [
            {
                "unit_id": unit,
                "parent_id": ministry,
                "kind": "ministry" if not ministry else "section",
                "names": {"en": f"Unit {unit}"},
            }
        ],
        "officials": [
            {"employee_id": f"{unit}-{i}", "user_id": t.user_id, "names": {"en": f"Person {i}"}, "unit_id": unit}
            for i, t in enumerate(users)
        ],
    }
    await admin.call("POST", f"{ADMIN}/import", doc)
    await admin.call("PUT", f"{ADMIN}/policies/units/{unit}", policy)


async def test_suspension_and_deactivation_seen_by_a_signed_in_client(
    server: ServerInfo, admin: Admin, people: Callable[[str], Awaitable[Tracked]]
) -> None:
    alice, bob = await people("susp"), await people("peer")
    created = await alice.client.room_create(name="talk", invite=[bob.user_id])
    assert isinstance(created, RoomCreateResponse)
    room = created.room_id
    assert isinstance(
        await alice.client.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "one"}), RoomSendResponse
    )

    await admin.call("PUT", f"/_matrix/client/v1/admin/suspend/{alice.user_id}", {"suspended": True})
    refused = await alice.client.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "two"})
    assert isinstance(refused, RoomSendError) and refused.status_code == "M_USER_SUSPENDED", refused
    assert isinstance(await alice.client.sync(timeout=0), SyncResponse)  # reading still works
    msgs = await alice.client.room_messages(room, limit=10)
    assert isinstance(msgs, RoomMessagesResponse)
    await admin.call("PUT", f"/_matrix/client/v1/admin/suspend/{alice.user_id}", {"suspended": False})
    assert isinstance(
        await alice.client.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "three"}), RoomSendResponse
    )

    await admin.call("POST", f"/_synapse/admin/v1/deactivate/{bob.user_id}", {"erase": False})
    gone = await bob.client.sync(timeout=0)
    assert isinstance(gone, SyncError) and gone.status_code == "M_UNKNOWN_TOKEN", gone
    fresh = make_client(server.base_url, bob.user_id)
    try:
        again = await fresh.login(PASSWORD)
        assert isinstance(again, LoginError) and again.status_code == "M_FORBIDDEN"
    finally:
        await fresh.close()


async def test_lockout_after_failed_sign_ins(server: ServerInfo, people: Callable[[str], Awaitable[Tracked]]) -> None:
    target = await people("lock")
    # nio honours 429 by waiting retry_after_ms and trying again; here it must report it instead
    client = AsyncClient(server.base_url, target.user_id, config=AsyncClientConfig(max_limit_exceeded=0))
    try:
        for _ in range(3):
            bad = await client.login("not the password")
            assert isinstance(bad, LoginError) and bad.status_code == "M_FORBIDDEN", bad
        throttled = await client.login(PASSWORD)  # even the right password waits now
        assert isinstance(throttled, LoginError) and throttled.status_code == "M_LIMIT_EXCEEDED", throttled
        assert 0 < throttled.retry_after_ms <= 1000
        assert isinstance(await target.client.whoami(), WhoamiResponse)  # the signed-in session is untouched
        await asyncio.sleep(1.1)  # the first wait is one second
        assert isinstance(await client.login(PASSWORD), LoginResponse)
    finally:
        await client.close()


async def test_encryption_invites_devices_and_token_lifetime_policies(
    server: ServerInfo, admin: Admin, people: Callable[[str], Awaitable[Tracked]], unique: str
) -> None:
    insider, colleague, outsider = await people("pin"), await people("pco"), await people("pout")
    await unit_with(
        admin,
        f"MINA{unique}",
        [insider, colleague],
        {"invite_outside_ministry": False, "max_devices": 3, "access_token_lifetime_s": 2},
    )
    await unit_with(admin, f"MINB{unique}", [outsider], {})
    # a room made private through initial_state (the public preset would leave it unencrypted) is encrypted
    made = await insider.client.room_create(
        preset=RoomPreset.public_chat,
        initial_state=[{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "invite"}}],
    )
    assert isinstance(made, RoomCreateResponse)
    enc = await insider.client.room_get_state_event(made.room_id, "m.room.encryption")
    assert isinstance(enc, RoomGetStateEventResponse) and enc.content["algorithm"] == "m.megolm.v1.aes-sha2"
    # invitations stay inside the ministry
    refused = await insider.client.room_invite(made.room_id, outsider.user_id)
    assert isinstance(refused, RoomInviteError) and refused.status_code == "M_FORBIDDEN", refused
    assert isinstance(await insider.client.room_invite(made.room_id, colleague.user_id), RoomInviteResponse)
    # at most three devices: registration's, the fixture's sign-in, and one more
    second = make_client(server.base_url, insider.user_id)
    third = make_client(server.base_url, insider.user_id)
    try:
        assert isinstance(await second.login(PASSWORD), LoginResponse)
        over = await third.login(PASSWORD)
        assert isinstance(over, LoginError) and over.status_code == "M_FORBIDDEN", over
        # access tokens issued under the policy expire after two seconds
        assert isinstance(await second.whoami(), WhoamiResponse)
        await asyncio.sleep(2.5)
        expired = await second.whoami()
        assert isinstance(expired, WhoamiError) and expired.status_code == "M_UNKNOWN_TOKEN", expired
    finally:
        await second.close()
        await third.close()


async def test_media_policy_and_account_expiry(
    server: ServerInfo, admin: Admin, people: Callable[[str], Awaitable[Tracked]], unique: str
) -> None:
    user = await people("pmed")
    await unit_with(admin, f"MED{unique}", [user], {"media_allowed_types": ["image/*"], "media_max_bytes": 1000})
    refused, _ = await user.client.upload(io.BytesIO(b"plain text"), content_type="text/plain", filesize=10)
    assert isinstance(refused, UploadError) and refused.status_code == "M_FORBIDDEN", refused
    big, _ = await user.client.upload(io.BytesIO(b"\x89PNG" + b"0" * 2000), content_type="image/png", filesize=2004)
    assert isinstance(big, UploadError) and big.status_code == "M_TOO_LARGE", big
    small, _ = await user.client.upload(io.BytesIO(b"\x89PNG" + b"0" * 10), content_type="image/png", filesize=14)
    assert isinstance(small, UploadResponse)

    await admin.call(
        "POST", "/_synapse/admin/v1/account_validity/validity", {"user_id": user.user_id, "expiration_ts": 1000}
    )
    expired = await user.client.whoami()
    assert isinstance(expired, WhoamiError) and expired.status_code == "ORG_MATRIX_EXPIRED_ACCOUNT", expired
    await admin.call("POST", f"{ADMIN}/users/{user.user_id}/renew", {"days": 30})
    assert isinstance(await user.client.whoami(), WhoamiResponse)


async def _backdate(server: ServerInfo, event_ids: list[str]) -> None:
    """Make events 40 days old, directly in the server's database (a real client cannot wait that long)."""
    if server.database_url and server.database_url.startswith("postgres"):
        import asyncpg

        conn = await asyncpg.connect(server.database_url)
        try:
            await conn.execute("UPDATE events SET origin_server_ts = 1 WHERE event_id = ANY($1::text[])", event_ids)
        finally:
            await conn.close()
        return
    data_dir = server.data_dir
    assert data_dir is not None

    def update() -> None:
        db = sqlite3.connect(data_dir / "paigham.db", timeout=30)
        with db:
            db.executemany("UPDATE events SET origin_server_ts = 1 WHERE event_id = ?", [(e,) for e in event_ids])
        db.close()

    await asyncio.to_thread(update)


async def test_retention_purges_old_messages(
    server: ServerInfo, admin: Admin, people: Callable[[str], Awaitable[Tracked]], unique: str
) -> None:
    if server.engine == "external":
        pytest.skip("needs direct access to the server's database")
    user = await people("pret")
    await unit_with(admin, f"RET{unique}", [user], {"retention_days": 30})
    made = await user.client.room_create(name="old things")
    assert isinstance(made, RoomCreateResponse)
    old = []
    for i in range(3):
        r = await user.client.room_send(made.room_id, "m.room.message", {"msgtype": "m.text", "body": f"old {i}"})
        assert isinstance(r, RoomSendResponse)
        old.append(r.event_id)
    await user.client.room_send(made.room_id, "m.room.message", {"msgtype": "m.text", "body": "recent"})
    await _backdate(server, old)
    res = await admin.call("POST", f"{ADMIN}/retention/run")
    assert res["purged_events"] >= 3
    msgs = await user.client.room_messages(made.room_id, limit=50)
    assert isinstance(msgs, RoomMessagesResponse)
    bodies = [e.source["content"].get("body") for e in msgs.chunk if e.source.get("type") == "m.room.message"]
    assert bodies == ["recent"], bodies
