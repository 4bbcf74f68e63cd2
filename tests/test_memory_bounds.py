"""In-process caches stay bounded however many users, rooms and updates pass through, and the
notifier's compact record of recent updates still wakes exactly who it should."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from paigham.bus.base import StreamUpdate
from paigham.clock import now_ms
from paigham.services import presence, push, serializer
from paigham.storage.presence import PresenceRow
from paigham.storage.sync_rooms import RoomListCache, room_list
from paigham.sync.notifier import Notifier


class _FreshPresence:
    """Every user was online a moment ago (so `on_sync` only remembers, writes nothing)."""

    def __init__(self, age_ms: int = 0) -> None:
        self.age_ms = age_ms

    async def get(self, user_ids: list[str]) -> list[PresenceRow]:
        return [PresenceRow(u, "online", None, now_ms() - self.age_ms, 1) for u in user_ids]


async def test_presence_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presence, "REMEMBERED_USERS", 100)
    svc = presence.PresenceService(_FreshPresence(), publisher=None, enabled=True)  # type: ignore[arg-type]
    for i in range(1_000):
        await svc.on_sync(f"@u{i}:example.org", "online")
        assert len(svc._last) <= 100
    assert "@u999:example.org" in svc._last  # the newest is remembered


async def test_presence_sweeps_stale_entries_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presence, "REMEMBERED_USERS", 100)
    svc = presence.PresenceService(_FreshPresence(), publisher=None, enabled=True)  # type: ignore[arg-type]
    stale = now_ms() - presence.IDLE_AFTER_MS - 1
    svc._last = {f"@old{i}:example.org": ("online", stale) for i in range(90)}
    svc._last.update({f"@new{i}:example.org": ("online", now_ms()) for i in range(10)})
    await svc.on_sync("@another:example.org", "online")
    assert set(svc._last) == {*(f"@new{i}:example.org" for i in range(10)), "@another:example.org"}


class _Rooms:
    async def get_room(self, room_id: str) -> Any:
        return SimpleNamespace(room_version="11")


async def test_room_version_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serializer, "VERSION_CACHE_ROOMS", 50)
    monkeypatch.setattr(serializer, "_version_cache", {})
    ser = serializer.EventSerializer(_Rooms())  # type: ignore[arg-type]
    for i in range(500):
        assert (await ser.room_version(f"!r{i}:example.org")).identifier == "11"
        assert len(serializer._version_cache) <= 50


def test_compiled_push_rules_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(push, "COMPILED_RULESETS", 20)
    svc = push.PushService(rules=None, events=None, publisher=None)  # type: ignore[arg-type]
    for i in range(200):
        ruleset, template = svc._compiled_and_template(f"@u{i}:example.org", None)
        assert ruleset and b"\x00U\x00" in template
        assert len(svc._cache) <= 20


async def test_notifier_wakes_by_key_and_sees_what_it_raced_with() -> None:
    n = Notifier()
    woken = asyncio.ensure_future(n.wait(["r:!a:x", "u:@me:x"], since=5, timeout_s=5))
    await asyncio.sleep(0)
    n.on_update(StreamUpdate(6, rooms=["!b:x"]))  # another room: not woken
    await asyncio.sleep(0)
    assert not woken.done()
    n.on_update(StreamUpdate(7, users=["@me:x"]))
    assert await woken
    assert not n._waiters  # nothing left behind
    # A waiter registering after an update it raced with returns at once; one past it waits.
    assert await n.wait(["r:!b:x"], since=5, timeout_s=5)
    assert not await n.wait(["r:!b:x"], since=6, timeout_s=0.01)
    assert not n._waiters  # nor after a timeout


async def test_a_woken_waiter_resumes_in_the_next_pass_of_the_event_loop() -> None:
    """Under load a pass of the event loop is every ready task's step: a woken long-poll must not
    spend one more than it needs (asyncio.wait_for on Python 3.11 did, through its own callback)."""
    n = Notifier()
    woken = asyncio.ensure_future(n.wait(["r:!a:x"], since=5, timeout_s=5))
    for _ in range(3):
        await asyncio.sleep(0)
    n.on_update(StreamUpdate(6, rooms=["!a:x"]))
    await asyncio.sleep(0)
    assert woken.done() and woken.result() is True


def test_remembered_rooms_are_bounded_by_rooms_over_all_users() -> None:
    cache = RoomListCache(max_rooms=1_000)
    for i in range(300):
        rooms = room_list(10, (f"!r{i}-{j}:x" for j in range(i % 20)), {f"!inv{i}:x": ("invite", 3)})
        cache.put(f"@u{i}:x", rooms)
        assert cache.rooms == sum(len(r) for r in cache._entries.values()) <= 1_000
    assert cache.get("@u299:x") is not None and cache.get("@u0:x") is None  # least recently used out
    cache.put("@big:x", room_list(10, (f"!b{j}:x" for j in range(1_001)), {}))
    assert cache.get("@big:x") is None and cache.rooms <= 1_000  # larger than the whole cache: not kept
    newer = room_list(20, ["!a:x"], {})
    cache.put("@u299:x", newer)
    cache.put("@u299:x", room_list(15, ["!b:x"], {}))  # a concurrent sync that read earlier
    assert cache.get("@u299:x") is newer
