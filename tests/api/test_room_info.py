"""What Element X asks around sliding sync: auth discovery (no OAuth 2.0 here: password login), the
room summary (by ID or alias, signed in or not), the event closest to a time, and mutual rooms."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from paigham.services import writer
from paigham.services.room_info import RoomInfo
from tests.api.conftest import Harness, User
from tests.api.openapi import ConformanceRecorder, spec

V3 = "/_matrix/client/v3"
V1 = "/_matrix/client/v1"
NHEKO = "/_matrix/client/unstable/im.nheko.summary"
MSC2666 = "/_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms"


@pytest.fixture
async def checked(hs: Harness) -> ConformanceRecorder:
    return ConformanceRecorder(spec()).attach(hs.http)


def spec_problems(checked: ConformanceRecorder) -> list[str]:
    """What broke the spec among the responses of its own operations (unstable paths are not in it)."""
    return [p for s in checked.seen if s.operation for p in s.problems]


async def test_no_oauth_so_password_login(hs: Harness, checked: ConformanceRecorder) -> None:
    for path in (
        f"{V1}/auth_metadata",
        "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata",
        "/_matrix/client/unstable/org.matrix.msc2965/auth_issuer",
    ):
        r = await hs.request("GET", path)
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/json")
        assert r.json()["errcode"] == "M_UNRECOGNIZED" and "m.login.password" in r.json()["error"]
    flows = await hs.ok("GET", f"{V3}/login")
    assert {"type": "m.login.password"} in flows["flows"]
    assert spec_problems(checked) == []
    assert "GET /_matrix/client/v1/auth_metadata" in checked.operations(status_class=4)


async def summary(hs: Harness, room: str, user: User | None = None) -> Any:
    return await hs.ok("GET", f"{V1}/room_summary/{quote(room)}", user)


async def test_room_summary_for_members_and_by_alias(hs: Harness, checked: ConformanceRecorder) -> None:
    a, b = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(
        a,
        preset="private_chat",
        name="Cabinet",
        topic="Agenda",
        room_alias_name="cabinet",
        initial_state=[{"type": "m.room.encryption", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}],
    )
    got = await summary(hs, room, a)
    assert got == {
        "room_id": room,
        "name": "Cabinet",
        "topic": "Agenda",
        "canonical_alias": "#cabinet:test.local",
        "num_joined_members": 1,
        "join_rule": "invite",
        "world_readable": False,
        "guest_can_join": True,  # the private_chat preset lets guests join
        "room_version": "11",
        "encryption": "m.megolm.v1.aes-sha2",
        "membership": "join",
    }
    assert await summary(hs, "#cabinet:test.local", a) == got
    for path in (f"{NHEKO}/rooms/{quote(room)}/summary", f"{NHEKO}/summary/%23cabinet:test.local"):
        unstable = {**got, "im.nheko.summary.room_version": "11", "im.nheko.summary.encryption": got["encryption"]}
        assert await hs.ok("GET", path, a) == unstable
    # An outsider, signed in or not, learns nothing: the same 404 as for a room that does not exist.
    hidden = await hs.err(404, "M_NOT_FOUND", "GET", f"{V1}/room_summary/{quote(room)}", b)
    missing = await hs.err(404, "M_NOT_FOUND", "GET", f"{V1}/room_summary/{quote('!nothing:test.local')}", b)
    assert hidden == missing
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V1}/room_summary/{quote(room)}")
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V1}/room_summary/%23cabinet:test.local")
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V1}/room_summary/%23nowhere:test.local", a)
    await hs.err(400, "M_INVALID_PARAM", "GET", f"{V1}/room_summary/not-a-room", a)
    await hs.err(400, "M_INVALID_PARAM", "GET", f"{V1}/room_summary/%23no-server", a)
    await hs.err(
        401, "M_UNKNOWN_TOKEN", "GET", f"{V1}/room_summary/{quote(room)}", headers={"Authorization": "Bearer x"}
    )
    # Invited: the summary, with the invitation as membership.
    await hs.ok("POST", f"{V3}/rooms/{room}/invite", a, json={"user_id": b.user_id})
    assert (await summary(hs, room, b))["membership"] == "invite"
    assert spec_problems(checked) == []
    assert "GET /_matrix/client/v1/room_summary/{roomIdOrAlias}" in checked.operations(status_class=2)


async def test_room_summary_of_open_rooms_without_signing_in(hs: Harness) -> None:
    a, b = await hs.register("alice"), await hs.register("bob")
    public = await hs.create_room(a, preset="public_chat", name="Notices")
    anonymous = await summary(hs, public)
    assert anonymous["join_rule"] == "public" and anonymous["name"] == "Notices" and "membership" not in anonymous
    assert (await summary(hs, public, b))["membership"] == "leave"  # signed in, never joined
    private = await hs.create_room(a, preset="private_chat")
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V1}/room_summary/{quote(private)}")
    for content, key, value in (
        ({"history_visibility": "world_readable"}, "world_readable", True),
        ({"join_rule": "knock"}, "join_rule", "knock"),
    ):
        state = "m.room.history_visibility" if "history_visibility" in content else "m.room.join_rules"
        await hs.ok("PUT", f"{V3}/rooms/{private}/state/{state}/", a, json=content)
        assert (await summary(hs, private))[key] == value
        await hs.ok("PUT", f"{V3}/rooms/{private}/state/{state}/", a, json={**_closed(state)})
        await hs.err(404, "M_NOT_FOUND", "GET", f"{V1}/room_summary/{quote(private)}", b)


def _closed(state: str) -> dict[str, str]:
    return {"history_visibility": "shared"} if state == "m.room.history_visibility" else {"join_rule": "invite"}


async def test_room_summary_of_a_restricted_room(hs: Harness) -> None:
    a, b = await hs.register("alice"), await hs.register("bob")
    space = await hs.create_room(a, preset="public_chat", creation_content={"type": "m.space"}, name="Ministry")
    room = await hs.create_room(a, preset="private_chat", name="Staff")
    rule = {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]}
    await hs.ok("PUT", f"{V3}/rooms/{room}/state/m.room.join_rules/", a, json=rule)
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V1}/room_summary/{quote(room)}", b)  # not in the space
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V1}/room_summary/{quote(room)}")
    await hs.ok("POST", f"{V3}/join/{quote(space)}", b, json={})
    got = await summary(hs, room, b)
    assert got["join_rule"] == "restricted" and got["allowed_room_ids"] == [space] and got["membership"] == "leave"
    assert (await summary(hs, space, b))["room_type"] == "m.space"


# -- timestamp_to_event ---------------------------------------------------------------------------
class Clock:
    """The writer's clock, set by the test: events get exactly the timestamps it is given."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1_700_000_000_000
        monkeypatch.setattr(writer, "now_ms", lambda: self.now)


