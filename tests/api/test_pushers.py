"""Pushers and notifications (spec "Push Notifications": POST /pushers/set, GET /pushers,
GET /notifications) and the admin's view of a user's pushers, on both engines: Synapse's validation
answers, append semantics, updates in place, kind null, the gateway allowlist (matched on parsed
URLs), push_enabled, the per-user limit; pushers removed on logout, device deletion and deactivation;
the notification list from the push actions with its read state."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from paigham.clock import now_ms
from paigham.services.outbound import parse_allowlist
from tests.api.conftest import Harness, User, serve
from tests.api.openapi import ConformanceRecorder, spec

V3 = "/_matrix/client/v3"
SET = f"{V3}/pushers/set"
NTFY = "https://ntfy.gov.example/_matrix/push/v1/notify"
ALLOWLIST = [
    NTFY,
    "http://10.20.0.5:8080/",  # a gateway on the ministry's network, plain HTTP by the operator's choice
    "https://gw.gov.example/_matrix/push",  # a path prefix: /_matrix/push/… under it
    "https://gw2.gov.example/_matrix/pu",  # not a segment of /_matrix/push/v1/notify: admits nothing
    "ftp://files.gov.example/",  # not http(s): ignored
]


@pytest.fixture
async def ps(database_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    """A server with a push gateway allowlist and at most three pushers per user."""
    async with serve(database_url, tmp_path, push_gateway_allowlist=ALLOWLIST, push_max_pushers_per_user=3) as h:
        yield h


def body(pushkey: Any = "up1234567890", **changes: Any) -> dict[str, Any]:
    """What Element X Android registers with UnifiedPush through ntfy (push.md §4)."""
    return {
        "kind": "http",
        "app_id": "im.vector.app.android",
        "pushkey": pushkey,
        "app_display_name": "Element X",
        "device_display_name": "Pixel 9",
        "lang": "en",
        "data": {"url": NTFY, "format": "event_id_only", "default_payload": {"cs": "client-secret"}},
        "append": False,
        **changes,
    }


def deletion(pushkey: str) -> dict[str, Any]:
    return {"kind": None, "app_id": "im.vector.app.android", "pushkey": pushkey}


async def pushers(hs: Harness, user: User) -> list[dict[str, Any]]:
    return list((await hs.ok("GET", f"{V3}/pushers", user))["pushers"])


async def admin(hs: Harness, name: str = "boss") -> User:
    u = await hs.register(name)
    await hs.server.accounts.update_user(u.user_id, admin=True)
    return u


# -- POST /pushers/set, GET /pushers ------------------------------------------------------------------
async def test_set_list_update_in_place_and_delete(ps: Harness) -> None:
    checked = ConformanceRecorder(spec()).attach(ps.http)
    alice = await ps.register("alice")
    assert await pushers(ps, alice) == []
    position = await ps.server.db.current_position()
    before = now_ms()
    assert await ps.ok("POST", SET, alice, json=body()) == {}
    [p] = await pushers(ps, alice)
    assert p == {k: v for k, v in body().items() if k != "append"}  # no profile_tag given, none listed
    [row] = await ps.server.pushers.store.of_user(alice.user_id)
    assert row.device_id == alice.device_id and row.last_stream == position and before <= row.pushkey_ts <= now_ms()
    # The same (app_id, pushkey): updated in place, keeping its ID and registration time (its position
    # is delivery's cursor: it may have moved on past alice's own message, never back).
    room = await ps.create_room(alice)
    await ps.send(alice, room, "moves the stream on")
    await ps.ok("POST", SET, alice, json=body(device_display_name="Pixel 9 Pro", lang="hi", profile_tag="tag"))
    [p] = await pushers(ps, alice)
    assert (p["device_display_name"], p["lang"], p["profile_tag"]) == ("Pixel 9 Pro", "hi", "tag")
    [again] = await ps.server.pushers.store.of_user(alice.user_id)
    assert (again.id, again.pushkey_ts) == (row.id, row.pushkey_ts) and again.last_stream >= row.last_stream
    # Another pushkey is another pusher; kind null deletes one (and deleting nothing is fine).
    await ps.ok("POST", SET, alice, json=body("up0987654321"))
    assert [x["pushkey"] for x in await pushers(ps, alice)] == ["up1234567890", "up0987654321"]
    assert await ps.ok("POST", SET, alice, json=deletion("up1234567890")) == {}
    assert [x["pushkey"] for x in await pushers(ps, alice)] == ["up0987654321"]
    await ps.ok("POST", SET, alice, json=deletion("unknown"))
    await ps.ok("POST", "/_matrix/client/r0/pushers/set", alice, json=body("r0key"))
    r0 = await ps.ok("GET", "/_matrix/client/r0/pushers", alice)
    assert [x["pushkey"] for x in r0["pushers"]] == ["up0987654321", "r0key"]
    await ps.err(401, "M_MISSING_TOKEN", "GET", f"{V3}/pushers")
    await ps.err(401, "M_MISSING_TOKEN", "POST", SET, json=body())
    assert [p for s in checked.seen if s.operation for p in s.problems] == []
    assert {"GET /_matrix/client/v3/pushers", "POST /_matrix/client/v3/pushers/set"} <= checked.operations(
        status_class=2
    )


def _without(key: str) -> dict[str, Any]:
    b = body()
    del b[key]
    return b


def _data(**data: Any) -> dict[str, Any]:
    return body(data=data)


# (request body, status, errcode, a word the error must contain)
INVALID: list[tuple[Any, int, str, str]] = [
    (_without("kind"), 400, "M_MISSING_PARAM", "kind"),
    (_without("app_id"), 400, "M_MISSING_PARAM", "app_id"),
    (_without("pushkey"), 400, "M_MISSING_PARAM", "pushkey"),
    (_without("lang"), 400, "M_MISSING_PARAM", "lang"),
    (_without("data"), 400, "M_MISSING_PARAM", "data"),
    (_without("app_display_name"), 400, "M_MISSING_PARAM", "app_display_name"),
    (_without("device_display_name"), 400, "M_MISSING_PARAM", "device_display_name"),
    (body(data=None), 400, "M_MISSING_PARAM", "data"),
    (_data(format="event_id_only"), 400, "M_MISSING_PARAM", "url"),
    (_data(url=None), 400, "M_MISSING_PARAM", "url"),
    (_data(url=42), 400, "M_MISSING_PARAM", "url"),
    (_data(url="https://ntfy.gov.example/_matrix/push/v1/notify/"), 400, "M_MISSING_PARAM", "/_matrix/push/v1/notify"),
    (_data(url="https://ntfy.gov.example/"), 400, "M_MISSING_PARAM", "/_matrix/push/v1/notify"),
    (_data(url="ftp://ntfy.gov.example/_matrix/push/v1/notify"), 400, "M_INVALID_PARAM", "https"),
    (_data(url="/_matrix/push/v1/notify"), 400, "M_INVALID_PARAM", "https"),
    (_data(url="https://ntfy.gov.example@evil.example/_matrix/push/v1/notify"), 400, "M_INVALID_PARAM", "user"),
    (_data(url="https://ntfy.gov.example\\@evil.example/_matrix/push/v1/notify"), 400, "M_INVALID_PARAM", "URL"),
    (_data(url="https://ntfy.gov.example /_matrix/push/v1/notify"), 400, "M_INVALID_PARAM", "URL"),
    (_data(url="https://ntfy.gov.example:99999/_matrix/push/v1/notify"), 400, "M_INVALID_PARAM", "URL"),
    (_data(url=NTFY, format=1), 400, "M_INVALID_PARAM", "format"),
    (_data(url=NTFY, default_payload="x" * 9000), 400, "M_INVALID_PARAM", "data"),
    (body(data=[NTFY]), 400, "M_INVALID_PARAM", "data"),
    (body(kind="email", app_id="m.email", pushkey="someone@gov.example"), 400, "M_INVALID_PARAM", "E-mail"),
    (body(kind="sms"), 400, "M_INVALID_PARAM", "sms"),
    (body(kind=7), 400, "M_INVALID_PARAM", "kind"),
    (body(app_id="a" * 65), 400, "M_INVALID_PARAM", "app_id"),
    (body(app_id=""), 400, "M_INVALID_PARAM", "app_id"),
    (body(app_id=3), 400, "M_INVALID_PARAM", "app_id"),
    (body(pushkey="é" * 257), 400, "M_INVALID_PARAM", "512 bytes"),  # 257 characters, 514 bytes
    (body(pushkey=["x"]), 400, "M_INVALID_PARAM", "pushkey"),
    (body(lang="x" * 65), 400, "M_INVALID_PARAM", "lang"),
    (body(app_display_name=5), 400, "M_INVALID_PARAM", "app_display_name"),
    (body(device_display_name="d" * 256), 400, "M_INVALID_PARAM", "device_display_name"),
    (body(profile_tag={}), 400, "M_INVALID_PARAM", "profile_tag"),
    (body(append="yes"), 400, "M_INVALID_PARAM", "append"),
]


async def test_every_validation_error(ps: Harness) -> None:
    alice = await ps.register("alice")
    for request, status, errcode, word in INVALID:
        err = await ps.err(status, errcode, "POST", SET, alice, json=request)
        assert word in err["error"], (request, err)
    r = await ps.request("POST", SET, alice, content=b"not json")
    assert (r.status_code, r.json()["errcode"]) == (400, "M_NOT_JSON")
    await ps.err(400, "M_BAD_JSON", "POST", SET, alice, json=[body()])
    # The longest allowed values are accepted (app_id 64 characters, pushkey 512 bytes).
    await ps.ok("POST", SET, alice, json=body("é" * 256, app_id="a" * 64, lang="x" * 64))
    assert [p["app_id"] for p in await pushers(ps, alice)] == ["a" * 64]


def test_allowlist_entries_are_parsed_urls() -> None:
    parsed = parse_allowlist([*ALLOWLIST, "not a url", "https://", "https://u@host.example/", "https://h.example/?q=1"])
    assert [(p.scheme, p.host, p.port, p.path) for p in parsed] == [
        ("https", "ntfy.gov.example", 443, "/_matrix/push/v1/notify"),
        ("http", "10.20.0.5", 8080, ""),
        ("https", "gw.gov.example", 443, "/_matrix/push"),
        ("https", "gw2.gov.example", 443, "/_matrix/pu"),
    ]

    def admits(url: str) -> bool:
        return any(p.admits(urlsplit(url)) for p in parsed)

    assert admits(NTFY) and admits("https://NTFY.gov.example:443/_matrix/push/v1/notify")
    assert admits("https://gw.gov.example/_matrix/push/v1/notify")
    assert not admits("https://gw2.gov.example/_matrix/push/v1/notify")  # /_matrix/pu is no segment of it
    assert not admits("https://ntfy.gov.example.evil.example/_matrix/push/v1/notify")
    assert not admits("http://ntfy.gov.example/_matrix/push/v1/notify")  # another scheme
    assert not admits("https://ntfy.gov.example:8443/_matrix/push/v1/notify")  # another port
    assert admits("http://10.20.0.5:8080/_matrix/push/v1/notify") and not admits("http://10.20.0.5/x")


async def test_the_allowlist_refuses_other_gateways(ps: Harness) -> None:
    alice = await ps.register("alice")
    refused = [
        "https://ntfy.gov.example.evil.example/_matrix/push/v1/notify",  # the allowlisted name as a prefix
        "https://evil.example/_matrix/push/v1/notify",
        "https://matrix.org/_matrix/push/v1/notify",  # Element's gateway: only if the operator adds it
        "http://ntfy.gov.example/_matrix/push/v1/notify",  # http only where allowlisted as http
        "https://ntfy.gov.example:8443/_matrix/push/v1/notify",
        "https://gw2.gov.example/_matrix/push/v1/notify",  # the prefix ends inside a path segment
        "https://10.20.0.5:8080/_matrix/push/v1/notify",
        "http://10.20.0.5/_matrix/push/v1/notify",
        "ftp://files.gov.example/_matrix/push/v1/notify",  # an ignored allowlist entry widens nothing
    ]
    for i, url in enumerate(refused):
        status = 400 if url.startswith("ftp") else 403
        err = await ps.err(status, "M_INVALID_PARAM" if status == 400 else "M_FORBIDDEN", "POST", SET, alice,
                           json=_data(url=url) | {"pushkey": f"k{i}"})  # fmt: skip
        assert status == 400 or "push_gateway_allowlist" in err["error"]
    assert await pushers(ps, alice) == []
    accepted = [
        "https://NTFY.gov.example/_matrix/push/v1/notify",
        "https://ntfy.gov.example:443/_matrix/push/v1/notify?topic=x",
        "http://10.20.0.5:8080/_matrix/push/v1/notify",
    ]
    for i, url in enumerate(accepted):
        await ps.ok("POST", SET, alice, json=_data(url=url) | {"pushkey": f"ok{i}"})
    assert [p["data"]["url"] for p in await pushers(ps, alice)] == accepted


async def test_by_default_no_gateway_is_allowed(hs: Harness) -> None:
    alice = await hs.register("alice")
    err = await hs.err(403, "M_FORBIDDEN", "POST", SET, alice, json=body())
    assert "push_gateway_allowlist" in err["error"]
    await hs.err(400, "M_MISSING_PARAM", "POST", SET, alice, json=_without("lang"))  # validation comes first
    assert await pushers(hs, alice) == []


async def test_push_disabled_refuses_new_pushers(database_url: str, tmp_path: Path) -> None:
    async with serve(database_url, tmp_path, push_enabled=False, push_gateway_allowlist=[NTFY]) as h:
        alice = await h.register("alice")
        err = await h.err(403, "M_FORBIDDEN", "POST", SET, alice, json=body())
        assert "push_enabled" in err["error"]
        await h.ok("POST", SET, alice, json=deletion("k"))
        assert await pushers(h, alice) == []


async def test_append_keeps_or_replaces_other_users_pushers(ps: Harness) -> None:
    alice, bob = await ps.register("alice"), await ps.register("bob")
    await ps.ok("POST", SET, alice, json=body("shared-key"))
    await ps.ok("POST", SET, bob, json=body("shared-key", append=True))
    assert len(await pushers(ps, alice)) == 1 and len(await pushers(ps, bob)) == 1
    # append false (the default, and what the Element apps send): the key is bob's alone now.
    plain = body("shared-key")
    del plain["append"]
    await ps.ok("POST", SET, bob, json=plain)
    assert await pushers(ps, alice) == [] and len(await pushers(ps, bob)) == 1
    # Another app_id with the same pushkey is another pusher; append null counts as false.
    await ps.ok("POST", SET, alice, json=body("shared-key", app_id="io.element.elementx.ios.prod", append=None))
    assert len(await pushers(ps, bob)) == 1 and len(await pushers(ps, alice)) == 1


async def test_pushers_per_user_limit(ps: Harness) -> None:
    alice, bob = await ps.register("alice"), await ps.register("bob")
    for i in range(3):
        await ps.ok("POST", SET, alice, json=body(f"key{i}"))
    err = await ps.err(400, "M_LIMIT_EXCEEDED", "POST", SET, alice, json=body("key3"))
    assert "push_max_pushers_per_user" in err["error"]
    await ps.ok("POST", SET, alice, json=body("key1", lang="ur"))  # an update is no new pusher
    await ps.ok("POST", SET, bob, json=body("bobs"))  # the limit is per user
    await ps.ok("POST", SET, alice, json=deletion("key0"))
    await ps.ok("POST", SET, alice, json=body("key3"))
    assert [p["pushkey"] for p in await pushers(ps, alice)] == ["key1", "key2", "key3"]


# -- pushers go with their device ---------------------------------------------------------------------
async def _session(hs: Harness, user: User, device_id: str) -> User:
    s = await hs.server.auth.start_session(user.user_id, device_id, device_id)
    return User(user.user_id, s.access_token, s.device_id, user.password)


async def test_removed_on_logout_device_deletion_and_deactivation(ps: Harness) -> None:
    alice = await ps.register("alice")
    tablet, laptop = await _session(ps, alice, "TABLET"), await _session(ps, alice, "LAPTOP")
    for who, key in ((alice, "phone-key"), (tablet, "tablet-key"), (laptop, "laptop-key")):
        await ps.ok("POST", SET, who, json=body(key))
    # Logout removes the pushers of that device only.
    await ps.ok("POST", f"{V3}/logout", tablet, json={})
    assert [p["pushkey"] for p in await pushers(ps, alice)] == ["phone-key", "laptop-key"]
    # Deleting a device (with the password, as the spec's UIA asks).
    r = await ps.request("DELETE", f"{V3}/devices/LAPTOP", alice, json={})
    auth = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": alice.user_id},
        "password": alice.password,
        "session": r.json()["session"],
    }
    await ps.ok("DELETE", f"{V3}/devices/LAPTOP", alice, json={"auth": auth})
    assert [p["pushkey"] for p in await pushers(ps, alice)] == ["phone-key"]
    # Logout everywhere.
    await ps.ok("POST", f"{V3}/logout/all", alice, json={})
    assert await ps.server.pushers.store.of_user(alice.user_id) == []
    # Deactivation removes every pusher, also one no device holds any more.
    bob = await ps.register("bob")
    await ps.ok("POST", SET, bob, json=body("bob-key"))
    async with ps.server.db.write() as conn:
        await ps.server.db.run("UPDATE pushers SET device_id = NULL WHERE user_id = $1", bob.user_id, conn=conn)
    await ps.ok("POST", SET, await _session(ps, bob, "OTHER"), json=body("bob-other"))
    boss = await admin(ps)
    await ps.ok("POST", f"/_synapse/admin/v1/deactivate/{bob.user_id}", boss, json={})
    assert await ps.server.pushers.store.of_user(bob.user_id) == []


# -- GET /notifications ---------------------------------------------------------------------------------
async def _message(hs: Harness, user: User, room: str, content: dict[str, Any]) -> str:
    path = f"{V3}/rooms/{room}/send/m.room.message/{uuid.uuid4().hex}"
    return str((await hs.ok("PUT", path, user, json=content))["event_id"])


async def notifications(hs: Harness, user: User, **params: Any) -> dict[str, Any]:
    return dict(await hs.ok("GET", f"{V3}/notifications", user, params=params))


async def test_notifications_newest_first_paged_with_read_state(hs: Harness) -> None:
    checked = ConformanceRecorder(spec()).attach(hs.http)
    alice, bob = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(alice, preset="public_chat")
    await hs.send(alice, room, "before bob joined")
    await hs.ok("POST", f"{V3}/rooms/{room}/join", bob, json={})
    m1 = await hs.send(alice, room, "one")
    own = await hs.send(bob, room, "bob's own")
    m2 = await hs.send(alice, room, "two")
    mention = {"msgtype": "m.text", "body": "bob, see this", "m.mentions": {"user_ids": [bob.user_id]}}
    m3 = await _message(hs, alice, room, mention)
    page = await notifications(hs, bob)
    assert [n["event"]["event_id"] for n in page["notifications"]] == [m3, m2, m1]
    assert "next_token" not in page and own not in str(page)
    first = page["notifications"][0]
    assert first["room_id"] == room and "room_id" not in first["event"] and first["read"] is False
    assert first["event"]["content"]["body"] == "bob, see this" and first["event"]["sender"] == alice.user_id
    assert first["actions"] == ["notify", {"set_tweak": "highlight"}] and isinstance(first["ts"], int)
    assert page["notifications"][1]["actions"] == ["notify"]
    # Pages of two: the token continues with older entries; the last page has no token.
    p1 = await notifications(hs, bob, limit=2)
    assert [n["event"]["event_id"] for n in p1["notifications"]] == [m3, m2] and "next_token" in p1
    p2 = await notifications(hs, bob, limit=2, **{"from": p1["next_token"]})
    assert [n["event"]["event_id"] for n in p2["notifications"]] == [m1] and "next_token" not in p2
    # only=highlight
    assert [n["event"]["event_id"] for n in (await notifications(hs, bob, only="highlight"))["notifications"]] == [m3]
    # A read receipt at m2 makes m1 and m2 read; m3 stays unread.
    await hs.ok("POST", f"{V3}/rooms/{room}/receipt/m.read/{m2}", bob, json={})
    read = {n["event"]["event_id"]: n["read"] for n in (await notifications(hs, bob))["notifications"]}
    assert read == {m1: True, m2: True, m3: False}
    await hs.ok("POST", f"{V3}/rooms/{room}/receipt/m.read.private/{m3}", bob, json={})
    assert all(n["read"] for n in (await notifications(hs, bob))["notifications"])
    # Alice is notified of bob's message only, never of her own.
    assert [n["event"]["event_id"] for n in (await notifications(hs, alice))["notifications"]] == [own]
    # Bad parameters.
    await hs.err(400, "M_INVALID_PARAM", "GET", f"{V3}/notifications", bob, params={"from": "abc"})
    await hs.err(400, "M_INVALID_PARAM", "GET", f"{V3}/notifications", bob, params={"only": "everything"})
    await hs.err(400, "M_INVALID_PARAM", "GET", f"{V3}/notifications", bob, params={"limit": "many"})
    await hs.err(401, "M_MISSING_TOKEN", "GET", f"{V3}/notifications")
    assert [p for s in checked.seen if s.operation for p in s.problems] == []
    assert "GET /_matrix/client/v3/notifications" in checked.operations(status_class=2)


async def test_notifications_follow_push_rules_invites_and_membership(hs: Harness) -> None:
    alice, bob, cara = await hs.register("alice"), await hs.register("bob"), await hs.register("cara")
    room = await hs.create_room(alice, preset="public_chat")
    for u in (bob, cara):
        await hs.ok("POST", f"{V3}/rooms/{room}/join", u, json={})
    # Cara mutes the room: no notifications for her from then on (her own push-action row).
    await hs.ok("PUT", f"{V3}/pushrules/global/room/{room}", cara, json={"actions": []})
    m1 = await hs.send(alice, room, "to everyone")
    assert [n["event"]["event_id"] for n in (await notifications(hs, bob))["notifications"]] == [m1]
    assert (await notifications(hs, cara))["notifications"] == []
    # An invite notifies the invitee, who is not joined.
    dave = await hs.register("dave")
    other = await hs.create_room(alice)
    await hs.ok("POST", f"{V3}/rooms/{other}/invite", alice, json={"user_id": dave.user_id})
    [invite] = (await notifications(hs, dave))["notifications"]
    assert invite["room_id"] == other and invite["event"]["type"] == "m.room.member"
    assert invite["event"]["state_key"] == dave.user_id
    # Leaving a room takes its notifications with it.
    await hs.ok("POST", f"{V3}/rooms/{room}/leave", bob, json={})
    assert (await notifications(hs, bob))["notifications"] == []


# -- the admin API -----------------------------------------------------------------------------------
async def test_admin_lists_and_deletes_pushers(ps: Harness) -> None:
    boss, alice, bob = await admin(ps), await ps.register("alice"), await ps.register("bob")
    await ps.ok("POST", SET, alice, json=body("alice-1"))
    await ps.ok("POST", SET, alice, json=body("alice-2", profile_tag="p"))
    await ps.ok("POST", SET, bob, json=body("bob-1"))
    path = f"/_synapse/admin/v1/users/{alice.user_id}/pushers"
    listed = await ps.ok("GET", path, boss)
    assert listed["total"] == 2 and [p["pushkey"] for p in listed["pushers"]] == ["alice-1", "alice-2"]
    one = listed["pushers"][0]
    assert one["data"]["url"] == NTFY and one["profile_tag"] is None and one["device_id"] == alice.device_id
    assert one["failing_since"] is None and one["attempts"] == 0 and isinstance(one["id"], int)
    assert isinstance(one["last_stream_ordering"], int) and isinstance(one["pushkey_ts"], int)
    await ps.err(403, "M_FORBIDDEN", "GET", path, alice)
    await ps.err(401, "M_MISSING_TOKEN", "GET", path)
    await ps.err(404, "M_NOT_FOUND", "GET", "/_synapse/admin/v1/users/@ghost:test.local/pushers", boss)
    await ps.err(400, "M_INVALID_PARAM", "GET", "/_synapse/admin/v1/users/@x:elsewhere.example/pushers", boss)
    # Delete one, by ID; it must be that user's.
    base = f"/_paigham/admin/v1/users/{alice.user_id}/pushers"
    bobs = (await ps.ok("GET", f"/_synapse/admin/v1/users/{bob.user_id}/pushers", boss))["pushers"][0]["id"]
    await ps.err(404, "M_NOT_FOUND", "DELETE", f"{base}/{bobs}", boss)
    await ps.err(404, "M_NOT_FOUND", "DELETE", f"{base}/999999", boss)
    await ps.err(400, "M_INVALID_PARAM", "DELETE", f"{base}/-1", boss)
    await ps.err(400, "M_INVALID_PARAM", "DELETE", f"{base}/99999999999999999999", boss)
    await ps.err(403, "M_FORBIDDEN", "DELETE", f"{base}/{one['id']}", alice)
    await ps.ok("DELETE", f"{base}/{one['id']}", boss)
    assert [p["pushkey"] for p in await pushers(ps, alice)] == ["alice-2"]
    await ps.err(404, "M_NOT_FOUND", "DELETE", f"{base}/{one['id']}", boss)
    records = [r async for r in ps.server.audit.export() if r["kind"] == "admin.pusher_deleted"]
    assert len(records) == 1
    [rec] = records
    assert rec["actor"] == boss.user_id and rec["target"] == alice.user_id
    assert rec["details"]["pusher_id"] == one["id"] and rec["details"]["app_id"] == "im.vector.app.android"
    assert "alice-1" not in str(rec)  # the pushkey (a device's routing token) is not logged
