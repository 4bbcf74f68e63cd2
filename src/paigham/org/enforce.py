"""Where policies are enforced: room creation, media uploads, sign-in, every request (account expiry),
the retention purge job, and account renewal. (In the event pipeline: org/event_policy.py.)

`PolicyEnforcer` is consulted by the core services (AuthService, RoomService, MediaService), so it is
built before them; `Renewals` sends server notices, which act through the core, so it is built after
them."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from time import monotonic
from typing import Any

import structlog

from paigham.audit.service import AuditService
from paigham.clock import now_ms
from paigham.errors import Codes, MatrixError
from paigham.messages import N_
from paigham.org.policy import PolicyService
from paigham.services.rooms import MEGOLM, CreateRoomRequest
from paigham.storage.accounts import AccountStore
from paigham.storage.policies import PolicyStore
from paigham.types import JsonDict

log = structlog.get_logger(__name__)
EXPIRED_ACCOUNT = "ORG_MATRIX_EXPIRED_ACCOUNT"  # the code Synapse uses and Element understands
DAY_MS = 86_400_000
# An account's expiry, once read, is kept for a random 50-100 % of this (`check_expiry`).
EXPIRY_CACHE_S = 10.0


class PolicyEnforcer:
    def __init__(
        self,
        policies: PolicyService,
        store: PolicyStore,
        accounts: AccountStore,
        audit: AuditService,
        *,
        exempt_creators: Collection[str] = (),
    ) -> None:
        self.policies = policies
        self.store = store
        self.accounts = accounts
        self.audit = audit
        self._expiry: dict[str, tuple[float, int | None]] = {}
        # Rooms these accounts create are left as requested (the server's own unit rooms).
        self.exempt_creators = frozenset(exempt_creators)

    # -- encryption -------------------------------------------------------------------------------
    async def room_creation(self, req: CreateRoomRequest) -> None:
        """RoomService creation hook: a private room or DM gets m.room.encryption when required."""
        if req.creator in self.exempt_creators or not (await self.policies.for_user(req.creator)).require_encryption:
            return
        given = {(e.get("type"), e.get("state_key", "")): e for e in req.initial_state if isinstance(e, dict)}
        if ("m.room.encryption", "") in given:
            return
        rule = given.get(("m.room.join_rules", ""), {}).get("content", {})
        join_rule = rule.get("join_rule") if isinstance(rule, dict) else None
        preset = req.preset or ("public_chat" if req.visibility == "public" else "private_chat")
        public = join_rule == "public" if join_rule is not None else preset == "public_chat"
        if not public or req.is_direct:
            req.initial_state = [
                *req.initial_state,
                {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}},
            ]

    # -- media ------------------------------------------------------------------------------------
    async def media_check(self, user_id: str, content_type: str, size: int | None) -> None:
        """MediaService upload check (before the body, with the declared size, and after it)."""
        user = await self.accounts.get_user(user_id)
        if user is not None and user.suspended:
            raise MatrixError(403, Codes.USER_SUSPENDED, N_("Your account is suspended: you cannot upload files"))
        p = await self.policies.for_user(user_id)
        why = p.allows_media(content_type, size)
        if why is not None:
            too_big = p.media_max_bytes and size is not None and size > p.media_max_bytes
            raise MatrixError(413 if too_big else 403, Codes.TOO_LARGE if too_big else Codes.FORBIDDEN, why)

    async def media_uploaded(
        self, user_id: str, media_id: str, content_type: str, size: int, filename: str | None
    ) -> None:
        """Audit the upload: metadata only, never the content."""
        await self.audit.record(
            "media.uploaded",
            user_id,
            media_id,
            details={"content_type": content_type[:100], "size": size, "filename": filename},
        )

    # -- accounts ---------------------------------------------------------------------------------
    async def token_lifetime_s(self, user_id: str) -> int:
        return (await self.policies.for_user(user_id)).access_token_lifetime_s

    async def check_devices(self, user_id: str, device_id: str) -> None:
        limit = (await self.policies.for_user(user_id)).max_devices
        if limit and len(await self.accounts.get_devices(user_id)) >= limit:
            raise MatrixError(
                403,
                Codes.FORBIDDEN,
                N_(
                    "You are signed in on {limit} devices, the most your organisation allows: sign out of one of "
                    "them first",
                    limit=limit,
                ),
            )

    async def expires_at(self, user_id: str) -> int | None:
        """When the account expires: the directory's date or the renewal deadline, whichever comes first.
        With an account validity period, an account without a deadline gets one (now + the period)."""
        renewal, official = await self.store.expiry(user_id)
        if renewal is None:
            days = (await self.policies.for_user(user_id)).account_validity_days
            if days:
                renewal = now_ms() + days * DAY_MS
                await self.store.set_validity(user_id, renewal, now_ms())
        found = [t for t in (renewal, official) if t is not None]
        return min(found) if found else None

    async def user_policy(self, user_id: str) -> JsonDict:
        """A user's unit, the policy in effect for them and when their account expires (admin API)."""
        return {
            "user_id": user_id,
            "unit_id": await self.policies.unit_of(user_id),
            "policy": (await self.policies.for_user(user_id)).to_json(),
            "expires_ts": await self.expires_at(user_id),
        }

    async def check_expiry(self, user_id: str) -> None:
        """AuthService request check: expired accounts get 403 ORG_MATRIX_EXPIRED_ACCOUNT until renewed."""
        now = monotonic()
        hit = self._expiry.get(user_id)
        if hit is None or now >= hit[0]:
            # Kept for a random 5-10 s, not a fixed 10: users whose first requests came together (every
            # client after a restart, a benchmark's start) would otherwise all read again in the same
            # instant every 10 s, a burst that held every request up (docs/decisions.md).
            hit = (now + EXPIRY_CACHE_S * random.uniform(0.5, 1.0), await self.expires_at(user_id))
            if len(self._expiry) > 100_000:
                self._expiry.clear()
            self._expiry[user_id] = hit
        if hit[1] is not None and hit[1] <= now_ms():
            raise MatrixError(403, EXPIRED_ACCOUNT, N_("Your account has expired: ask your administrator to renew it"))

    def forget_expiry(self, user_id: str) -> None:
        """The account was renewed: the next request reads its expiry again."""
        self._expiry.pop(user_id, None)

    # -- retention --------------------------------------------------------------------------------
    async def purge_history(self) -> dict[str, Any]:
        """Delete events older than each room's retention period (the room creator's policy)."""
        total, rooms = 0, 0
        now = now_ms()
        for room_id, creator in await self.store.room_creators():
            days = (await self.policies.for_user(creator)).retention_days
            if days <= 0:
                continue
            n = await self.store.purge_history(room_id, now - days * DAY_MS)
            if n:
                total, rooms = total + n, rooms + 1
                log.info("retention.purged", room_id=room_id, events=n, days=days)
        if total:
            await self.audit.record("retention.purged", None, None, details={"events": total, "rooms": rooms})
        return {"purged_events": total, "rooms": rooms}


