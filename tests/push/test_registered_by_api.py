"""Registration and delivery together: a pusher registered through POST /pushers/set (not inserted in
the table as the other delivery tests do) receives its pushes at the gateway; an update in place
changes what the next push carries; deletion (kind null) and logout stop the pushes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.push.conftest import PushEnv
from tests.push.support import NtfyGateway, eventually

V3 = "/_matrix/client/v3"
ELEMENT_X = "io.element.android"


def element_x(ntfy: NtfyGateway, pushkey: str, **data: Any) -> dict[str, Any]:
    """What Element X Android posts with ntfy as its UnifiedPush distributor."""
    return {
        "kind": "http",
        "app_id": ELEMENT_X,
        "pushkey": pushkey,
        "app_display_name": "Element X",
        "device_display_name": "Phone",
        "lang": "en",
        "data": {"url": ntfy.url, "format": "event_id_only", **data},
        "append": False,
    }


async def test_pusher_set_through_the_api_is_pushed_to(env: PushEnv, ntfy: NtfyGateway) -> None:
    hs = await env.start([ntfy.url])
    alice, bob, carol = [await hs.register(n) for n in ("alice", "bob", "carol")]
    room = await hs.create_room(alice, preset="private_chat", invite=[bob.user_id, carol.user_id])
    for m in (bob, carol):
        await hs.ok("POST", f"{V3}/rooms/{room}/join", m, json={})
    before = await hs.send(alice, room, "before the pusher")  # no backlog for a new pusher

    pushkey = ntfy.topic("upBobPhone0001")
    registered = time.time()
    assert await hs.ok("POST", f"{V3}/pushers/set", bob, json=element_x(ntfy, pushkey)) == {}
    e1 = await hs.send(alice, room, "first")
    await eventually(lambda: len(ntfy.requests) >= 1, what="the first push")
    await asyncio.sleep(0.3)
    assert ntfy.accepted == ntfy.requests  # nothing refused or retried
    [n] = ntfy.accepted
    assert n["event_id"] == e1 != before
    assert (n["room_id"], n["prio"], n["counts"]) == (room, "low", {"unread": 1})
    [device] = n["devices"]
    assert device == {
        "app_id": ELEMENT_X,
        "pushkey": pushkey,
        "pushkey_ts": device["pushkey_ts"],
        "data": {"format": "event_id_only"},  # the url is not forwarded
    }
    assert registered - 1 <= device["pushkey_ts"] <= time.time() + 1  # the registration time, in seconds

    # The same (app_id, pushkey) again: updated in place, still one pusher; the next push carries the new data.
    update = element_x(ntfy, pushkey, default_payload={"cs": "abc"})
    await hs.ok("POST", f"{V3}/pushers/set", bob, json=update)
    e2 = await hs.send(alice, room, "second")
    await eventually(lambda: len(ntfy.accepted) == 2, what="the second push")
    assert ntfy.accepted[1]["event_id"] == e2
    assert ntfy.accepted[1]["devices"][0]["data"] == {"format": "event_id_only", "default_payload": {"cs": "abc"}}
    assert ntfy.accepted[1]["devices"][0]["pushkey_ts"] == device["pushkey_ts"]

    # kind null deletes it: nothing more for bob. A pusher of carol's registered now still gets pushes.
    deletion = {"kind": None, "app_id": ELEMENT_X, "pushkey": pushkey}
    assert await hs.ok("POST", f"{V3}/pushers/set", bob, json=deletion) == {}
    carol_key = ntfy.topic("upCarolPhone01")
    await hs.ok("POST", f"{V3}/pushers/set", carol, json=element_x(ntfy, carol_key))
    e3 = await hs.send(alice, room, "third")
    await eventually(lambda: len(ntfy.accepted) == 3, what="carol's push")
    await asyncio.sleep(0.3)
    assert [(x["event_id"], x["devices"][0]["pushkey"]) for x in ntfy.requests[2:]] == [(e3, carol_key)]

    # Logging out removes the device's pusher: carol's phone stops ringing.
    await hs.ok("POST", f"{V3}/logout", carol, json={})
    assert await hs.server.pushers.store.of_user(carol.user_id) == []
    await hs.send(alice, room, "fourth")
    await asyncio.sleep(0.3)
    assert len(ntfy.requests) == 3
