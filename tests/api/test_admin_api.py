"""The Synapse-compatible admin API subset: users, deactivation, devices, rooms, registration tokens."""

from __future__ import annotations

from tests.api.conftest import Harness, User

V1 = "/_synapse/admin/v1"
V2 = "/_synapse/admin/v2"


async def admin(hs: Harness, name: str = "boss") -> User:
    u = await hs.register(name)
    await hs.server.accounts.update_user(u.user_id, admin=True)
    return u


async def test_list_get_create_and_modify_users(hs: Harness) -> None:
    boss = await admin(hs)
    clerk = await hs.register("clerk")
    await hs.err(403, "M_FORBIDDEN", "GET", f"{V2}/users", clerk)
    res = await hs.ok("GET", f"{V2}/users", boss)
    assert res["total"] == 2 and [u["name"] for u in res["users"]] == [boss.user_id, clerk.user_id]
    assert res["users"][0]["admin"] is True and "next_token" not in res
    page = await hs.ok("GET", f"{V2}/users", boss, params={"limit": 1})
    assert page["next_token"] == "1" and len(page["users"]) == 1
    assert (await hs.ok("GET", f"{V2}/users", boss, params={"name": "cle"}))["total"] == 1
    await hs.err(400, "M_INVALID_PARAM", "GET", f"{V2}/users", boss, params={"order_by": "password"})

    r = await hs.request(
        "PUT", f"{V2}/users/@newbie:test.local", boss, json={"password": "first-pass", "displayname": "New Bie"}
    )
    assert r.status_code == 201 and r.json()["displayname"] == "New Bie"
    login = await hs.ok(
        "POST",
        "/_matrix/client/v3/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "newbie"},
            "password": "first-pass",
        },
    )
    newbie = User("@newbie:test.local", login["access_token"], login["device_id"], "first-pass")
    res = await hs.ok(
        "PUT",
        f"{V2}/users/@newbie:test.local",
        boss,
        json={"password": "second-pass", "displayname": "Newbie B.", "admin": True},
    )
    assert res["admin"] is True and res["displayname"] == "Newbie B."
    await hs.err(401, "M_UNKNOWN_TOKEN", "GET", "/_matrix/client/v3/account/whoami", newbie)  # logged out
    await hs.err(400, "M_INVALID_PARAM", "PUT", f"{V2}/users/@x:elsewhere.org", boss, json={})
    await hs.err(400, "M_INVALID_PARAM", "PUT", f"{V2}/users/not-a-user-id", boss, json={})
    await hs.err(400, "M_BAD_JSON", "PUT", f"{V2}/users/@newbie:test.local", boss, json={"admin": "yes"})
    await hs.err(400, "M_INVALID_PARAM", "PUT", f"{V2}/users/{boss.user_id}", boss, json={"admin": False})
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V2}/users/@ghost:test.local", boss)
    got = await hs.ok("GET", f"{V2}/users/{clerk.user_id}", boss)
    assert got["name"] == clerk.user_id and got["deactivated"] is False and got["locked"] is False
    kinds = [r["kind"] async for r in hs.server.audit.export()]
    assert "admin.create_user" in kinds and "admin.reset_password" in kinds and "admin.set_admin" in kinds


