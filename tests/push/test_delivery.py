"""Delivery to push gateways (issue 16 items 2 to 4): formats, prio, counts, badge updates, retries,
rejections, restarts, and the outbound address policy — against ntfy- and Sygnal-like stand-ins."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from paigham.clock import now_ms
from paigham.services import push_delivery
from paigham.services.push_breaker import FAILURES_TO_OPEN
from tests.api.conftest import Harness, User
from tests.push.conftest import PushEnv
from tests.push.support import NtfyGateway, SygnalGateway, add_pusher, eventually, pusher_rows
from tests.storage.support import statements

V3 = "/_matrix/client/v3"
ELEMENT_X = "im.vector.app.android"


async def _room(hs: Harness, owner: User, *members: User, name: str | None = None) -> str:
    body: dict[str, object] = {"preset": "private_chat", "invite": [m.user_id for m in members]}
    if name:
        body["name"] = name
    room = await hs.create_room(owner, **body)
    for m in members:
        await hs.ok("POST", f"{V3}/rooms/{room}/join", m, json={})
    return room


async def _people(hs: Harness, *names: str) -> list[User]:
    return [await hs.register(n) for n in names]


async def test_event_id_only_to_ntfy_prio_and_counts(env: PushEnv, ntfy: NtfyGateway) -> None:
    hs = await env.start([ntfy.base_url + "/"])
    alice, bob, carol = await _people(hs, "alice", "bob", "carol")
    group = await _room(hs, alice, bob, carol)
    dm = await _room(hs, alice, bob)
    pushkey = ntfy.topic("upAbCdEfGhIjKl")
    # Element X's pusher (it asks event_id_only; the server forces it anyway by default).
    await add_pusher(hs.server, bob.user_id, app_id=ELEMENT_X, pushkey=pushkey, url=ntfy.url,
                     data={"format": "event_id_only", "default_payload": {"cs": "secret"}})  # fmt: skip
    await add_pusher(hs.server, alice.user_id, app_id=ELEMENT_X, pushkey=ntfy.topic("upAlice0000000"), url=ntfy.url)

    e1 = await hs.send(alice, group, "hello group")
    await eventually(lambda: len(ntfy.accepted) == 1, what="the first push")
    n = ntfy.accepted[0]
    assert n == {
        "event_id": e1,
        "room_id": group,
        "prio": "low",  # a group message without a mention
        "counts": {"unread": 1},
        "devices": [
            {
                "app_id": ELEMENT_X,
                "pushkey": pushkey,
                "pushkey_ts": n["devices"][0]["pushkey_ts"],
                "data": {"format": "event_id_only", "default_payload": {"cs": "secret"}},
            }
        ],
    }
    assert abs(n["devices"][0]["pushkey_ts"] - time.time()) < 60  # seconds, not ms

    e2 = await hs.send(alice, dm, "hello you")  # a DM: .m.rule.room_one_to_one sets a sound → high
    mention = await hs.ok(
        "PUT", f"{V3}/rooms/{group}/send/m.room.message/m1", alice,
        json={"msgtype": "m.text", "body": "bob: look", "m.mentions": {"user_ids": [bob.user_id]}},
    )  # fmt: skip
    await eventually(lambda: len(ntfy.accepted) == 3, what="three pushes")
    assert [(x["event_id"], x["prio"], x["counts"]["unread"]) for x in ntfy.accepted[1:]] == [
        (e2, "high", 2),
        (mention["event_id"], "high", 2),  # still two rooms with unread notifications
    ]
    # Bob's reply: no push to bob (his own event), one to alice.
    e4 = await hs.send(bob, dm, "hi alice")
    await eventually(lambda: len(ntfy.accepted) == 4, what="alice's push")
    assert ntfy.accepted[3]["event_id"] == e4
    assert ntfy.accepted[3]["devices"][0]["pushkey"] == ntfy.topic("upAlice0000000")
    await asyncio.sleep(0.3)
    assert len(ntfy.requests) == 4


async def test_full_format_tweaks_and_content_setting(env: PushEnv, sygnal: SygnalGateway) -> None:
    ios = "io.element.elementx.ios.prod"
    hs = await env.start([sygnal.url], push_force_event_id_only=False)
    alice, bob, carol = await _people(hs, "alice", "bob", "carol")
    await hs.ok("PUT", f"{V3}/profile/{alice.user_id}/displayname", alice, json={"displayname": "Alice A."})
    room = await _room(hs, alice, bob, carol, name="Budget")
    await add_pusher(hs.server, bob.user_id, app_id=ios, pushkey="apns-token", url=sygnal.url,
                     data={"default_payload": {"aps": {"mutable-content": 1}}})  # fmt: skip
    e1 = await hs.send(alice, room, "the numbers")
    await eventually(lambda: len(sygnal.accepted) == 1, what="a full-format push")
    n = sygnal.accepted[0]
    assert n["event_id"] == e1 and n["type"] == "m.room.message" and n["sender"] == alice.user_id
    assert n["sender_display_name"] == "Alice A." and n["room_name"] == "Budget"
    assert "content" not in n  # push_include_content is off by default
    assert n["prio"] == "low"
    assert n["devices"][0]["tweaks"] == {}  # .m.rule.message: notify, no tweaks
    assert n["devices"][0]["data"] == {"default_payload": {"aps": {"mutable-content": 1}}}
    await env.stop()

    hs = await env.start([sygnal.url], push_force_event_id_only=False, push_include_content=True)
    e2 = await hs.ok(
        "PUT", f"{V3}/rooms/{room}/send/m.room.message/m2", alice,
        json={"msgtype": "m.text", "body": "bob?", "m.mentions": {"user_ids": [bob.user_id]}},
    )  # fmt: skip
    await eventually(lambda: len(sygnal.accepted) == 2, what="a push with content")
    n = sygnal.accepted[1]
    assert n["event_id"] == e2["event_id"] and n["content"]["body"] == "bob?"
    assert n["prio"] == "high"
    assert n["devices"][0]["tweaks"] == {"sound": "default", "highlight": True}

    # An invite reaches the invitee (not joined): full format says who is the target.
    dave = await hs.register("dave")
    await add_pusher(hs.server, dave.user_id, app_id=ios, pushkey="dave-token", url=sygnal.url)
    await hs.ok("POST", f"{V3}/rooms/{room}/invite", alice, json={"user_id": dave.user_id})
    await eventually(lambda: len(sygnal.accepted) == 3, what="the invite push")
    n = sygnal.accepted[2]
    assert n["type"] == "m.room.member" and n["membership"] == "invite" and n["user_is_target"] is True
    assert n["counts"]["unread"] == 1  # one pending invite


async def test_tweaks_per_recipient_when_evaluated_once_per_group(env: PushEnv, sygnal: SygnalGateway) -> None:
    """Recipients whose rules are alike are evaluated once per event, unless the event names them: a
    mention reaches only the one mentioned, and a rule of one's own only its owner."""
    ios = "io.element.elementx.ios.prod"
    hs = await env.start([sygnal.url], push_force_event_id_only=False)
    alice, bob, carol, dave = await _people(hs, "alice", "bob", "carol", "dave")
    room = await _room(hs, alice, bob, carol, dave)
    await hs.ok(
        "PUT", f"{V3}/pushrules/global/content/urgent", dave,
        json={"pattern": "urgent", "actions": ["notify", {"set_tweak": "sound", "value": "ping"}]},
    )  # fmt: skip
    for u in (bob, carol, dave):
        await add_pusher(hs.server, u.user_id, app_id=ios, pushkey=f"{u.user_id}-token", url=sygnal.url)
    await hs.ok(
        "PUT", f"{V3}/rooms/{room}/send/m.room.message/t1", alice,
        json={"msgtype": "m.text", "body": "carol, urgent", "m.mentions": {"user_ids": [carol.user_id]}},
    )  # fmt: skip
    await eventually(lambda: len(sygnal.accepted) == 3, what="three pushes")
    tweaks = {n["devices"][0]["pushkey"]: n["devices"][0]["tweaks"] for n in sygnal.accepted}
    assert tweaks == {
        f"{bob.user_id}-token": {},
        f"{carol.user_id}-token": {"sound": "default", "highlight": True},
        f"{dave.user_id}-token": {"sound": "ping"},
    }


