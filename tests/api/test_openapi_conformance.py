"""Wire-format conformance: a realistic session of two officials, every response checked against
the spec's own OpenAPI document (tests/api/openapi.py), on SQLite and PostgreSQL.

The recorder hooks the harness's HTTP client, so every response of the scenario is validated —
successes and errors alike — and the test fails listing each mismatch with its JSON path.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from tests.api.conftest import Harness, User
from tests.api.openapi import ConformanceRecorder, missing, spec

V3 = "/_matrix/client/v3"
V1 = "/_matrix/client/v1"

# Operations this scenario must reach with a successful (2xx) answer; a guard against the scenario
# silently losing coverage when an endpoint starts failing.
EXPECTED_OK = [
    "GET /.well-known/matrix/client",
    "GET /_matrix/client/versions",
    "GET /_matrix/client/v3/login",
    "POST /_matrix/client/v3/login",
    "POST /_matrix/client/v3/refresh",
    "GET /_matrix/client/v3/account/whoami",
    "GET /_matrix/client/v3/capabilities",
    "GET /_matrix/client/v3/register/available",
    "GET /_matrix/client/v1/register/m.login.registration_token/validity",
    "GET /_matrix/client/v3/account/3pid",
    "POST /_matrix/client/v3/account/password",
    "POST /_matrix/client/v3/account/deactivate",
    "POST /_matrix/client/v3/logout",
    "POST /_matrix/client/v3/logout/all",
    "POST /_matrix/client/v3/createRoom",
    "GET /_matrix/client/v3/joined_rooms",
    "POST /_matrix/client/v3/rooms/{roomId}/invite",
    "POST /_matrix/client/v3/rooms/{roomId}/join",
    "POST /_matrix/client/v3/join/{roomIdOrAlias}",
    "POST /_matrix/client/v3/knock/{roomIdOrAlias}",
    "POST /_matrix/client/v3/rooms/{roomId}/leave",
    "POST /_matrix/client/v3/rooms/{roomId}/forget",
    "POST /_matrix/client/v3/rooms/{roomId}/kick",
    "POST /_matrix/client/v3/rooms/{roomId}/ban",
    "POST /_matrix/client/v3/rooms/{roomId}/unban",
    "PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}",
    "PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}",
    "GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}",
    "GET /_matrix/client/v3/rooms/{roomId}/state",
    "PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}",
    "GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}",
    "GET /_matrix/client/v3/rooms/{roomId}/members",
    "GET /_matrix/client/v3/rooms/{roomId}/joined_members",
    "GET /_matrix/client/v3/rooms/{roomId}/messages",
    "GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}",
    "POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}",
    "POST /_matrix/client/v3/rooms/{roomId}/read_markers",
    "PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}",
    "GET /_matrix/client/v3/presence/{userId}/status",
    "PUT /_matrix/client/v3/presence/{userId}/status",
    "GET /_matrix/client/v3/user/{userId}/account_data/{type}",
    "PUT /_matrix/client/v3/user/{userId}/account_data/{type}",
    "GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}",
    "PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}",
    "GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags",
    "PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}",
    "DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}",
    "GET /_matrix/client/v3/profile/{userId}",
    "GET /_matrix/client/v3/profile/{userId}/{keyName}",
    "PUT /_matrix/client/v3/profile/{userId}/{keyName}",
    "DELETE /_matrix/client/v3/profile/{userId}/{keyName}",
    "GET /_matrix/client/v3/devices",
    "GET /_matrix/client/v3/devices/{deviceId}",
    "PUT /_matrix/client/v3/devices/{deviceId}",
    "DELETE /_matrix/client/v3/devices/{deviceId}",
    "POST /_matrix/client/v3/delete_devices",
    "POST /_matrix/client/v3/user/{userId}/filter",
    "GET /_matrix/client/v3/user/{userId}/filter/{filterId}",
    "GET /_matrix/client/v3/sync",
    "GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}",
    "GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}",
    "GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}",
    "GET /_matrix/client/v1/rooms/{roomId}/threads",
    "GET /_matrix/client/v3/pushrules/",
    "GET /_matrix/client/v3/pushrules/global/",
    "GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}",
    "PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}",
    "DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}",
    "GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled",
    "PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled",
    "GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions",
    "PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions",
    "GET /_matrix/client/v3/directory/room/{roomAlias}",
    "PUT /_matrix/client/v3/directory/room/{roomAlias}",
    "DELETE /_matrix/client/v3/directory/room/{roomAlias}",
    "GET /_matrix/client/v3/rooms/{roomId}/aliases",
    "GET /_matrix/client/v3/directory/list/room/{roomId}",
    "PUT /_matrix/client/v3/directory/list/room/{roomId}",
    "GET /_matrix/client/v3/publicRooms",
    "POST /_matrix/client/v3/publicRooms",
    "POST /_matrix/client/v3/user_directory/search",
    "GET /_matrix/client/v3/thirdparty/protocols",
    "GET /_matrix/client/v3/voip/turnServer",
]


@pytest.fixture
async def checked(hs: Harness) -> ConformanceRecorder:
    return ConformanceRecorder(spec()).attach(hs.http)


def q(value: str) -> str:
    return quote(value, safe="")


async def txn_put(hs: Harness, user: User, room_id: str, event_type: str, content: dict[str, Any]) -> str:
    import uuid

    path = f"{V3}/rooms/{q(room_id)}/send/{q(event_type)}/{uuid.uuid4().hex}"
    return str((await hs.ok("PUT", path, user, json=content))["event_id"])


async def test_scenario_conforms_to_the_spec(hs: Harness, checked: ConformanceRecorder) -> None:
    alice = await hs.register("alice", "alice-password-1")
    bob = await hs.register("bob", "bob-password-1")
    await discovery_and_accounts(hs, alice)
    rooms = await room_lifecycle(hs, alice, bob)
    await events_and_reading(hs, alice, bob, rooms["private"])
    await ephemeral_and_account_data(hs, alice, rooms["private"])
    await profile_devices_filters(hs, alice)
    await push_rules(hs, alice)
    await directory(hs, alice, bob, rooms["public"])
    await errors(hs, alice, bob)
    await sessions_and_deactivation(hs)

    assert len(checked.seen) > 120, "the recorder is not seeing the scenario's responses"
    assert not checked.problems, "responses that break the spec:\n" + checked.report()
    lost = missing(EXPECTED_OK, checked.operations(status_class=2))
    assert not lost, f"the scenario no longer reaches these operations successfully: {lost}"


async def discovery_and_accounts(hs: Harness, alice: User) -> None:
    await hs.ok("GET", "/.well-known/matrix/client")
    await hs.ok("GET", "/_matrix/client/versions")
    await hs.ok("GET", f"{V3}/login")
    login = await hs.ok(
        "POST",
        f"{V3}/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "alice"},
            "password": "alice-password-1",
            "initial_device_display_name": "laptop",
            "refresh_token": True,
        },
    )
    assert login["user_id"] == alice.user_id
    refreshed = await hs.ok("POST", f"{V3}/refresh", json={"refresh_token": login["refresh_token"]})
    assert refreshed["access_token"] != login["access_token"]
    await hs.ok("GET", f"{V3}/account/whoami", alice)
    await hs.ok("GET", f"{V3}/capabilities", alice)
    await hs.ok("GET", f"{V3}/register/available", params={"username": "carol"})
    await hs.err(400, "M_USER_IN_USE", "GET", f"{V3}/register/available", params={"username": "alice"})
    await hs.err(400, "M_INVALID_USERNAME", "GET", f"{V3}/register/available", params={"username": "Ä b"})
    await hs.ok("GET", f"{V1}/register/m.login.registration_token/validity", params={"token": "nope"})
    uia = await hs.request("POST", f"{V3}/register", json={"username": "carol", "password": "pw-pw-pw-pw"})
    assert uia.status_code == 401 and "flows" in uia.json()
    await hs.ok("GET", f"{V3}/account/3pid", alice)
    await hs.err(
        403,
        "M_FORBIDDEN",
        "POST",
        f"{V3}/login",
        json={"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "wrong"},
    )
    await hs.err(401, "M_UNKNOWN_TOKEN", "POST", f"{V3}/refresh", json={"refresh_token": "not-a-token"})


async def room_lifecycle(hs: Harness, alice: User, bob: User) -> dict[str, str]:
    rooms = {
        "private": await hs.create_room(
            alice, preset="private_chat", name="Cabinet", topic="Agenda", invite=[bob.user_id], is_direct=False
        ),
        "trusted": await hs.create_room(alice, preset="trusted_private_chat", invite=[bob.user_id], is_direct=True),
        "public": await hs.create_room(
            alice,
            preset="public_chat",
            visibility="public",
            room_alias_name="notices",
            name="Notices",
            initial_state=[
                {
                    "type": "m.room.history_visibility",
                    "state_key": "",
                    "content": {"history_visibility": "world_readable"},
                }
            ],
        ),
        "knock": await hs.create_room(
            alice,
            preset="private_chat",
            initial_state=[{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}],
            power_level_content_override={"kick": 60},
        ),
    }
    await hs.ok("POST", f"{V3}/rooms/{q(rooms['private'])}/join", bob, json={})
    await hs.ok("POST", f"{V3}/join/{q(rooms['trusted'])}", bob, json={"reason": "hello"})
    await hs.ok("POST", f"{V3}/join/{q('#notices:test.local')}", bob)
    await hs.ok("POST", f"{V3}/knock/{q(rooms['knock'])}", bob, json={"reason": "may I?"})
    await hs.ok("POST", f"{V3}/rooms/{q(rooms['knock'])}/invite", alice, json={"user_id": bob.user_id})
    joined = await hs.ok("GET", f"{V3}/joined_rooms", bob)
    assert rooms["private"] in joined["joined_rooms"]
    await hs.ok("POST", f"{V3}/rooms/{q(rooms['public'])}/kick", alice, json={"user_id": bob.user_id, "reason": "x"})
    await hs.ok("POST", f"{V3}/rooms/{q(rooms['public'])}/ban", alice, json={"user_id": bob.user_id})
    await hs.ok("POST", f"{V3}/rooms/{q(rooms['public'])}/unban", alice, json={"user_id": bob.user_id})
    await hs.ok("POST", f"{V3}/rooms/{q(rooms['trusted'])}/leave", bob, json={})
    await hs.ok("POST", f"{V3}/rooms/{q(rooms['trusted'])}/forget", bob, json={})
    # Bob's sync sees invites and leaves, Alice's incremental sync the membership changes.
    await hs.sync(bob)
    return rooms


async def events_and_reading(hs: Harness, alice: User, bob: User, room: str) -> None:
    r = q(room)
    initial = await hs.sync(alice)
    root = await hs.send(alice, room, "Budget draft attached")
    await hs.send(bob, room, "Looks fine")
    reply = await txn_put(
        hs,
        bob,
        room,
        "m.room.message",
        {"msgtype": "m.text", "body": "In thread", "m.relates_to": {"rel_type": "m.thread", "event_id": root}},
    )
    await txn_put(
        hs, alice, room, "m.reaction", {"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "👍"}}
    )
    await txn_put(
        hs,
        alice,
        room,
        "m.room.message",
        {
            "msgtype": "m.text",
            "body": "* Budget draft v2",
            "m.new_content": {"msgtype": "m.text", "body": "v2"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": root},
        },
    )
    doomed = await hs.send(alice, room, "typo")
    await hs.ok("PUT", f"{V3}/rooms/{r}/redact/{q(doomed)}/t1", alice, json={"reason": "typo"})
    await hs.ok("PUT", f"{V3}/rooms/{r}/state/m.room.topic/", alice, json={"topic": "New agenda"})
    await hs.ok("PUT", f"{V3}/rooms/{r}/state/org.example.custom/key1", alice, json={"a": 1})
    await hs.ok("GET", f"{V3}/rooms/{r}/state/m.room.topic/", alice)
    await hs.ok("GET", f"{V3}/rooms/{r}/state/m.room.topic", alice, params={"format": "event"})
    await hs.ok("GET", f"{V3}/rooms/{r}/state/org.example.custom/key1", alice)
    await hs.ok("GET", f"{V3}/rooms/{r}/state", alice)
    await hs.ok("GET", f"{V3}/rooms/{r}/event/{q(root)}", alice)
    await hs.ok("GET", f"{V3}/rooms/{r}/event/{q(doomed)}", alice)
    await hs.ok("GET", f"{V3}/rooms/{r}/members", alice)
    await hs.ok("GET", f"{V3}/rooms/{r}/members", alice, params={"membership": "join"})
    await hs.ok("GET", f"{V3}/rooms/{r}/joined_members", alice)
    page = await hs.ok("GET", f"{V3}/rooms/{r}/messages", alice, params={"dir": "b", "limit": 3})
    await hs.ok("GET", f"{V3}/rooms/{r}/messages", alice, params={"dir": "b", "from": page["end"]})
    await hs.ok(
        "GET",
        f"{V3}/rooms/{r}/messages",
        alice,
        params={"dir": "f", "filter": '{"lazy_load_members": true, "types": ["m.room.message"]}'},
    )
    await hs.ok("GET", f"{V3}/rooms/{r}/context/{q(root)}", alice, params={"limit": 4})
    rel = f"{V1}/rooms/{r}/relations/{q(root)}"
    await hs.ok("GET", rel, alice)
    await hs.ok("GET", f"{rel}/m.thread", alice, params={"limit": 1})
    await hs.ok("GET", f"{rel}/m.annotation/m.reaction", alice, params={"dir": "f"})
    await hs.ok("GET", f"{V1}/rooms/{r}/threads", alice)
    await hs.ok("GET", f"{V1}/rooms/{r}/threads", alice, params={"include": "participated"})
    await hs.ok("POST", f"{V3}/rooms/{r}/receipt/m.read/{q(reply)}", alice, json={})
    await hs.ok("POST", f"{V3}/rooms/{r}/receipt/m.read/{q(reply)}", bob, json={"thread_id": root})
    await hs.ok("POST", f"{V3}/rooms/{r}/receipt/m.read.private/{q(reply)}", bob, json={})
    await hs.ok("POST", f"{V3}/rooms/{r}/read_markers", bob, json={"m.fully_read": reply, "m.read": reply})
    await hs.ok("PUT", f"{V3}/rooms/{r}/typing/{q(bob.user_id)}", bob, json={"typing": True, "timeout": 30000})
    await hs.sync(alice, since=initial["next_batch"])
    await hs.sync(bob, full_state="true", filter='{"room": {"timeline": {"limit": 2}}}')


async def ephemeral_and_account_data(hs: Harness, alice: User, room: str) -> None:
    me, r = q(alice.user_id), q(room)
    await hs.ok("PUT", f"{V3}/presence/{me}/status", alice, json={"presence": "unavailable", "status_msg": "away"})
    await hs.ok("GET", f"{V3}/presence/{me}/status", alice)
    await hs.ok("PUT", f"{V3}/user/{me}/account_data/org.example.settings", alice, json={"theme": "dark"})
    await hs.ok("GET", f"{V3}/user/{me}/account_data/org.example.settings", alice)
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/user/{me}/account_data/org.example.unset", alice)
    await hs.ok("PUT", f"{V3}/user/{me}/rooms/{r}/account_data/org.example.room", alice, json={"pinned": True})
    await hs.ok("GET", f"{V3}/user/{me}/rooms/{r}/account_data/org.example.room", alice)
    await hs.ok("PUT", f"{V3}/user/{me}/rooms/{r}/tags/m.favourite", alice, json={"order": 0.5})
    await hs.ok("PUT", f"{V3}/user/{me}/rooms/{r}/tags/u.work", alice, json={})
    tags = await hs.ok("GET", f"{V3}/user/{me}/rooms/{r}/tags", alice)
    assert set(tags["tags"]) == {"m.favourite", "u.work"}
    await hs.ok("DELETE", f"{V3}/user/{me}/rooms/{r}/tags/u.work", alice)
    await hs.sync(alice)


async def profile_devices_filters(hs: Harness, alice: User) -> None:
    me = q(alice.user_id)
    await hs.ok("PUT", f"{V3}/profile/{me}/displayname", alice, json={"displayname": "Alice Sharma"})
    await hs.ok("PUT", f"{V3}/profile/{me}/avatar_url", alice, json={"avatar_url": "mxc://test.local/abc"})
    await hs.ok("GET", f"{V3}/profile/{me}", alice)
    await hs.ok("GET", f"{V3}/profile/{me}/displayname")
    await hs.ok("DELETE", f"{V3}/profile/{me}/avatar_url", alice)
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/profile/{me}/avatar_url")
    await hs.ok("GET", f"{V3}/profile/{me}/avatar_url".replace("avatar_url", "displayname"))
    await hs.ok("POST", f"{V3}/user_directory/search", alice, json={"search_term": "bob", "limit": 5})
    devices = await hs.ok("GET", f"{V3}/devices", alice)
    assert devices["devices"]
    await hs.ok("PUT", f"{V3}/devices/{q(alice.device_id)}", alice, json={"display_name": "Desk PC"})
    await hs.ok("GET", f"{V3}/devices/{q(alice.device_id)}", alice)
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/devices/NOPE", alice)
    spare = await hs.server.auth.start_session(alice.user_id, "SPARE1", "spare")
    first = await hs.request("DELETE", f"{V3}/devices/SPARE1", alice, json={})
    assert first.status_code == 401
    await hs.ok(
        "DELETE",
        f"{V3}/devices/SPARE1",
        alice,
        json={
            "auth": {
                "type": "m.login.password",
                "session": first.json()["session"],
                "identifier": {"type": "m.id.user", "user": alice.user_id},
                "password": "alice-password-1",
            }
        },
    )
    assert spare.device_id == "SPARE1"
    await hs.server.auth.start_session(alice.user_id, "SPARE2", "spare")
    first = await hs.request("POST", f"{V3}/delete_devices", alice, json={"devices": ["SPARE2"]})
    assert first.status_code == 401
    await hs.ok(
        "POST",
        f"{V3}/delete_devices",
        alice,
        json={
            "devices": ["SPARE2"],
            "auth": {
                "type": "m.login.password",
                "session": first.json()["session"],
                "user": "alice",
                "password": "alice-password-1",
            },
        },
    )
    made = await hs.ok(
        "POST",
        f"{V3}/user/{me}/filter",
        alice,
        json={
            "event_fields": ["type", "content.body"],
            "room": {"timeline": {"limit": 5, "types": ["m.room.message"]}, "state": {"lazy_load_members": True}},
            "presence": {"not_types": ["*"]},
        },
    )
    await hs.ok("GET", f"{V3}/user/{me}/filter/{made['filter_id']}", alice)
    await hs.sync(alice, filter=made["filter_id"])


async def push_rules(hs: Harness, alice: User) -> None:
    base = f"{V3}/pushrules"
    await hs.ok("GET", f"{base}/", alice)
    await hs.ok("GET", f"{base}/global/", alice)
    await hs.ok("GET", f"{base}/global/override/.m.rule.master", alice)
    await hs.ok("PUT", f"{base}/global/override/.m.rule.master/enabled", alice, json={"enabled": False})
    await hs.ok("GET", f"{base}/global/override/.m.rule.master/enabled", alice)
    await hs.ok("GET", f"{base}/global/underride/.m.rule.message/actions", alice)
    await hs.ok("PUT", f"{base}/global/underride/.m.rule.message/actions", alice, json={"actions": ["notify"]})
    await hs.ok(
        "PUT",
        f"{base}/global/content/budget",
        alice,
        json={"pattern": "budget", "actions": ["notify", {"set_tweak": "highlight"}]},
    )
    quiet = {"conditions": [{"kind": "event_match", "key": "type", "pattern": "m.call.*"}], "actions": []}
    await hs.ok("PUT", f"{base}/global/override/org.example.quiet", alice, json=quiet)
    await hs.ok(
        "PUT", f"{base}/global/override/org.example.first", alice, params={"before": "org.example.quiet"}, json=quiet
    )
    # Rules cannot be placed relative to the server's predefined rules.
    await hs.err(
        400,
        "M_UNKNOWN",
        "PUT",
        f"{base}/global/override/org.example.bad",
        alice,
        params={"after": ".m.rule.master"},
        json=quiet,
    )
    await hs.ok("PUT", f"{base}/global/room/{q('!room:test.local')}", alice, json={"actions": []})
    await hs.ok("GET", f"{base}/global/content/budget", alice)
    await hs.ok("DELETE", f"{base}/global/content/budget", alice)
    await hs.err(404, "M_NOT_FOUND", "GET", f"{base}/global/content/budget", alice)
    await hs.ok("GET", f"{base}/", alice)


async def directory(hs: Harness, alice: User, bob: User, public_room: str) -> None:
    alias = q("#budget:test.local")
    await hs.ok("PUT", f"{V3}/directory/room/{alias}", alice, json={"room_id": public_room})
    await hs.err(409, "M_UNKNOWN", "PUT", f"{V3}/directory/room/{alias}", alice, json={"room_id": public_room})
    await hs.ok("GET", f"{V3}/directory/room/{alias}")
    await hs.ok("GET", f"{V3}/rooms/{q(public_room)}/aliases", alice)
    await hs.ok("DELETE", f"{V3}/directory/room/{alias}", alice)
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/directory/room/{alias}")
    await hs.ok("GET", f"{V3}/directory/list/room/{q(public_room)}")
    await hs.ok("PUT", f"{V3}/directory/list/room/{q(public_room)}", alice, json={"visibility": "public"})
    await hs.ok("GET", f"{V3}/publicRooms", params={"limit": 1})
    await hs.ok("POST", f"{V3}/publicRooms", bob, json={"limit": 5, "filter": {"generic_search_term": "notic"}})
    await hs.ok("GET", f"{V3}/thirdparty/protocols", alice)
    await hs.ok("GET", f"{V3}/voip/turnServer", alice)
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/room_keys/version", alice)


async def errors(hs: Harness, alice: User, bob: User) -> None:
    await hs.err(401, "M_MISSING_TOKEN", "GET", f"{V3}/account/whoami")
    await hs.err(401, "M_UNKNOWN_TOKEN", "GET", f"{V3}/account/whoami", headers={"Authorization": "Bearer nope"})
    await hs.err(400, "M_NOT_JSON", "POST", f"{V3}/createRoom", alice, content=b"{not json")
    await hs.err(400, "M_BAD_JSON", "POST", f"{V3}/createRoom", alice, json={"name": 5})
    await hs.err(404, "M_UNRECOGNIZED", "GET", f"{V3}/no/such/endpoint", alice)
    elsewhere = await hs.create_room(bob, preset="private_chat")
    await hs.err(403, "M_FORBIDDEN", "GET", f"{V3}/rooms/{q(elsewhere)}/messages", alice)
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/rooms/{q('!nowhere:test.local')}/messages", alice)
    await hs.err(400, "M_INVALID_PARAM", "GET", f"{V3}/rooms/not-a-room/state", alice)
    await hs.err(403, "M_FORBIDDEN", "PUT", f"{V3}/user/{q('@bob:test.local')}/account_data/x", alice, json={})


async def sessions_and_deactivation(hs: Harness) -> None:
    dave = await hs.register("dave", "dave-password-1")
    other = await hs.ok(
        "POST", f"{V3}/login", json={"type": "m.login.password", "user": "dave", "password": "dave-password-1"}
    )
    body: dict[str, Any] = {"new_password": "dave-password-2", "logout_devices": False}
    first = await hs.request("POST", f"{V3}/account/password", dave, json=body)
    assert first.status_code == 401
    await hs.ok(
        "POST",
        f"{V3}/account/password",
        dave,
        json={
            **body,
            "auth": {
                "type": "m.login.password",
                "session": first.json()["session"],
                "user": "dave",
                "password": "dave-password-1",
            },
        },
    )
    await hs.ok("POST", f"{V3}/logout", headers={"Authorization": f"Bearer {other['access_token']}"})
    third = await hs.ok(
        "POST", f"{V3}/login", json={"type": "m.login.password", "user": "dave", "password": "dave-password-2"}
    )
    await hs.ok("POST", f"{V3}/logout/all", headers={"Authorization": f"Bearer {third['access_token']}"})
    erin = await hs.register("erin", "erin-password-1")
    first = await hs.request("POST", f"{V3}/account/deactivate", erin, json={})
    assert first.status_code == 401
    await hs.ok(
        "POST",
        f"{V3}/account/deactivate",
        erin,
        json={
            "auth": {
                "type": "m.login.password",
                "session": first.json()["session"],
                "user": "erin",
                "password": "erin-password-1",
            }
        },
    )


def test_checker_finds_mismatches() -> None:
    """The checker itself: it must reject what the spec rejects, or a green scenario proves nothing."""
    s = spec()
    whoami = "/_matrix/client/v3/account/whoami"
    assert s.check("GET", whoami, 200, {"user_id": "@a:x", "device_id": "D"}) == []
    assert s.check("GET", whoami, 200, {"device_id": "D"})  # user_id is required
    assert s.check("GET", whoami, 200, {"user_id": "not-a-user-id"})  # format mx-user-id
    assert s.check("GET", whoami, 500, {"errcode": "M_UNKNOWN", "error": "boom"})  # never a 5xx
    assert s.check("GET", whoami, 401, {"errcode": "M_MISSING_TOKEN"})  # error text is required here
    assert s.check("GET", whoami, 401, {"errcode": "M_MISSING_TOKEN", "error": "no token"}) == []
    assert s.check("GET", whoami, 201, {"user_id": "@a:x"})  # undeclared success status
    members = "/_matrix/client/r0/rooms/%21r%3Ax/joined_members"  # r0 is checked as v3
    assert s.check("GET", members, 200, {"joined": {"@a:x": {"display_name": None}}})
    assert s.check("GET", members, 200, {"joined": {"@a:x": {"display_name": "A"}}}) == []
    state = "/_matrix/client/v3/rooms/%21r%3Ax/state/m.room.topic"  # stateKey "" without the slash
    assert [o.operation_id for o in s.find("GET", state)] == ["getRoomStateWithKey"]
    event = {
        "type": "m.room.topic",
        "state_key": "",
        "content": {},
        "sender": "@a:x",
        "room_id": "!r:x",
        "event_id": "$e",
        "origin_server_ts": 1,
    }
    assert s.check("GET", state, 200, event) == []
    assert s.check("GET", "/_matrix/client/v3/no/such/thing", 404, {"errcode": "M_UNRECOGNIZED", "error": "?"}) == []
    assert s.check("GET", "/_matrix/client/v3/no/such/thing", 200, {})
