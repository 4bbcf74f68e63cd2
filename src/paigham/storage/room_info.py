"""What the room information endpoints read beyond the event store: a room's events by time
(timestamp_to_event) and the rooms two users are both joined to (mutual rooms)."""

from __future__ import annotations

from paigham.domain.stored_event import StoredEvent
from paigham.storage.database import Database
from paigham.storage.event_rows import EV, event_from_row


class RoomInfoStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def events_by_time(
        self, room_id: str, *, after: tuple[int, int], forward: bool, upto: int, limit: int
    ) -> list[StoredEvent]:
        """The room's events at stream ≤ `upto` past the key `after` = (origin_server_ts, stream) in
        the direction asked: forward, the oldest first after it; else the newest first before it.
        No index by time (it would cost every send an index entry for a rarely used endpoint): the
        room's events are read through events_room_stream and the top few sorted by time."""
        ts, stream = after
        cmp, order = (">", "ASC") if forward else ("<", "DESC")
        rows = await self.db.fetch(
            f"SELECT {EV} FROM events e WHERE e.room_id = $1 AND e.stream <= $4 "
            f"AND (e.origin_server_ts {cmp} $2 OR (e.origin_server_ts = $2 AND e.stream {cmp} $3)) "
            f"ORDER BY e.origin_server_ts {order}, e.stream {order} LIMIT $5",
            room_id,
            ts,
            stream,
            upto,
            limit,
        )
        return [event_from_row(r) for r in rows]

    async def mutual_rooms(self, user_a: str, user_b: str, *, after: str, limit: int) -> tuple[list[str], int]:
        """The rooms both users are joined to, in code point order of their IDs: up to `limit` of them
        after the ID `after` ("" for the first), and how many there are in all."""
        collate = self.db.dialect.code_point_collation
        both = (
            "FROM memberships m1 JOIN memberships m2 ON m2.room_id = m1.room_id "
            "WHERE m1.user_id = $1 AND m1.membership = 'join' AND m2.user_id = $2 AND m2.membership = 'join'"
        )
        rows = await self.db.fetch(
            f"SELECT m1.room_id {both} AND m1.room_id{collate} > $3 ORDER BY m1.room_id{collate} LIMIT $4",
            user_a,
            user_b,
            after,
            limit,
        )
        total = await self.db.fetchrow(f"SELECT count(*) {both}", user_a, user_b)
        return [r[0] for r in rows], int(total[0]) if total else 0
