"""Accounts: login, registration, tokens, devices and User-Interactive Auth."""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from paigham.bus.base import StreamUpdate
from paigham.clock import now_ms
from paigham.config import Config
from paigham.errors import Codes, MatrixError
from paigham.ids import make_user_id, parse_user_id, random_string, valid_localpart
from paigham.requester import Requester
from paigham.services.passwords import hash_password, verify_password
from paigham.services.ports import AccountHooks
from paigham.storage.accounts import AccountStore, TokenRow, UserRow

MAX_PASSWORD_LEN = 512
# How long an access token's row (and its account's) is trusted without reading it again. Changes
# made by a server process apply at once (this process forgets the user, the bus tells the other
# workers); the time bounds changes made outside the servers (the CLI, an SQL session).
TOKEN_CACHE_TTL_S = 2.0
TOKEN_CACHE_MAX = 100_000


class TokenCache:
    """Access token → its row and its account's row, read again after a random 50-100 % of
    TOKEN_CACHE_TTL_S (not a fixed time: the tokens of clients that started together would otherwise
    all be read again in the same instant, every time).

    Nearly every request authenticates, and a busy client (a /sync loop) repeats the same read many
    times a second; on PostgreSQL each read is a round trip. A change forgets every entry of the user
    (`forget`); a read that raced with a change is not stored (the generation moved meanwhile).
    """

    def __init__(self, ttl_s: float = TOKEN_CACHE_TTL_S, max_entries: int = TOKEN_CACHE_MAX) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.generation = 0
        self._entries: dict[str, tuple[float, TokenRow, UserRow | None]] = {}
        self._by_user: dict[str, set[str]] = {}

    def get(self, token: str) -> tuple[TokenRow, UserRow | None] | None:
        hit = self._entries.get(token)
        if hit is None:
            return None
        if time.monotonic() >= hit[0]:
            self._drop(token)
            return None
        return hit[1], hit[2]

    def put(self, token: str, row: TokenRow, user: UserRow | None, generation: int) -> None:
        if generation != self.generation:
            return  # something changed while the row was being read: it may be stale already
        if len(self._entries) >= self.max_entries:
            self._drop(next(iter(self._entries)))
        self._entries[token] = (time.monotonic() + self.ttl_s * random.uniform(0.5, 1.0), row, user)
        self._by_user.setdefault(row.user_id, set()).add(token)

    def _drop(self, token: str) -> None:
        hit = self._entries.pop(token, None)
        if hit is not None:
            tokens = self._by_user.get(hit[1].user_id)
            if tokens is not None:
                tokens.discard(token)
                if not tokens:
                    del self._by_user[hit[1].user_id]

    def forget(self, user_ids: list[str]) -> None:
        self.generation += 1
        for user_id in user_ids:
            for token in self._by_user.pop(user_id, ()):
                self._entries.pop(token, None)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()
        self._by_user.clear()

    def on_update(self, update: StreamUpdate) -> None:
        """Bus listener: another worker changed these users' credentials."""
        if update.credentials:
            self.forget(update.credentials)

    def __len__(self) -> int:
        return len(self._entries)


class CredentialChanges:
    """Users whose tokens were deleted or whose account row changed: this process forgets their
    cached tokens at once, and the other workers are told (their TokenCache.on_update forgets them).

    Built before the AccountStore, which calls it after each such commit, and AuthService."""

    def __init__(self, tokens: TokenCache, announce: Callable[[list[str]], Awaitable[None]]) -> None:
        self.tokens = tokens
        self.announce = announce

    async def __call__(self, user_ids: list[str]) -> None:
        self.tokens.forget(user_ids)
        await self.announce(user_ids)


def user_id_for(localpart_or_id: str, server_name: str) -> str:
    """A full user ID as given, or a localpart (any case) made into one of this server's."""
    if localpart_or_id.startswith("@"):
        parse_user_id(localpart_or_id)
        return localpart_or_id
    return make_user_id(localpart_or_id.lower(), server_name)


async def password_matches(user: UserRow | None, password: str) -> bool:
    """Whether `password` is the account's; never for an unknown or deactivated account, whose check
    takes as long as a real one (a dummy hash): the time a sign-in takes does not tell who exists."""
    if user is None or user.deactivated:
        await verify_password(password, None)
        return False
    return await verify_password(password, user.password_hash)


