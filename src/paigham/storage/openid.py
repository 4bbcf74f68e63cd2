"""OpenID tokens (storage/openid_schema.py): add one, find whose a live one is, remove expired ones."""

from __future__ import annotations

from sqlalchemy import delete, func, insert, select

from paigham.storage.accounts import token_hash
from paigham.storage.database import Database
from paigham.storage.openid_schema import openid_tokens


class OpenIdStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, token: str, user_id: str, expires_ts: int, keep: int = 1000) -> None:
        """Store a token; the user's oldest ones beyond the newest `keep` go (a bound on the rows one
        user can make between two purges)."""
        async with self.db.write() as conn:
            await conn.execute(
                insert(openid_tokens).values(token_hash=token_hash(token), user_id=user_id, expires_ts=expires_ts)
            )
            mine = openid_tokens.c.user_id == user_id
            count = int((await conn.execute(select(func.count()).where(mine))).scalar_one())
            if count > keep:
                oldest = select(openid_tokens.c.token_hash).where(mine).order_by(openid_tokens.c.expires_ts)
                await conn.execute(
                    delete(openid_tokens).where(openid_tokens.c.token_hash.in_(oldest.limit(count - keep)))
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
