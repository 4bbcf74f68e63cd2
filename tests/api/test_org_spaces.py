"""A space per unit with an announcements room; officials joined to theirs and moved with their unit."""

from __future__ import annotations

import json
from typing import Any

from paigham.org.importer import read_bytes
from tests.api.conftest import Harness, User

V3 = "/_matrix/client/v3"
ADMIN = "/_paigham/admin/v1"


def org(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "units": [
            {"unit_id": "MOF", "kind": "ministry", "names": {"en": "Finance", "hi": "वित्त"}},
            {"unit_id": "MOF-BUD", "parent_id": "MOF", "kind": "department", "names": {"en": "Budget"}},
            {"unit_id": "MOF-REV", "parent_id": "MOF", "kind": "department", "names": {"en": "Revenue"}},
        ],
        "officials": [
            {"employee_id": "E1", "user_id": "anita", "names": {"en": "Anita Rao"}, "unit_id": "MOF-BUD"},
            {"employee_id": "E2", "user_id": "bilal", "names": {"en": "Bilal Khan"}, "unit_id": "MOF-BUD"},
            {"employee_id": "E3", "user_id": "chetan", "names": {"en": "Chetan Das"}, "unit_id": "MOF-REV"},
            {
                "employee_id": "E4",
                "user_id": "dina",
                "names": {"en": "Dina Paul"},
                "unit_id": "MOF",
                "status": "suspended",
            },
        ],
    }
    for emp, fields in changes.items():
        for o in doc["officials"]:
            if o["employee_id"] == emp:
                o.update(fields)
    return doc


async def load(hs: Harness, doc: dict[str, Any]) -> None:
    plan = await hs.server.org.import_rows(read_bytes(json.dumps(doc).encode(), "org.json"), dry_run=False, actor=None)
    assert plan.ok, plan.errors


async def session(hs: Harness, name: str) -> User:
    user_id = f"@{name}:test.local"
    await hs.server.auth.set_password(user_id, f"pw-{name}")
    s = await hs.server.auth.start_session(user_id, None, None)
    return User(user_id, s.access_token, s.device_id, f"pw-{name}")


async def rooms_of(hs: Harness, unit: str) -> tuple[str, str]:
    row = await hs.server.org.store.unit(unit)
    assert row is not None and row.space_id and row.announcements_id
    return row.space_id, row.announcements_id


async def members(hs: Harness, room: str) -> set[str]:
    return {u.split(":")[0][1:] for u in await hs.server.events.room_members(room)} - {"paigham"}


