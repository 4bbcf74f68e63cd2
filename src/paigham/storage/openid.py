"""OpenID tokens (storage/openid_schema.py): add one, find whose a live one is, remove expired ones."""

from __future__ import annotations

from sqlalchemy import delete, insert, select

from paigham.storage.accounts import token_hash
from paigham.storage.database import Database
from paigham.storage.openid_schema import openid_tokens


class OpenIdStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, token: str, user_id: str, expires_ts: int) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                insert(openid_tokens).values(token_hash=token_hash(token), user_id=user_id, expires_ts=expires_ts)
            )

    async def user_of(self, token: str, now: int) -> str | None:
        """The user a token was issued to, if it has not expired."""
        q = select(openid_tokens.c.user_id).where(
            openid_tokens.c.token_hash == token_hash(token), openid_tokens.c.expires_ts > now
        )
        async with self.db.read() as conn:
            return (await conn.execute(q)).scalar_one_or_none()

    async def delete_for_user(self, user_id: str) -> int:
        async with self.db.write() as conn:
            result = await conn.execute(delete(openid_tokens).where(openid_tokens.c.user_id == user_id))
        return int(result.rowcount or 0)

    async def purge_expired(self, now: int) -> int:
        async with self.db.write() as conn:
            result = await conn.execute(delete(openid_tokens).where(openid_tokens.c.expires_ts <= now))
        return int(result.rowcount or 0)
