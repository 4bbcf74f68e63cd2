"""OpenID tokens (spec: Client-Server API "OpenID", Server-Server API "OpenID"): a signed-in user asks
for a short-lived token and hands it to a third party, which asks the homeserver whose it is.

The MatrixRTC authorization service (services/rtc.py) is that third party here: it asks this service
in-process (`user_of`) instead of calling /_matrix/federation/v1/openid/userinfo over HTTP. The
federation endpoint is still served for any other party the operator lets reach it.

Tokens are random, stored hashed (storage/openid_schema.py), live `openid_token_lifetime_s` (an hour,
as in Synapse), are purged by the job runner once expired, and stop working when the account is
deactivated (its tokens are removed; `user_of` also checks the account).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from paigham.clock import now_ms
from paigham.storage.accounts import AccountStore
from paigham.storage.openid import OpenIdStore

MAX_TOKEN_LENGTH = 255  # a token longer than any issued is refused before it reaches the database
MAX_LIVE_PER_USER = 50  # a client asks for one per call it joins; beyond this the oldest ones go


@dataclass(frozen=True, slots=True)
class OpenIdToken:
    access_token: str
    expires_in_s: int
    matrix_server_name: str

    def to_json(self) -> dict[str, str | int]:
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "matrix_server_name": self.matrix_server_name,
            "expires_in": self.expires_in_s,
        }


class OpenIdService:
    def __init__(self, server_name: str, store: OpenIdStore, accounts: AccountStore, lifetime_s: int) -> None:
        self.server_name = server_name
        self.store = store
        self.accounts = accounts
        self.lifetime_s = max(1, lifetime_s)

    async def issue(self, user_id: str) -> OpenIdToken:
        """A new token for `user_id` (the caller checked it is the requester)."""
        token = "oid_" + secrets.token_urlsafe(32)
        await self.store.add(token, user_id, now_ms() + self.lifetime_s * 1000, keep=MAX_LIVE_PER_USER)
        return OpenIdToken(token, self.lifetime_s, self.server_name)

    async def user_of(self, token: str) -> str | None:
        """Whose token this is, or None when it is unknown, expired, or its account is no longer usable."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        user_id = await self.store.user_of(token, now_ms())
        if user_id is None:
            return None
        user = await self.accounts.get_user(user_id)
        if user is None or user.deactivated or user.locked:
            return None
        return user_id

    async def user_deactivated(self, user_id: str) -> None:
        """AuthService hook: a deactivated account's tokens go at once."""
        await self.store.delete_for_user(user_id)

    async def purge_expired(self) -> int:
        """Job: remove expired tokens."""
        return await self.store.purge_expired(now_ms())
