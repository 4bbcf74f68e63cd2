"""Users, devices, access/refresh tokens, registration tokens and UIA sessions."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import and_, delete, func, or_, select, update

from paigham.storage.database import Database
from paigham.storage.directory import DirectoryIndex
from paigham.storage.schema import (
    access_tokens,
    devices,
    registration_tokens,
    uia_sessions,
    users,
)

BULK = 900  # accounts per statement in bulk provisioning

# The account fields the user directory's index is made of (storage/directory.py).
DIRECTORY_FIELDS = {"displayname", "deactivated"}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class UserRow:
    user_id: str
    password_hash: str | None
    admin: bool
    deactivated: bool
    suspended: bool
    locked: bool
    displayname: str | None
    avatar_url: str | None
    created_ts: int


@dataclass(frozen=True, slots=True)
class TokenRow:
    user_id: str
    device_id: str
    expires_ts: int | None


@dataclass(frozen=True, slots=True)
class DeviceRow:
    user_id: str
    device_id: str
    display_name: str | None
    last_seen_ts: int | None
    last_seen_ip: str | None


# The columns a UserRow is read from, in its fields' order (for SQL text and for SQLAlchemy alike).
USER_COLUMNS = (
    "user_id",
    "password_hash",
    "admin",
    "deactivated",
    "suspended",
    "locked",
    "displayname",
    "avatar_url",
    "created_ts",
)

_U_COLUMNS = ", ".join(f"u.{c}" for c in USER_COLUMNS)
_USER_BY_ID = f"SELECT {', '.join(USER_COLUMNS)} FROM users WHERE user_id = $1"


def _user(r: Sequence[Any]) -> UserRow:
    """A UserRow from the `USER_COLUMNS` of a row (a tuple, an asyncpg record or a SQLAlchemy row)."""
    return UserRow(r[0], r[1], bool(r[2]), bool(r[3]), bool(r[4]), bool(r[5]), r[6], r[7], r[8])


class AccountStore:
    def __init__(self, db: Database, credentials_changed: Callable[[list[str]], Awaitable[None]] | None = None) -> None:
        self.db = db
        self.directory = DirectoryIndex(db)
        # Called after commit with the users whose tokens were deleted or whose account row changed
        # (the token cache forgets them, here and on the other workers).
        self.credentials_changed = credentials_changed

    async def _changed(self, user_ids: list[str]) -> None:
        if user_ids and self.credentials_changed is not None:
            await self.credentials_changed(sorted(set(user_ids)))

    # -- users --------------------------------------------------------------------------------
    async def get_user(self, user_id: str) -> UserRow | None:
        # Raw SQL: every authenticated request reads its user.
        r = await self.db.fetchrow(_USER_BY_ID, user_id)
        return _user(r) if r is not None else None

    async def create_user(
        self,
        user_id: str,
        password_hash: str | None,
        *,
        admin: bool,
        displayname: str | None,
        now: int,
        user_type: str | None = None,
    ) -> bool:
        """Insert a user; False if the ID is taken."""
        async with self.db.write() as conn:
            exists = (await conn.execute(select(users.c.user_id).where(users.c.user_id == user_id))).first()
            if exists:
                return False
            await conn.execute(
                users.insert().values(
                    user_id=user_id,
                    password_hash=password_hash,
                    admin=admin,
                    deactivated=False,
                    suspended=False,
                    locked=False,
                    created_ts=now,
                    displayname=displayname,
                    user_type=user_type,
                )
            )
            await self.directory.refresh(conn, [user_id])
        return True

    async def existing(self, user_ids: Sequence[str]) -> set[str]:
        """Which of these user IDs have an account (active or not)."""
        out: set[str] = set()
        for i in range(0, len(user_ids), BULK):
            chunk = list(user_ids[i : i + BULK])
            rows = await self.db.fetch("SELECT user_id FROM users WHERE user_id = ANY($1::text[])", chunk)
            out.update(r[0] for r in rows)
        return out

    async def create_users(
        self, accounts: Sequence[tuple[str, str | None]], now: int, progress: Callable[[int], None] | None = None
    ) -> None:
        """New accounts without a password, (user ID, display name) each, all in one transaction (bulk
        provisioning); the IDs must be free (`existing`)."""
        async with self.db.write() as conn:
            for i in range(0, len(accounts), BULK):
                chunk = accounts[i : i + BULK]
                rows = [
                    {
                        "user_id": user_id,
                        "password_hash": None,
                        "admin": False,
                        "deactivated": False,
                        "suspended": False,
                        "locked": False,
                        "created_ts": now,
                        "displayname": name,
                    }
                    for user_id, name in chunk
                ]
                await conn.execute(users.insert(), rows)
                await self.directory.refresh(conn, [user_id for user_id, _ in chunk])
                if progress is not None:
                    progress(i + len(chunk))
        await self.directory.settle(len(accounts))

    async def user_type(self, user_id: str) -> str | None:
        """The account's type (`bot` for the server's own accounts), None for a person or no account."""
        r = await self.db.fetchrow("SELECT user_type FROM users WHERE user_id = $1", user_id)
        return None if r is None else r[0]

    async def update_user(self, user_id: str, **values: Any) -> None:
        async with self.db.write() as conn:
            await conn.execute(update(users).where(users.c.user_id == user_id).values(**values))
            if DIRECTORY_FIELDS & values.keys():
                await self.directory.refresh(conn, [user_id])
        await self._changed([user_id])

    async def count_users(self) -> int:
        async with self.db.read() as conn:
            return int((await conn.execute(select(func.count()).select_from(users))).scalar_one())

    async def search_users(self, term: str, limit: int) -> list[UserRow]:
        like = f"%{term.lower()}%"
        q = (
            select(*(users.c[c] for c in USER_COLUMNS))
            .where(users.c.deactivated.is_(False))
            .where(or_(func.lower(users.c.user_id).like(like), func.lower(users.c.displayname).like(like)))
            .order_by(users.c.user_id)
            .limit(limit)
        )
        async with self.db.read() as conn:
            return [_user(r) for r in (await conn.execute(q)).all()]

    # -- devices ------------------------------------------------------------------------------
    async def upsert_device(self, user_id: str, device_id: str, display_name: str | None, now: int) -> None:
        async with self.db.write() as conn:
            row = (
                await conn.execute(
                    select(devices.c.display_name).where(
                        and_(devices.c.user_id == user_id, devices.c.device_id == device_id)
                    )
                )
            ).first()
            if row is None:
                await conn.execute(
                    devices.insert().values(
                        user_id=user_id,
                        device_id=device_id,
                        display_name=display_name,
                        created_ts=now,
                        last_seen_ts=now,
                    )
                )
            elif display_name is not None:
                await conn.execute(
                    update(devices)
                    .where(and_(devices.c.user_id == user_id, devices.c.device_id == device_id))
                    .values(display_name=display_name)
                )

    async def get_devices(self, user_id: str) -> list[DeviceRow]:
        q = select(devices).where(devices.c.user_id == user_id).order_by(devices.c.device_id)
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        return [DeviceRow(r.user_id, r.device_id, r.display_name, r.last_seen_ts, r.last_seen_ip) for r in rows]

    async def get_device(self, user_id: str, device_id: str) -> DeviceRow | None:
        for d in await self.get_devices(user_id):
            if d.device_id == device_id:
                return d
        return None

    async def update_device(self, user_id: str, device_id: str, **values: Any) -> bool:
        async with self.db.write() as conn:
            res = await conn.execute(
                update(devices)
                .where(and_(devices.c.user_id == user_id, devices.c.device_id == device_id))
                .values(**values)
            )
        return bool(res.rowcount)

    async def delete_devices(self, user_id: str, device_ids: list[str]) -> None:
        """Delete devices and their tokens (other areas clean their own per-device data)."""
        async with self.db.write() as conn:
            await conn.execute(
                delete(devices).where(and_(devices.c.user_id == user_id, devices.c.device_id.in_(device_ids)))
            )
            await conn.execute(
                delete(access_tokens).where(
                    and_(access_tokens.c.user_id == user_id, access_tokens.c.device_id.in_(device_ids))
                )
            )
        await self._changed([user_id])

    # -- tokens -------------------------------------------------------------------------------
    async def add_token(
        self,
        token: str,
        user_id: str,
        device_id: str,
        now: int,
        expires_ts: int | None,
        refresh_token: str | None = None,
        refresh_expires_ts: int | None = None,
    ) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                access_tokens.insert().values(
                    token_hash=token_hash(token),
                    user_id=user_id,
                    device_id=device_id,
                    created_ts=now,
                    expires_ts=expires_ts,
                    refresh_hash=token_hash(refresh_token) if refresh_token else None,
                    refresh_expires_ts=refresh_expires_ts,
                )
            )

    async def get_token_holder(self, token: str) -> tuple[TokenRow, UserRow | None] | None:
        """An access token's row and its user's row, in one read (every authenticated request)."""
        r = await self.db.fetchrow(
            f"SELECT t.user_id, t.device_id, t.expires_ts, {_U_COLUMNS} FROM access_tokens t "
            "LEFT JOIN users u ON u.user_id = t.user_id WHERE t.token_hash = $1",
            token_hash(token),
        )
        if r is None:
            return None
        return TokenRow(r[0], r[1], r[2]), _user(r[3:]) if r[3] is not None else None

    async def get_token(self, token: str) -> TokenRow | None:
        row = await self.db.fetchrow(
            "SELECT user_id, device_id, expires_ts FROM access_tokens WHERE token_hash = $1", token_hash(token)
        )
        return TokenRow(row[0], row[1], row[2]) if row else None

    async def take_refresh_token(self, refresh_token: str, now: int) -> TokenRow | None:
        """Consume a refresh token (single use): delete its token row and return who it was for."""
        h = token_hash(refresh_token)
        async with self.db.write() as conn:
            row = (await conn.execute(select(access_tokens).where(access_tokens.c.refresh_hash == h))).first()
            if row is None:
                return None
            await conn.execute(delete(access_tokens).where(access_tokens.c.token_hash == row.token_hash))
        await self._changed([row.user_id])
        if row.refresh_expires_ts is not None and row.refresh_expires_ts < now:
            return None
        return TokenRow(row.user_id, row.device_id, row.expires_ts)

    async def delete_token(self, token: str) -> None:
        async with self.db.write() as conn:
            gone = (
                await conn.execute(
                    delete(access_tokens)
                    .where(access_tokens.c.token_hash == token_hash(token))
                    .returning(access_tokens.c.user_id)
                )
            ).all()
        await self._changed([r[0] for r in gone])

    async def delete_device_tokens(self, user_id: str, device_id: str, except_token: str | None = None) -> None:
        cond = and_(access_tokens.c.user_id == user_id, access_tokens.c.device_id == device_id)
        if except_token:
            cond = and_(cond, access_tokens.c.token_hash != token_hash(except_token))
        async with self.db.write() as conn:
            await conn.execute(delete(access_tokens).where(cond))
        await self._changed([user_id])

    async def delete_all_tokens(self, user_id: str, except_token: str | None = None) -> None:
        cond = access_tokens.c.user_id == user_id
        if except_token:
            cond = and_(cond, access_tokens.c.token_hash != token_hash(except_token))
        async with self.db.write() as conn:
            await conn.execute(delete(access_tokens).where(cond))
        await self._changed([user_id])

    # -- registration tokens --------------------------------------------------------------------
    async def create_registration_token(
        self, token: str, uses_allowed: int | None, expiry_time: int | None, now: int
    ) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                registration_tokens.insert().values(
                    token=token,
                    uses_allowed=uses_allowed,
                    pending=0,
                    completed=0,
                    expiry_time=expiry_time,
                    created_ts=now,
                )
            )

    async def registration_token_valid(self, token: str, now: int) -> bool:
        async with self.db.read() as conn:
            row = (await conn.execute(select(registration_tokens).where(registration_tokens.c.token == token))).first()
        if row is None:
            return False
        if row.expiry_time is not None and row.expiry_time < now:
            return False
        return row.uses_allowed is None or row.pending + row.completed < row.uses_allowed

    async def use_registration_token(self, token: str, now: int) -> bool:
        """Count one completed use atomically; False if the token is no longer valid."""
        t = registration_tokens
        cond = and_(
            t.c.token == token,
            or_(t.c.expiry_time.is_(None), t.c.expiry_time >= now),
            or_(t.c.uses_allowed.is_(None), t.c.completed < t.c.uses_allowed),
        )
        async with self.db.write() as conn:
            res = await conn.execute(update(t).where(cond).values(completed=t.c.completed + 1))
        return bool(res.rowcount)

    async def list_registration_tokens(self) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            rows = (await conn.execute(select(registration_tokens))).all()
        return [dict(r._mapping) for r in rows]

    # -- UIA sessions -------------------------------------------------------------------------
    async def get_uia_session(self, session_id: str) -> dict[str, Any] | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(uia_sessions).where(uia_sessions.c.session_id == session_id))).first()
        if row is None:
            return None
        return {
            "session_id": row.session_id,
            "kind": row.kind,
            "user_id": row.user_id,
            "created_ts": row.created_ts,
            "completed": msgspec.json.decode(row.completed),
            "data": msgspec.json.decode(row.data),
        }

    async def save_uia_session(
        self, session_id: str, kind: str, user_id: str | None, completed: list[str], data: dict[str, Any], now: int
    ) -> None:
        values = {
            "session_id": session_id,
            "kind": kind,
            "user_id": user_id,
            "created_ts": now,
            "completed": msgspec.json.encode(completed).decode(),
            "data": msgspec.json.encode(data).decode(),
        }
        async with self.db.write() as conn:
            await conn.execute(self.db.upsert(uia_sessions, values, ["session_id"], ["completed", "data", "user_id"]))

    async def delete_uia_session(self, session_id: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(delete(uia_sessions).where(uia_sessions.c.session_id == session_id))

    async def delete_uia_sessions_before(self, created_before: int) -> int:
        """Drop sessions started before `created_before` (ms); returns how many."""
        async with self.db.write() as conn:
            result = await conn.execute(delete(uia_sessions).where(uia_sessions.c.created_ts < created_before))
        return int(result.rowcount or 0)
