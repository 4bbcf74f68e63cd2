"""Unread notification and highlight counts in /sync, against the per-event storage of push actions:
one shared row per event for the members with the common result, own rows for the others."""

from __future__ import annotations

import uuid
from typing import Any

from tests.api.conftest import Harness, User

V3 = "/_matrix/client/v3"


async def counts(hs: Harness, user: User, room: str) -> tuple[int, int]:
    s = await hs.sync(user)
    c = s["rooms"]["join"][room]["unread_notifications"]
    return c["notification_count"], c["highlight_count"]


async def send(hs: Harness, user: User, room: str, content: dict[str, Any]) -> str:
    res = await hs.ok("PUT", f"{V3}/rooms/{room}/send/m.room.message/{uuid.uuid4().hex}", user, json=content)
    return str(res["event_id"])


async def rows(hs: Harness, table: str, room: str) -> int:
    row = await hs.server.db.fetchrow(f"SELECT count(*) FROM {table} WHERE room_id = $1", room)
    assert row is not None
    return int(row[0])


async def test_counts_start_at_join_and_survive_profile_changes(hs: Harness) -> None:
    a, b, d = await hs.register("alice"), await hs.register("bob"), await hs.register("dave")
    room = await hs.create_room(a, preset="public_chat")
    await hs.ok("POST", f"{V3}/rooms/{room}/join", b, json={})
    await hs.send(a, room, "before dave")
    await hs.ok("POST", f"{V3}/rooms/{room}/join", d, json={})
    await hs.send(a, room, "after dave")
    assert await counts(hs, b, room) == (2, 0)
    assert await counts(hs, d, room) == (1, 0)  # not the message from before they joined
    assert await counts(hs, a, room) == (0, 0)  # nor one's own
    # A display-name change is a join → join membership event: the count does not restart.
    await hs.ok("PUT", f"{V3}/profile/{d.user_id}/displayname", d, json={"displayname": "Dave Kumar"})
    await hs.send(a, room, "third")
    assert await counts(hs, d, room) == (2, 0)
    # Leaving and joining again does restart it.
    await hs.ok("POST", f"{V3}/rooms/{room}/leave", d, json={})
    await hs.send(a, room, "while away")
    await hs.ok("POST", f"{V3}/rooms/{room}/join", d, json={})
    assert await counts(hs, d, room) == (0, 0)
    await hs.send(b, room, "welcome back")
    assert await counts(hs, d, room) == (1, 0)
    assert await counts(hs, a, room) == (1, 0)
    assert await counts(hs, b, room) == (4, 0)


async def test_one_row_per_message_and_own_rows_for_the_exceptions(hs: Harness) -> None:
    a, b, c, d = (
        await hs.register("amrit"),
        await hs.register("bela"),
        await hs.register("chitra"),
        await hs.register("deepak"),
    )
    room = await hs.create_room(a, preset="public_chat")
    for u in (b, c, d):
        await hs.ok("POST", f"{V3}/rooms/{room}/join", u, json={})
    await hs.send(a, room, "plain one")
    # Every member gets the same result: one shared row, nobody's own.
    assert await rows(hs, "room_push_actions", room) == 1
    assert await rows(hs, "event_push_actions", room) == 0
    # Chitra mutes the room (a room rule without actions); Bela is mentioned by her user ID.
    await hs.ok("PUT", f"{V3}/pushrules/global/room/{room}", c, json={"actions": []})
    await send(
        hs, a, room, {"msgtype": "m.text", "body": "Bela, please file it", "m.mentions": {"user_ids": [b.user_id]}}
    )
    assert await rows(hs, "room_push_actions", room) == 2
    assert await rows(hs, "event_push_actions", room) == 2  # Chitra's silence, Bela's highlight
    assert await counts(hs, b, room) == (2, 1)
    assert await counts(hs, c, room) == (1, 0)  # the message from before she muted the room
    assert await counts(hs, d, room) == (2, 0)
    # A read receipt counts from there on.
    last = await hs.send(d, room, "noted")
    await hs.ok("POST", f"{V3}/rooms/{room}/receipt/m.read/{last}", b, json={})
    assert await counts(hs, b, room) == (0, 0)
    assert await counts(hs, a, room) == (1, 0)


