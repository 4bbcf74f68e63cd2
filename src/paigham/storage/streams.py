"""Per-user and per-room streams beside events: account data, receipts, typing, presence,
filters, push rules and push actions (unread counts)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import and_, delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.storage.database import Database
from paigham.storage.dialect import upsert
from paigham.storage.schema import (
    account_data,
    event_push_actions,
    filters,
    presence,
    push_rules,
    receipts,
    typing,
    typing_stream,
)

_decode = msgspec.json.decode


def _enc(v: Any) -> str:
    return msgspec.json.encode(v).decode()


@dataclass(frozen=True, slots=True)
class Receipt:
    room_id: str
    user_id: str
    receipt_type: str
    thread_id: str
    event_id: str
    event_stream: int
    ts: int
    stream: int


class StreamStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- account data -------------------------------------------------------------------------
    async def put_account_data(self, user_id: str, room_id: str, type_: str, content: dict[str, Any]) -> int:
        async with self.db.write() as conn:
            pos = await self.db.next_position(conn)
            values = {"user_id": user_id, "room_id": room_id, "type": type_, "content": _enc(content), "stream": pos}
            await conn.execute(upsert(self.db.is_sqlite, account_data, values, ["user_id", "room_id", "type"]))
        return pos

    async def get_account_data(self, user_id: str, room_id: str, type_: str) -> dict[str, Any] | None:
        q = select(account_data.c.content).where(
            account_data.c.user_id == user_id, account_data.c.room_id == room_id, account_data.c.type == type_
        )
        async with self.db.read() as conn:
            row = (await conn.execute(q)).first()
        return _decode(row.content) if row else None

    async def account_data_since(self, user_id: str, after: int | None, upto: int) -> list[tuple[str, str, Any]]:
        """(room_id, type, content) changed in (after, upto]; everything when after is None."""
        q = select(account_data.c.room_id, account_data.c.type, account_data.c.content).where(
            account_data.c.user_id == user_id, account_data.c.stream <= upto
        )
        if after is not None:
            q = q.where(account_data.c.stream > after)
        async with self.db.read() as conn:
            return [(r.room_id, r.type, _decode(r.content)) for r in (await conn.execute(q)).all()]

    # -- receipts -----------------------------------------------------------------------------
    async def put_receipt(self, r: Receipt) -> int:
        async with self.db.write() as conn:
            key = and_(receipts.c.room_id == r.room_id, receipts.c.user_id == r.user_id,
                       receipts.c.receipt_type == r.receipt_type, receipts.c.thread_id == r.thread_id)
            old = (await conn.execute(select(receipts.c.event_stream).where(key))).first()
            if old is not None and old.event_stream >= r.event_stream:
                return 0  # receipts only move forwards
            pos = await self.db.next_position(conn)
            values = {"room_id": r.room_id, "user_id": r.user_id, "receipt_type": r.receipt_type,
                      "thread_id": r.thread_id, "event_id": r.event_id, "event_stream": r.event_stream,
                      "ts": r.ts, "stream": pos}
            await conn.execute(upsert(self.db.is_sqlite, receipts, values,
                                      ["room_id", "user_id", "receipt_type", "thread_id"]))
        return pos

    async def receipts_since(self, room_ids: Sequence[str], after: int | None, upto: int) -> list[Receipt]:
        if not room_ids:
            return []
        q = select(receipts).where(receipts.c.room_id.in_(room_ids), receipts.c.stream <= upto)
        if after is not None:
            q = q.where(receipts.c.stream > after)
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        return [Receipt(r.room_id, r.user_id, r.receipt_type, r.thread_id, r.event_id, r.event_stream, r.ts,
                        r.stream) for r in rows]

    async def read_positions(self, user_id: str, room_ids: Sequence[str]) -> dict[str, int]:
        """The stream of each room's newest unthreaded/main read receipt (public or private)."""
        if not room_ids:
            return {}
        q = (
            select(receipts.c.room_id, func.max(receipts.c.event_stream).label("m"))
            .where(receipts.c.user_id == user_id, receipts.c.room_id.in_(room_ids),
                   receipts.c.receipt_type.in_(("m.read", "m.read.private")),
                   receipts.c.thread_id.in_(("", "main")))
            .group_by(receipts.c.room_id)
        )
        async with self.db.read() as conn:
            return {r.room_id: int(r.m) for r in (await conn.execute(q)).all()}

    # -- typing -------------------------------------------------------------------------------
    async def set_typing(self, room_id: str, user_id: str, expires_ts: int | None) -> int:
        async with self.db.write() as conn:
            await conn.execute(delete(typing).where(and_(typing.c.room_id == room_id, typing.c.user_id == user_id)))
            if expires_ts is not None:
                await conn.execute(typing.insert().values(room_id=room_id, user_id=user_id, expires_ts=expires_ts))
            pos = await self.db.next_position(conn)
            await conn.execute(upsert(self.db.is_sqlite, typing_stream, {"room_id": room_id, "stream": pos},
                                      ["room_id"]))
        return pos

    async def expire_typing(self, now: int) -> tuple[int, list[str]]:
        """Drop expired typing notices; returns (position, rooms whose list changed)."""
        async with self.db.write() as conn:
            rows = (await conn.execute(select(typing.c.room_id).where(typing.c.expires_ts <= now))).all()
            if not rows:
                return 0, []
            await conn.execute(delete(typing).where(typing.c.expires_ts <= now))
            pos = await self.db.next_position(conn)
            rooms = sorted({r.room_id for r in rows})
            for room_id in rooms:
                await conn.execute(upsert(self.db.is_sqlite, typing_stream, {"room_id": room_id, "stream": pos},
                                          ["room_id"]))
        return pos, rooms

    async def any_typing(self) -> bool:
        async with self.db.read() as conn:
            return (await conn.execute(select(typing.c.room_id).limit(1))).first() is not None

    async def typing_changed(self, room_ids: Sequence[str], after: int | None, upto: int) -> set[str]:
        if not room_ids:
            return set()
        q = select(typing_stream.c.room_id).where(
            typing_stream.c.room_id.in_(room_ids), typing_stream.c.stream <= upto
        )
        if after is not None:
            q = q.where(typing_stream.c.stream > after)
        async with self.db.read() as conn:
            return {r.room_id for r in (await conn.execute(q)).all()}

    async def typing_users(self, room_ids: Sequence[str], now: int) -> dict[str, list[str]]:
        if not room_ids:
            return {}
        q = select(typing.c.room_id, typing.c.user_id).where(typing.c.room_id.in_(room_ids),
                                                             typing.c.expires_ts > now)
        out: dict[str, list[str]] = {}
        async with self.db.read() as conn:
            for r in (await conn.execute(q)).all():
                out.setdefault(r.room_id, []).append(r.user_id)
        return out

    # -- presence -----------------------------------------------------------------------------
    async def set_presence(self, user_id: str, state: str, status_msg: str | None, now: int) -> int:
        async with self.db.write() as conn:
            pos = await self.db.next_position(conn)
            values = {"user_id": user_id, "state": state, "status_msg": status_msg, "last_active_ts": now,
                      "stream": pos}
            await conn.execute(upsert(self.db.is_sqlite, presence, values, ["user_id"]))
        return pos

    async def get_presence(self, user_ids: Sequence[str], after: int | None = None,
                           upto: int | None = None) -> list[Any]:
        if not user_ids:
            return []
        q = select(presence).where(presence.c.user_id.in_(user_ids))
        if after is not None:
            q = q.where(presence.c.stream > after)
        if upto is not None:
            q = q.where(presence.c.stream <= upto)
        async with self.db.read() as conn:
            return list((await conn.execute(q)).all())

    # -- filters ------------------------------------------------------------------------------
    async def add_filter(self, user_id: str, definition: dict[str, Any]) -> int:
        async with self.db.write() as conn:
            last = (await conn.execute(
                select(func.max(filters.c.filter_id)).where(filters.c.user_id == user_id)
            )).scalar()
            fid = int(last or 0) + 1
            await conn.execute(filters.insert().values(user_id=user_id, filter_id=fid, json=_enc(definition)))
        return fid

    async def get_filter(self, user_id: str, filter_id: int) -> dict[str, Any] | None:
        q = select(filters.c.json).where(filters.c.user_id == user_id, filters.c.filter_id == filter_id)
        async with self.db.read() as conn:
            row = (await conn.execute(q)).first()
        return _decode(row.json) if row else None

    # -- push rules ---------------------------------------------------------------------------
    async def get_push_rules(self, user_id: str) -> tuple[Any, int] | None:
        q = select(push_rules.c.json, push_rules.c.stream).where(push_rules.c.user_id == user_id)
        async with self.db.read() as conn:
            row = (await conn.execute(q)).first()
        return (_decode(row.json), int(row.stream)) if row else None

    @staticmethod
    async def push_rules_for(conn: AsyncConnection, user_ids: Sequence[str]) -> dict[str, Any]:
        if not user_ids:
            return {}
        q = select(push_rules.c.user_id, push_rules.c.json).where(push_rules.c.user_id.in_(user_ids))
        return {r.user_id: _decode(r.json) for r in (await conn.execute(q)).all()}

    async def put_push_rules(self, user_id: str, rules: Any) -> int:
        async with self.db.write() as conn:
            pos = await self.db.next_position(conn)
            values = {"user_id": user_id, "json": _enc(rules), "stream": pos}
            await conn.execute(upsert(self.db.is_sqlite, push_rules, values, ["user_id"]))
        return pos

    # -- push actions -------------------------------------------------------------------------
    @staticmethod
    async def add_push_actions(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        if rows:
            await conn.execute(event_push_actions.insert(), rows)

    async def unread_counts(self, user_id: str, read_upto: dict[str, int],
                            room_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """room → (notifications, highlights) after the user's read receipt in each room."""
        if not room_ids:
            return {}
        q = (
            select(event_push_actions.c.room_id, event_push_actions.c.stream, event_push_actions.c.highlight)
            .where(event_push_actions.c.user_id == user_id, event_push_actions.c.room_id.in_(room_ids))
        )
        out = {r: (0, 0) for r in room_ids}
        async with self.db.read() as conn:
            for r in (await conn.execute(q)).all():
                if r.stream > read_upto.get(r.room_id, 0):
                    n, h = out[r.room_id]
                    out[r.room_id] = (n + 1, h + (1 if r.highlight else 0))
        return out

    async def clear_push_actions(self, user_id: str, room_id: str, upto: int) -> None:
        async with self.db.write() as conn:
            await conn.execute(delete(event_push_actions).where(
                event_push_actions.c.user_id == user_id, event_push_actions.c.room_id == room_id,
                event_push_actions.c.stream <= upto,
            ))