async def test_deactivation_logs_out_removes_from_rooms_and_can_erase(hs: Harness) -> None:
    boss = await admin(hs)
    victim = await hs.register("leaver")
    room = await hs.create_room(boss, preset="public_chat")
    await hs.ok("POST", f"/_matrix/client/v3/rooms/{room}/join", victim, json={})
    await hs.ok("POST", f"{V1}/deactivate/{victim.user_id}", boss, json={"erase": True})
    await hs.err(401, "M_UNKNOWN_TOKEN", "GET", "/_matrix/client/v3/sync", victim)
    members = await hs.ok("GET", f"/_matrix/client/v3/rooms/{room}/joined_members", boss)
    assert victim.user_id not in members["joined"]
    got = await hs.ok("GET", f"{V2}/users/{victim.user_id}", boss, params={"deactivated": "true"})
    assert got["deactivated"] is True and got["erased"] is True and got["displayname"] is None
    await hs.err(
        403,
        "M_FORBIDDEN",
        "POST",
        "/_matrix/client/v3/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "leaver"},
            "password": victim.password,
        },
    )
    assert (await hs.ok("GET", f"{V2}/users", boss))["total"] == 1
    assert (await hs.ok("GET", f"{V2}/users", boss, params={"deactivated": "true"}))["total"] == 2
    await hs.err(404, "M_NOT_FOUND", "POST", f"{V1}/deactivate/@ghost:test.local", boss, json={})
    # reactivation needs a new password
    await hs.err(400, "M_MISSING_PARAM", "PUT", f"{V2}/users/{victim.user_id}", boss, json={"deactivated": False})
    await hs.ok("PUT", f"{V2}/users/{victim.user_id}", boss, json={"deactivated": False, "password": "again-1"})
    await hs.ok(
        "POST",
        "/_matrix/client/v3/login",
        json={"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "leaver"}, "password": "again-1"},
    )


async def test_devices_list_and_delete(hs: Harness) -> None:
    boss = await admin(hs)
    user = await hs.register("phoneuser")
    second = await hs.server.auth.start_session(user.user_id, "TABLET", "Tablet")
    res = await hs.ok("GET", f"{V2}/users/{user.user_id}/devices", boss)
    assert res["total"] == 2 and {d["device_id"] for d in res["devices"]} == {user.device_id, "TABLET"}
    one = await hs.ok("GET", f"{V2}/users/{user.user_id}/devices/TABLET", boss)
    assert one["display_name"] == "Tablet" and one["user_id"] == user.user_id
    await hs.ok("DELETE", f"{V2}/users/{user.user_id}/devices/TABLET", boss)
    await hs.err(
        401,
        "M_UNKNOWN_TOKEN",
        "GET",
        "/_matrix/client/v3/account/whoami",
        headers={"Authorization": f"Bearer {second.access_token}"},
    )
    await hs.ok("GET", "/_matrix/client/v3/account/whoami", user)  # the other device still works
    await hs.err(404, "M_NOT_FOUND", "DELETE", f"{V2}/users/{user.user_id}/devices/TABLET", boss)
    await hs.ok("POST", f"{V2}/users/{user.user_id}/delete_devices", boss, json={"devices": [user.device_id]})
    await hs.err(401, "M_UNKNOWN_TOKEN", "GET", "/_matrix/client/v3/account/whoami", user)
    await hs.err(400, "M_BAD_JSON", "POST", f"{V2}/users/{user.user_id}/delete_devices", boss, json={"devices": 3})
    kinds = [(r["kind"], r["target"]) async for r in hs.server.audit.export()]
    assert ("admin.delete_devices", user.user_id) in kinds and ("device.removed", user.user_id) in kinds


async def test_rooms_list_details_and_delete(hs: Harness) -> None:
    boss = await admin(hs)
    alice = await hs.register("alice")
    bob = await hs.register("bob")
    r1 = await hs.create_room(alice, name="Budget", preset="public_chat", room_alias_name="budget")
    r2 = await hs.create_room(bob, name="Archive", preset="public_chat")
    await hs.ok("POST", f"/_matrix/client/v3/rooms/{r1}/join", bob, json={})
    res = await hs.ok("GET", f"{V1}/rooms", boss)
    assert res["total_rooms"] == 2 and [r["name"] for r in res["rooms"]] == ["Archive", "Budget"]
    budget = res["rooms"][1]
    assert budget["joined_members"] == 2 and budget["canonical_alias"] == "#budget:test.local"
    assert budget["join_rules"] == "public" and budget["creator"] == alice.user_id and budget["public"] is False
    by_members = await hs.ok("GET", f"{V1}/rooms", boss, params={"order_by": "joined_members", "dir": "b"})
    assert by_members["rooms"][0]["room_id"] == r1
    assert (await hs.ok("GET", f"{V1}/rooms", boss, params={"search_term": "arch"}))["total_rooms"] == 1
    page = await hs.ok("GET", f"{V1}/rooms", boss, params={"limit": 1})
    assert page["next_batch"] == 1 and len(page["rooms"]) == 1
    assert (await hs.ok("GET", f"{V1}/rooms/{r2}", boss))["name"] == "Archive"
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V1}/rooms/!nope:test.local", boss)
    await hs.err(403, "M_FORBIDDEN", "DELETE", f"{V1}/rooms/{r1}", alice, json={})

    res = await hs.ok("DELETE", f"{V1}/rooms/{r1}", boss, json={"block": True, "purge": True})
    assert sorted(res["kicked_users"]) == sorted([alice.user_id, bob.user_id])
    assert res["local_aliases"] == ["#budget:test.local"]
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V1}/rooms/{r1}", boss)
    await hs.err(404, "M_NOT_FOUND", "POST", f"/_matrix/client/v3/join/{r1}", bob, json={})
    sync = await hs.sync(bob)
    assert r1 not in sync["rooms"].get("join", {})
    # without purge the room stays, empty and blocked
    res = await hs.ok("DELETE", f"{V1}/rooms/{r2}", boss, json={"block": True, "purge": False})
    assert res["kicked_users"] == [bob.user_id]
    assert (await hs.ok("GET", f"{V1}/rooms/{r2}", boss))["blocked"] is True
    err = await hs.err(403, "M_FORBIDDEN", "POST", f"/_matrix/client/v3/rooms/{r2}/join", bob, json={})
    assert "blocked" in err["error"]
    await hs.err(400, "M_INVALID_PARAM", "DELETE", f"{V1}/rooms/{r2}", boss, json={"new_room_user_id": boss.user_id})


