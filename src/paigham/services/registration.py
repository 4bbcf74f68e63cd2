"""Creating accounts (spec "Account registration"): open or token-gated registration through
User-Interactive Auth, username availability, registration-token validity, and the
Synapse-compatible shared-secret registration (a single-use nonce and an HMAC) of provisioning tools.

A registration token is checked by its UIA stage and counted once, when the account is created.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import msgspec

from paigham.clock import now_ms
from paigham.errors import Codes, MatrixError
from paigham.ids import random_string
from paigham.services.auth import AuthService
from paigham.services.uia import DUMMY, REGISTRATION_TOKEN, UIAService
from paigham.storage.accounts import AccountStore
from paigham.types import JsonDict

NONCE_LIFETIME_MS = 60_000
NONCE_KIND = "shared_secret_nonce"  # nonces are kept as UIA sessions of this kind


class SharedSecretRegistration(msgspec.Struct):
    """The body of POST /_synapse/admin/v1/register."""

    nonce: str
    username: str
    password: str
    mac: str
    admin: bool = False
    displayname: str | None = None
    user_type: str | None = None


def shared_secret_mac(
    secret: str, nonce: str, username: str, password: str, admin: bool, user_type: str | None = None
) -> str:
    """The HMAC-SHA1 the Synapse admin API documents for /_synapse/admin/v1/register."""
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    parts = [nonce, username, password, "admin" if admin else "notadmin"]
    if user_type:
        parts.append(user_type)
    mac.update(b"\x00".join(p.encode() for p in parts))
    return mac.hexdigest()


class RegistrationService:
    def __init__(
        self,
        auth: AuthService,
        uia: UIAService,
        accounts: AccountStore,
        *,
        open_registration: bool,
        shared_secret: str | None,
    ) -> None:
        self.auth = auth
        self.uia = uia
        self.accounts = accounts
        self.open_registration = open_registration
        self.shared_secret = shared_secret

    def flows(self) -> list[list[str]]:
        # The token stage is followed by a dummy stage, as other servers offer it: matrix-nio's
        # register_with_token walks exactly this flow, and other clients follow whatever is offered.
        with_token = [REGISTRATION_TOKEN, DUMMY]
        return [[DUMMY], with_token] if self.open_registration else [with_token]

    async def register(self, username: str | None, password: str | None, auth: JsonDict | None) -> tuple[str, bool]:
        """Advance the registration's UIA and, once complete, create the account: its user ID, and
        whether a registration token was used (a random localpart when no username is given)."""
        localpart = (username or "").lower() or random_string(12).lower()
        user_id = await self.check_available(localpart)
        if password is None and auth is not None:
            raise MatrixError(400, Codes.MISSING_PARAM, "password is required")
        data = await self.uia.check(auth, kind="register", flows=self.flows())
        token = data.get("registration_token")
        if token is not None and not await self.accounts.use_registration_token(str(token), now_ms()):
            raise MatrixError(401, Codes.UNAUTHORIZED, "Registration token is no longer valid")
        await self.auth.create_user(localpart, password)
        return user_id, token is not None

    async def check_available(self, localpart: str) -> str:
        """The user ID the localpart would have, if it is valid and nobody holds it yet."""
        user_id = self.auth.check_localpart(localpart)
        if await self.accounts.get_user(user_id) is not None:
            raise MatrixError(400, Codes.USER_IN_USE, "User ID already taken")
        return user_id

    async def token_valid(self, token: str) -> bool:
        return await self.accounts.registration_token_valid(token, now_ms())

    # -- shared-secret registration (/_synapse/admin/v1/register) ------------------------------
    async def new_nonce(self) -> str:
        value = secrets.token_hex(16)
        await self.accounts.save_uia_session(value, NONCE_KIND, None, [], {}, now_ms())
        return value

    async def register_with_shared_secret(self, req: SharedSecretRegistration) -> str:
        """Create the account if the nonce is fresh (it is used up either way) and the MAC is right."""
        if not self.shared_secret:
            raise MatrixError(400, Codes.UNKNOWN, "Shared secret registration is not enabled")
        session = await self.accounts.get_uia_session(req.nonce)
        if session is None or session["kind"] != NONCE_KIND or session["created_ts"] + NONCE_LIFETIME_MS < now_ms():
            raise MatrixError(400, Codes.UNKNOWN, "Unrecognised nonce")
        await self.accounts.delete_uia_session(req.nonce)
        want = shared_secret_mac(self.shared_secret, req.nonce, req.username, req.password, req.admin, req.user_type)
        if not hmac.compare_digest(want, req.mac.lower()):
            raise MatrixError(403, Codes.FORBIDDEN, "HMAC incorrect")
        return await self.auth.create_user(
            req.username.lower(), req.password, admin=req.admin, displayname=req.displayname
        )
