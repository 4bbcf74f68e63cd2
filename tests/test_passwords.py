"""Password hashing: correct verification, and no more hashes at once than the limit (memory)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from paigham.services import passwords


async def test_hash_and_verify() -> None:
    stored = await passwords.hash_password("correct horse")
    assert stored.startswith("$argon2id$")
    assert await passwords.verify_password("correct horse", stored)
    assert not await passwords.verify_password("wrong", stored)
    assert not await passwords.verify_password("x", None)
    assert not await passwords.verify_password("x", "not-a-hash")


async def test_concurrent_hashes_are_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    running = peak = 0
    lock = threading.Lock()

    class Slow:
        def hash(self, password: str) -> str:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.05)
            with lock:
                running -= 1
            return "h:" + password

    monkeypatch.setattr(passwords, "_hasher", Slow())
    monkeypatch.setattr(passwords, "MAX_CONCURRENT_HASHES", 2)
    passwords._gates.clear()
    out = await asyncio.gather(*(passwords.hash_password(str(i)) for i in range(10)))
    assert out == [f"h:{i}" for i in range(10)]
    assert peak == 2
    passwords._gates.clear()


async def test_no_stored_hash_costs_a_real_verification() -> None:
    """An account without a hash (unknown, deactivated) is checked against a dummy Argon2 hash."""
    assert not await passwords.verify_password("anything", None)
    assert passwords._dummy_hash is not None and passwords._dummy_hash.startswith("$argon2id$")


async def test_configured_costs_apply_to_new_hashes_and_old_ones_still_verify() -> None:
    old = await passwords.hash_password("pw")
    assert "m=65536,t=3" in old  # the default: RFC 9106's second profile
    try:
        passwords.configure(time_cost=1, memory_kib=64)
        cheap = await passwords.hash_password("pw")
        assert "m=64,t=1" in cheap
        assert await passwords.verify_password("pw", old)
        assert await passwords.verify_password("pw", cheap)
        assert not await passwords.verify_password("x", None)
    finally:
        passwords.configure(passwords.DEFAULT_TIME_COST, passwords.DEFAULT_MEMORY_KIB)
    assert "m=65536,t=3" in await passwords.hash_password("pw")