async def test_badge_update_after_read_receipt(env: PushEnv, ntfy: NtfyGateway) -> None:
    hs = await env.start([ntfy.url])
    alice, bob, carol = await _people(hs, "alice", "bob", "carol")
    room = await _room(hs, alice, bob, carol)
    await add_pusher(hs.server, bob.user_id, app_id=ELEMENT_X, pushkey=ntfy.topic("upBob"), url=ntfy.url)
    e1 = await hs.send(alice, room, "one")
    await eventually(lambda: len(ntfy.accepted) == 1, what="the push")
    assert ntfy.accepted[0]["counts"] == {"unread": 1}
    await hs.ok("POST", f"{V3}/rooms/{room}/receipt/m.read/{e1}", bob, json={})
    await eventually(lambda: len(ntfy.accepted) == 2, what="the badge update")
    badge = ntfy.accepted[1]
    assert "event_id" not in badge and badge["counts"] == {"unread": 0}
    assert badge["devices"][0]["pushkey"] == ntfy.topic("upBob")
    # Reading again changes nothing: no request.
    await hs.ok("POST", f"{V3}/rooms/{room}/receipt/m.read/{e1}", bob, json={})
    await asyncio.sleep(0.3)
    assert len(ntfy.requests) == 2


async def test_retried_after_503_in_order(env: PushEnv, ntfy: NtfyGateway) -> None:
    hs = await env.start([ntfy.url])
    alice, bob, carol = await _people(hs, "alice", "bob", "carol")
    room = await _room(hs, alice, bob, carol)
    await add_pusher(hs.server, bob.user_id, app_id=ELEMENT_X, pushkey=ntfy.topic("upBob"), url=ntfy.url)
    ntfy.fail_next = [503, 503]
    e1 = await hs.send(alice, room, "first")
    e2 = await hs.send(alice, room, "second")  # waits behind the first (head-of-line)
    await eventually(lambda: len(ntfy.accepted) == 2, timeout=15, what="both pushes after the retries")
    assert [n["event_id"] for n in ntfy.requests] == [e1, e1, e1, e2]
    gaps = [b - a for a, b in zip(ntfy.times, ntfy.times[1:], strict=False)]
    assert 0.9 < gaps[0] < 1.9 and 1.9 < gaps[1] < 3.5, gaps  # 1 s, then 2 s (+ up to 20 % jitter)
    rows = await pusher_rows(hs.server)
    assert [(r["attempts"], r["failing_since"]) for r in rows.values()] == [(0, None)]