@dataclass(frozen=True, slots=True)
class Session:
    user_id: str
    device_id: str
    access_token: str
    refresh_token: str | None
    expires_in_ms: int | None


class AuthService:
    def __init__(
        self,
        config: Config,
        store: AccountStore,
        changes: CredentialChanges,
        *,
        cache_usable: Callable[[], bool],
        hooks: AccountHooks,
    ) -> None:
        self.config = config
        self.store = store
        self.tokens = changes.tokens
        # Tokens deleted or an account changed here (the store calls it too): forget, tell the others.
        self.credentials_changed = changes
        # Whether other workers' changes reach this process now (the bus is connected); while they
        # cannot, every request reads its token.
        self.cache_usable = cache_usable
        self.hooks = hooks

    # -- requests -----------------------------------------------------------------------------
    async def authenticate(self, token: str | None) -> Requester:
        if not token:
            raise MatrixError(401, Codes.MISSING_TOKEN, "Missing access token")
        usable = self.cache_usable()
        found = self.tokens.get(token) if usable else None
        if found is None:
            generation = self.tokens.generation
            found = await self.store.get_token_holder(token)
            if found is None:
                raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Unknown access token", soft_logout=False)
            if usable:
                self.tokens.put(token, found[0], found[1], generation)
        row, user = found
        if row.expires_ts is not None and row.expires_ts < now_ms():
            raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Access token has expired", soft_logout=True)
        if user is None or user.deactivated:
            raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Account is deactivated", soft_logout=False)
        if user.locked:
            raise MatrixError(401, Codes.USER_LOCKED, "This account has been locked", soft_logout=True)
        if self.hooks.policy is not None:
            await self.hooks.policy.check_expiry(row.user_id)
        return Requester(row.user_id, row.device_id, token, user.admin)

    # -- users --------------------------------------------------------------------------------
    def user_id_for(self, localpart_or_id: str) -> str:
        return user_id_for(localpart_or_id, self.config.server_name)

    def check_localpart(self, localpart: str, *, system: bool = False) -> str:
        """The user ID for a new account's localpart; the server's own (the system account that owns
        unit rooms and sends notices) is refused to everyone but the server itself."""
        if localpart == self.config.org_system_localpart and not system:
            raise MatrixError(400, Codes.EXCLUSIVE, "This user ID is reserved for the server")
        if not valid_localpart(localpart):
            raise MatrixError(
                400,
                Codes.INVALID_USERNAME,
                "User ID may only contain a-z, 0-9, and the characters . _ = - / +",
            )
        user_id = make_user_id(localpart, self.config.server_name)
        if len(user_id.encode()) > 255:
            raise MatrixError(400, Codes.INVALID_USERNAME, "User ID is too long")
        return user_id

    async def get_user(self, user_id: str) -> UserRow | None:
        """The account (None when there is none): whether it exists, is locked, ..."""
        return await self.store.get_user(user_id)

    async def create_user(
        self,
        localpart: str,
        password: str | None,
        *,
        admin: bool = False,
        displayname: str | None = None,
        system: bool = False,
    ) -> str:
        """A new account (`system`: the server's own, a bot without a password)."""
        user_id = self.check_localpart(localpart, system=system)
        if password is not None and len(password) > MAX_PASSWORD_LEN:
            raise MatrixError(400, Codes.BAD_JSON, "Password is too long")
        pw_hash = await hash_password(password) if password else None
        created = await self.store.create_user(
            user_id,
            pw_hash,
            admin=admin,
            displayname=displayname if displayname is not None else localpart,
            now=now_ms(),
            user_type="bot" if system else None,
        )
        if not created:
            raise MatrixError(400, Codes.USER_IN_USE, "User ID already taken")
        return user_id

    async def check_password(self, user_id: str, password: str) -> bool:
        return await password_matches(await self.store.get_user(user_id), password)

    async def set_password(self, user_id: str, password: str) -> None:
        if not password or len(password) > MAX_PASSWORD_LEN:
            raise MatrixError(400, Codes.WEAK_PASSWORD, "Password must be 1 to 512 characters")
        await self.store.update_user(user_id, password_hash=await hash_password(password))

    async def deactivate(self, user_id: str) -> None:
        """Log out every device, leave every room, and refuse the account from now on."""
        await self.logout_all(user_id)
        await self.store.update_user(user_id, deactivated=True, password_hash=None)
        for hook in self.hooks.deactivated:
            await hook(user_id)

    # -- sessions -----------------------------------------------------------------------------
    async def start_session(
        self, user_id: str, device_id: str | None, display_name: str | None, *, refresh: bool = False
    ) -> Session:
        device_id = device_id or random_string(10).upper()
        if len(device_id) > 255:
            raise MatrixError(400, Codes.INVALID_PARAM, "device_id is too long")
        now = now_ms()
        known = await self.store.get_device(user_id, device_id)
        if known is None and self.hooks.policy is not None:
            await self.hooks.policy.check_devices(user_id, device_id)
        await self.store.upsert_device(user_id, device_id, display_name, now)
        if known is not None:
            # Re-using a device ID replaces its old sessions (spec: login with an existing device_id).
            await self.store.delete_device_tokens(user_id, device_id)
        session = await self._issue(user_id, device_id, refresh)
        if known is None:
            for hook in self.hooks.devices:
                await hook.device_added(user_id, device_id)
        return session

    async def _issue(self, user_id: str, device_id: str, refresh: bool) -> Session:
        now = now_ms()
        token = "syt_" + secrets.token_urlsafe(32)
        lifetime_s = self.config.access_token_lifetime_s
        if self.hooks.policy is not None:
            lifetime_s = await self.hooks.policy.token_lifetime_s(user_id)
        lifetime = lifetime_s * 1000
        if refresh and not lifetime:
            lifetime = 3600 * 1000  # refresh-token clients expect their access token to expire
        expires = now + lifetime if lifetime else None
        refresh_token = "syr_" + secrets.token_urlsafe(32) if refresh else None
        await self.store.add_token(
            token,
            user_id,
            device_id,
            now,
            expires,
            refresh_token,
            now + self.config.refresh_token_lifetime_s * 1000 if refresh_token else None,
        )
        return Session(user_id, device_id, token, refresh_token, lifetime or None)

    async def refresh(self, refresh_token: str) -> Session:
        row = await self.store.take_refresh_token(refresh_token, now_ms())
        if row is None:
            raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Unknown or expired refresh token", soft_logout=True)
        return await self._issue(row.user_id, row.device_id, True)

    async def logout(self, requester: Requester) -> None:
        await self.delete_devices(requester.user_id, [requester.device_id])

    async def logout_all(self, user_id: str) -> None:
        devices = await self.store.get_devices(user_id)
        await self.delete_devices(user_id, [d.device_id for d in devices])
        await self.store.delete_all_tokens(user_id)

    async def delete_devices(self, user_id: str, device_ids: list[str]) -> None:
        if not device_ids:
            return
        await self.store.delete_devices(user_id, device_ids)
        for hook in self.hooks.devices:
            await hook.devices_removed(user_id, device_ids)

    # -- registration tokens ------------------------------------------------------------------
    async def create_registration_token(
        self, uses: int | None = None, expires_in_ms: int | None = None, token: str | None = None
    ) -> str:
        token = token or random_string(16)
        if not (1 <= len(token) <= 64) or not all(c.isalnum() or c in "._~-" for c in token):
            raise MatrixError(400, Codes.INVALID_PARAM, "Token must be 1-64 characters of [A-Za-z0-9._~-]")
        now = now_ms()
        await self.store.create_registration_token(token, uses, now + expires_in_ms if expires_in_ms else None, now)
        return token


def login_response(session: Session, server_name: str, base_url: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user_id": session.user_id,
        "access_token": session.access_token,
        "device_id": session.device_id,
        "home_server": server_name,
        "well_known": {"m.homeserver": {"base_url": base_url}},
    }
    if session.refresh_token:
        body["refresh_token"] = session.refresh_token
    if session.expires_in_ms:
        body["expires_in_ms"] = session.expires_in_ms
    return body
