"""Policies, global and per unit: each one enforced, and the policy admin API."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import update

from paigham.app import Server
from paigham.config import Config
from paigham.org import enforce
from paigham.org.importer import read_bytes
from paigham.storage.schema import events
from tests.api.conftest import Harness, User

V3 = "/_matrix/client/v3"
ADMIN = "/_paigham/admin/v1"
ORG = {
    "units": [
        {"unit_id": "MOF", "kind": "ministry", "names": {"en": "Finance"}},
        {"unit_id": "MOF-BUD", "parent_id": "MOF", "kind": "department", "names": {"en": "Budget"}},
        {"unit_id": "MHA", "kind": "ministry", "names": {"en": "Home"}},
    ],
    "officials": [
        {"employee_id": "E1", "user_id": "fin1", "names": {"en": "Fin One"}, "unit_id": "MOF-BUD"},
        {"employee_id": "E2", "user_id": "fin2", "names": {"en": "Fin Two"}, "unit_id": "MOF"},
        {"employee_id": "E3", "user_id": "home1", "names": {"en": "Home One"}, "unit_id": "MHA"},
    ],
}


async def setup_org(hs: Harness) -> tuple[User, dict[str, User]]:
    plan = await hs.server.org.import_rows(read_bytes(json.dumps(ORG).encode(), "org.json"), dry_run=False, actor=None)
    assert plan.ok, plan.errors
    boss = await hs.register("boss")
    await hs.server.accounts.update_user(boss.user_id, admin=True)
    people = {}
    for name in ("fin1", "fin2", "home1"):
        user_id = f"@{name}:test.local"
        await hs.server.auth.set_password(user_id, f"pw-{name}")
        s = await hs.server.auth.start_session(user_id, None, None)
        people[name] = User(user_id, s.access_token, s.device_id, f"pw-{name}")
    return boss, people


async def state(hs: Harness, user: User, room: str, type_: str) -> int:
    r = await hs.request("GET", f"{V3}/rooms/{room}/state/{type_}", user)
    return r.status_code


async def test_policy_api_inheritance_and_validation(hs: Harness) -> None:
    boss, people = await setup_org(hs)
    glob = await hs.ok("PUT", f"{ADMIN}/policies/global", boss, json={"retention_days": 365})
    assert glob["retention_days"] == 365 and glob["require_encryption"] is True
    await hs.ok("PUT", f"{ADMIN}/policies/units/MOF", boss, json={"max_devices": 3, "retention_days": 30})
    res = await hs.ok("PUT", f"{ADMIN}/policies/units/MOF-BUD", boss, json={"max_devices": 5})
    assert res["effective"]["max_devices"] == 5 and res["effective"]["retention_days"] == 30
    eff = await hs.ok("GET", f"{ADMIN}/policies/users/{people['fin2'].user_id}", boss)
    assert eff["unit_id"] == "MOF" and eff["policy"]["max_devices"] == 3
    eff = await hs.ok("GET", f"{ADMIN}/policies/users/{people['home1'].user_id}", boss)
    assert eff["policy"]["max_devices"] == 0 and eff["policy"]["retention_days"] == 365
    shown = await hs.ok("GET", f"{ADMIN}/policies", boss)
    assert shown["units"] == {"MOF": {"max_devices": 3, "retention_days": 30}, "MOF-BUD": {"max_devices": 5}}
    err = await hs.err(400, "M_INVALID_PARAM", "PUT", f"{ADMIN}/policies/global", boss, json={"retention": 3})
    assert "unknown policy setting(s) retention" in err["error"]
    await hs.err(400, "M_INVALID_PARAM", "PUT", f"{ADMIN}/policies/global", boss, json={"max_devices": -1})
    await hs.err(400, "M_INVALID_PARAM", "PUT", f"{ADMIN}/policies/global", boss, json={"require_encryption": 1})
    await hs.err(
        400, "M_INVALID_PARAM", "PUT", f"{ADMIN}/policies/global", boss, json={"media_allowed_types": ["not a type"]}
    )
    await hs.err(404, "M_NOT_FOUND", "PUT", f"{ADMIN}/policies/units/NOPE", boss, json={})
    await hs.err(403, "M_FORBIDDEN", "PUT", f"{ADMIN}/policies/global", people["fin1"], json={})
    await hs.ok("DELETE", f"{ADMIN}/policies/units/MOF-BUD", boss)
    eff = await hs.ok("GET", f"{ADMIN}/policies/users/{people['fin1'].user_id}", boss)
    assert eff["policy"]["max_devices"] == 3
    changes = [(r["target"], r["details"]) async for r in hs.server.audit.export(kinds=["policy.changed"])]
    assert changes[:2] == [("global", {"retention_days": 365}), ("unit:MOF", {"max_devices": 3, "retention_days": 30})]


def test_bad_policy_in_config_is_refused(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="policy_units"):
        Server(Config(data_dir=str(tmp_path), policy_units={"MOF": {"max_devices": "many"}}, create_admin=False))


async def test_encryption_required_for_private_rooms_and_dms(hs: Harness) -> None:
    boss, people = await setup_org(hs)
    fin1 = people["fin1"]
    private = await hs.create_room(fin1)
    assert await state(hs, fin1, private, "m.room.encryption") == 200
    dm = await hs.create_room(fin1, is_direct=True, invite=[people["fin2"].user_id], preset="trusted_private_chat")
    assert await state(hs, fin1, dm, "m.room.encryption") == 200
    sneaky = await hs.create_room(
        fin1,
        preset="public_chat",
        initial_state=[{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "invite"}}],
    )
    assert await state(hs, fin1, sneaky, "m.room.encryption") == 200
    public = await hs.create_room(fin1, preset="public_chat")
    assert await state(hs, fin1, public, "m.room.encryption") == 404
    err = await hs.err(
        403, "M_FORBIDDEN", "PUT", f"{V3}/rooms/{public}/state/m.room.join_rules", fin1, json={"join_rule": "invite"}
    )
    assert "encrypted" in err["error"]
    await hs.ok("PUT", f"{ADMIN}/policies/units/MOF", boss, json={"require_encryption": False})
    plain = await hs.create_room(fin1)
    assert await state(hs, fin1, plain, "m.room.encryption") == 404  # this harness has encryption_by_default off


async def test_retention_purges_old_events(hs: Harness) -> None:
    boss, people = await setup_org(hs)
    fin1 = people["fin1"]
    room = await hs.create_room(fin1, name="Old budget")
    old = [await hs.send(fin1, room, f"old {i}") for i in range(3)]
    async with hs.server.db.write() as conn:  # these were sent 40 days ago
        await conn.execute(update(events).where(events.c.event_id.in_(old)).values(origin_server_ts=1))
    recent = await hs.send(fin1, room, "recent")
    other = await hs.create_room(people["home1"], name="Home")
    home_old = await hs.send(people["home1"], other, "home old")
    async with hs.server.db.write() as conn:
        await conn.execute(update(events).where(events.c.event_id == home_old).values(origin_server_ts=1))
    await hs.ok("PUT", f"{ADMIN}/policies/units/MOF", boss, json={"retention_days": 30})
    res = await hs.ok("POST", f"{ADMIN}/retention/run", boss)
    assert res == {"purged_events": 3, "rooms": 1}
    msgs = await hs.ok("GET", f"{V3}/rooms/{room}/messages", fin1, params={"dir": "b", "limit": 50})
    bodies = [e["content"].get("body") for e in msgs["chunk"] if e["type"] == "m.room.message"]
    assert bodies == ["recent"]
    assert (await hs.ok("GET", f"{V3}/rooms/{room}/state/m.room.name", fin1))["name"] == "Old budget"
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/rooms/{room}/event/{old[0]}", fin1)
    await hs.ok("GET", f"{V3}/rooms/{room}/event/{recent}", fin1)
    await hs.ok("GET", f"{V3}/rooms/{other}/event/{home_old}", people["home1"])  # no retention for Home
    await hs.send(fin1, room, "still works")
    assert [r["details"] async for r in hs.server.audit.export(kinds=["retention.purged"])] == [
        {"events": 3, "rooms": 1}
    ]


async def test_media_types_and_size(hs: Harness) -> None:
    boss, people = await setup_org(hs)
    fin1, home1 = people["fin1"], people["home1"]
    await hs.ok(
        "PUT", f"{ADMIN}/policies/units/MOF", boss, json={"media_allowed_types": ["image/*"], "media_max_bytes": 100}
    )
    up = "/_matrix/media/v3/upload"
    await hs.err(403, "M_FORBIDDEN", "POST", up, fin1, content=b"hello", headers={"Content-Type": "text/plain"})
    await hs.err(
        413, "M_TOO_LARGE", "POST", up, fin1, content=b"\x89PNG" + b"0" * 200, headers={"Content-Type": "image/png"}
    )
    ok = await hs.ok(
        "POST",
        up,
        fin1,
        content=b"\x89PNG" + b"0" * 20,
        headers={"Content-Type": "image/png"},
        params={"filename": "chart.png"},
    )
    assert ok["content_uri"].startswith("mxc://")
    await hs.ok("POST", up, home1, content=b"hello", headers={"Content-Type": "text/plain"})  # other ministry
    recs = [r async for r in hs.server.audit.export(kinds=["media.uploaded"])]
    assert [(r["actor"], r["details"]["content_type"], r["details"]["size"]) for r in recs] == [
        (fin1.user_id, "image/png", 24),
        (home1.user_id, "text/plain", 5),
    ]
    assert recs[0]["details"]["filename"] == "chart.png" and "hello" not in json.dumps(recs)


async def test_invites_outside_the_ministry(hs: Harness) -> None:
    boss, people = await setup_org(hs)
    fin1 = people["fin1"]
    room = await hs.create_room(fin1)
    await hs.ok("POST", f"{V3}/rooms/{room}/invite", fin1, json={"user_id": people["home1"].user_id})
    await hs.ok("PUT", f"{ADMIN}/policies/units/MOF", boss, json={"invite_outside_ministry": False})
    room2 = await hs.create_room(fin1)
    err = await hs.err(
        403, "M_FORBIDDEN", "POST", f"{V3}/rooms/{room2}/invite", fin1, json={"user_id": people["home1"].user_id}
    )
    assert "outside your ministry" in err["error"]
    await hs.ok("POST", f"{V3}/rooms/{room2}/invite", fin1, json={"user_id": people["fin2"].user_id})  # same one
    await hs.ok("POST", f"{V3}/rooms/{room2}/invite", fin1, json={"user_id": boss.user_id})  # an admin
    await hs.err(403, "M_FORBIDDEN", "POST", f"{V3}/createRoom", fin1, json={"invite": [people["home1"].user_id]})
    # the other ministry has no such policy
    room3 = await hs.create_room(people["home1"])
    await hs.ok("POST", f"{V3}/rooms/{room3}/invite", people["home1"], json={"user_id": fin1.user_id})


async def test_account_expiry_and_renewal(hs: Harness) -> None:
    boss, people = await setup_org(hs)
    fin1, fin2 = people["fin1"], people["fin2"]
    await hs.ok("GET", f"{V3}/account/whoami", fin1)
    await hs.ok(
        "POST",
        "/_synapse/admin/v1/account_validity/validity",
        boss,
        json={"user_id": fin1.user_id, "expiration_ts": 1000},
    )
    err = await hs.err(403, "ORG_MATRIX_EXPIRED_ACCOUNT", "GET", f"{V3}/account/whoami", fin1)
    assert "expired" in err["error"]
    res = await hs.ok("POST", f"{ADMIN}/users/{fin1.user_id}/renew", boss, json={"days": 30})
    assert res["expiration_ts"] > 0
    await hs.ok("GET", f"{V3}/account/whoami", fin1)
    # the validity period: a new deadline for each account; renewing moves it
    await hs.ok("PUT", f"{ADMIN}/policies/units/MOF", boss, json={"account_validity_days": 90})
    eff = await hs.ok("GET", f"{ADMIN}/policies/users/{fin2.user_id}", boss)
    assert eff["expires_ts"] > 80 * 86_400_000
    await hs.err(400, "M_INVALID_PARAM", "POST", f"{ADMIN}/users/{fin1.user_id}/renew", boss, json={"until": "soon"})
    await hs.err(404, "M_NOT_FOUND", "POST", f"{ADMIN}/users/@ghost:test.local/renew", boss, json={})


async def test_expiry_checks_of_users_first_seen_together_do_not_read_again_together(
    hs: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each user's cached expiry lives a random 50-100 % of EXPIRY_CACHE_S: the requests of users who
    started together (every client after a restart) must not all read their expiry in one instant
    every 10 s (in the benchmark that burst held every sender up for ~0.7 s)."""
    boss, people = await setup_org(hs)
    enforcer = hs.server.enforcer
    users = [f"@u{i}:test.local" for i in range(40)] + [p.user_id for p in people.values()]
    clock = [1000.0]
    monkeypatch.setattr(enforce, "monotonic", lambda: clock[0])
    reads: list[str] = []
    read = enforcer.expires_at

    async def counted(user_id: str) -> int | None:
        reads.append(user_id)
        return await read(user_id)

    monkeypatch.setattr(enforcer, "expires_at", counted)

    async def check_all() -> int:
        before = len(reads)
        for u in users:
            await enforcer.check_expiry(u)
        return len(reads) - before

    assert await check_all() == len(users)  # first seen: each read once
    clock[0] += enforce.EXPIRY_CACHE_S * 0.49
    assert await check_all() == 0  # all still fresh
    clock[0] = 1000.0 + enforce.EXPIRY_CACHE_S * 0.75
    spread = await check_all()
    assert 0 < spread < len(users)  # some stale, not all at once
    clock[0] = 1000.0 + enforce.EXPIRY_CACHE_S * 1.001
    assert spread + await check_all() == len(users)  # by the full period every one was read again, once
    # an expiry set through the admin API replaces the cached one at once (the cache is not waited out)
    await hs.ok(
        "POST",
        "/_synapse/admin/v1/account_validity/validity",
        boss,
        json={"user_id": people["fin1"].user_id, "expiration_ts": 1000},
    )
    await hs.err(403, "ORG_MATRIX_EXPIRED_ACCOUNT", "GET", f"{V3}/account/whoami", people["fin1"])


