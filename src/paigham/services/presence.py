"""Presence (can be switched off): online/unavailable/offline and a status message."""

from __future__ import annotations

from typing import Any

from paigham.bus.base import StreamUpdate
from paigham.clock import now_ms
from paigham.errors import Codes, MatrixError
from paigham.services.publisher import Publisher
from paigham.storage.presence import PresenceStore

STATES = ("online", "offline", "unavailable")
IDLE_AFTER_MS = 5 * 60 * 1000
# Users whose last presence this process remembers (to skip a read per /sync); an entry older than
# IDLE_AFTER_MS is of no use, and they are swept out when the map is full.
REMEMBERED_USERS = 100_000


class PresenceService:
    def __init__(self, store: PresenceStore, publisher: Publisher, *, enabled: bool) -> None:
        self.store = store
        self.publisher = publisher
        self.enabled = enabled
        self._last: dict[str, tuple[str, int]] = {}

    async def on_sync(self, user_id: str, state: str) -> None:
        """A syncing client marks its user online; only real changes are written (no churn)."""
        if not self.enabled or state == "offline":
            return
        last = self._last.get(user_id)
        now = now_ms()
        if last is not None and last[0] == state and now - last[1] < IDLE_AFTER_MS:
            return
        rows = await self.store.get([user_id])
        if rows and rows[0].state == state and now - rows[0].last_active_ts < IDLE_AFTER_MS:
            self._remember(user_id, state, rows[0].last_active_ts)
            return
        await self.set(user_id, state, rows[0].status_msg if rows else None)

    def _remember(self, user_id: str, state: str, ts: int) -> None:
        if len(self._last) >= REMEMBERED_USERS and user_id not in self._last:
            now = now_ms()
            self._last = {u: v for u, v in self._last.items() if now - v[1] < IDLE_AFTER_MS}
            if len(self._last) >= REMEMBERED_USERS // 2:  # mostly fresh: start over (a read per user, once)
                self._last = {}
        self._last[user_id] = (state, ts)

    async def set(self, user_id: str, state: str, status_msg: str | None) -> None:
        if state not in STATES:
            raise MatrixError(400, Codes.INVALID_PARAM, "presence must be online, offline or unavailable")
        if status_msg is not None and len(status_msg) > 1024:
            raise MatrixError(400, Codes.TOO_LARGE, "status_msg is too long")
        if not self.enabled:
            return
        pos = await self.store.put(user_id, state, status_msg, now_ms())
        self._remember(user_id, state, now_ms())
        await self.publisher.publish(StreamUpdate(pos, users=[user_id]), rooms_of=user_id)

    async def get(self, user_id: str) -> dict[str, Any]:
        rows = await self.store.get([user_id]) if self.enabled else []
        if not rows:
            return {"presence": "offline"}
        r = rows[0]
        out: dict[str, Any] = {
            "presence": r.state,
            "last_active_ago": max(0, now_ms() - r.last_active_ts),
            "currently_active": r.state == "online",
        }
        if r.status_msg:
            out["status_msg"] = r.status_msg
        return out