async def test_members_with_the_defaults_share_the_row_even_when_most_muted_the_room(hs: Harness) -> None:
    a, b, c = await hs.register("anil"), await hs.register("bina"), await hs.register("chand")
    room = await hs.create_room(a, preset="public_chat")
    for u in (b, c):
        await hs.ok("POST", f"{V3}/rooms/{room}/join", u, json={})
        await hs.ok("PUT", f"{V3}/pushrules/global/room/{room}", u, json={"actions": []})
    d = await hs.register("dhruv")
    await hs.ok("POST", f"{V3}/rooms/{room}/join", d, json={})
    await hs.send(a, room, "quiet room")
    # Two of the three recipients are silent, yet the shared row is the defaults' result (Dhruv's, who
    # is never listed: a write reads only the members with rules of their own); theirs are own rows.
    assert await rows(hs, "room_push_actions", room) == 1
    assert await rows(hs, "event_push_actions", room) == 2
    assert await counts(hs, d, room) == (1, 0)
    assert await counts(hs, b, room) == (0, 0)
    assert await counts(hs, c, room) == (0, 0)


async def test_invites_notify_only_the_invitee_and_purge_removes_the_rows(hs: Harness) -> None:
    a, b = await hs.register("asha"), await hs.register("balu")
    room = await hs.create_room(a)
    await hs.ok("POST", f"{V3}/rooms/{room}/invite", a, json={"user_id": b.user_id})
    assert await rows(hs, "event_push_actions", room) == 1  # .m.rule.invite_for_me, for Balu alone
    assert await rows(hs, "room_push_actions", room) == 0
    await hs.ok("POST", f"{V3}/rooms/{room}/join", b, json={})
    assert await counts(hs, b, room) == (0, 0)  # the invite came before the join
    await hs.send(a, room, "hello")
    assert await counts(hs, b, room) == (1, 0)
    await hs.server.admin.store.purge_room(room)
    assert await rows(hs, "room_push_actions", room) == 0
    assert await rows(hs, "event_push_actions", room) == 0


async def test_display_names_do_not_split_the_evaluation(hs: Harness, monkeypatch: Any) -> None:
    """Members with distinct display names share one push evaluation unless the body names them
    and a rule of theirs looks for it (`contains_display_name`), which then still highlights."""
    from paigham.domain.push_evaluator import evaluate as real
    from paigham.services import push

    calls = 0

    def counting(*args: Any, **kw: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(*args, **kw)

    monkeypatch.setattr(push, "evaluate", counting)
    names = ["Ravi Sharma", "Meera Iyer", "Farhan Qureshi", "Lakshmi Rao", "अनिल कुमार"]
    a = await hs.register("author")
    # (localparts long enough never to turn up in a random room ID: a named member is evaluated alone)
    members = [await hs.register(f"official{i}") for i in range(len(names))]
    room = await hs.create_room(a, preset="public_chat")
    for u, name in zip(members, names, strict=True):
        await hs.ok("POST", f"{V3}/rooms/{room}/join", u, json={})
        await hs.ok("PUT", f"{V3}/profile/{u.user_id}/displayname", u, json={"displayname": name})
    calls = 0
    await send(hs, a, room, {"msgtype": "m.text", "body": "The file is ready"})
    assert calls == 1  # five members, five display names, one evaluation
    for u in (members[1], members[2], members[3]):  # Meera, Farhan and Lakshmi: the same rule of their own
        await hs.ok(
            "PUT",
            f"{V3}/pushrules/global/override/my-name",
            u,
            json={"conditions": [{"kind": "contains_display_name"}], "actions": ["notify", {"set_tweak": "highlight"}]},
        )
    calls = 0
    await send(hs, a, room, {"msgtype": "m.text", "body": "Meera Iyer and अनिल कुमार, please sign"})
    # Ravi and Anil (default rules: no display name read) together; of the three with the rule,
    # Meera (named) on her own, Farhan and Lakshmi (not named) together.
    assert calls == 3
    assert await counts(hs, members[1], room) == (2, 1)
    assert [await counts(hs, members[i], room) for i in (0, 2, 3, 4)] == [(2, 0)] * 4
