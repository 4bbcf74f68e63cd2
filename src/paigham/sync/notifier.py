"""Long-poll wake-ups: a /sync waits on keys ("r:<room>", "u:<user>") until a newer position
touching one of them is published, or its timeout passes."""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import Iterable

from paigham.bus.base import StreamUpdate
from paigham.metrics import SYNC_WAITERS

RECENT = 20_000


class Notifier:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        # Recent updates, so a waiter registering late still sees what it raced with. Their keys are
        # interned and kept in a tuple: ~150 bytes an update instead of ~400 (7.5 MB when full).
        self._recent: deque[tuple[int, tuple[str, ...]]] = deque(maxlen=RECENT)

    @property
    def waiting(self) -> int:
        return sum(len(v) for v in self._waiters.values())

    def on_update(self, update: StreamUpdate) -> None:
        keys = tuple(sys.intern(k) for k in (*(f"r:{r}" for r in update.rooms), *(f"u:{u}" for u in update.users)))
        if not keys:
            return  # nothing to wake (a credentials-only update carries no position)
        self._recent.append((update.pos, keys))
        for key in keys:
            for fut in self._waiters.pop(key, ()):
                if not fut.done():
                    fut.set_result(None)

    def wake_all(self) -> None:
        """Wake every waiter (after a bus outage, when updates may have been missed): each looks again."""
        waiters, self._waiters = self._waiters, {}
        for futs in waiters.values():
            for fut in futs:
                if not fut.done():
                    fut.set_result(None)

    def _seen_since(self, since: int, keys: set[str]) -> bool:
        if self._recent and self._recent[0][0] > since + 1 and len(self._recent) == RECENT:
            return True  # too old to tell: let the caller look again
        for pos, upd in reversed(self._recent):
            if pos <= since:
                break
            if not keys.isdisjoint(upd):
                return True
        return False

    async def wait(self, keys: Iterable[str], since: int, timeout_s: float) -> bool:
        """Wait until something for `keys` is published past `since`; True if woken, False on timeout."""
        keyset = set(keys)
        if self._seen_since(since, keyset):
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for key in keyset:
            self._waiters.setdefault(key, set()).add(fut)
        SYNC_WAITERS.inc()
        try:
            # (asyncio.timeout, not wait_for: on Python 3.11 wait_for resumes the waiter one pass of
            # the event loop later, through a callback of its own.)
            async with asyncio.timeout(timeout_s):
                await fut
            return True
        except TimeoutError:
            return False
        finally:
            SYNC_WAITERS.dec()
            for key in keyset:
                waiting = self._waiters.get(key)
                if waiting is not None:
                    waiting.discard(fut)
                    if not waiting:
                        del self._waiters[key]