class Renewals:
    """Account renewal (the admin API): built after the server notices it sends, unlike the enforcer,
    which the core services consult and which is therefore built before them."""

    def __init__(
        self,
        enforcer: PolicyEnforcer,
        audit: AuditService,
        *,
        notify: Callable[[str, str], Awaitable[Any]],
    ) -> None:
        self.enforcer = enforcer
        self.policies = enforcer.policies
        self.store = enforcer.store
        self.audit = audit
        self.notify = notify

    async def renew(self, user_id: str, until_ts: int | None, actor: str | None) -> int | None:
        """Renew an account until the given time; without one, for the validity period (or for good when
        there is none). An earlier expiry date from the directory is lifted."""
        if until_ts is None:
            days = (await self.policies.for_user(user_id)).account_validity_days
            until_ts = now_ms() + days * DAY_MS if days else None
        if until_ts is None:
            await self.store.delete_validity(user_id)
        else:
            await self.store.set_validity(user_id, until_ts, now_ms())
        _, official = await self.store.expiry(user_id)
        if official is not None and (until_ts is None or official < until_ts):
            await self.store.clear_official_expiry(user_id)
        self.enforcer.forget_expiry(user_id)
        await self.audit.record("admin.renew_account", actor, user_id, details={"until": until_ts})
        when = datetime.fromtimestamp(until_ts / 1000, UTC).date().isoformat() if until_ts else None
        try:
            await self.notify(
                user_id,
                N_("Your account has been renewed until {date}.", date=when)
                if when
                else N_("Your account has been renewed."),
            )
        except MatrixError as exc:
            log.warning("renewal.notice_failed", user_id=user_id, error=exc.error)
        return until_ts
