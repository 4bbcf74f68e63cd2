"""Long-poll wake-ups: a /sync waits on keys ("r:<room>", "u:<user>") until a newer position
touching one of them is published, or its timeout passes.

Membership news of a big room is held (docs/decisions.md, "A join storm's news held"): where at least
`Holding.watchers` long-polls of this process followed a room at once, an update that only changes
its members (a join, a leave, a profile) lets a device answered less than `Holding.hold_s` ago wait
out the rest of that time before it is answered, unless other news comes for it (a message, its own
to-device messages, another room). Each device then gets a join storm's news once per `hold_s`
instead of once per join, and the rest of the server keeps its share of the CPU."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from paigham.bus.base import StreamUpdate
from paigham.metrics import SYNC_HELD, SYNC_WAITERS

RECENT = 20_000
# How often the time of a position is noted (hold_for asks when a device's `since` was current).
MARK_EVERY_S = 0.05
BIG_ROOMS = 1_000  # rooms remembered as big before the stale ones are dropped
HOLD_LOOKS_AT = 2_000  # updates past a `since`, at most, before news is sent without a hold


@dataclass(frozen=True)
class Holding:
    hold_s: float = 2.0  # 0: never hold
    watchers: int = 50  # long-polls following a room at one of its updates that make it big
    remember_s: float = 600.0  # a room stays big this long after the last time it was


Waiters = dict[str, set[asyncio.Future[None]]]


class Notifier:
    def __init__(
        self,
        holding: Holding | None = None,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = random.random,
    ) -> None:
        self.holding = holding or Holding()
        self._clock, self._random = clock, random
        self._waiters: Waiters = {}
        # Long-polls holding a big room's membership news: woken by anything else for their keys.
        self._holders: Waiters = {}
        # Recent updates, so a waiter registering late still sees what it raced with: the position,
        # its keys, and those of its keys whose news may be held. The keys are interned and kept in
        # tuples: ~150 bytes an update instead of ~400 (7.5 MB when full).
        self._recent: deque[tuple[int, tuple[str, ...], tuple[str, ...]]] = deque(maxlen=RECENT)
        # (position, when it was published), at most one per MARK_EVERY_S: over hold_s and then some
        self._marks: deque[tuple[int, float]] = deque(maxlen=int(self.holding.hold_s / MARK_EVERY_S) + 8)
        # room key → the last time one of its updates found `watchers` long-polls following it
        self._big: dict[str, float] = {}
        self._held_until = 0.0  # no held news is younger than hold_s after this time

    @property
    def waiting(self) -> int:
        return sum(len(v) for v in self._waiters.values()) + sum(len(v) for v in self._holders.values())

    @property
    def holds_news(self) -> bool:
        """Whether some news published within the last hold_s may be held (hold_for is worth asking)."""
        return self._clock() < self._held_until

    def on_update(self, update: StreamUpdate) -> None:
        keys = tuple(sys.intern(k) for k in (*(f"r:{r}" for r in update.rooms), *(f"u:{u}" for u in update.users)))
        if not keys:
            return  # nothing to wake (a credentials-only update carries no position)
        now = self._clock()
        if not self._marks or now - self._marks[-1][1] >= MARK_EVERY_S:
            self._marks.append((update.pos, now))
        held = self._held_keys(keys, update.member_only, now) if update.member_only else ()
        self._recent.append((update.pos, keys, held))
        for key in keys:
            waiting, holding = self._waiters.pop(key, ()), self._holders.get(key, ())
            # The long-polls following the room: those it wakes, and those holding its earlier news
            # (during a long storm, most of them: the room stays big while they do).
            if len(waiting) + len(holding) >= self.holding.watchers and key.startswith("r:"):
                self._remember_big(key, now)
            _wake(waiting)
            if holding and key not in held:
                _wake(self._holders.pop(key))

    def _held_keys(self, keys: tuple[str, ...], member_only: list[str], now: float) -> tuple[str, ...]:
        if self.holding.hold_s <= 0:
            return ()
        rooms = {f"r:{r}" for r in member_only}
        held = tuple(k for k in keys if k in rooms and now - self._big.get(k, -1e18) < self.holding.remember_s)
        if held:
            self._held_until = now + self.holding.hold_s
        return held

    def _remember_big(self, key: str, now: float) -> None:
        if key not in self._big and len(self._big) >= BIG_ROOMS:
            self._big = {k: t for k, t in self._big.items() if now - t < self.holding.remember_s}
        self._big[key] = now

    def wake_all(self) -> None:
        """Wake every waiter (after a bus outage, when updates may have been missed): each looks again."""
        for waiters in (self._waiters, self._holders):
            for futs in waiters.values():
                _wake(futs)
        self._waiters, self._holders = {}, {}

    def hold_for(self, keys: set[str], since: int) -> float:
        """How long a long-poll answered at `since` may wait before its news is sent (0: send it
        now): more than 0 only when every update past `since` touching `keys` is held news."""
        hold_s = self.holding.hold_s
        now = self._clock()
        if now >= self._held_until:
            return 0.0
        # When `since` was current: a device answered less than hold_s ago waits out the rest of it,
        # let go at a random point of its second half; one answered longer ago, at a random point of
        # the first half. Devices answered together (by one join) are not answered together again:
        # their answers would come as one burst, and every other room's news behind it.
        current_at = None
        for pos, at in reversed(self._marks):
            if now - at >= hold_s:
                break
            if pos <= since:
                current_at = at
                break
        if current_at is None:
            left = hold_s * 0.5 * self._random()
        elif (left := current_at + hold_s * (0.5 + 0.5 * self._random()) - now) <= 0:
            return 0.0
        found = False
        for looked, (pos, upd, held) in enumerate(reversed(self._recent)):
            if pos <= since:
                break
            if looked == HOLD_LOOKS_AT:
                return 0.0  # too much news to go through: send it
            if keys.isdisjoint(upd):
                continue
            if _not_held(upd, held, keys):
                return 0.0  # news that is not held
            found = True
        return left if found else 0.0

    async def held(self, keys: set[str], since: int, upto: int, timeout_s: float) -> bool:
        """For a long-poll answered at `since` that looked up to `upto` and found news: wait out the
        hold if the news may be held (hold_for), for `timeout_s` at most, or until news that is not
        held. True if it waited (look again: the news is to be sent, held no more), False if the news
        is to be sent now."""
        hold_s = min(self.hold_for(keys, since), timeout_s)
        if hold_s <= 0:
            return False
        SYNC_HELD.inc()
        await self.wait(keys, upto, hold_s, holding=True)
        return True

    def _seen_since(self, since: int, keys: set[str], holding: bool) -> bool:
        if self._recent and self._recent[0][0] > since + 1 and len(self._recent) == RECENT:
            return True  # too old to tell: let the caller look again
        for pos, upd, held in reversed(self._recent):
            if pos <= since:
                break
            if keys.isdisjoint(upd):
                continue
            if not holding or _not_held(upd, held, keys):
                return True
        return False

    async def wait(self, keys: Iterable[str], since: int, timeout_s: float, *, holding: bool = False) -> bool:
        """Wait until something for `keys` is published past `since`; True if woken, False on timeout.
        `holding`: a big room's membership news does not count (see hold_for)."""
        keyset = set(keys)
        if self._seen_since(since, keyset, holding):
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._holders if holding else self._waiters
        for key in keyset:
            waiters.setdefault(key, set()).add(fut)
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
                waiting = waiters.get(key)
                if waiting is not None:
                    waiting.discard(fut)
                    if not waiting:
                        del waiters[key]


def _not_held(update_keys: tuple[str, ...], held: tuple[str, ...], keys: set[str]) -> bool:
    """Whether an update touching `keys` brings them news that may not be held."""
    return not held or any(k in keys and k not in held for k in update_keys)


def _wake(futs: Iterable[asyncio.Future[None]]) -> None:
    for fut in futs:
        if not fut.done():
            fut.set_result(None)
