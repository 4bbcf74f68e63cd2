"""Discovery, login, registration (token-gated UIA), tokens, devices, password, deactivation."""

from __future__ import annotations

import pytest

from paigham.services.registration import shared_secret_mac
from tests.api.conftest import Harness

V3 = "/_matrix/client/v3"


async def test_versions_and_well_known(hs: Harness) -> None:
    body = await hs.ok("GET", "/_matrix/client/versions")
    assert "v1.11" in body["versions"] and "v1.16" in body["versions"]
    wk = await hs.ok("GET", "/.well-known/matrix/client")
    assert wk["m.homeserver"]["base_url"]


async def test_unknown_endpoint_and_method(hs: Harness) -> None:
    await hs.err(404, "M_UNRECOGNIZED", "GET", "/_matrix/client/v3/nonexistent")
    await hs.err(405, "M_UNRECOGNIZED", "DELETE", "/_matrix/client/versions")


async def test_cors_preflight(hs: Harness) -> None:
    r = await hs.http.options(
        f"{V3}/sync",
        headers={
            "Origin": "https://element.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "Authorization",
        },
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    r = await hs.http.get("/_matrix/client/versions", headers={"Origin": "https://element.example"})
    assert r.headers["access-control-allow-origin"] == "*"


async def test_login_flow_and_whoami(hs: Harness) -> None:
    await hs.server.auth.create_user("alice", "pw-alice")
    flows = await hs.ok("GET", f"{V3}/login")
    assert {"type": "m.login.password"} in flows["flows"]
    body = await hs.ok(
        "POST",
        f"{V3}/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "alice"},
            "password": "pw-alice",
            "initial_device_display_name": "Phone",
        },
    )
    assert body["user_id"] == "@alice:test.local"
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    who = (await hs.http.get(f"{V3}/account/whoami", headers=headers)).json()
    assert who == {"user_id": "@alice:test.local", "device_id": body["device_id"], "is_guest": False}
    devices = (await hs.http.get(f"{V3}/devices", headers=headers)).json()["devices"]
    assert devices[0]["display_name"] == "Phone"


async def test_login_reuses_device_id_and_invalidates_old_token(hs: Harness) -> None:
    await hs.server.auth.create_user("bob", "pw")
    login = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "@bob:test.local"},
        "password": "pw",
        "device_id": "DEV1",
    }
    first = await hs.ok("POST", f"{V3}/login", json=login)
    second = await hs.ok("POST", f"{V3}/login", json=login)
    assert first["device_id"] == second["device_id"] == "DEV1"
    await hs.err(
        401,
        "M_UNKNOWN_TOKEN",
        "GET",
        f"{V3}/account/whoami",
        headers={"Authorization": f"Bearer {first['access_token']}"},
    )


@pytest.mark.parametrize(
    "body,status,code",
    [
        (
            {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "carol"}, "password": "bad"},
            403,
            "M_FORBIDDEN",
        ),
        (
            {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "nobody"}, "password": "x"},
            403,
            "M_FORBIDDEN",
        ),
        ({"type": "m.login.token", "token": "x"}, 400, "M_UNKNOWN"),
        ({"type": "m.login.password", "password": 5}, 400, "M_BAD_JSON"),
        ({"identifier": {}}, 400, "M_BAD_JSON"),
    ],
)
async def test_login_errors(hs: Harness, body: dict[str, object], status: int, code: str) -> None:
    await hs.server.auth.create_user("carol", "good")
    await hs.err(status, code, "POST", f"{V3}/login", json=body)


async def test_malformed_json(hs: Harness) -> None:
    await hs.err(400, "M_NOT_JSON", "POST", f"{V3}/login", content=b"{not json")
    await hs.err(400, "M_BAD_JSON", "POST", f"{V3}/login", content=b"[1,2]")
    await hs.err(413, "M_TOO_LARGE", "POST", f"{V3}/login", content=b"{" + b" " * (2 * 1024 * 1024) + b"}")


async def test_missing_and_bad_token(hs: Harness) -> None:
    await hs.err(401, "M_MISSING_TOKEN", "GET", f"{V3}/account/whoami")
    await hs.err(401, "M_UNKNOWN_TOKEN", "GET", f"{V3}/account/whoami", headers={"Authorization": "Bearer nope"})


