"""The access-token cache (services/auth.py): a token's row is read at most every 2 s, yet a logout,
a lock or a deactivation made by the server applies to the very next request; a change made
outside the server (an SQL session, the CLI) applies within the cache's time; while the bus is
down (other workers' changes could be missed) nothing is cached."""

from __future__ import annotations

import asyncio
import time

import pytest

from paigham.services.auth import TokenCache
from paigham.storage.accounts import TokenRow, UserRow
from tests.api.conftest import Harness

V3 = "/_matrix/client/v3"
WHOAMI = f"{V3}/account/whoami"


async def reads_of_tokens(hs: Harness) -> list[int]:
    """Counts calls of the token read (to tell a cached answer from a fresh one)."""
    calls = [0]
    store = hs.server.auth.store
    real = store.get_token_holder

    async def counting(token: str) -> tuple[TokenRow, UserRow | None] | None:
        calls[0] += 1
        return await real(token)

    store.get_token_holder = counting  # type: ignore[method-assign]
    return calls


async def lock_behind_the_servers_back(hs: Harness, user_id: str) -> None:
    async with hs.server.db.write() as conn:
        await hs.server.db.run("UPDATE users SET locked = $1 WHERE user_id = $2", True, user_id, conn=conn)


async def test_a_busy_client_reads_its_token_once(hs: Harness) -> None:
    user = await hs.register("busy")
    calls = await reads_of_tokens(hs)
    for _ in range(5):
        await hs.ok("GET", WHOAMI, user)
    assert calls[0] == 1


async def test_changes_made_by_the_server_apply_to_the_next_request(hs: Harness) -> None:
    boss = await hs.register("boss")
    await hs.server.accounts.update_user(boss.user_id, admin=True)
    user, other = await hs.register("clerk"), await hs.register("typist")
    await hs.ok("GET", WHOAMI, user)
    await hs.ok("PUT", f"/_matrix/client/v1/admin/lock/{user.user_id}", boss, json={"locked": True})
    await hs.err(401, "M_USER_LOCKED", "GET", WHOAMI, user)
    await hs.ok("PUT", f"/_matrix/client/v1/admin/lock/{user.user_id}", boss, json={"locked": False})
    await hs.ok("GET", WHOAMI, user)
    # A logout, and the deletion of another device of the same user.
    await hs.ok("POST", f"{V3}/logout", user, json={})
    await hs.err(401, "M_UNKNOWN_TOKEN", "GET", WHOAMI, user)
    await hs.ok("GET", WHOAMI, other)
    await hs.server.auth.deactivate(other.user_id)
    await hs.err(401, "M_UNKNOWN_TOKEN", "GET", WHOAMI, other)


async def test_a_change_outside_the_server_applies_within_the_cache_time(hs: Harness) -> None:
    hs.server.auth.tokens.ttl_s = 0.3
    user = await hs.register("outside")
    await hs.ok("GET", WHOAMI, user)
    await lock_behind_the_servers_back(hs, user.user_id)
    await hs.ok("GET", WHOAMI, user)  # still the cached row: this is what the cache buys
    await asyncio.sleep(0.35)
    await hs.err(401, "M_USER_LOCKED", "GET", WHOAMI, user)


async def test_nothing_is_cached_while_the_bus_is_down(hs: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hs.server.auth, "cache_usable", lambda: False)  # what a disconnected bus answers
    user = await hs.register("unbussed")
    await hs.ok("GET", WHOAMI, user)
    await lock_behind_the_servers_back(hs, user.user_id)
    await hs.err(401, "M_USER_LOCKED", "GET", WHOAMI, user)


def test_a_read_that_raced_with_a_change_is_not_kept() -> None:
    cache = TokenCache(ttl_s=60)
    row = TokenRow("@a:x", "DEV", None)
    generation = cache.generation  # a read starts ...
    cache.forget(["@b:x"])  # ... any change lands meanwhile ...
    cache.put("t1", row, None, generation)  # ... so what it read may be stale: not kept
    assert cache.get("t1") is None
    cache.put("t1", row, None, cache.generation)
    assert cache.get("t1") == (row, None)
    cache.forget(["@a:x"])
    assert cache.get("t1") is None and len(cache) == 0


def test_the_cache_is_bounded() -> None:
    cache = TokenCache(ttl_s=60, max_entries=3)
    for i in range(5):
        cache.put(f"t{i}", TokenRow(f"@u{i}:x", "D", None), None, cache.generation)
    assert len(cache) == 3 and cache.get("t0") is None and cache.get("t4") is not None
    cache.forget(["@u0:x", "@u4:x"])
    assert len(cache) == 2


def test_tokens_cached_together_are_not_all_read_again_together(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each entry lives a random 50-100 % of the TTL: the tokens of clients that started together
    (every client after a restart) are not all read again in one instant, every TTL."""
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])  # (a plain test: no event loop runs)
    cache = TokenCache(ttl_s=2.0)
    for i in range(40):
        cache.put(f"t{i}", TokenRow(f"@u{i}:x", "D", None), None, cache.generation)
    clock[0] = 100.0 + 2.0 * 0.49
    assert all(cache.get(f"t{i}") is not None for i in range(40))
    clock[0] = 100.0 + 2.0 * 0.75
    stale = sum(cache.get(f"t{i}") is None for i in range(40))
    assert 0 < stale < 40
    clock[0] = 100.0 + 2.0
    assert all(cache.get(f"t{i}") is None for i in range(40))  # never older than the TTL