async def test_spaces_memberships_and_moves(hs: Harness) -> None:
    await load(hs, org())
    bud_space, bud_room = await rooms_of(hs, "MOF-BUD")
    mof_space, _ = await rooms_of(hs, "MOF")
    assert await members(hs, bud_space) == {"anita", "bilal"} == await members(hs, bud_room)
    assert await members(hs, mof_space) == set()  # Dina is suspended: not joined
    anita = await session(hs, "anita")
    sync = await hs.sync(anita)
    assert {bud_space, bud_room} <= set(sync["rooms"]["join"])
    create = await hs.ok("GET", f"{V3}/rooms/{bud_space}/state/m.room.create", anita)
    assert create["type"] == "m.space"
    assert (await hs.ok("GET", f"{V3}/rooms/{bud_space}/state/m.room.name", anita))["name"] == "Budget"
    assert (await hs.ok("GET", f"{V3}/rooms/{bud_room}/state/m.room.name", anita))["name"] == "Budget — Announcements"
    # the tree of spaces: Finance → Budget → announcements
    tree = await hs.ok("GET", f"/_matrix/client/v1/rooms/{bud_space}/hierarchy", anita)
    assert bud_room in {r["room_id"] for r in tree["rooms"]}
    parent = await hs.ok("GET", f"{V3}/rooms/{bud_space}/state/m.space.parent/{mof_space}", anita)
    assert parent["canonical"] is True
    # officials read announcements but do not post; the server posts them
    await hs.err(
        403,
        "M_FORBIDDEN",
        "PUT",
        f"{V3}/rooms/{bud_room}/send/m.room.message/t1",
        anita,
        json={"msgtype": "m.text", "body": "hi"},
    )
    boss = await hs.register("boss")
    await hs.server.accounts.update_user(boss.user_id, admin=True)
    res = await hs.ok("POST", f"{ADMIN}/units/MOF-BUD/announce", boss, json={"body": "Budget due Friday"})
    event = await hs.ok("GET", f"{V3}/rooms/{bud_room}/event/{res['event_id']}", anita)
    assert event["content"]["body"] == "Budget due Friday" and event["sender"] == "@paigham:test.local"
    # leaving and joining again from a client (restricted: members of the space may join the room)
    await hs.ok("POST", f"{V3}/rooms/{bud_room}/leave", anita, json={})
    await hs.ok("POST", f"{V3}/join/{bud_room}", anita, json={})
    chetan = await session(hs, "chetan")
    await hs.err(403, "M_FORBIDDEN", "POST", f"{V3}/join/{bud_room}", chetan, json={})  # not in Budget

    # the same file again writes nothing
    pos = await hs.server.db.current_position()
    await load(hs, org())
    assert await hs.server.db.current_position() == pos

    # moving an official, reactivating a suspended one, renaming a unit
    doc = org(E1={"unit_id": "MOF-REV"}, E4={"status": "active"})
    doc["units"][2]["names"]["en"] = "Revenue & Customs"
    await load(hs, doc)
    rev_space, rev_room = await rooms_of(hs, "MOF-REV")
    assert await members(hs, bud_space) == {"bilal"} == await members(hs, bud_room)
    assert await members(hs, rev_space) == {"anita", "chetan"} == await members(hs, rev_room)
    assert await members(hs, mof_space) == {"dina"}
    assert (await hs.ok("GET", f"{V3}/rooms/{rev_space}/state/m.room.name", anita))["name"] == "Revenue & Customs"
    # a deactivated official leaves everything
    await load(hs, org(E1={"unit_id": "MOF-REV"}, E2={"status": "deactivated"}, E4={"status": "active"}))
    assert await members(hs, bud_space) == set()
    # an account deactivated by the user (or an admin) is deactivated in the directory too
    await hs.ok(
        "POST",
        f"{V3}/account/deactivate",
        chetan,
        json={
            "auth": {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": chetan.user_id},
                "password": chetan.password,
            }
        },
    )
    assert (await hs.server.org.store.official("E3")).official.status == "deactivated"  # type: ignore[union-attr]
    assert await hs.ok("POST", f"{ADMIN}/sync", boss) == {"units_created": 0, "joined": 0, "left": 0}
    assert await members(hs, rev_space) == {"anita"}


async def test_moving_and_deleting_units_moves_their_spaces(hs: Harness) -> None:
    await load(hs, org())
    mof_space, _ = await rooms_of(hs, "MOF")
    bud_space, _ = await rooms_of(hs, "MOF-BUD")
    doc = org()
    doc["units"].append({"unit_id": "MHA", "kind": "ministry", "names": {"en": "Home"}})
    doc["units"][1]["parent_id"] = "MHA"
    await load(hs, doc)
    mha_space, _ = await rooms_of(hs, "MHA")
    ev = hs.server.events
    assert (await ev.current_state_event(mof_space, "m.space.child", bud_space)).content == {}  # type: ignore
    assert (await ev.current_state_event(mha_space, "m.space.child", bud_space)).content["via"]  # type: ignore
    assert (await ev.current_state_event(bud_space, "m.space.parent", mha_space)).content["canonical"]  # type: ignore
    assert (await ev.current_state_event(bud_space, "m.space.parent", mof_space)).content == {}  # type: ignore
    boss = await hs.register("boss")
    await hs.server.accounts.update_user(boss.user_id, admin=True)
    await hs.ok("PUT", f"{ADMIN}/units/MHA-X", boss, json={"parent_id": "MHA", "names": {"en": "Spare"}})
    x_space, _ = await rooms_of(hs, "MHA-X")
    await hs.ok("DELETE", f"{ADMIN}/units/MHA-X", boss)
    assert (await ev.current_state_event(mha_space, "m.space.child", x_space)).content == {}  # type: ignore
    assert (await hs.ok("POST", f"{ADMIN}/sync", boss)) == {"units_created": 0, "joined": 0, "left": 0}