async def test_register_closed_without_token(hs: Harness) -> None:
    r = await hs.request("POST", f"{V3}/register", json={"username": "dave", "password": "pw"})
    assert r.status_code == 401
    flows = r.json()["flows"]
    assert flows == [{"stages": ["m.login.registration_token", "m.login.dummy"]}]
    session = r.json()["session"]
    r = await hs.request(
        "POST",
        f"{V3}/register",
        json={"username": "dave", "password": "pw", "auth": {"type": "m.login.dummy", "session": session}},
    )
    assert r.status_code == 401 and "m.login.registration_token" not in r.json()["completed"]
    r = await hs.request(
        "POST",
        f"{V3}/register",
        json={"username": "dave", "password": "pw", "auth": {"type": "m.login.password", "session": session}},
    )
    assert r.status_code == 401 and r.json()["errcode"] == "M_UNRECOGNIZED"
    assert await hs.server.accounts.get_user("@dave:test.local") is None


async def test_register_with_registration_token(hs: Harness) -> None:
    token = await hs.server.auth.create_registration_token(uses=1)
    valid = await hs.ok(
        "GET", "/_matrix/client/v1/register/m.login.registration_token/validity", params={"token": token}
    )
    assert valid == {"valid": True}
    r = await hs.request("POST", f"{V3}/register", json={"username": "Erin", "password": "pw"})
    session = r.json()["session"]
    await hs.err(
        401,
        "M_UNAUTHORIZED",
        "POST",
        f"{V3}/register",
        json={
            "username": "erin",
            "password": "pw",
            "auth": {"type": "m.login.registration_token", "token": "wrong", "session": session},
        },
    )
    r = await hs.request(
        "POST",
        f"{V3}/register",
        json={
            "username": "erin",
            "password": "pw",
            "initial_device_display_name": "Laptop",
            "auth": {"type": "m.login.registration_token", "token": token, "session": session},
        },
    )
    assert r.status_code == 401 and r.json()["completed"] == ["m.login.registration_token"]
    body = await hs.ok(
        "POST",
        f"{V3}/register",
        json={
            "username": "erin",
            "password": "pw",
            "initial_device_display_name": "Laptop",
            "auth": {"type": "m.login.dummy", "session": session},
        },
    )
    assert body["user_id"] == "@erin:test.local" and body["access_token"]
    # The single use is spent.
    assert (
        await hs.ok("GET", "/_matrix/client/v1/register/m.login.registration_token/validity", params={"token": token})
    ) == {"valid": False}
    await hs.err(400, "M_USER_IN_USE", "GET", f"{V3}/register/available", params={"username": "erin"})
    assert (await hs.ok("GET", f"{V3}/register/available", params={"username": "frank"}))["available"]
    await hs.err(400, "M_INVALID_USERNAME", "GET", f"{V3}/register/available", params={"username": "bad name"})


async def test_register_guest_forbidden(hs: Harness) -> None:
    await hs.err(403, "M_GUEST_ACCESS_FORBIDDEN", "POST", f"{V3}/register", params={"kind": "guest"}, json={})


async def test_shared_secret_registration(hs: Harness) -> None:
    secret = hs.server.secrets.registration_shared_secret
    nonce = (await hs.ok("GET", "/_synapse/admin/v1/register"))["nonce"]
    mac = shared_secret_mac(secret, nonce, "gita", "pw", True)
    body = await hs.ok(
        "POST",
        "/_synapse/admin/v1/register",
        json={"nonce": nonce, "username": "gita", "password": "pw", "admin": True, "mac": mac},
    )
    assert body["user_id"] == "@gita:test.local"
    user = await hs.server.accounts.get_user("@gita:test.local")
    assert user is not None and user.admin
    # A nonce is single use; a wrong MAC is refused.
    await hs.err(
        400,
        "M_UNKNOWN",
        "POST",
        "/_synapse/admin/v1/register",
        json={"nonce": nonce, "username": "x", "password": "pw", "mac": mac},
    )
    nonce2 = (await hs.ok("GET", "/_synapse/admin/v1/register"))["nonce"]
    await hs.err(
        403,
        "M_FORBIDDEN",
        "POST",
        "/_synapse/admin/v1/register",
        json={"nonce": nonce2, "username": "hari", "password": "pw", "mac": "00" * 20},
    )


async def test_logout_and_logout_all(hs: Harness) -> None:
    u = await hs.register("ivan")
    other = await hs.server.auth.start_session(u.user_id, None, None)
    await hs.ok("POST", f"{V3}/logout", u)
    await hs.err(401, "M_UNKNOWN_TOKEN", "GET", f"{V3}/account/whoami", u)
    devices = await hs.server.accounts.get_devices(u.user_id)
    assert [d.device_id for d in devices] == [other.device_id]
    headers = {"Authorization": f"Bearer {other.access_token}"}
    assert (await hs.http.post(f"{V3}/logout/all", headers=headers)).status_code == 200
    assert await hs.server.accounts.get_devices(u.user_id) == []


