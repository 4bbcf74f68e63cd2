"""What the core consults about moderation: nobody joins a blocked room, a suspended account sends
nothing but leaves and redactions of its own events (spec: account suspension) — two checks of the
event pipeline — and a suspended account cannot change its profile (a ProfileService guard). Built
before the services that consult it, so each takes it as a constructor argument.

Both read the same flags — suspended users and blocked rooms — cached for FLAGS_TTL_S: changes made in
this process apply at once (`invalidate`); in a cluster, other workers apply them within that time.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.domain.stored_event import StoredEvent
from paigham.errors import Codes, MatrixError
from paigham.messages import N_
from paigham.services.stages import RoomCtx
from paigham.storage.accounts import AccountStore
from paigham.storage.admin import AdminStore
from paigham.storage.events import EventStore

FLAGS_TTL_S = 2.0


class ModerationChecks:
    def __init__(self, store: AdminStore, events: EventStore, accounts: AccountStore) -> None:
        self.store = store
        self.events = events
        self.accounts = accounts
        self._flags_at = 0.0
        self._suspended: set[str] = set()
        self._blocked: set[str] = set()

    async def invalidate(self, *_: Any) -> None:
        """Suspensions or blocks changed in this process (an admin action, an import): re-read them at
        the next event (an `OrgService` after-apply hook, hence the ignored arguments)."""
        self._flags_at = 0.0

    async def _flags(self, conn: AsyncConnection) -> tuple[set[str], set[str]]:
        """Suspended users and blocked rooms, re-read at most every FLAGS_TTL_S."""
        if time.monotonic() - self._flags_at > FLAGS_TTL_S:
            self._suspended, self._blocked = await self.store.moderation_flags(conn)
            self._flags_at = time.monotonic()
        return self._suspended, self._blocked

    async def refuse_blocked(self, conn: AsyncConnection, event: StoredEvent, _ctx: RoomCtx) -> None:
        """Writer check: nobody joins, is invited to or knocks on a blocked room."""
        if event.type != "m.room.member" or event.content.get("membership") not in ("join", "invite", "knock"):
            return
        if event.room_id in (await self._flags(conn))[1]:
            raise MatrixError(403, Codes.FORBIDDEN, N_("This room has been blocked on this server"))

    async def refuse_suspended(self, conn: AsyncConnection, event: StoredEvent, _ctx: RoomCtx) -> None:
        """Writer check: a suspended account may leave rooms, reject invites and redact its own
        events — and send nothing else."""
        if event.sender not in (await self._flags(conn))[0]:
            return
        if (
            event.type == "m.room.member"
            and event.state_key == event.sender
            and event.content.get("membership") == "leave"
        ):
            return
        if event.type == "m.room.redaction":
            target_id = event.content.get("redacts") or event.pdu.get("redacts")
            target = await self.events.get_event(target_id, conn=conn) if isinstance(target_id, str) else None
            if target is not None and target.sender == event.sender:
                return
        raise MatrixError(
            403,
            Codes.USER_SUSPENDED,
            N_("Your account is suspended: you can read and leave rooms, but not send, join or invite"),
        )

    async def guard_profile(self, user_id: str, key: str) -> None:
        """ProfileService guard: suspended accounts cannot change their profile."""
        user = await self.accounts.get_user(user_id)
        if user is not None and user.suspended:
            raise MatrixError(
                403, Codes.USER_SUSPENDED, N_("Your account is suspended: your profile cannot be changed")
            )
