"""Push notifications with matrix-nio against a real server: B registers a pusher for an ntfy-like
gateway (as Element X does with ntfy as its UnifiedPush distributor), A sends in their room, and the
gateway stand-in receives exactly one notify for that event, event_id_only, addressed to B's pushkey.

matrix-nio 0.26 has no pusher API (no set_pushers/get_pushers, nothing for /notifications): the
requests go through its AsyncClient._send, so they still use nio's session, auth header, retries and
error parsing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from acc_support import ServerInfo
from nio import (
    Api,
    ErrorResponse,
    JoinResponse,
    RoomCreateResponse,
    RoomInviteResponse,
    RoomMemberEvent,
    RoomPreset,
    RoomSendResponse,
)
from nio.responses import EmptyResponse, Response
from nio_support import Tracked, login_tracked, register_with_token
from push_support import GatewayThread

pytestmark = pytest.mark.acceptance

PASSWORD = "correct horse battery staple 42"
ELEMENT_X_ANDROID = "io.element.android"
# What ends up in a push: event_id_only carries no sender, type, room name nor content.
EVENT_ID_ONLY_KEYS = {"event_id", "room_id", "counts", "devices", "prio"}


@dataclass
class JsonResponse(Response):  # type: ignore[misc]  # nio ships no type information
    """Any JSON answer nio has no response class for; a Matrix error becomes nio's ErrorResponse."""

    body: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, parsed_dict: dict[str, Any]) -> JsonResponse | ErrorResponse:
        if "errcode" in parsed_dict:
            return ErrorResponse.from_dict(parsed_dict)
        return cls(body=parsed_dict)


async def raw(t: Tracked, method: str, path: list[str], body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else Api.to_json(body)
    response_class = EmptyResponse if method == "POST" else JsonResponse
    return await t.client._send(response_class, method, Api._build_path(path), data)


@pytest.fixture
async def clients(server: ServerInfo, unique: str) -> AsyncIterator[Callable[[str], Awaitable[Tracked]]]:
    made: list[Tracked] = []

    async def new(name: str) -> Tracked:
        acct = await register_with_token(server.base_url, f"{name}{unique}", PASSWORD, server.registration_token)
        t = await login_tracked(server.base_url, acct, device_name=f"{name}'s phone")
        made.append(t)
        await t.sync_once(timeout_ms=0)
        return t

    yield new
    for t in made:
        await t.client.close()


async def shared_room(a: Tracked, b: Tracked) -> str:
    # public_chat: private_chat rooms are encrypted by default and these clients have no crypto.
    created = await a.client.room_create(name="push", preset=RoomPreset.public_chat)
    assert isinstance(created, RoomCreateResponse), created
    room_id: str = created.room_id
    assert isinstance(await a.client.room_invite(room_id, b.user_id), RoomInviteResponse)
    await b.sync_until(lambda r: room_id in r.rooms.invite, f"invite to {room_id}")
    assert isinstance(await b.client.join(room_id), JoinResponse)
    await a.wait_timeline(
        room_id,
        lambda e: isinstance(e, RoomMemberEvent) and e.state_key == b.user_id and e.membership == "join",
        "B's join at A",
    )
    return room_id


async def send_text(t: Tracked, room_id: str, body: str) -> str:
    resp = await t.client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body})
    assert isinstance(resp, RoomSendResponse), f"{t.user_id} send {body!r}: {resp!r}"
    event_id: str = resp.event_id
    return event_id


async def test_nio_pusher_receives_the_other_clients_message(
    server: ServerInfo, push_gateway: GatewayThread, clients
) -> None:
    a: Tracked = await clients("pusha")
    b: Tracked = await clients("pushb")
    room_id = await shared_room(a, b)

    # --- B registers a pusher as Element X does with ntfy as UnifiedPush distributor ------------
    pushkey = push_gateway.new_pushkey()
    pusher = {
        "kind": "http",
        "app_id": ELEMENT_X_ANDROID,
        "pushkey": pushkey,
        "app_display_name": "Element X",
        "device_display_name": "pushb's phone",
        "lang": "en",
        "data": {"url": push_gateway.url, "format": "event_id_only"},
    }
    set_resp = await raw(b, "POST", ["pushers", "set"], pusher)
    assert isinstance(set_resp, EmptyResponse), f"POST /pushers/set: {set_resp!r}"
    listed = await raw(b, "GET", ["pushers"])
    assert isinstance(listed, JsonResponse), f"GET /pushers: {listed!r}"
    assert [{k: p.get(k) for k in pusher} for p in listed.body["pushers"]] == [pusher], listed.body
    # a gateway outside the allowlist is refused at registration, naming the setting
    elsewhere = {**pusher, "pushkey": "https://push.example.com/up1?up=1"}
    elsewhere["data"] = {"url": "https://push.example.com/_matrix/push/v1/notify"}
    refused = await raw(b, "POST", ["pushers", "set"], elsewhere)
    assert isinstance(refused, ErrorResponse) and refused.status_code == "M_FORBIDDEN", refused
    assert "push_gateway_allowlist" in refused.message, refused.message

    # --- A sends: exactly one notify, to B's pushkey, without content ----------------------------
    secret = f"ring ring {pushkey[-12:]}"
    m1 = await send_text(a, room_id, secret)
    got = await push_gateway.wait_for(m1)
    assert len(got) == 1, f"{len(got)} notify requests for {m1}: {got}"
    n = got[0]
    assert push_gateway.accepted_for(m1) == [n], "the gateway did not accept the notify"
    assert set(n) <= EVENT_ID_ONLY_KEYS, f"event_id_only push carries more: {sorted(n)}"
    assert secret not in json.dumps(n)
    assert n["room_id"] == room_id
    assert n["prio"] == "high", n  # a two-member room: .m.rule.room_one_to_one sets a sound
    assert n["counts"]["unread"] == 1, n  # B's one room with an unread message
    assert len(n["devices"]) == 1, n
    device = n["devices"][0]
    assert device["pushkey"] == pushkey and device["app_id"] == ELEMENT_X_ANDROID, device
    assert device["data"] == {"format": "event_id_only"}, device  # data.url is not forwarded

    # --- B's own message is not pushed to B; A's next one is, after it (per-pusher order) -------
    own = await send_text(b, room_id, "B answers")
    m2 = await send_text(a, room_id, "and again")
    got2 = await push_gateway.wait_for(m2)
    assert len(got2) == 1 and got2[0]["counts"]["unread"] >= 1, got2
    assert push_gateway.requests_for(own) == [], "B's own message was pushed to B"
    pushed = [x["event_id"] for x in push_gateway.requests_to(pushkey) if "event_id" in x]  # not badge updates
    assert pushed == [m1, m2], pushed

    # --- GET /notifications lists what notified B ------------------------------------------------
    notes = await raw(b, "GET", ["notifications"])
    assert isinstance(notes, JsonResponse), f"GET /notifications: {notes!r}"
    by_id = {x["event"]["event_id"]: x for x in notes.body["notifications"]}
    assert {m1, m2} <= set(by_id), notes.body
    assert by_id[m1]["room_id"] == room_id and by_id[m1]["read"] is False, by_id[m1]