async def closest(hs: Harness, user: User, room: str, ts: int, direction: str) -> str:
    got = await hs.ok("GET", f"{V1}/rooms/{room}/timestamp_to_event", user, params={"ts": ts, "dir": direction})
    return str(got["event_id"])


async def test_timestamp_to_event(hs: Harness, monkeypatch: pytest.MonkeyPatch, checked: ConformanceRecorder) -> None:
    clock = Clock(monkeypatch)
    a = await hs.register("alice")
    room = await hs.create_room(a, preset="private_chat")
    create_ts = clock.now
    clock.now += 1000
    m1 = await hs.send(a, room, "one")
    m1_again = await hs.send(a, room, "one, the same millisecond")
    clock.now += 1000
    m2 = await hs.send(a, room, "two")
    clock.now -= 500  # the clock stepped back: the next event is older than m2 though sent after it
    m3 = await hs.send(a, room, "three")
    t = create_ts + 1000
    assert await closest(hs, a, room, t, "f") == m1  # at or after: the first of the millisecond
    assert await closest(hs, a, room, t, "b") == m1_again  # at or before: the last of it
    assert await closest(hs, a, room, t + 1, "f") == m3  # by time, not by the order of sending
    assert await closest(hs, a, room, t + 1000, "b") == m2
    assert await closest(hs, a, room, t + 999, "b") == m3
    got = await hs.ok("GET", f"{V1}/rooms/{room}/timestamp_to_event", a, params={"ts": t + 600, "dir": "f"})
    assert got == {"event_id": m2, "origin_server_ts": t + 1000}
    await hs.err(
        404, "M_NOT_FOUND", "GET", f"{V1}/rooms/{room}/timestamp_to_event", a, params={"ts": t + 1001, "dir": "f"}
    )
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V1}/rooms/{room}/timestamp_to_event", a, params={"ts": 5, "dir": "b"})
    first = await closest(hs, a, room, 0, "f")
    assert (await hs.ok("GET", f"{V3}/rooms/{room}/event/{first}", a))["type"] == "m.room.create"
    assert spec_problems(checked) == []
    assert "GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event" in checked.operations(status_class=2)


