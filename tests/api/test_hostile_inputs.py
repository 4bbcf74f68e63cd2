"""Inputs that once made the server answer 500 (found by the schemathesis run and by probing beside
it), kept as regressions: each must be a 4xx standard Matrix error, on SQLite and on PostgreSQL alike.

NUL (U+0000) is the main family: PostgreSQL text cannot hold it, so every string that reached a text
column — a transaction ID, a state key, an account data type, a display name, a search term, a login
name, a path parameter used in a lookup — failed deep in storage with a DBAPIError.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from tests.api.conftest import Harness

V3 = "/_matrix/client/v3"
NUL = "a\u0000b"
Q = quote(NUL)

RAW = b"raw:"  # a body starting with this is sent as the bytes after it, not as JSON
# (method, path template, JSON body or None); {room}, {user}, {event}, {device} are filled in.
CASES: list[tuple[str, str, Any]] = [
    ("PUT", V3 + "/rooms/{room}/send/m.room.message/t" + Q, {"msgtype": "m.text", "body": "x"}),
    ("PUT", V3 + "/rooms/{room}/send/m.x" + Q + "/t2", {"body": "x"}),
    ("PUT", V3 + "/rooms/{room}/send/m.room.message/t3", {"msgtype": "m.text", "body": NUL}),
    ("PUT", V3 + "/rooms/{room}/state/org.x/" + Q, {"a": 1}),
    ("PUT", V3 + "/rooms/{room}/state/m.room.name/", {"name": NUL}),
    ("PUT", V3 + "/user/{user}/account_data/x" + Q, {"a": 1}),
    ("PUT", V3 + "/user/{user}/account_data/x", {NUL: 1}),
    ("PUT", V3 + "/presence/{user}/status", {"presence": "online", "status_msg": NUL}),
    ("PUT", V3 + "/profile/{user}/displayname", {"displayname": NUL}),
    ("PUT", V3 + "/devices/{device}", {"display_name": NUL}),
    ("GET", V3 + "/devices/" + Q, None),
    ("GET", V3 + "/rooms/{room}/event/" + quote("$" + NUL), None),
    ("GET", V3 + "/rooms/" + quote("!" + NUL + ":x") + "/state", None),
    ("POST", V3 + "/rooms/{room}/receipt/m.read/{event}", {"thread_id": NUL}),
    ("POST", V3 + "/rooms/{room}/read_markers", {"m.fully_read": "$" + NUL}),
    ("PUT", V3 + "/rooms/{room}/redact/{event}/" + Q, {"reason": "x"}),
    ("POST", V3 + "/createRoom", {"name": NUL}),
    ("POST", V3 + "/createRoom", {"initial_state": [{"type": "m.room.name", "content": {"name": NUL}}]}),
    ("POST", V3 + "/createRoom", {"initial_state": [{"type": {}, "state_key": "", "content": {}}]}),
    ("POST", V3 + "/createRoom", {"initial_state": [{"type": "x", "state_key": ["k"], "content": {}}]}),
    ("POST", V3 + "/join/" + quote("#" + NUL + ":test.local"), {}),
    ("POST", V3 + "/rooms/{room}/invite", {"user_id": "@" + NUL + ":test.local"}),
    ("PUT", V3 + "/directory/room/" + quote("#" + NUL + ":test.local"), {"room_id": "!r:test.local"}),
    ("GET", V3 + "/directory/room/" + quote("#" + NUL + ":test.local"), None),
    ("POST", V3 + "/user_directory/search", {"search_term": NUL}),
    ("POST", V3 + "/login", {"type": "m.login.password", "user": NUL, "password": "x"}),
    ("POST", V3 + "/login", {"type": "m.login.password", "user": "alice", "password": "x", "device_id": NUL}),
    ("GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=" + Q, None),
    ("POST", V3 + "/delete_devices", {"devices": [NUL]}),
    ("PUT", V3 + "/sendToDevice/m.x/" + Q, {"messages": {}}),
    ("GET", V3 + "/profile/" + quote("@" + NUL + ":x"), None),
    ("GET", V3 + "/presence/" + quote("@" + NUL + ":x") + "/status", None),
    ("GET", V3 + "/rooms/{room}/members?not_membership=" + Q, None),
    ("GET", V3 + "/sync?filter=" + quote(json.dumps({"room": {"rooms": [NUL]}})), None),
    ("GET", V3 + "/rooms/{room}/messages?filter=" + quote(json.dumps({"senders": [NUL]})), None),
    ("POST", "/_synapse/admin/v1/register", {"nonce": NUL, "username": NUL, "password": NUL, "mac": NUL}),
    # Nesting deeper than Python's recursion limit, invalid UTF-8, over-long strings for 255-char columns.
    ("PUT", V3 + "/rooms/{room}/send/m.room.message/deep", RAW + b"[" * 5000 + b"]" * 5000),
    ("PUT", V3 + "/user/{user}/account_data/deep", RAW + b'{"a":' * 3000 + b"1" + b"}" * 3000),
    ("PUT", V3 + "/user/{user}/account_data/deep2", RAW + b'{"a":' * 101 + b"1" + b"}" * 101),
    ("POST", V3 + "/user/{user}/filter", RAW + b'{"a":' * 3000 + b"1" + b"}" * 3000),
    ("GET", V3 + "/sync?filter=" + quote('{"a":' * 3000 + "1" + "}" * 3000), None),
    ("GET", V3 + "/rooms/{room}/messages?filter=" + quote('{"a":' * 3000 + "1" + "}" * 3000), None),
    ("PUT", V3 + "/rooms/{room}/send/m.room.message/latin1", RAW + b'{"body": "\xe9"}'),
    ("POST", V3 + "/rooms/{room}/receipt/m.read/{event}", {"thread_id": "t" * 5000}),
    ("GET", V3 + "/publicRooms?since=" + "9" * 5000, None),
    ("POST", V3 + "/publicRooms", {"since": "9" * 5000}),
    # Digits that str.isdigit() accepts but int() refuses (superscripts).
    ("GET", V3 + "/sync?since=s" + quote("²"), None),
    ("GET", V3 + "/rooms/{room}/messages?from=s" + quote("²"), None),
    ("GET", V3 + "/user/{user}/filter/" + quote("²"), None),
    ("GET", V3 + "/sync?filter=" + quote("²"), None),
    ("GET", V3 + "/publicRooms?since=" + quote("²"), None),
    ("GET", "/_matrix/client/v1/rooms/{room}/hierarchy?from=" + quote("²"), None),
    # Out-of-range integers and tokens.
    ("PUT", V3 + "/rooms/{room}/send/m.room.message/big", {"msgtype": "m.text", "body": "x", "n": 10**30}),
    ("GET", V3 + "/sync?since=s" + "9" * 30, None),
    ("GET", V3 + "/rooms/{room}/messages?from=s" + "9" * 30, None),
    ("GET", V3 + "/rooms/{room}/members?at=s-5", None),
    ("GET", "/_matrix/client/v1/rooms/{room}/relations/{event}?from=s" + "9" * 30, None),
]


async def test_hostile_inputs_get_matrix_errors(hs: Harness) -> None:
    alice = await hs.register("alice")
    room = await hs.create_room(alice, preset="private_chat")
    event = await hs.send(alice, room, "hello")
    wrong = []
    for method, template, body in CASES:
        path = template.format(
            room=quote(room), user=quote(alice.user_id), event=quote(event), device=quote(alice.device_id)
        )
        if isinstance(body, bytes):
            kw = {"content": body.removeprefix(RAW)}
        else:
            kw = {} if body is None else {"content": json.dumps(body).encode()}
        r = await hs.request(method, path, alice, **kw)
        err = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        if not (
            400 <= r.status_code < 500 and isinstance(err.get("errcode"), str) and isinstance(err.get("error"), str)
        ):
            wrong.append(f"{method} {path} -> {r.status_code} {r.text[:200]}")
    assert not wrong, "\n".join(wrong)


async def test_non_ascii_digits_in_media_and_backup_parameters(hs: Harness) -> None:
    a = await hs.register("digits")
    await hs.err(
        400,
        "M_INVALID_PARAM",
        "GET",
        "/_matrix/client/v1/media/thumbnail/test.local/abc",
        a,
        params={"width": "²", "height": "32"},
    )
    await hs.err(
        400,
        "M_INVALID_PARAM",
        "GET",
        "/_matrix/client/v1/media/thumbnail/test.local/abc",
        a,
        params={"width": "9" * 5000, "height": "32"},
    )
    r = await hs.request("GET", "/_matrix/client/v3/room_keys/version/²", a)
    assert r.status_code in (400, 404) and r.json()["errcode"].startswith("M_")
