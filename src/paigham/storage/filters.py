"""Sync filters a client uploaded: numbered per user, never changed, read back by ID (not a stream)."""

from __future__ import annotations

import msgspec
from sqlalchemy import func, select

from paigham.storage.database import Database
from paigham.storage.schema import filters
from paigham.types import JsonDict


class FilterStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, user_id: str, definition: JsonDict) -> int:
        """Store a filter; returns its ID, the user's next number."""
        async with self.db.write() as conn:
            last = (
                await conn.execute(select(func.max(filters.c.filter_id)).where(filters.c.user_id == user_id))
            ).scalar()
            fid = int(last or 0) + 1
            await conn.execute(
                filters.insert().values(user_id=user_id, filter_id=fid, json=msgspec.json.encode(definition).decode())
            )
        return fid

    async def get(self, user_id: str, filter_id: int) -> JsonDict | None:
        q = select(filters.c.json).where(filters.c.user_id == user_id, filters.c.filter_id == filter_id)
        async with self.db.read() as conn:
            row = (await conn.execute(q)).first()
        return msgspec.json.decode(row.json) if row else None