async def test_timestamp_to_event_sees_only_what_the_user_may_see(hs: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch)
    a, b, c = await hs.register("alice"), await hs.register("bob"), await hs.register("carol")
    room = await hs.create_room(a, preset="public_chat")
    hv = {"history_visibility": "joined"}
    to_joined = (await hs.ok("PUT", f"{V3}/rooms/{room}/state/m.room.history_visibility/", a, json=hv))["event_id"]
    clock.now += 1000
    before = await hs.send(a, room, "before bob")
    path = f"{V1}/rooms/{room}/timestamp_to_event"
    await hs.err(403, "M_FORBIDDEN", "GET", path, b, params={"ts": 0, "dir": "f"})
    await hs.err(
        404, "M_NOT_FOUND", "GET", f"{V1}/rooms/!nothing:test.local/timestamp_to_event", b, params={"ts": 0, "dir": "f"}
    )
    clock.now += 1000
    joined = (await hs.ok("POST", f"{V3}/rooms/{room}/join", b, json={}))["room_id"]
    await hs.ok("POST", f"{V3}/rooms/{room}/join", c, json={})
    assert joined == room and await closest(hs, a, room, clock.now - 1000, "f") == before
    # Bob joined after it, under "joined" visibility: he is told of his own join, not of the message;
    # and before it, of the change to "joined" (seen as under the rule before it, "shared").
    own_join = await closest(hs, b, room, clock.now - 1000, "f")
    assert (await hs.ok("GET", f"{V3}/rooms/{room}/event/{own_join}", b))["state_key"] == b.user_id
    assert await closest(hs, b, room, clock.now - 1, "b") == to_joined
    clock.now += 1000
    await hs.ok("POST", f"{V3}/rooms/{room}/leave", c, json={})
    clock.now += 1000
    after = await hs.send(a, room, "after carol left")
    assert await closest(hs, b, room, clock.now, "f") == after
    await hs.err(404, "M_NOT_FOUND", "GET", path, c, params={"ts": clock.now, "dir": "f"})  # she had left


async def test_timestamp_to_event_refuses_bad_parameters(hs: Harness) -> None:
    a = await hs.register("alice")
    room = await hs.create_room(a)
    path = f"{V1}/rooms/{room}/timestamp_to_event"
    await hs.err(400, "M_MISSING_PARAM", "GET", path, a, params={"dir": "f"})
    await hs.err(400, "M_MISSING_PARAM", "GET", path, a, params={"ts": 1})
    for ts in ("abc", "-5", "1.5", "+7", "9" * 17):
        await hs.err(400, "M_INVALID_PARAM", "GET", path, a, params={"ts": ts, "dir": "f"})
    await hs.err(400, "M_INVALID_PARAM", "GET", path, a, params={"ts": 1, "dir": "x"})
    await hs.err(
        400, "M_INVALID_PARAM", "GET", f"{V1}/rooms/not-a-room/timestamp_to_event", a, params={"ts": 1, "dir": "f"}
    )
    await hs.err(401, "M_MISSING_TOKEN", "GET", path, params={"ts": 1, "dir": "f"})


# -- mutual rooms ---------------------------------------------------------------------------------
async def test_mutual_rooms(hs: Harness, checked: ConformanceRecorder) -> None:
    a, b, c = await hs.register("alice"), await hs.register("bob"), await hs.register("carol")
    shared = sorted([await hs.create_room(a, preset="public_chat") for _ in range(3)])
    for room in shared:
        await hs.ok("POST", f"{V3}/rooms/{room}/join", b, json={})
    invited = await hs.create_room(a, preset="private_chat", invite=[b.user_id])  # bob only invited
    left = shared.pop()
    await hs.ok("POST", f"{V3}/rooms/{left}/leave", a, json={})
    mine = await hs.create_room(a)
    for path in (f"{V1}/mutual_rooms", MSC2666):
        got = await hs.ok("GET", path, a, params={"user_id": b.user_id})
        assert got == {"joined": shared, "count": 2}
        assert (await hs.ok("GET", path, b, params={"user_id": a.user_id})) == got
        assert (await hs.ok("GET", path, a, params={"user_id": c.user_id})) == {"joined": [], "count": 0}
        unknown = await hs.ok("GET", path, a, params={"user_id": "@nobody:test.local"})
        assert unknown == {"joined": [], "count": 0}  # the spec: an unknown user shares no rooms
        await hs.err(400, "M_INVALID_PARAM", "GET", path, a, params={"user_id": a.user_id})
        await hs.err(400, "M_MISSING_PARAM", "GET", path, a)
        await hs.err(400, "M_INVALID_PARAM", "GET", path, a, params={"user_id": "bob"})
        await hs.err(400, "M_INVALID_PARAM", "GET", path, a, params={"user_id": b.user_id, "from": "junk"})
        await hs.err(401, "M_MISSING_TOKEN", "GET", path, params={"user_id": b.user_id})
    assert invited not in shared and mine not in shared
    assert spec_problems(checked) == []


async def test_mutual_rooms_pages(hs: Harness) -> None:
    a, b = await hs.register("alice"), await hs.register("bob")
    shared = sorted([await hs.create_room(a, preset="public_chat") for _ in range(3)])
    for room in shared:
        await hs.ok("POST", f"{V3}/rooms/{room}/join", b, json={})
    srv = hs.server
    info = RoomInfo(srv.events, srv.aliases, srv.room_info.store, page_size=2)
    first = await info.mutual_rooms(a.user_id, b.user_id, None)
    assert first == {"joined": shared[:2], "count": 3, "next_batch": shared[1]}
    last = await info.mutual_rooms(a.user_id, b.user_id, first["next_batch"])
    assert last == {"joined": shared[2:], "count": 3}
