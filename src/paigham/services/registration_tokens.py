"""Registration tokens as the admin manages them (Synapse's registration-token admin API): list, show,
create (named or random), change uses and expiry, delete. Every change is audited; the token itself
is shortened in the audit log, since it is a secret until it is used up."""

from __future__ import annotations

import secrets
import string

import msgspec

from paigham.clock import now_ms
from paigham.errors import Codes, MatrixError
from paigham.services.admin import Actor
from paigham.services.auth import AuthService
from paigham.services.ports import AuditLog
from paigham.storage.accounts import AccountStore
from paigham.storage.admin import AdminStore
from paigham.types import JsonDict

TOKEN_CHARS = string.ascii_letters + string.digits + "._~-"
FIELDS = ("token", "uses_allowed", "pending", "completed", "expiry_time")
Unset = msgspec.UnsetType


def token_json(row: JsonDict) -> JsonDict:
    """A token in the shape of Synapse's admin API (no creation time)."""
    return {k: row[k] for k in FIELDS}


def is_valid(row: JsonDict, now: int) -> bool:
    """Not expired and not used up (pending registrations count as uses)."""
    return (row["expiry_time"] is None or row["expiry_time"] >= now) and (
        row["uses_allowed"] is None or row["pending"] + row["completed"] < row["uses_allowed"]
    )


def _check_uses(v: int | None) -> None:
    if v is not None and not 0 <= v <= 2**31:
        raise MatrixError(400, Codes.INVALID_PARAM, "uses_allowed must be a non-negative integer or null")


def _check_expiry(v: int | None) -> None:
    if v is not None and (v < now_ms() or v > 2**53):
        raise MatrixError(400, Codes.INVALID_PARAM, "expiry_time must be a time in the future (ms) or null")


def _not_found() -> MatrixError:
    return MatrixError(404, Codes.NOT_FOUND, "No such registration token")


class RegistrationTokens:
    def __init__(self, auth: AuthService, accounts: AccountStore, store: AdminStore, audit: AuditLog) -> None:
        self.auth = auth
        self.accounts = accounts
        self.store = store
        self.audit = audit

    async def _record(self, action: str, actor: Actor, token: str, details: JsonDict | None = None) -> None:
        target = token[:4] + "…"  # enough to tell tokens apart, not enough to register with
        await self.audit.record(f"admin.{action}", actor.user_id, target, actor.ip, actor.device, details)

    async def list_tokens(self, valid: bool | None = None) -> list[JsonDict]:
        """Every token, or only the valid (True) or invalid (False) ones."""
        rows = await self.accounts.list_registration_tokens()
        if valid is not None:
            now = now_ms()
            rows = [r for r in rows if is_valid(r, now) == valid]
        return [token_json(r) for r in rows]

    async def token(self, token: str) -> JsonDict:
        row = await self.store.get_token(token)
        if row is None:
            raise _not_found()
        return token_json(row)

    async def create(
        self, token: str | None, uses_allowed: int | None, expiry_time: int | None, length: int, actor: Actor
    ) -> JsonDict:
        """A named token, or a random one of `length` characters (1 to 64)."""
        _check_uses(uses_allowed)
        _check_expiry(expiry_time)
        if token is None and not 1 <= length <= 64:
            raise MatrixError(400, Codes.INVALID_PARAM, "length must be between 1 and 64")
        token = token if token is not None else "".join(secrets.choice(TOKEN_CHARS) for _ in range(length))
        if await self.store.get_token(token) is not None:
            raise MatrixError(400, Codes.INVALID_PARAM, "This token already exists")
        await self.auth.create_registration_token(uses_allowed, None, token)
        if expiry_time is not None:  # AuthService takes a lifetime; the admin API gives the moment
            await self.store.update_token(token, {"expiry_time": expiry_time})
        await self._record(
            "registration_token_created", actor, token, {"uses_allowed": uses_allowed, "expiry_time": expiry_time}
        )
        return await self.token(token)

    async def update(
        self,
        token: str,
        actor: Actor,
        *,
        uses_allowed: int | Unset | None = msgspec.UNSET,
        expiry_time: int | Unset | None = msgspec.UNSET,
    ) -> JsonDict:
        """Change what is given (null lifts the limit); unset fields stay as they are."""
        values: JsonDict = {}
        if not isinstance(uses_allowed, Unset):
            _check_uses(uses_allowed)
            values["uses_allowed"] = uses_allowed
        if not isinstance(expiry_time, Unset):
            _check_expiry(expiry_time)
            values["expiry_time"] = expiry_time
        if await self.store.get_token(token) is None or (values and not await self.store.update_token(token, values)):
            raise _not_found()
        await self._record("registration_token_updated", actor, token, values)
        return await self.token(token)

    async def delete(self, token: str, actor: Actor) -> None:
        if not await self.store.delete_token(token):
            raise _not_found()
        await self._record("registration_token_deleted", actor, token)
