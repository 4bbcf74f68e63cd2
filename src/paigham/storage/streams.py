"""Per-user and per-room streams beside events: account data, receipts, typing, presence,
filters, push rules and push actions (unread counts)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgspec
from sqlalchemy import and_, delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.storage.database import Database
from paigham.storage.events import PushRoomRow, PushUserRow
from paigham.storage.schema import (
    account_data,
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


_MAX_POS = 2**62
_PRESENCE = "user_id, state, status_msg, last_active_ts, stream"


class PresenceRow(NamedTuple):
    user_id: str
    state: str
    status_msg: str | None
    last_active_ts: int
    stream: int


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
        # Unread counts are counted by the database (rows are not fetched: a user with thousands of
        # unread messages must not cost thousands of rows per /sync). SQLite plans the joined form
        # badly: one count per room there.
        self._unread = db.per_engine(sqlite=self._unread_room_by_room, postgresql=self._unread_in_one)

    # -- account data -------------------------------------------------------------------------
    async def put_account_data(self, user_id: str, room_id: str, type_: str, content: dict[str, Any]) -> int:
        async with self.db.write() as conn:
            pos = await self.db.next_position(conn)
            values = {"user_id": user_id, "room_id": room_id, "type": type_, "content": _enc(content), "stream": pos}
            await conn.execute(self.db.upsert(account_data, values, ["user_id", "room_id", "type"]))
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
        rows = await self.db.fetch(
            "SELECT room_id, type, content FROM account_data WHERE user_id = $1 AND stream > $2 AND stream <= $3",
            user_id,
            -1 if after is None else after,
            upto,
        )
        return [(r[0], r[1], _decode(r[2])) for r in rows]

    # -- receipts -----------------------------------------------------------------------------
    async def put_receipt(self, r: Receipt) -> int:
        async with self.db.write() as conn:
            key = and_(
                receipts.c.room_id == r.room_id,
                receipts.c.user_id == r.user_id,
                receipts.c.receipt_type == r.receipt_type,
                receipts.c.thread_id == r.thread_id,
            )
            old = (await conn.execute(select(receipts.c.event_stream).where(key))).first()
            if old is not None and old.event_stream >= r.event_stream:
                return 0  # receipts only move forwards
            pos = await self.db.next_position(conn)
            values = {
                "room_id": r.room_id,
                "user_id": r.user_id,
                "receipt_type": r.receipt_type,
                "thread_id": r.thread_id,
                "event_id": r.event_id,
                "event_stream": r.event_stream,
                "ts": r.ts,
                "stream": pos,
            }
            await conn.execute(self.db.upsert(receipts, values, ["room_id", "user_id", "receipt_type", "thread_id"]))
        return pos

    async def receipts_since(self, room_ids: Sequence[str], after: int | None, upto: int) -> list[Receipt]:
        if not room_ids:
            return []
        rows = await self.db.fetch(
            "SELECT room_id, user_id, receipt_type, thread_id, event_id, event_stream, ts, stream FROM receipts "
            "WHERE room_id = ANY($1::text[]) AND stream > $2 AND stream <= $3",
            list(room_ids),
            -1 if after is None else after,
            upto,
        )
        return [Receipt(r[0], r[1], r[2], r[3], r[4], int(r[5]), int(r[6]), int(r[7])) for r in rows]

    async def read_positions(self, user_id: str, room_ids: Sequence[str]) -> dict[str, int]:
        """The stream of each room's newest unthreaded/main read receipt (public or private)."""
        if not room_ids:
            return {}
        rows = await self.db.fetch(
            "SELECT room_id, max(event_stream) FROM receipts WHERE user_id = $1 AND room_id = ANY($2::text[]) "
            "AND receipt_type IN ('m.read', 'm.read.private') AND thread_id IN ('', 'main') GROUP BY room_id",
            user_id,
            list(room_ids),
        )
        return {r[0]: int(r[1]) for r in rows}

    # -- typing -------------------------------------------------------------------------------
    async def set_typing(self, room_id: str, user_id: str, expires_ts: int | None) -> int:
        async with self.db.write() as conn:
            await conn.execute(delete(typing).where(and_(typing.c.room_id == room_id, typing.c.user_id == user_id)))
            if expires_ts is not None:
                await conn.execute(typing.insert().values(room_id=room_id, user_id=user_id, expires_ts=expires_ts))
            pos = await self.db.next_position(conn)
            await conn.execute(self.db.upsert(typing_stream, {"room_id": room_id, "stream": pos}, ["room_id"]))
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
                await conn.execute(self.db.upsert(typing_stream, {"room_id": room_id, "stream": pos}, ["room_id"]))
        return pos, rooms

    async def any_typing(self) -> bool:
        async with self.db.read() as conn:
            return (await conn.execute(select(typing.c.room_id).limit(1))).first() is not None

    async def typing_changed(self, room_ids: Sequence[str], after: int | None, upto: int) -> set[str]:
        if not room_ids:
            return set()
        rows = await self.db.fetch(
            "SELECT room_id FROM typing_stream WHERE room_id = ANY($1::text[]) AND stream > $2 AND stream <= $3",
            list(room_ids),
            -1 if after is None else after,
            upto,
        )
        return {r[0] for r in rows}

    async def typing_users(self, room_ids: Sequence[str], now: int) -> dict[str, list[str]]:
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

    # -- presence -----------------------------------------------------------------------------
    async def set_presence(self, user_id: str, state: str, status_msg: str | None, now: int) -> int:
        async with self.db.write() as conn:
            pos = await self.db.next_position(conn)
            values = {
                "user_id": user_id,
                "state": state,
                "status_msg": status_msg,
                "last_active_ts": now,
                "stream": pos,
            }
            await conn.execute(self.db.upsert(presence, values, ["user_id"]))
        return pos

    async def get_presence(
        self, user_ids: Sequence[str], after: int | None = None, upto: int | None = None
    ) -> list[PresenceRow]:
        if not user_ids:
            return []
        rows = await self.db.fetch(
            f"SELECT {_PRESENCE} FROM presence WHERE user_id = ANY($1::text[]) AND stream > $2 AND stream <= $3",
            list(user_ids),
            -1 if after is None else after,
            _MAX_POS if upto is None else upto,
        )
        return [PresenceRow(*r) for r in rows]

    async def co_member_presence(self, user_id: str, after: int | None, upto: int) -> list[PresenceRow]:
        """Presence changed in (after, upto] of everyone who shares a joined room with `user_id` (and
        the user's own): one query instead of one per room."""
        if after is None:  # everyone's current presence: from the co-members
            rows = await self.db.fetch(
                f"SELECT {_PRESENCE} FROM presence WHERE stream <= $2 AND user_id IN ("
                "SELECT o.user_id FROM memberships m JOIN memberships o ON o.room_id = m.room_id "
                "WHERE m.user_id = $1 AND m.membership = 'join' AND o.membership = 'join')",
                user_id,
                upto,
            )
        else:  # what changed: from the few recent presence rows (a big room has many co-members)
            rows = await self.db.fetch(
                f"SELECT {_PRESENCE} FROM presence p WHERE p.stream > $2 AND p.stream <= $3 AND EXISTS ("
                "SELECT 1 FROM memberships o JOIN memberships m ON m.room_id = o.room_id AND m.user_id = $1 "
                "AND m.membership = 'join' WHERE o.user_id = p.user_id AND o.membership = 'join')",
                user_id,
                after,
                upto,
            )
        return [PresenceRow(*r) for r in rows]

    # -- filters ------------------------------------------------------------------------------
    async def add_filter(self, user_id: str, definition: dict[str, Any]) -> int:
        async with self.db.write() as conn:
            last = (
                await conn.execute(select(func.max(filters.c.filter_id)).where(filters.c.user_id == user_id))
            ).scalar()
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
        row = await self.db.fetchrow("SELECT json, stream FROM push_rules WHERE user_id = $1", user_id)
        return (_decode(row[0]), int(row[1])) if row else None

    async def push_rules_for(self, conn: AsyncConnection, user_ids: Sequence[str]) -> dict[str, Any]:
        if not user_ids:
            return {}
        rows = await self.db.fetch(
            "SELECT user_id, json FROM push_rules WHERE user_id = ANY($1::text[])", list(user_ids), conn=conn
        )
        return {r[0]: _decode(r[1]) for r in rows}

    async def put_push_rules(self, user_id: str, rules: Any) -> int:
        async with self.db.write() as conn:
            pos = await self.db.next_position(conn)
            values = {"user_id": user_id, "json": _enc(rules), "stream": pos}
            await conn.execute(self.db.upsert(push_rules, values, ["user_id"]))
        return pos

    # -- push actions -------------------------------------------------------------------------
    async def add_push_actions(
        self, conn: AsyncConnection, room: PushRoomRow | None, own: Sequence[PushUserRow]
    ) -> None:
        """One event's push actions: the result shared by the room's members (if it notifies), and
        the members whose result differs from it (see schema.room_push_actions)."""
        if room is not None:
            await self.db.run(
                "INSERT INTO room_push_actions (room_id, stream, sender, thread_id, highlight) "
                "VALUES ($1, $2, $3, $4, $5)",
                *room,
                conn=conn,
            )
        await self.db.run_many(
            "INSERT INTO event_push_actions (user_id, room_id, stream, thread_id, notify, highlight) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            own,
            conn=conn,
        )

    async def unread_counts(self, user_id: str, starts: dict[str, int]) -> dict[str, tuple[int, int]]:
        """room → (notifications, highlights) for the user's events past `starts[room]`: their read
        receipt, or their joining the room if that came later (see `SyncService._joined`)."""
        if not starts:
            return {}
        out = {r: (0, 0) for r in starts}
        rooms = sorted(starts)
        reads = [starts[r] for r in rooms]
        for r in await self._unread(user_id, rooms, reads):
            out[r[0]] = (int(r[1]), int(r[2] or 0))
        return out

    async def _unread_room_by_room(self, user_id: str, rooms: list[str], starts: list[int]) -> list[Sequence[Any]]:
        rows = []
        for room_id, pos in zip(rooms, starts, strict=True):
            rows += await self.db.fetch(_UNREAD_ONE_ROOM, user_id, room_id, pos)
        return rows

    async def _unread_in_one(self, user_id: str, rooms: list[str], starts: list[int]) -> list[Sequence[Any]]:
        return await self.db.fetch(_UNREAD_ROOMS, user_id, rooms, starts)


