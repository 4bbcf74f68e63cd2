"""Sign-in protection: throttling and temporary lockout after failed passwords, per account and per address.

After `login_throttle_after` failures in a row, each further attempt must wait (1 s, 2 s, 4 s, … up to
a minute) and gets 429 M_LIMIT_EXCEEDED with retry_after_ms until then — without the password being
checked. After `login_lockout_after` failures within `login_lockout_window_s`, sign-in is refused the
same way for `login_lockout_s`, even with the right password; sessions already signed in are not
affected (an attacker guessing passwords must not log the real user out). The same applies per IP
address with the `login_ip_*` limits. A successful sign-in clears the account's counter.

Guesses sent in parallel must not get around the counters, which are consulted before the ~100 ms
password hash and moved after it: `attempt` reserves a place before anything is awaited — one
password check in flight per account and at most IN_FLIGHT_PER_ADDRESS per address in this process
— and an attempt that finds its place taken is refused at once (429) without its password being
checked. In a cluster each worker keeps its own places, so at most one check per account per worker.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator

from paigham.clock import now_ms
from paigham.config import Config
from paigham.errors import Codes, MatrixError
from paigham.messages import N_
from paigham.services.ports import AuditLog
from paigham.storage.logins import Failures, LoginStore

MAX_BACKOFF_MS = 60_000
BLOCKED_AUDIT_EVERY_MS = 60_000  # refused attempts are recorded at most once a minute per account or address
IN_FLIGHT_PER_ADDRESS = 4  # password checks running at once for one address (not exempt)
BUSY_RETRY_MS = 1000


def _wait_ms(f: Failures, throttle_after: int, base_ms: int, now: int) -> int:
    """How long this key must still wait before the next attempt (0: go ahead)."""
    if f.locked_until is not None and f.locked_until > now:
        return f.locked_until - now
    if throttle_after and f.count >= throttle_after:
        backoff = min(MAX_BACKOFF_MS, base_ms * (1 << min(16, f.count - throttle_after)))
        return max(0, f.last_ts + backoff - now)
    return 0


class LoginGuard:
    def __init__(self, config: Config, store: LoginStore, audit: AuditLog) -> None:
        self.config = config
        self.store = store
        self.audit = audit
        self._in_flight: Counter[str] = Counter()  # key → password checks running now in this process
        # key → (refused attempts not yet recorded, when the last record was written)
        self._blocked: dict[str, tuple[int, int]] = {}

    def _limits(self, key: str) -> tuple[int, int]:
        c = self.config
        if key.startswith("ip:"):
            return c.login_ip_throttle_after, c.login_ip_lockout_after
        return c.login_throttle_after, c.login_lockout_after

    def keys(self, user_id: str, ip: str | None) -> list[str]:
        exempt = {a.strip() for a in self.config.login_ip_exempt.split(",")}
        return [f"u:{user_id}"[:320], *([f"ip:{ip}"] if ip and ip not in exempt else [])]

    @contextlib.asynccontextmanager
    async def attempt(self, user_id: str, ip: str | None) -> AsyncIterator[None]:
        """A password check may run inside: its place is taken before anything is awaited, so a
        parallel attempt on the same account (or past the address's share) is refused at once, and
        then the counters are consulted (`check`)."""
        keys = self.keys(user_id, ip)
        busy = any(self._in_flight[k] >= (IN_FLIGHT_PER_ADDRESS if k.startswith("ip:") else 1) for k in keys)
        if busy:
            await self._blocked_attempt(keys, ip, "busy")
            raise MatrixError(
                429,
                Codes.LIMIT_EXCEEDED,
                N_("Another sign-in attempt for this account is being checked; try again in a moment"),
                retry_after_ms=BUSY_RETRY_MS,
            )
        self._in_flight.update(keys)
        try:
            await self.check(user_id, ip)
            yield
        finally:
            self._in_flight.subtract(keys)
            for k in keys:
                if self._in_flight[k] <= 0:
                    del self._in_flight[k]

    async def check(self, user_id: str, ip: str | None) -> None:
        """Raise 429 M_LIMIT_EXCEEDED if this account or address must wait before trying again."""
        now = now_ms()
        wait = 0
        for f in await self.store.get(self.keys(user_id, ip)):
            throttle_after, _ = self._limits(f.key)
            wait = max(wait, _wait_ms(f, throttle_after, self.config.login_backoff_ms, now))
        if wait > 0:
            await self._blocked_attempt(self.keys(user_id, ip), ip, "throttled")
            raise MatrixError(
                429,
                Codes.LIMIT_EXCEEDED,
                N_("Too many failed sign-in attempts; try again in {seconds} seconds", seconds=(wait + 999) // 1000),
                retry_after_ms=wait,
            )

    async def _blocked_attempt(self, keys: list[str], ip: str | None, why: str) -> None:
        """Refused attempts are audited in aggregate: one `auth.login_blocked` record per account (and
        address) at most every BLOCKED_AUDIT_EVERY_MS, with how many were refused since the last one —
        a guessing burst leaves a trace without writing a row per guess."""
        now = now_ms()
        for key in keys:
            count, last = self._blocked.get(key, (0, 0))
            count += 1
            if now - last < BLOCKED_AUDIT_EVERY_MS:
                self._blocked[key] = (count, last)
                continue
            self._blocked[key] = (0, now)
            scope, target = key.split(":", 1)
            details = {"scope": "account" if scope == "u" else "address", "refused": count, "reason": why}
            await self.audit.record("auth.login_blocked", None, target, ip, None, details)

    async def failed(self, user_id: str, ip: str | None, device: str | None) -> None:
        c = self.config
        now = now_ms()
        for key in self.keys(user_id, ip):
            _, lock_after = self._limits(key)
            before = await self.store.get([key])
            f = await self.store.add_failure(
                key, now, c.login_lockout_window_s * 1000, lock_after, c.login_lockout_s * 1000
            )
            was_locked = bool(before and before[0].locked_until and before[0].locked_until > now)
            if f.locked_until and f.locked_until > now and not was_locked:
                await self.audit.record(
                    "auth.locked_out",
                    None,
                    key.split(":", 1)[1],
                    ip,
                    device,
                    {
                        "scope": "account" if key.startswith("u:") else "address",
                        "failures": f.count,
                        "until": f.locked_until,
                    },
                )

    async def succeeded(self, user_id: str) -> None:
        await self.store.clear([f"u:{user_id}"])

    async def clear(self, user_id: str) -> None:
        await self.store.clear([f"u:{user_id}"])

    async def purge(self) -> None:
        """Forget counters nobody touched for a day."""
        now = now_ms()
        await self.store.purge(now - 86_400_000)
        self._blocked = {k: v for k, v in self._blocked.items() if now - v[1] < 86_400_000}