async def test_requests_finding_the_policies_stale_together_reload_them_once(
    hs: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, people = await setup_org(hs)
    policies = hs.server.policies
    loads: list[int] = []
    load = policies.store.all

    async def counted() -> Any:
        loads.append(1)
        await asyncio.sleep(0.01)  # a read in flight while the others arrive
        return await load()

    monkeypatch.setattr(policies.store, "all", counted)
    policies.invalidate()
    found = await asyncio.gather(*(policies.for_user(p.user_id) for p in people.values() for _ in range(5)))
    assert len(loads) == 1
    assert all(f == found[0] for f in found[:10])  # fin1 and fin2 share the ministry's policy


async def test_token_lifetime_and_max_devices(hs: Harness) -> None:
    boss, _ = await setup_org(hs)
    await hs.ok("PUT", f"{ADMIN}/policies/units/MOF", boss, json={"access_token_lifetime_s": 1, "max_devices": 2})
    login = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "fin1"}, "password": "pw-fin1"}
    first = await hs.ok("POST", f"{V3}/login", json=login)  # the second device of fin1
    assert first["expires_in_ms"] == 1000
    err = await hs.err(403, "M_FORBIDDEN", "POST", f"{V3}/login", json=login)
    assert "2 devices" in err["error"]
    again = await hs.ok("POST", f"{V3}/login", json={**login, "device_id": first["device_id"]})  # same device
    await asyncio.sleep(1.1)
    r = await hs.request("GET", f"{V3}/account/whoami", headers={"Authorization": f"Bearer {again['access_token']}"})
    assert r.status_code == 401 and r.json()["errcode"] == "M_UNKNOWN_TOKEN" and r.json()["soft_logout"] is True
    home = await hs.ok(
        "POST",
        f"{V3}/login",
        json={**login, "identifier": {"type": "m.id.user", "user": "home1"}, "password": "pw-home1"},
    )
    assert "expires_in_ms" not in home