# The count for user $1 in a room past a position, as three range counts (each one row): the room's
# shared results past it not sent by the user, minus those the user has a result of their own for,
# plus the user's own results that notify. A scan of the shared rows, without a lookup per row:
# a backlog of thousands of unread messages stays a sub-millisecond count.
_COUNT_PARTS = (
    "(SELECT count(*) AS n, {hl} AS h FROM room_push_actions WHERE room_id = {room} AND stream > {pos} "
    "AND sender <> $1) a",
    "(SELECT count(*) AS n, {rhl} AS h FROM event_push_actions o JOIN room_push_actions r "
    "ON r.room_id = o.room_id AND r.stream = o.stream WHERE o.user_id = $1 AND o.room_id = {room} "
    "AND o.stream > {pos}) b",
    "(SELECT count(*) AS n, {hl} AS h FROM event_push_actions WHERE user_id = $1 AND room_id = {room} "
    "AND stream > {pos} AND notify) c",
)
_UNREAD_ONE_ROOM = (  # SQLite: user $1, room $2, past stream $3
    "SELECT $2, a.n - b.n + c.n, a.h - b.h + c.h FROM "
    + ", ".join(
        p.format(room="$2", pos="$3", hl="coalesce(sum(highlight), 0)", rhl="coalesce(sum(r.highlight), 0)")
        for p in _COUNT_PARTS
    )
)
_UNREAD_ROOMS = (  # PostgreSQL: user $1, rooms $2 each past its stream in $3
    "SELECT t.room_id, a.n - b.n + c.n, a.h - b.h + c.h FROM unnest($2::text[], $3::bigint[]) AS t(room_id, pos) "
    + "".join(
        " CROSS JOIN LATERAL "
        + p.format(
            room="t.room_id",
            pos="t.pos",
            hl="count(*) FILTER (WHERE highlight)",
            rhl="count(*) FILTER (WHERE r.highlight)",
        )
        for p in _COUNT_PARTS
    )
)
