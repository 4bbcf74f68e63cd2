"""AccountStore on both engines: users, devices, access and refresh tokens, registration tokens,
UIA sessions, and who is told that credentials changed."""

from __future__ import annotations

from paigham.storage.accounts import AccountStore
from paigham.storage.database import Database
from tests.storage.support import ALICE, BOB, CARA


def store_telling(db: Database, told: list[list[str]]) -> AccountStore:
    async def changed(users: list[str]) -> None:
        told.append(users)

    return AccountStore(db, changed)


async def test_users(db: Database) -> None:
    told: list[list[str]] = []
    accounts = store_telling(db, told)
    assert await accounts.create_user(ALICE, "hash-a", admin=True, displayname="Alice", now=5)
    assert await accounts.create_user(BOB, None, admin=False, displayname=None, now=6)
    assert not await accounts.create_user(ALICE, "other", admin=False, displayname=None, now=7)  # taken

    alice = await accounts.get_user(ALICE)
    assert alice is not None
    assert (alice.password_hash, alice.admin, alice.displayname, alice.created_ts) == ("hash-a", True, "Alice", 5)
    assert not (alice.deactivated or alice.suspended or alice.locked)
    assert await accounts.get_user(CARA) is None
    assert await accounts.count_users() == 2

    await accounts.update_user(BOB, suspended=True, displayname="Bobby")
    bob = await accounts.get_user(BOB)
    assert bob is not None and bob.suspended and bob.displayname == "Bobby"
    assert told == [[BOB]]
    assert [u.user_id for u in await accounts.search_users("BOB", 10)] == [BOB]  # case-insensitive, name or ID
    assert [u.user_id for u in await accounts.search_users("test.local", 10)] == [ALICE, BOB]
    await accounts.update_user(BOB, deactivated=True)
    assert [u.user_id for u in await accounts.search_users("test.local", 10)] == [ALICE]


async def test_devices_and_their_tokens(db: Database) -> None:
    told: list[list[str]] = []
    accounts = store_telling(db, told)
    await accounts.create_user(ALICE, None, admin=False, displayname=None, now=1)
    await accounts.upsert_device(ALICE, "PHONE", "Phone", 10)
    await accounts.upsert_device(ALICE, "LAPTOP", None, 11)
    await accounts.upsert_device(ALICE, "PHONE", None, 12)  # a login again: the name stays
    await accounts.upsert_device(ALICE, "LAPTOP", "Laptop", 13)  # a name given: it changes
    devices = await accounts.get_devices(ALICE)
    assert [(d.device_id, d.display_name, d.last_seen_ts) for d in devices] == [
        ("LAPTOP", "Laptop", 11),
        ("PHONE", "Phone", 10),
    ]
    assert await accounts.update_device(ALICE, "PHONE", last_seen_ts=20, last_seen_ip="10.0.0.1")
    assert not await accounts.update_device(ALICE, "TABLET", last_seen_ts=20)
    phone = await accounts.get_device(ALICE, "PHONE")
    assert phone is not None and (phone.last_seen_ts, phone.last_seen_ip) == (20, "10.0.0.1")

    await accounts.add_token("tok-phone", ALICE, "PHONE", 1, None)
    await accounts.add_token("tok-laptop", ALICE, "LAPTOP", 1, None)
    await accounts.delete_devices(ALICE, ["PHONE"])
    assert [d.device_id for d in await accounts.get_devices(ALICE)] == ["LAPTOP"]
    assert await accounts.get_token("tok-phone") is None  # a deleted device's tokens go with it
    assert await accounts.get_token("tok-laptop") is not None
    assert told == [[ALICE]]


async def test_access_tokens(db: Database) -> None:
    told: list[list[str]] = []
    accounts = store_telling(db, told)
    await accounts.create_user(ALICE, None, admin=False, displayname="Alice", now=1)
    await accounts.add_token("t1", ALICE, "D1", 1, 5_000)
    await accounts.add_token("t2", ALICE, "D1", 1, None)
    await accounts.add_token("t3", ALICE, "D2", 1, None)
    await accounts.add_token("orphan", BOB, "D9", 1, None)  # its user row is gone (deleted by hand)

    token = await accounts.get_token("t1")
    assert token is not None and (token.user_id, token.device_id, token.expires_ts) == (ALICE, "D1", 5_000)
    assert await accounts.get_token("nope") is None
    holder = await accounts.get_token_holder("t1")
    assert holder is not None and holder[0] == token and holder[1] is not None and holder[1].displayname == "Alice"
    orphan = await accounts.get_token_holder("orphan")
    assert orphan is not None and orphan[1] is None
    assert await accounts.get_token_holder("nope") is None

    await accounts.delete_device_tokens(ALICE, "D1", except_token="t2")
    assert await accounts.get_token("t1") is None and await accounts.get_token("t2") is not None
    await accounts.delete_all_tokens(ALICE, except_token="t3")
    assert await accounts.get_token("t2") is None and await accounts.get_token("t3") is not None
    await accounts.delete_token("t3")
    await accounts.delete_token("never-issued")
    assert await accounts.get_token("t3") is None
    assert told == [[ALICE], [ALICE], [ALICE]]  # an unknown token changes nobody's credentials


async def test_refresh_tokens_are_single_use_and_expire(db: Database) -> None:
    accounts = AccountStore(db)
    await accounts.add_token("a1", ALICE, "D", 1, 100, refresh_token="r1", refresh_expires_ts=1_000)
    await accounts.add_token("a2", ALICE, "D", 1, 100, refresh_token="r2", refresh_expires_ts=1_000)
    taken = await accounts.take_refresh_token("r1", 500)
    assert taken is not None and (taken.user_id, taken.device_id) == (ALICE, "D")
    assert await accounts.get_token("a1") is None  # its access token goes with it
    assert await accounts.take_refresh_token("r1", 500) is None  # used
    assert await accounts.take_refresh_token("r2", 2_000) is None  # expired (and consumed)
    assert await accounts.get_token("a2") is None


async def test_registration_tokens(db: Database) -> None:
    accounts = AccountStore(db)
    await accounts.create_registration_token("twice", 2, None, 1)
    await accounts.create_registration_token("until-100", None, 100, 1)
    assert await accounts.registration_token_valid("twice", 50)
    assert await accounts.use_registration_token("twice", 50)
    assert await accounts.use_registration_token("twice", 50)
    assert not await accounts.use_registration_token("twice", 50)
    assert not await accounts.registration_token_valid("twice", 50)
    assert await accounts.registration_token_valid("until-100", 100)
    assert not await accounts.registration_token_valid("until-100", 101)
    assert not await accounts.use_registration_token("until-100", 101)
    assert not await accounts.registration_token_valid("unknown", 1)
    listed = {t["token"]: (t["uses_allowed"], t["completed"]) for t in await accounts.list_registration_tokens()}
    assert listed == {"twice": (2, 2), "until-100": (None, 0)}


async def test_uia_sessions(db: Database) -> None:
    accounts = AccountStore(db)
    await accounts.save_uia_session("s1", "register", None, [], {"a": 1}, 10)
    await accounts.save_uia_session("s1", "login", ALICE, ["m.login.password"], {"a": 2}, 20)
    session = await accounts.get_uia_session("s1")
    # Saving again updates progress, data and user; what the session is for and when it began stay.
    assert session == {
        "session_id": "s1",
        "kind": "register",
        "user_id": ALICE,
        "created_ts": 10,
        "completed": ["m.login.password"],
        "data": {"a": 2},
    }
    await accounts.delete_uia_session("s1")
    assert await accounts.get_uia_session("s1") is None