async def test_refresh_tokens(hs: Harness) -> None:
    await hs.server.auth.create_user("jaya", "pw")
    body = await hs.ok(
        "POST",
        f"{V3}/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "jaya"},
            "password": "pw",
            "refresh_token": True,
        },
    )
    assert body["refresh_token"] and body["expires_in_ms"] > 0
    new = await hs.ok("POST", f"{V3}/refresh", json={"refresh_token": body["refresh_token"]})
    assert new["access_token"] != body["access_token"]
    await hs.err(401, "M_UNKNOWN_TOKEN", "POST", f"{V3}/refresh", json={"refresh_token": body["refresh_token"]})
    await hs.ok("GET", f"{V3}/account/whoami", headers={"Authorization": f"Bearer {new['access_token']}"})


async def test_devices_update_and_delete_with_uia(hs: Harness) -> None:
    u = await hs.register("kiran", "pw-k")
    extra = await hs.server.auth.start_session(u.user_id, "OLD", "Old phone")
    await hs.ok("PUT", f"{V3}/devices/OLD", u, json={"display_name": "Retired"})
    assert (await hs.ok("GET", f"{V3}/devices/OLD", u))["display_name"] == "Retired"
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/devices/NOPE", u)
    r = await hs.request("DELETE", f"{V3}/devices/OLD", u, json={})
    assert r.status_code == 401 and r.json()["flows"] == [{"stages": ["m.login.password"]}]
    session = r.json()["session"]
    await hs.err(
        401,
        "M_FORBIDDEN",
        "DELETE",
        f"{V3}/devices/OLD",
        u,
        json={
            "auth": {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": u.user_id},
                "password": "wrong",
                "session": session,
            }
        },
    )
    await hs.ok(
        "DELETE",
        f"{V3}/devices/OLD",
        u,
        json={
            "auth": {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": u.user_id},
                "password": "pw-k",
                "session": session,
            }
        },
    )
    await hs.err(
        401, "M_UNKNOWN_TOKEN", "GET", f"{V3}/account/whoami", headers={"Authorization": f"Bearer {extra.access_token}"}
    )


async def test_password_change_logs_out_other_devices(hs: Harness) -> None:
    u = await hs.register("lata", "old-pw")
    other = await hs.server.auth.start_session(u.user_id, None, None)
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": u.user_id}, "password": "old-pw"}
    await hs.ok("POST", f"{V3}/account/password", u, json={"new_password": "new-pw", "auth": auth})
    await hs.ok("GET", f"{V3}/account/whoami", u)
    await hs.err(
        401, "M_UNKNOWN_TOKEN", "GET", f"{V3}/account/whoami", headers={"Authorization": f"Bearer {other.access_token}"}
    )
    assert await hs.server.auth.check_password(u.user_id, "new-pw")


async def test_deactivate_account(hs: Harness) -> None:
    u = await hs.register("mohan", "pw")
    room = await hs.create_room(u)
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": u.user_id}, "password": "pw"}
    await hs.ok("POST", f"{V3}/account/deactivate", u, json={"auth": auth})
    await hs.err(401, "M_UNKNOWN_TOKEN", "GET", f"{V3}/account/whoami", u)
    assert (await hs.server.events.membership(u.user_id, room))[0] == "leave"  # type: ignore[index]
    await hs.err(
        403,
        "M_FORBIDDEN",
        "POST",
        f"{V3}/login",
        json={"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "mohan"}, "password": "pw"},
    )


async def test_capabilities(hs: Harness) -> None:
    u = await hs.register("nila")
    caps = (await hs.ok("GET", f"{V3}/capabilities", u))["capabilities"]
    assert set(caps["m.room_versions"]["available"]) == {"10", "11", "12"}
    assert caps["m.change_password"]["enabled"] is True


async def test_sign_in_as_an_unknown_or_deactivated_user_does_a_real_password_check(
    hs: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Timing must not tell which usernames exist (issue 14 #7): every password sign-in runs one Argon2
    verification, whether the account exists, is deactivated or not (on 81fc255 only real users did)."""
    from paigham.services import passwords

    real = passwords._hasher
    checked: list[str] = []

    class Counting:
        def hash(self, password: str) -> str:
            return real.hash(password)

        def verify(self, stored: str, password: str) -> bool:
            checked.append(password)
            return real.verify(stored, password)

    monkeypatch.setattr(passwords, "_hasher", Counting())
    await hs.server.auth.create_user("carol", "pw-carol")
    await hs.server.auth.create_user("dave", "pw-dave")
    await hs.server.auth.deactivate("@dave:test.local")

    def login(user: str, password: str) -> dict[str, object]:
        return {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password}

    for user in ("nobody", "dave", "carol"):
        checked.clear()
        await hs.err(403, "M_FORBIDDEN", "POST", f"{V3}/login", json=login(user, "guess"))
        assert checked == ["guess"], user
