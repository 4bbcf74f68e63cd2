"""Admin actions on accounts, devices and rooms. Each takes effect at once and is audited."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.audit.service import AuditService
from paigham.clock import now_ms
from paigham.domain.stored_event import StoredEvent
from paigham.errors import Codes, MatrixError
from paigham.ids import parse_user_id
from paigham.messages import N_
from paigham.services.auth import AuthService
from paigham.services.profile import ProfileService
from paigham.services.rooms import RoomService
from paigham.services.writer import RoomCtx
from paigham.storage.admin import AdminStore
from paigham.storage.events import EventStore
from paigham.storage.org import OrgStore
from paigham.storage.org_schema import blocked_rooms
from paigham.storage.schema import users

log = structlog.get_logger(__name__)
FLAGS_TTL_S = 2.0


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it and from where (for the audit log)."""

    user_id: str | None
    ip: str | None = None
    device: str | None = None


class AdminService:
    def __init__(
        self,
        server_name: str,
        auth: AuthService,
        rooms: RoomService,
        events: EventStore,
        profiles: ProfileService,
        store: AdminStore,
        org: OrgStore,
        audit: AuditService,
    ) -> None:
        self.server_name = server_name
        self.auth = auth
        self.rooms = rooms
        self.events = events
        self.profiles = profiles
        self.store = store
        self.org = org
        self.audit = audit
        self.clear_login_failures: Callable[[str], Awaitable[None]] | None = None
        # Tells a user what happened to their account (server notices, in their language).
        self.notify: Callable[[str, str], Awaitable[Any]] | None = None
        self._flags_at = 0.0
        self._suspended: set[str] = set()
        self._blocked: set[str] = set()

    async def _notify(self, user_id: str, message: str) -> None:
        if self.notify is None:
            return
        try:
            await self.notify(user_id, message)
        except MatrixError as exc:  # the action stands even if the notice cannot be delivered
            log.warning("admin.notice_failed", user_id=user_id, error=exc.error)

    async def _record(
        self, action: str, actor: Actor, target: str | None, details: dict[str, Any] | None = None
    ) -> None:
        await self.audit.record(f"admin.{action}", actor.user_id, target, actor.ip, actor.device, details)

    def local_user(self, user_id: str) -> str:
        _, server = parse_user_id(user_id)
        if server != self.server_name:
            raise MatrixError(400, Codes.INVALID_PARAM, "Only local users can be administered here")
        return user_id

    async def existing_user(self, user_id: str) -> Any:
        user = await self.auth.store.get_user(self.local_user(user_id))
        if user is None:
            raise MatrixError(404, Codes.NOT_FOUND, "User not found")
        return user

    # -- accounts ---------------------------------------------------------------------------------
    async def deactivate(self, user_id: str, actor: Actor, *, erase: bool = False) -> None:
        """Log out every device, leave every room, refuse the account; with erase, drop the profile too."""
        user = await self.existing_user(user_id)
        if not user.deactivated:
            await self.auth.deactivate(user_id)
        else:
            await self.auth.logout_all(user_id)
        await self.org.set_status(user_id, "deactivated", now_ms())
        if erase:
            await self.store.mark_erased(user_id, now_ms())
            await self.org.erase_contact(user_id)
        await self._record("deactivate", actor, user_id, {"erase": erase})

    async def reactivate(self, user_id: str, password: str, actor: Actor) -> None:
        await self.auth.set_password(user_id, password)
        await self.auth.store.update_user(user_id, deactivated=False)
        await self.org.set_status(user_id, "active", now_ms())
        await self._record("reactivate", actor, user_id)

    async def put_user(self, user_id: str, body: dict[str, Any], actor: Actor) -> bool:
        """Create or modify an account (Synapse's PUT /_synapse/admin/v2/users/{userId}); True if created."""
        self.local_user(user_id)
        user = await self.auth.store.get_user(user_id)
        created = user is None
        if user is None:
            localpart = parse_user_id(user_id)[0]
            await self.auth.create_user(
                localpart, body.get("password"), admin=bool(body.get("admin")), displayname=body.get("displayname")
            )
            await self._record("create_user", actor, user_id, {"admin": bool(body.get("admin"))})
            user = await self.existing_user(user_id)
        elif body.get("password") is not None and not user.deactivated:
            await self.reset_password(user_id, body["password"], actor, logout_devices=body.get("logout_devices", True))
        if not created and body.get("displayname") is not None and body["displayname"] != user.displayname:
            await self.profiles.set(user_id, "displayname", body["displayname"], check=False)
        if "avatar_url" in body and body["avatar_url"] != user.avatar_url:
            await self.profiles.set(user_id, "avatar_url", body["avatar_url"], check=False)
        if body.get("admin") is not None and bool(body["admin"]) != user.admin:
            if actor.user_id == user_id and not body["admin"]:
                raise MatrixError(400, Codes.INVALID_PARAM, "You cannot demote yourself")
            await self.auth.store.update_user(user_id, admin=bool(body["admin"]))
            await self._record("set_admin", actor, user_id, {"admin": bool(body["admin"])})
        if body.get("user_type") is not None:
            await self.auth.store.update_user(user_id, user_type=body["user_type"])
        if body.get("locked") is not None and bool(body["locked"]) != user.locked:
            await self.set_locked(user_id, bool(body["locked"]), actor)
        if body.get("deactivated") is True and not user.deactivated:
            await self.deactivate(user_id, actor)
        elif body.get("deactivated") is False and user.deactivated:
            if not body.get("password"):
                raise MatrixError(400, Codes.MISSING_PARAM, "Reactivating a user needs a new password")
            await self.reactivate(user_id, body["password"], actor)
        return created

    async def set_suspended(self, user_id: str, suspended: bool, actor: Actor) -> None:
        """Suspended: may sign in, read, leave and redact their own events; nothing else (M_USER_SUSPENDED)."""
        user = await self.existing_user(user_id)
        if user.deactivated:
            raise MatrixError(400, Codes.INVALID_PARAM, "The account is deactivated")
        if suspended and not user.suspended:  # before: a suspended account could not join the notices room
            await self._notify(
                user_id,
                N_(
                    "Your account has been suspended by an administrator. You can still "
                    "read your messages and leave rooms."
                ),
            )
        await self.auth.store.update_user(user_id, suspended=suspended)
        self._flags_at = 0.0
        if not suspended and user.suspended:
            await self._notify(user_id, N_("Your account is active again."))
        await self.org.set_status(user_id, "suspended" if suspended else "active", now_ms())
        await self._record("suspend" if suspended else "unsuspend", actor, user_id)

    async def set_locked(self, user_id: str, locked: bool, actor: Actor) -> None:
        """Locked: every request of the account fails with M_USER_LOCKED until unlocked."""
        await self.existing_user(user_id)
        await self.auth.store.update_user(user_id, locked=locked)
        if not locked and self.clear_login_failures is not None:
            await self.clear_login_failures(user_id)
        await self._record("lock" if locked else "unlock", actor, user_id)

    async def reset_password(self, user_id: str, password: str, actor: Actor, *, logout_devices: bool = True) -> None:
        user = await self.existing_user(user_id)
        if user.deactivated:
            raise MatrixError(400, Codes.INVALID_PARAM, "The account is deactivated")
        await self.auth.set_password(user_id, password)
        if logout_devices:
            await self.auth.logout_all(user_id)
        if self.clear_login_failures is not None:
            await self.clear_login_failures(user_id)
        await self._record("reset_password", actor, user_id, {"logout_devices": logout_devices})
        await self._notify(user_id, N_("An administrator has reset your password."))

    async def delete_devices(self, user_id: str, device_ids: list[str], actor: Actor) -> None:
        await self.existing_user(user_id)
        await self.auth.delete_devices(user_id, device_ids)
        await self._record("delete_devices", actor, user_id, {"devices": device_ids})

    # -- rooms ------------------------------------------------------------------------------------
    async def delete_room(self, room_id: str, actor: Actor, *, block: bool, purge: bool) -> dict[str, Any]:
        """Everyone leaves, aliases go, optionally the room is blocked and its events purged."""
        if await self.events.get_room(room_id) is None:
            if block:
                await self.store.block_room(room_id, actor.user_id, now_ms())
                await self._record("delete_room", actor, room_id, {"block": True, "purge": purge})
                return {"kicked_users": [], "failed_to_kick_users": [], "local_aliases": [], "new_room_id": None}
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
        if block:
            await self.store.block_room(room_id, actor.user_id, now_ms())
            self._flags_at = 0.0
        kicked, failed = [], []
        for member in await self.events.room_members(room_id, ("join", "invite", "knock")):
            try:
                await self.rooms.set_membership(member, room_id, member, "leave", "The room was deleted by an admin")
                kicked.append(member)
            except MatrixError:
                failed.append(member)
        aliases = await self.store.remove_aliases(room_id)
        purged = await self.store.purge_room(room_id) if purge else 0
        await self._record(
            "delete_room",
            actor,
            room_id,
            {"block": block, "purge": purge, "kicked": len(kicked), "events_purged": purged},
        )
        return {"kicked_users": kicked, "failed_to_kick_users": failed, "local_aliases": aliases, "new_room_id": None}

    async def invalidate_flags(self, *_: Any) -> None:
        """Suspensions or blocks changed elsewhere in this process (an import): re-read them."""
        self._flags_at = 0.0

    async def _flags(self, conn: AsyncConnection) -> tuple[set[str], set[str]]:
        """Suspended users and blocked rooms, re-read at most every FLAGS_TTL_S (changes made in this
        process apply at once; in a cluster, other workers apply them within that time)."""
        if time.monotonic() - self._flags_at > FLAGS_TTL_S:
            suspended = {
                r.user_id
                for r in (await conn.execute(select(users.c.user_id).where(users.c.suspended.is_(True)))).all()
            }
            blocked = {r.room_id for r in (await conn.execute(select(blocked_rooms.c.room_id))).all()}
            self._suspended, self._blocked, self._flags_at = suspended, blocked, time.monotonic()
        return self._suspended, self._blocked

    async def refuse_blocked(self, conn: AsyncConnection, event: StoredEvent, _ctx: RoomCtx) -> None:
        """Writer persist hook: nobody joins, is invited to or knocks on a blocked room."""
        if event.type != "m.room.member" or event.content.get("membership") not in ("join", "invite", "knock"):
            return
        if event.room_id in (await self._flags(conn))[1]:
            raise MatrixError(403, Codes.FORBIDDEN, N_("This room has been blocked on this server"))

    async def refuse_suspended(self, conn: AsyncConnection, event: StoredEvent, ctx: RoomCtx) -> None:
        """Writer persist hook: a suspended account may leave rooms, reject invites and redact its own
        events — and send nothing else (spec: account suspension)."""
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
        user = await self.auth.store.get_user(user_id)
        if user is not None and user.suspended:
            raise MatrixError(
                403, Codes.USER_SUSPENDED, N_("Your account is suspended: your profile cannot be changed")
            )
