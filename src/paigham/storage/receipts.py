"""Read receipts: per (room, user, receipt type, thread), the newest event read; each change a stream
position. They also say where a user's unread count starts (`PushActionStore.unread_after_reads`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, select

from paigham.storage.database import Database
from paigham.storage.schema import receipts


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


def read_position(room: str, user: str, alias: str = "rd") -> str:
    """SQL: the stream of `user`'s newest read receipt of `room`'s main timeline (unthreaded or "main";
    public or private), NULL without one — where their unread count starts, unless they joined later.
    `room` and `user` are SQL expressions (a column of the outer query, a parameter)."""
    return (
        f"(SELECT max({alias}.event_stream) FROM receipts {alias} WHERE {alias}.room_id = {room} "
        f"AND {alias}.user_id = {user} AND {alias}.receipt_type IN ('m.read', 'm.read.private') "
        f"AND {alias}.thread_id IN ('', 'main'))"
    )


class ReceiptStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def put(self, r: Receipt) -> int:
        """Store a receipt (its `stream` is assigned here); 0 if it would move backwards (kept as it was)."""
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

    async def since(self, room_ids: Sequence[str], after: int | None, upto: int) -> list[Receipt]:
        """The receipts in these rooms that changed in (after, upto]."""
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

    async def on_events(self, room_ids: Sequence[str], event_ids: Sequence[str], user_id: str) -> list[Receipt]:
        """The receipts in these rooms that point at these events, and the user's own (rooms sent afresh
        by sliding sync: what their timelines show as read, not every member's receipt)."""
        if not room_ids:
            return []
        rows = await self.db.fetch(
            "SELECT room_id, user_id, receipt_type, thread_id, event_id, event_stream, ts, stream FROM receipts "
            "WHERE room_id = ANY($1::text[]) AND (event_id = ANY($2::text[]) OR user_id = $3)",
            list(room_ids),
            list(event_ids),
            user_id,
        )
        return [Receipt(r[0], r[1], r[2], r[3], r[4], int(r[5]), int(r[6]), int(r[7])) for r in rows]