async def test_registration_tokens(hs: Harness) -> None:
    boss = await admin(hs)
    made = await hs.ok("POST", f"{V1}/registration_tokens/new", boss, json={"uses_allowed": 2, "length": 8})
    assert len(made["token"]) == 8 and made["uses_allowed"] == 2 and made["completed"] == 0
    named = await hs.ok("POST", f"{V1}/registration_tokens/new", boss, json={"token": "gov-2025"})
    assert named["token"] == "gov-2025" and named["uses_allowed"] is None
    await hs.err(400, "M_INVALID_PARAM", "POST", f"{V1}/registration_tokens/new", boss, json={"token": "gov-2025"})
    await hs.err(400, "M_INVALID_PARAM", "POST", f"{V1}/registration_tokens/new", boss, json={"token": "sp ace"})
    await hs.err(400, "M_INVALID_PARAM", "POST", f"{V1}/registration_tokens/new", boss, json={"expiry_time": 5})
    await hs.err(400, "M_INVALID_PARAM", "POST", f"{V1}/registration_tokens/new", boss, json={"uses_allowed": -1})
    listed = await hs.ok("GET", f"{V1}/registration_tokens", boss)
    assert {t["token"] for t in listed["registration_tokens"]} == {made["token"], "gov-2025"}
    upd = await hs.ok("PUT", f"{V1}/registration_tokens/gov-2025", boss, json={"uses_allowed": 0})
    assert upd["uses_allowed"] == 0
    invalid = await hs.ok("GET", f"{V1}/registration_tokens", boss, params={"valid": "false"})
    assert [t["token"] for t in invalid["registration_tokens"]] == ["gov-2025"]
    assert (
        await hs.ok(
            "GET", "/_matrix/client/v1/register/m.login.registration_token/validity", params={"token": "gov-2025"}
        )
    )["valid"] is False
    await hs.ok("DELETE", f"{V1}/registration_tokens/gov-2025", boss)
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V1}/registration_tokens/gov-2025", boss)
    await hs.err(404, "M_NOT_FOUND", "PUT", f"{V1}/registration_tokens/gov-2025", boss, json={})
    await hs.err(404, "M_NOT_FOUND", "DELETE", f"{V1}/registration_tokens/gov-2025", boss)
