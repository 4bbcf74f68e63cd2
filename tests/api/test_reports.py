"""Reporting content: events, rooms and users reported by users (spec "Reporting content"), kept
for the admins (Synapse's event, room and user report lists) and audited."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Harness, User
from tests.api.openapi import ConformanceRecorder, spec

V3 = "/_matrix/client/v3"
ADMIN = "/_synapse/admin/v1"


async def admin(hs: Harness, name: str = "boss") -> User:
    u = await hs.register(name)
    await hs.server.accounts.update_user(u.user_id, admin=True)
    return u


async def audited(hs: Harness, kind: str) -> list[dict[str, Any]]:
    return [e async for e in hs.server.audit.export() if e["kind"] == kind]


async def test_report_event(hs: Harness) -> None:
    checked = ConformanceRecorder(spec()).attach(hs.http)
    a, b, c = await hs.register("alice"), await hs.register("bob"), await hs.register("carol")
    room = await hs.create_room(a, preset="public_chat", name="Cabinet")
    await hs.ok("POST", f"{V3}/rooms/{room}/join", b, json={})
    msg = await hs.send(a, room, "something offensive")
    path = f"{V3}/rooms/{room}/report/{msg}"
    assert await hs.ok("POST", path, b, json={"reason": "offensive", "score": -100}) == {}
    assert await hs.ok("POST", f"{V3}/rooms/{room}/report/{msg}", b, json={}) == {}  # reason is optional
    # Not joined, an unknown event, an event of another room: the same 404.
    other = await hs.create_room(b)
    elsewhere = await hs.send(b, other, "elsewhere")
    await hs.err(404, "M_NOT_FOUND", "POST", path, c, json={"reason": "x"})
    await hs.err(404, "M_NOT_FOUND", "POST", f"{V3}/rooms/{room}/report/$nothing", b, json={"reason": "x"})
    await hs.err(404, "M_NOT_FOUND", "POST", f"{V3}/rooms/{room}/report/{elsewhere}", b, json={"reason": "x"})
    await hs.err(404, "M_NOT_FOUND", "POST", f"{V3}/rooms/!nothing:test.local/report/{msg}", b, json={"reason": "x"})
    # Bad input.
    await hs.err(400, "M_INVALID_PARAM", "POST", path, b, json={"reason": "x" * 1001})
    await hs.err(400, "M_INVALID_PARAM", "POST", path, b, json={"reason": "x", "score": 5})
    await hs.err(400, "M_BAD_JSON", "POST", path, b, json={"reason": "x", "score": "bad"})
    await hs.err(400, "M_BAD_JSON", "POST", path, b, json={"reason": 7})
    await hs.err(400, "M_INVALID_PARAM", "POST", f"{V3}/rooms/{room}/report/not-an-event", b, json={})
    await hs.err(401, "M_MISSING_TOKEN", "POST", path, json={"reason": "x"})
    # Once gone, bob may no longer report what he saw there.
    await hs.ok("POST", f"{V3}/rooms/{room}/leave", b, json={})
    await hs.err(404, "M_NOT_FOUND", "POST", path, b, json={"reason": "x"})
    records = await audited(hs, "report.event")
    assert [(r["actor"], r["target"], r["details"]["room_id"]) for r in records] == [(b.user_id, msg, room)] * 2
    assert [p for s in checked.seen if s.operation for p in s.problems] == []
    assert "POST /_matrix/client/v3/rooms/{roomId}/report/{eventId}" in checked.operations(status_class=2)


async def test_reported_events_are_hidden_from_who_may_not_see_them(hs: Harness) -> None:
    a, b = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(a, preset="public_chat")
    await hs.ok("PUT", f"{V3}/rooms/{room}/state/m.room.history_visibility/", a, json={"history_visibility": "joined"})
    before = await hs.send(a, room, "before bob")
    await hs.ok("POST", f"{V3}/rooms/{room}/join", b, json={})
    await hs.err(404, "M_NOT_FOUND", "POST", f"{V3}/rooms/{room}/report/{before}", b, json={"reason": "x"})
    after = await hs.send(a, room, "after bob")
    await hs.ok("POST", f"{V3}/rooms/{room}/report/{after}", b, json={"reason": "x"})


async def test_admins_list_read_and_delete_event_reports(hs: Harness) -> None:
    boss = await admin(hs)
    a, b, c = await hs.register("alice"), await hs.register("bob"), await hs.register("carol")
    room = await hs.create_room(a, preset="public_chat", name="Cabinet", room_alias_name="cabinet")
    quiet = await hs.create_room(c, preset="public_chat")
    for u in (b, c):
        await hs.ok("POST", f"{V3}/rooms/{room}/join", u, json={})
    await hs.ok("POST", f"{V3}/rooms/{quiet}/join", b, json={})
    by_alice = await hs.send(a, room, "from alice")
    by_carol = await hs.send(c, quiet, "from carol")
    await hs.ok("POST", f"{V3}/rooms/{room}/report/{by_alice}", b, json={"reason": "first", "score": -50})
    await hs.ok("POST", f"{V3}/rooms/{room}/report/{by_alice}", c, json={"reason": "second"})
    await hs.ok("POST", f"{V3}/rooms/{quiet}/report/{by_carol}", b, json={"reason": "third"})

    await hs.err(403, "M_FORBIDDEN", "GET", f"{ADMIN}/event_reports", b)
    await hs.err(401, "M_MISSING_TOKEN", "GET", f"{ADMIN}/event_reports")
    listed = await hs.ok("GET", f"{ADMIN}/event_reports", boss)
    assert listed["total"] == 3 and "next_token" not in listed
    assert [r["reason"] for r in listed["event_reports"]] == ["third", "second", "first"]  # newest first
    first = listed["event_reports"][2]
    assert first == {
        "id": first["id"],
        "received_ts": first["received_ts"],
        "room_id": room,
        "name": "Cabinet",
        "canonical_alias": "#cabinet:test.local",
        "event_id": by_alice,
        "user_id": b.user_id,
        "sender": a.user_id,
        "reason": "first",
        "score": -50,
    }
    oldest = await hs.ok("GET", f"{ADMIN}/event_reports", boss, params={"dir": "f", "limit": 2})
    assert [r["reason"] for r in oldest["event_reports"]] == ["first", "second"] and oldest["next_token"] == 2
    rest = await hs.ok("GET", f"{ADMIN}/event_reports", boss, params={"dir": "f", "limit": 2, "from": 2})
    assert [r["reason"] for r in rest["event_reports"]] == ["third"] and "next_token" not in rest
    for params, reasons in (
        ({"user_id": "BOB"}, ["third", "first"]),  # any part of the reporter's ID, case aside
        ({"room_id": quiet[1:8]}, ["third"]),
        ({"sender_user_id": a.user_id}, ["second", "first"]),
        ({"sender_user_id": "alice"}, []),  # the sender is matched exactly
    ):
        got = await hs.ok("GET", f"{ADMIN}/event_reports", boss, params=params)
        assert [r["reason"] for r in got["event_reports"]] == reasons and got["total"] == len(reasons), params
    await hs.err(400, "M_INVALID_PARAM", "GET", f"{ADMIN}/event_reports", boss, params={"dir": "x"})
    await hs.err(400, "M_INVALID_PARAM", "GET", f"{ADMIN}/event_reports", boss, params={"user_id": "x" * 300})

    one = await hs.ok("GET", f"{ADMIN}/event_reports/{first['id']}", boss)
    assert one["event_json"]["content"]["body"] == "from alice" and one["reason"] == "first"
    await hs.err(404, "M_NOT_FOUND", "GET", f"{ADMIN}/event_reports/999999", boss)
    for bad in ("abc", "-1", "99999999999"):
        await hs.err(400, "M_INVALID_PARAM", "GET", f"{ADMIN}/event_reports/{bad}", boss)
    await hs.err(403, "M_FORBIDDEN", "DELETE", f"{ADMIN}/event_reports/{first['id']}", b)
    assert await hs.ok("DELETE", f"{ADMIN}/event_reports/{first['id']}", boss) == {}
    await hs.err(404, "M_NOT_FOUND", "GET", f"{ADMIN}/event_reports/{first['id']}", boss)
    await hs.err(404, "M_NOT_FOUND", "DELETE", f"{ADMIN}/event_reports/{first['id']}", boss)
    assert (await hs.ok("GET", f"{ADMIN}/event_reports", boss))["total"] == 2
    deleted = await audited(hs, "admin.report_deleted")
    assert [(r["actor"], r["details"]) for r in deleted] == [
        (boss.user_id, {"kind": "event", "report_id": first["id"]})
    ]


async def test_report_rooms_and_users(hs: Harness) -> None:
    checked = ConformanceRecorder(spec()).attach(hs.http)
    boss = await admin(hs)
    a, b = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(a, preset="private_chat", name="Hidden", topic="Secrets")
    # A room: its members or not (bob was never in it); a user: anyone.
    assert await hs.ok("POST", f"{V3}/rooms/{room}/report", b, json={"reason": "spam"}) == {}
    assert await hs.ok("POST", f"{V3}/users/{a.user_id}/report", b, json={"reason": ""}) == {}  # may be blank
    await hs.ok("POST", f"{V3}/users/{b.user_id}/report", a, json={"reason": "rude"})
    await hs.err(404, "M_NOT_FOUND", "POST", f"{V3}/rooms/!nothing:test.local/report", b, json={"reason": "x"})
    await hs.err(404, "M_NOT_FOUND", "POST", f"{V3}/users/@nobody:test.local/report", b, json={"reason": "x"})
    await hs.err(404, "M_NOT_FOUND", "POST", f"{V3}/users/@someone:elsewhere.org/report", b, json={"reason": "x"})
    await hs.err(400, "M_INVALID_PARAM", "POST", f"{V3}/users/nobody/report", b, json={"reason": "x"})
    await hs.err(400, "M_INVALID_PARAM", "POST", f"{V3}/rooms/nothing/report", b, json={"reason": "x"})
    await hs.err(400, "M_BAD_JSON", "POST", f"{V3}/rooms/{room}/report", b, json={})  # reason is required
    await hs.err(400, "M_NOT_JSON", "POST", f"{V3}/users/{a.user_id}/report", b, content=b"nope")
    await hs.err(400, "M_INVALID_PARAM", "POST", f"{V3}/users/{a.user_id}/report", b, json={"reason": "x" * 1001})
    assert [p for s in checked.seen if s.operation for p in s.problems] == []
    assert {"POST /_matrix/client/v3/rooms/{roomId}/report", "POST /_matrix/client/v3/users/{userId}/report"} <= (
        checked.operations(status_class=2)
    )

    rooms = await hs.ok("GET", f"{ADMIN}/room_reports", boss)
    report = rooms["room_reports"][0]
    assert rooms["total"] == 1 and "next_batch" not in rooms
    assert {k: v for k, v in report.items() if k not in ("id", "received_ts")} == {
        "room_id": room,
        "user_id": b.user_id,
        "reason": "spam",
        "name": "Hidden",
        "canonical_alias": None,
        "topic": "Secrets",
    }
    assert await hs.ok("GET", f"{ADMIN}/room_reports/{report['id']}", boss) == report
    users = await hs.ok("GET", f"{ADMIN}/user_reports", boss)
    assert [(r["user_id"], r["target_user_id"], r["reason"]) for r in users["user_reports"]] == [
        (a.user_id, b.user_id, "rude"),
        (b.user_id, a.user_id, ""),
    ]
    mine = await hs.ok("GET", f"{ADMIN}/user_reports", boss, params={"target_user_id": a.user_id})
    assert [r["user_id"] for r in mine["user_reports"]] == [b.user_id] and mine["total"] == 1
    page = await hs.ok("GET", f"{ADMIN}/user_reports", boss, params={"limit": 1})
    assert len(page["user_reports"]) == 1 and page["next_token"] == 1
    # Each kind is its own list: a room report's ID is no user report.
    await hs.err(404, "M_NOT_FOUND", "GET", f"{ADMIN}/user_reports/{report['id']}", boss)
    await hs.err(404, "M_NOT_FOUND", "GET", f"{ADMIN}/event_reports/{report['id']}", boss)
    await hs.ok("DELETE", f"{ADMIN}/room_reports/{report['id']}", boss)
    assert (await hs.ok("GET", f"{ADMIN}/room_reports", boss))["total"] == 0
    target = users["user_reports"][0]
    assert await hs.ok("GET", f"{ADMIN}/user_reports/{target['id']}", boss) == target
    await hs.ok("DELETE", f"{ADMIN}/user_reports/{target['id']}", boss)
    assert (await hs.ok("GET", f"{ADMIN}/user_reports", boss))["total"] == 1

    assert [(r["actor"], r["target"]) for r in await audited(hs, "report.room")] == [(b.user_id, room)]
    assert [(r["actor"], r["target"]) for r in await audited(hs, "report.user")] == [
        (b.user_id, a.user_id),
        (a.user_id, b.user_id),
    ]
