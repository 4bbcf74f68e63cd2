"""Sign-in protection: throttling and temporary lockout after failed passwords, per account and per address.

After `login_throttle_after` failures in a row, each further attempt must wait (1 s, 2 s, 4 s, … up to
a minute) and gets 429 M_LIMIT_EXCEEDED with retry_after_ms until then — without the password being
checked. After `login_lockout_after` failures within `login_lockout_window_s`, sign-in is refused the
same way for `login_lockout_s`, even with the right password; sessions already signed in are not
affected (an attacker guessing passwords must not log the real user out). The same applies per IP
address with the `login_ip_*` limits. A successful sign-in clears the account's counter.
"""

from __future__ import annotations

from paigham.clock import now_ms
from paigham.config import Config
from paigham.errors import Codes, MatrixError
from paigham.messages import N_
from paigham.services.ports import AuditLog
from paigham.storage.logins import Failures, LoginStore

MAX_BACKOFF_MS = 60_000


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

    def _limits(self, key: str) -> tuple[int, int]:
        c = self.config
        if key.startswith("ip:"):
            return c.login_ip_throttle_after, c.login_ip_lockout_after
        return c.login_throttle_after, c.login_lockout_after

    def keys(self, user_id: str, ip: str | None) -> list[str]:
        exempt = {a.strip() for a in self.config.login_ip_exempt.split(",")}
        return [f"u:{user_id}"[:320], *([f"ip:{ip}"] if ip and ip not in exempt else [])]

    async def check(self, user_id: str, ip: str | None) -> None:
        """Raise 429 M_LIMIT_EXCEEDED if this account or address must wait before trying again."""
        now = now_ms()
        wait = 0
        for f in await self.store.get(self.keys(user_id, ip)):
            throttle_after, _ = self._limits(f.key)
            wait = max(wait, _wait_ms(f, throttle_after, self.config.login_backoff_ms, now))
        if wait > 0:
            raise MatrixError(
                429,
                Codes.LIMIT_EXCEEDED,
                N_("Too many failed sign-in attempts; try again in {seconds} seconds", seconds=(wait + 999) // 1000),
                retry_after_ms=wait,
            )

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
        await self.store.purge(now_ms() - 86_400_000)
