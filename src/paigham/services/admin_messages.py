"""Messages an admin sends in the server's name — a server notice to one user, an announcement in an
organisation unit's announcements room — with the checks before sending and the audit entry after.

Sending is the plug-ins' business (server notices and unit rooms belong to the organisation layer), so
both arrive here as functions given at construction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from paigham.errors import Codes, MatrixError
from paigham.services.admin import Actor, AdminService
from paigham.services.ports import AuditLog
from paigham.types import JsonDict

MAX_BODY = 16_000

# Sends a server notice: (user_id, text, content) -> event ID (ServerNotices.send).
SendNotice = Callable[[str, str, JsonDict], Awaitable[str]]
# Posts in a unit's announcements room: (unit_id, text, actor's user ID) -> event ID (UnitSpaces.announce).
Announce = Callable[[str, str, str | None], Awaitable[str]]


class AdminMessages:
    def __init__(self, admin: AdminService, send_notice: SendNotice, announce: Announce, audit: AuditLog) -> None:
        self.admin = admin
        self._send_notice = send_notice
        self._announce = announce
        self.audit = audit

    async def _record(self, action: str, actor: Actor, target: str, event_id: str) -> None:
        await self.audit.record(
            f"admin.{action}", actor.user_id, target, actor.ip, actor.device, {"event_id": event_id}
        )

    async def server_notice(self, user_id: str, content: JsonDict, actor: Actor) -> str:
        """A text or notice message to an active local account, in its server-notices room."""
        user = await self.admin.existing_user(user_id)
        if user.deactivated:
            raise MatrixError(400, Codes.INVALID_PARAM, "The account is deactivated")
        text, msgtype = content.get("body"), content.get("msgtype")
        if not isinstance(text, str) or not text or len(text) > MAX_BODY or msgtype not in ("m.text", "m.notice"):
            raise MatrixError(400, Codes.INVALID_PARAM, "content needs msgtype m.text or m.notice and a body")
        event_id = await self._send_notice(user_id, text, {"msgtype": msgtype, "body": text})
        await self._record("server_notice", actor, user_id, event_id)
        return event_id

    async def announce(self, unit_id: str, text: str, actor: Actor) -> str:
        """A message from the server's account in the unit's announcements room."""
        if not text.strip() or len(text) > MAX_BODY:
            raise MatrixError(400, Codes.INVALID_PARAM, "body must be 1 to 16000 characters")
        event_id = await self._announce(unit_id, text, actor.user_id)
        await self._record("announce", actor, unit_id, event_id)
        return event_id
