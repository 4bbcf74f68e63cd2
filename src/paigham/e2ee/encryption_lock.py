"""Encryption, once on, stays on (config `lock_room_encryption`, on by default).

A check of the event pipeline (services/writer.py): it runs before anything of the event is written,
inside the write transaction, so refusing rolls the whole request back (a room created with a bad
`initial_state` is not created at all).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.domain.stored_event import StoredEvent
from paigham.errors import Codes, MatrixError
from paigham.services.stages import RoomCtx
from paigham.storage.events import EventStore

ENCRYPTION = "m.room.encryption"


def _refuse(msg: str) -> MatrixError:
    return MatrixError(403, Codes.FORBIDDEN, msg)


class EncryptionLock:
    def __init__(self, enabled: bool, events: EventStore) -> None:
        self.enabled = enabled
        self.events = events

    async def check(self, conn: AsyncConnection, event: StoredEvent, ctx: RoomCtx) -> None:
        """Writer check: no m.room.encryption without an algorithm or with another one than before, and
        no redaction of it."""
        if not self.enabled:
            return
        if event.type == ENCRYPTION and event.state_key == "":
            prev = ctx.state.get((ENCRYPTION, ""))  # the state this event replaces: always known to checks
            self._check_change(event, prev.content if prev is not None else None)
        elif event.type == "m.room.redaction":
            await self._check_redaction(conn, event)

    @staticmethod
    def _check_change(event: StoredEvent, prev: dict[str, Any] | None) -> None:
        algorithm = event.content.get("algorithm")
        if not isinstance(algorithm, str) or not algorithm:
            raise _refuse("Encryption cannot be switched off: m.room.encryption must name an algorithm")
        old = prev.get("algorithm") if prev is not None else None
        if isinstance(old, str) and old and old != algorithm:
            raise _refuse(f"The room's encryption algorithm {old} cannot be changed or downgraded"[:300])

    async def _check_redaction(self, conn: AsyncConnection, event: StoredEvent) -> None:
        target = event.content.get("redacts") or event.pdu.get("redacts")
        if not isinstance(target, str):
            return
        redacted = await self.events.get_event(target, conn=conn)
        if redacted is not None and redacted.type == ENCRYPTION and redacted.state_key == "":
            raise _refuse("The room's m.room.encryption event cannot be redacted")