async def test_unreachable_gateway_comes_back(env: PushEnv, ntfy: NtfyGateway) -> None:
    hs = await env.start([ntfy.url])
    alice, bob, carol = await _people(hs, "alice", "bob", "carol")
    room = await _room(hs, alice, bob, carol)
    await add_pusher(hs.server, bob.user_id, app_id=ELEMENT_X, pushkey=ntfy.topic("upBob"), url=ntfy.url)
    await ntfy.stop()
    e1 = await hs.send(alice, room, "while down")

    async def failing() -> bool:
        rows = await pusher_rows(hs.server)
        return all(r["attempts"] >= 1 and r["failing_since"] for r in rows.values())

    await eventually(failing, what="the failure to be recorded")
    await ntfy.start()  # same port
    await eventually(lambda: len(ntfy.accepted) == 1, timeout=15, what="the push once the gateway is back")
    assert ntfy.accepted[0]["event_id"] == e1

    async def recovered() -> bool:  # committed just after the gateway's answer
        return [r["attempts"] for r in (await pusher_rows(hs.server)).values()] == [0]

    await eventually(recovered, what="the failure state to be cleared")


async def test_a_backlog_longer_than_a_batch_is_sent_once_in_order(
    env: PushEnv, ntfy: NtfyGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(push_delivery, "BATCH", 5)  # notifications are read 5 at a time
    hs = await env.start([ntfy.url])
    alice, bob = await _people(hs, "alice", "bob")
    room = await _room(hs, alice, bob)
    await add_pusher(hs.server, bob.user_id, app_id=ELEMENT_X, pushkey=ntfy.topic("upBob"), url=ntfy.url)
    await ntfy.stop()
    sent = [await hs.send(alice, room, f"backlog {i}") for i in range(12)]
    await ntfy.start()
    await eventually(lambda: len(ntfy.accepted) >= 12, timeout=15, what="the backlog")
    await asyncio.sleep(0.5)
    assert [n["event_id"] for n in ntfy.accepted if "event_id" in n] == sent


async def test_room_updates_cost_no_query_while_there_are_no_pushers(env: PushEnv, ntfy: NtfyGateway) -> None:
    hs = await env.start([ntfy.url])
    alice, bob = await _people(hs, "alice", "bob")
    room = await _room(hs, alice, bob)
    await asyncio.sleep(1.2)
    with statements(hs.server.db) as sent:
        for i in range(5):
            await hs.send(alice, room, f"before {i}")
        await asyncio.sleep(0.3)
    assert not [q for q in sent if "JOIN pushers" in q]  # no pusher anywhere: no per-update lookup
    # The first pusher (written straight to the table, as by another worker) is not missed.
    await add_pusher(hs.server, bob.user_id, app_id=ELEMENT_X, pushkey=ntfy.topic("upBob"), url=ntfy.url)
    e1 = await hs.send(alice, room, "first with a pusher")
    await eventually(lambda: len(ntfy.accepted) == 1, timeout=10, what="the push")
    assert ntfy.accepted[0]["event_id"] == e1


async def test_rejected_pushkeys_remove_only_their_pusher(
    env: PushEnv, ntfy: NtfyGateway, sygnal: SygnalGateway
) -> None:
    hs = await env.start([ntfy.url, sygnal.url])
    alice, bob, carol = await _people(hs, "alice", "bob", "carol")
    room = await _room(hs, alice, bob, carol)
    good = await add_pusher(hs.server, bob.user_id, app_id=ELEMENT_X, pushkey=ntfy.topic("upBob"), url=ntfy.url)
    # A pushkey outside ntfy's base URL (an endpoint of another distributor): ntfy rejects it.
    elsewhere = "https://elsewhere.example/upX?up=1"
    await add_pusher(hs.server, bob.user_id, app_id=ELEMENT_X, pushkey=elsewhere, url=ntfy.url)
    # An app Sygnal has no credentials for: rejected.
    await add_pusher(hs.server, bob.user_id, app_id="org.example.unknown", pushkey="tok", url=sygnal.url)
    ios = await add_pusher(hs.server, carol.user_id, app_id="io.element.elementx.ios.prod", pushkey="c", url=sygnal.url)
    await hs.send(alice, room, "one")
    await eventually(lambda: len(ntfy.requests) == 2 and len(sygnal.requests) == 2, what="four requests")

    async def two_left() -> bool:
        return sorted(await pusher_rows(hs.server)) == sorted([good, ios])

    await eventually(two_left, what="the rejected pushers to be removed")
    e2 = await hs.send(alice, room, "two")
    await eventually(lambda: len(ntfy.accepted) == 2 and len(sygnal.accepted) == 2, what="the kept pushers")
    assert ntfy.accepted[1]["event_id"] == e2 and len(ntfy.requests) == 3 and len(sygnal.requests) == 3


async def test_no_duplicates_across_a_restart_mid_retry(env: PushEnv, ntfy: NtfyGateway) -> None:
    hs = await env.start([ntfy.url])
    alice, bob, carol = await _people(hs, "alice", "bob", "carol")
    room = await _room(hs, alice, bob, carol)
    await add_pusher(hs.server, bob.user_id, app_id=ELEMENT_X, pushkey=ntfy.topic("upBob"), url=ntfy.url)
    e1 = await hs.send(alice, room, "delivered before")
    await eventually(lambda: len(ntfy.accepted) == 1, what="the first push")
    ntfy.fail_next = [503] * 1000
    e2 = await hs.send(alice, room, "failing")
    await eventually(lambda: len(ntfy.requests) >= 2, what="a failing attempt")
    await env.stop()
    ntfy.fail_next = []
    hs = await env.start([ntfy.url])
    await eventually(lambda: len(ntfy.accepted) == 2, timeout=15, what="the retry after the restart")
    e3 = await hs.send(alice, room, "after")
    await eventually(lambda: len(ntfy.accepted) == 3, what="the next push")
    await asyncio.sleep(0.5)
    assert [n["event_id"] for n in ntfy.accepted] == [e1, e2, e3]


async def test_cursor_commits_asked_together_go_in_one_statement(
    env: PushEnv, ntfy: NtfyGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    hs = await env.start([ntfy.url])
    people = await _people(hs, "p0", "p1", "p2", "p3")
    ids = [
        await add_pusher(hs.server, u.user_id, app_id=ELEMENT_X, pushkey=ntfy.topic(f"up{i}"), url=ntfy.url)
        for i, u in enumerate(people)
    ]
    d = hs.server.push_delivery
    store = d.store
    held = await store.claim(ids[:3], d.owner, now_ms(), d.lease_ms)
    assert sorted(p.id for p in held) == ids[:3]
    lost = (await store.claim(ids[3:], "another-worker", now_ms(), d.lease_ms))[0]  # held by someone else
    calls: list[int] = []
    real = store.advance

    async def counted(owner: str, moves: Any) -> set[int]:
        calls.append(len(moves))
        return await real(owner, moves)

    monkeypatch.setattr(store, "advance", counted)
    start = lost.last_stream
    pos = start + 7  # a position past every cursor
    results = await asyncio.gather(
        d._advance(held[0], pos),
        d._advance(held[1], pos),
        d._advance(held[2], pos, release=True),
        d._advance(lost, pos),
    )
    assert calls == [4]  # four workers answered at the same moment: one statement
    assert list(results) == [True, True, True, False]  # the one another worker holds is not moved
    rows = await pusher_rows(hs.server)
    assert [rows[i]["last_stream"] for i in ids] == [pos, pos, pos, start]
    leases = {int(r[0]): r[1] for r in await hs.server.db.fetch("SELECT id, lease_owner FROM pushers")}
    assert [leases[i] for i in ids] == [d.owner, d.owner, None, "another-worker"]


async def test_private_address_refused_without_whitelist(env: PushEnv, ntfy: NtfyGateway) -> None:
    hs = await env.start([ntfy.url], ip_range_whitelist=[])
    alice, bob, carol = await _people(hs, "alice", "bob", "carol")
    room = await _room(hs, alice, bob, carol)
    await add_pusher(hs.server, bob.user_id, app_id=ELEMENT_X, pushkey=ntfy.topic("upBob"), url=ntfy.url)
    await hs.send(alice, room, "to loopback")

    async def failing() -> bool:
        return [r["attempts"] >= 1 for r in (await pusher_rows(hs.server)).values()] == [True]

    await eventually(failing, what="the blocked attempt to be recorded as a failure")
    assert ntfy.requests == []


async def test_url_no_longer_allowlisted_is_not_sent(env: PushEnv, ntfy: NtfyGateway) -> None:
    hs = await env.start(["https://ntfy.ministry.example/"])
    alice, bob, carol = await _people(hs, "alice", "bob", "carol")
    room = await _room(hs, alice, bob, carol)
    pid = await add_pusher(hs.server, bob.user_id, app_id=ELEMENT_X, pushkey=ntfy.topic("upBob"), url=ntfy.url)
    await hs.send(alice, room, "not sent")
    pos = await hs.server.db.current_position()

    async def passed_over() -> bool:
        return bool((await pusher_rows(hs.server))[pid]["last_stream"] >= pos)

    await eventually(passed_over, what="the notification to be passed over")
    await asyncio.sleep(0.2)
    assert ntfy.requests == []
    assert (await pusher_rows(hs.server))[pid]["attempts"] == 0  # kept, not failing


async def test_ntfy_refuses_large_bodies_413_retried(env: PushEnv, ntfy: NtfyGateway) -> None:
    hs = await env.start([ntfy.url], push_force_event_id_only=False, push_include_content=True)
    alice, bob, carol = await _people(hs, "alice", "bob", "carol")
    room = await _room(hs, alice, bob, carol)
    await add_pusher(hs.server, bob.user_id, app_id=ELEMENT_X, pushkey=ntfy.topic("upBob"), url=ntfy.url)
    await hs.send(alice, room, "x" * 5000)

    async def failing() -> bool:
        return [r["attempts"] >= 1 for r in (await pusher_rows(hs.server)).values()] == [True]

    await eventually(failing, what="the 413 to count as a failure")
    assert ntfy.accepted == []


async def test_many_pushers_of_a_down_gateway_bounded(env: PushEnv, ntfy: NtfyGateway) -> None:
    """200 pushers whose gateway fails slowly: at most `concurrency` (32) requests at once; after three
    failures in a row the gateway is taken as down, the other pushers are parked instead of tried,
    and one probe at a time goes (after 1 s, then 2 s) — no retry storm. When it answers again,
    every parked pusher gets its notifications at once, in order, each once."""
    hs = await env.start([ntfy.url])
    alice, bob, carol = await _people(hs, "alice", "bob", "carol")
    room = await _room(hs, alice, bob, carol)
    for i in range(200):
        await add_pusher(hs.server, bob.user_id, app_id=ELEMENT_X, pushkey=ntfy.topic(f"up{i:05d}"), url=ntfy.url)
    ntfy.fail_next = [503] * 100_000
    ntfy.delay = 0.1
    t0 = time.monotonic()
    e1 = await hs.send(alice, room, "to everyone")
    await eventually(lambda: hs.server.push_delivery.breaker.down == 1, what="the gateway to be taken as down")
    e2 = await hs.send(alice, room, "more while it is down")  # wakes no parked pusher
    await asyncio.sleep(max(0.0, 3.5 - (time.monotonic() - t0)))
    # The first requests (32 at once; a worker whose request failed before the third failure may send one
    # more), then one probe after ~1 s and one ~2 s later — instead of a retry for each of the 200 pushers.
    assert 3 <= len(ntfy.requests) <= 32 + (FAILURES_TO_OPEN - 1) + 2, len(ntfy.requests)
    assert ntfy.max_active <= 32
    rows = await pusher_rows(hs.server)
    assert all(r["attempts"] >= 1 for r in rows.values())  # parked ones too: their failure is recorded
    tried = len(ntfy.requests)
    ntfy.fail_next, ntfy.delay = [], 0.0
    await eventually(lambda: len(ntfy.accepted) == 400, timeout=15, what="every pusher served once it is back")
    assert hs.server.push_delivery.breaker.down == 0
    per_key: dict[str, list[str]] = {}
    for n in ntfy.accepted:
        per_key.setdefault(n["devices"][0]["pushkey"], []).append(n["event_id"])
    assert len(per_key) == 200 and all(v == [e1, e2] for v in per_key.values())
    assert len(ntfy.requests) - tried <= 400 + 1  # the probe's first answer woke the rest: no more failures
    rows = await pusher_rows(hs.server)
    assert all(r["attempts"] == 0 and r["failing_since"] is None for r in rows.values())


def test_the_display_name_is_read_only_for_a_name_rule_that_does_not_highlight() -> None:
    from paigham.domain.push_rules import default_rules

    assert not push_delivery._name_matters(default_rules("@bob:example"))  # the default one highlights
    quiet_name = {
        "rule_id": "name",
        "enabled": True,
        "conditions": [{"kind": "contains_display_name"}],
        "actions": ["notify", {"set_tweak": "sound", "value": "ping"}],
    }
    assert push_delivery._name_matters({"global": {"override": [quiet_name]}})
    assert not push_delivery._name_matters({"global": {"override": [{**quiet_name, "enabled": False}]}})


async def test_the_reads_for_many_pushers_match_the_reads_for_one(env: PushEnv, ntfy: NtfyGateway) -> None:
    hs = await env.start([ntfy.url])
    alice, bob, carol = await _people(hs, "alice", "bob", "carol")
    room = await _room(hs, alice, bob, carol)
    dm = await _room(hs, bob, carol)
    sent = [await hs.send(alice, room, f"group {i}") for i in range(3)]
    await hs.send(bob, dm, "to carol")
    await hs.send(carol, room, f"@{bob.user_id} look")
    store = hs.server.push_delivery.store
    pos = await store.position()
    mid = (await store.notifications(bob.user_id, 0, pos, 1))[0].stream
    cursors = [(bob.user_id, 0), (carol.user_id, 0), (bob.user_id, mid), (alice.user_id, 0), ("@nobody:x", 0)]
    many = await store.notifications_many(cursors, pos, 2)
    assert many == [await store.notifications(u, after, pos, 2) for u, after in cursors]
    assert [len(n) for n in many] == [2, 2, 2, 1, 0] and len(sent) == 3
    users = [bob.user_id, carol.user_id, alice.user_id, "@nobody:x"]
    assert await store.badges(users) == {u: await store.badge(u) for u in users}
