"""AdminUsers without HTTP: the user list's filters, an account with its official record, the self-lock
rule, and devices."""

from __future__ import annotations

from paigham.app import Server
from paigham.org.importer import ReadResult, read_bytes
from paigham.services.admin import Actor
from paigham.services.admin_users import USER_ORDERS, AdminUsers, UserQuery
from paigham.storage.admin import AdminStore
from tests.services.admin.conftest import ADMIN, refused

UNITS = "unit_id,parent_id,kind,name_en\nMOF,,ministry,Ministry of Finance\n"
OFFICIALS = "employee_id,user_id,name_en,unit_id,email,status\nE1,rsharma,Rakesh Sharma,MOF,r@gov.example,active\n"


def users_of(server: Server) -> AdminUsers:
    return AdminUsers(server.admin, AdminStore(server.db), server.accounts, server.org.store)


async def import_official(server: Server) -> None:
    read = ReadResult([], [])
    for name, text in (("units.csv", UNITS), ("officials.csv", OFFICIALS)):
        read.rows.extend(read_bytes(text.encode(), name).rows)
    plan = await server.org.import_rows(read, dry_run=False, actor=None)
    assert plan.ok, plan.errors


async def test_list_filters_orders_and_pages(server: Server) -> None:
    users = users_of(server)
    boss = await server.auth.create_user("boss", "pw-boss-1", admin=True, displayname="Zed Boss")
    clerk = await server.auth.create_user("clerk", "pw-clerk-1", displayname="Amy Clerk")
    gone = await server.auth.create_user("gone", "pw-gone-1")
    await server.admin.deactivate(gone, ADMIN)
    everyone = await users.list_users(UserQuery(0, 10))
    assert [u["name"] for u in everyone.users] == [boss, clerk] and everyone.total == 2
    assert (await users.list_users(UserQuery(0, 10, deactivated=True))).total == 3
    assert [u["name"] for u in (await users.list_users(UserQuery(0, 10, admins=True))).users] == [boss]
    assert [u["name"] for u in (await users.list_users(UserQuery(0, 10, name="amy"))).users] == [clerk]
    by_name = await users.list_users(UserQuery(0, 10, order_by="displayname", descending=True))
    assert [u["displayname"] for u in by_name.users] == ["Zed Boss", "Amy Clerk"]
    page = await users.list_users(UserQuery(1, 1))
    assert [u["name"] for u in page.users] == [clerk] and page.total == 2
    for order in USER_ORDERS:
        assert (await users.list_users(UserQuery(0, 10, order_by=order))).total == 2


async def test_whois_shows_the_official_record_and_refuses_unknown_users(server: Server) -> None:
    users = users_of(server)
    await import_official(server)
    shown = await users.whois("@rsharma:test.local")
    assert shown["threepids"] == [{"medium": "email", "address": "r@gov.example"}]
    assert shown["org.paigham.official"] == {"employee_id": "E1", "unit_id": "MOF", "status": "active"}
    assert shown["erased"] is False and shown["deactivated"] is False
    await refused(404, users.whois("@ghost:test.local"))
    await refused(400, users.whois("@someone:elsewhere.example"))


async def test_put_user_creates_then_modifies(server: Server) -> None:
    users = users_of(server)
    made = await users.put_user("@newbie:test.local", {"password": "first-pass", "displayname": "New Bie"}, ADMIN)
    assert made.created and made.user["displayname"] == "New Bie"
    again = await users.put_user("@newbie:test.local", {"displayname": "Newbie B."}, ADMIN)
    assert not again.created and again.user["displayname"] == "Newbie B."


async def test_an_admin_cannot_lock_themselves(server: Server) -> None:
    users = users_of(server)
    boss = await server.auth.create_user("boss", "pw-boss-1", admin=True)
    clerk = await server.auth.create_user("clerk", "pw-clerk-1")
    me = Actor(boss)
    assert "own account" in await refused(400, users.set_locked(boss, True, me))
    await users.set_locked(boss, False, me)  # unlocking oneself is harmless
    await users.set_locked(clerk, True, me)
    user = await server.accounts.get_user(clerk)
    assert user is not None and user.locked
    await refused(404, users.set_locked("@ghost:test.local", True, me))


async def test_devices_and_deleting_one(server: Server) -> None:
    users = users_of(server)
    user_id = await server.auth.create_user("phone", "pw-phone-1")
    await server.auth.start_session(user_id, "PHONE", "Phone")
    await server.auth.start_session(user_id, "TABLET", "Tablet")
    assert [d["device_id"] for d in await users.devices(user_id)] == ["PHONE", "TABLET"]
    tablet = await users.device(user_id, "TABLET")
    assert tablet["display_name"] == "Tablet" and tablet["user_id"] == user_id and tablet["last_seen_ts"] > 0
    await users.delete_device(user_id, "TABLET", ADMIN)
    assert [d["device_id"] for d in await users.devices(user_id)] == ["PHONE"]
    await refused(404, users.device(user_id, "TABLET"))
    await refused(404, users.delete_device(user_id, "TABLET", ADMIN))
    await refused(404, users.devices("@ghost:test.local"))
