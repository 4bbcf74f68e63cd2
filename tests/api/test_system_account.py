"""The server's own account (`org_system_localpart`, default `paigham`: it owns every unit space and
announcements room and sends server notices) cannot be registered by anyone, by any path, and an
account of that name the server did not create is never adopted (issue 14 #2; on 81fc255 a
registration-token holder who registered `paigham` first became the owner of every unit room)."""

from __future__ import annotations

import json

import pytest

from paigham.errors import MatrixError
from paigham.org.importer import read_bytes
from tests.api.conftest import Harness, User

V3 = "/_matrix/client/v3"
ORG = {
    "units": [{"unit_id": "MOF", "kind": "ministry", "names": {"en": "Finance"}}],
    "officials": [{"employee_id": "E1", "user_id": "anita", "names": {"en": "Anita Rao"}, "unit_id": "MOF"}],
}


async def admin(hs: Harness) -> User:
    user_id = await hs.server.auth.create_user("root", "pw-root", admin=True)
    s = await hs.server.auth.start_session(user_id, None, None)
    return User(user_id, s.access_token, s.device_id, "pw-root")


async def test_no_registration_path_hands_out_the_system_localpart(hs: Harness) -> None:
    await hs.err(400, "M_EXCLUSIVE", "GET", f"{V3}/register/available", params={"username": "paigham"})
    await hs.err(400, "M_EXCLUSIVE", "GET", f"{V3}/register/available", params={"username": "PAIGHAM"})
    root = await admin(hs)
    await hs.err(
        400, "M_EXCLUSIVE", "PUT", "/_synapse/admin/v2/users/@paigham:test.local", root, json={"password": "pw"}
    )
    with pytest.raises(MatrixError) as refused:  # what `paigham user create paigham` calls
        await hs.server.auth.create_user("paigham", "pw", admin=True)
    assert refused.value.errcode == "M_EXCLUSIVE"
    assert await hs.server.accounts.get_user("@paigham:test.local") is None
    # The server itself still creates it, as a bot without a password, when the organisation is imported.
    plan = await hs.server.org.import_rows(read_bytes(json.dumps(ORG).encode(), "org.json"), dry_run=False, actor=None)
    assert plan.ok, plan.errors
    bot = await hs.server.accounts.get_user("@paigham:test.local")
    assert bot is not None and bot.password_hash is None and not bot.admin
    assert await hs.server.accounts.user_type("@paigham:test.local") == "bot"
    # The admin API says so, in one account's answer as in the listing.
    one = await hs.ok("GET", "/_synapse/admin/v2/users/@paigham:test.local", root)
    assert one["user_type"] == "bot"
    listed = await hs.ok("GET", "/_synapse/admin/v2/users", root, params={"name": "paigham"})
    assert [u["user_type"] for u in listed["users"] if u["name"] == "@paigham:test.local"] == ["bot"]
    person = await hs.ok("GET", f"/_synapse/admin/v2/users/{root.user_id}", root)
    assert person["user_type"] is None


async def test_an_account_the_server_did_not_create_is_never_adopted(hs: Harness) -> None:
    # As registered before the name was reserved: a person's account with a password.
    await hs.server.accounts.create_user("@paigham:test.local", "x", admin=False, displayname="Mallory", now=0)
    with pytest.raises(MatrixError) as refused:
        await hs.server.org.import_rows(read_bytes(json.dumps(ORG).encode(), "org.json"), dry_run=False, actor=None)
    assert refused.value.errcode == "M_EXCLUSIVE"
    assert "not created by the server" in refused.value.error
    unit = await hs.server.org.store.unit("MOF")
    assert unit is None or unit.space_id is None  # no unit room is owned by that account


async def test_the_server_refuses_to_start_over_a_taken_system_name(hs: Harness) -> None:
    await hs.server.accounts.create_user("@paigham:test.local", "x", admin=False, displayname="Mallory", now=0)
    from paigham.app import Server

    again = Server(hs.server.config)
    with pytest.raises(MatrixError, match="not created by the server"):
        await again.start()
    await again.db.close()
