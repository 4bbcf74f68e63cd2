"""Room aliases."""

from __future__ import annotations

from sqlalchemy import delete, select

from paigham.storage.database import Database
from paigham.storage.schema import room_aliases


class AliasStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def resolve(self, alias: str) -> str | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(room_aliases.c.room_id).where(room_aliases.c.alias == alias))).first()
        return row.room_id if row else None

    async def create(self, alias: str, room_id: str, creator: str) -> bool:
        async with self.db.write() as conn:
            exists = (await conn.execute(select(room_aliases.c.alias).where(room_aliases.c.alias == alias))).first()
            if exists:
                return False
            await conn.execute(room_aliases.insert().values(alias=alias, room_id=room_id, creator=creator))
        return True

    async def get(self, alias: str) -> tuple[str, str] | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(room_aliases).where(room_aliases.c.alias == alias))).first()
        return (row.room_id, row.creator) if row else None

    async def delete(self, alias: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(delete(room_aliases).where(room_aliases.c.alias == alias))

    async def for_room(self, room_id: str) -> list[str]:
        async with self.db.read() as conn:
            rows = (await conn.execute(select(room_aliases.c.alias).where(room_aliases.c.room_id == room_id))).all()
        return [r.alias for r in rows]
