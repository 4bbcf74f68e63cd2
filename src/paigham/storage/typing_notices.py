"""Typing notifications: who is typing in a room until when, and a stream position per room whose
list changed (`typing_stream`), so /sync sends a room's list only when it changed."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.storage.database import Database
from paigham.storage.schema import typing, typing_stream


class TypingStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def put(self, room_id: str, user_id: str, expires_ts: int | None) -> int:
        """The user types in the room until `expires_ts` (None: stopped); returns the position."""
        async with self.db.write() as conn:
            await conn.execute(delete(typing).where(and_(typing.c.room_id == room_id, typing.c.user_id == user_id)))
            if expires_ts is not None:
                await conn.execute(typing.insert().values(room_id=room_id, user_id=user_id, expires_ts=expires_ts))
            pos = await self.db.next_position(conn)
            await self._changed(conn, room_id, pos)
        return pos

    async def expire(self, now: int) -> tuple[int, list[str]]:
        """Drop expired typing notices; returns (position, rooms whose list changed)."""
        async with self.db.write() as conn:
            rows = (await conn.execute(select(typing.c.room_id).where(typing.c.expires_ts <= now))).all()
            if not rows:
                return 0, []
            await conn.execute(delete(typing).where(typing.c.expires_ts <= now))
            pos = await self.db.next_position(conn)
            rooms = sorted({r.room_id for r in rows})
            for room_id in rooms:
                await self._changed(conn, room_id, pos)
        return pos, rooms

    async def _changed(self, conn: AsyncConnection, room_id: str, pos: int) -> None:
        await conn.execute(self.db.upsert(typing_stream, {"room_id": room_id, "stream": pos}, ["room_id"]))

    async def anyone_typing(self) -> bool:
        async with self.db.read() as conn:
            return (await conn.execute(select(typing.c.room_id).limit(1))).first() is not None

    async def changed(self, room_ids: Sequence[str], after: int | None, upto: int) -> set[str]:
        """Which of these rooms' typing lists changed in (after, upto]."""
        if not room_ids:
            return set()
        rows = await self.db.fetch(
            "SELECT room_id FROM typing_stream WHERE room_id = ANY($1::text[]) AND stream > $2 AND stream <= $3",
            list(room_ids),
            -1 if after is None else after,
            upto,
        )
        return {r[0] for r in rows}

    async def users(self, room_ids: Sequence[str], now: int) -> dict[str, list[str]]:
        """room → who is typing there now."""
        if not room_ids:
            return {}
        out: dict[str, list[str]] = {}
        for r in await self.db.fetch(
            "SELECT room_id, user_id FROM typing WHERE room_id = ANY($1::text[]) AND expires_ts > $2",
            list(room_ids),
            now,
        ):
            out.setdefault(r[0], []).append(r[1])
        return out
