"""Push actions (whether an event notifies, and highlights for, each member) and the unread counts
/sync derives from them.

One `room_push_actions` row per notifying event holds the result most members share; only members
whose result differs get an `event_push_actions` row of their own (docs/decisions.md, "Push actions
per event, not per recipient"). A message's rows are written with the message itself
(storage/event_writes.py); `PushActionStore.add` writes those of a state event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.storage.database import Database
from paigham.storage.receipts import read_position


class PushRoomRow(NamedTuple):
    """The result an event has for the room's members (stored only if it notifies)."""

    room_id: str
    stream: int  # 0 until the event's position is known (a message's, see event_writes.py)
    sender: str
    thread_id: str
    highlight: bool


class PushUserRow(NamedTuple):
    """A member whose result for an event differs from the room's."""

    user_id: str
    room_id: str
    stream: int  # as in PushRoomRow
    thread_id: str
    notify: bool
    highlight: bool


async def insert_push_actions(
    db: Database, conn: AsyncConnection, room: PushRoomRow | None, own: Sequence[PushUserRow]
) -> None:
    """One event's rows, in the caller's transaction."""
    if room is not None:
        await db.run(
            "INSERT INTO room_push_actions (room_id, stream, sender, thread_id, highlight) VALUES ($1, $2, $3, $4, $5)",
            *room,
            conn=conn,
        )
    await db.run_many(
        "INSERT INTO event_push_actions (user_id, room_id, stream, thread_id, notify, highlight) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        own,
        conn=conn,
    )


class PushActionStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Counted by the database (rows are not fetched: a user with thousands of unread messages must
        # not cost thousands of rows per /sync), in one statement for all the rooms asked about.
        self._unread_sql = db.per_engine(sqlite=_UNREAD_ROOMS_SQLITE, postgresql=_UNREAD_ROOMS)

    async def add(self, conn: AsyncConnection, room: PushRoomRow | None, own: Sequence[PushUserRow]) -> None:
        """One event's push actions: the result shared by the room's members (if it notifies), and
        the members whose result differs from it."""
        await insert_push_actions(self.db, conn, room, own)

    async def unread_after_reads(self, user_id: str, joined: Mapping[str, int]) -> dict[str, tuple[int, int]]:
        """room → (notifications, highlights) for the user's events past their newest main-timeline
        read receipt in the room (public or private), or past `joined[room]` — their joining — if that
        came later (see `SyncService._joined`): the unread counts /sync and sliding sync show."""
        if not joined:
            return {}
        rooms = sorted(joined)
        out = {r: (0, 0) for r in rooms}
        for r in await self.db.fetch(self._unread_sql, user_id, rooms, [joined[r] for r in rooms]):
            out[r[0]] = (int(r[1]), int(r[2] or 0))
        return out


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
# SQLite has no LATERAL: each part is a scalar subquery of the rooms' table `t` (room, start), one
# for the notifications and one for the highlights. `t` is materialised, so the read receipt is
# looked up once per room, not once per subquery.
_SQLITE_PART = (
    "(SELECT {agg} FROM room_push_actions WHERE room_id = t.room_id AND stream > t.pos AND sender <> $1)",
    "(SELECT {ragg} FROM event_push_actions o JOIN room_push_actions r ON r.room_id = o.room_id "
    "AND r.stream = o.stream WHERE o.user_id = $1 AND o.room_id = t.room_id AND o.stream > t.pos)",
    "(SELECT {agg} FROM event_push_actions WHERE user_id = $1 AND room_id = t.room_id AND stream > t.pos AND notify)",
)


def _sqlite_sum(agg: str, ragg: str) -> str:
    a, b, c = (part.format(agg=agg, ragg=ragg) for part in _SQLITE_PART)
    return f"{a} - {b} + {c}"


_UNREAD_ROOMS_SQLITE = (  # user $1, rooms $2 each past its read receipt or the stream in $3 if later
    "WITH t AS MATERIALIZED (SELECT u.value AS room_id, "
    f"max(j.value, coalesce({read_position('u.value', '$1')}, 0)) AS pos "
    "FROM json_each($2) u JOIN json_each($3) j ON j.key = u.key) "
    f"SELECT t.room_id, {_sqlite_sum('count(*)', 'count(*)')}, "
    f"{_sqlite_sum('coalesce(sum(highlight), 0)', 'coalesce(sum(r.highlight), 0)')} FROM t"
)
_UNREAD_ROOMS = (  # PostgreSQL: user $1, rooms $2 each past its read receipt or the stream in $3 if later
    "SELECT t.room_id, a.n - b.n + c.n, a.h - b.h + c.h FROM (SELECT u.room_id, greatest(u.joined, "
    f"coalesce({read_position('u.room_id', '$1')}, 0)) AS pos "
    "FROM unnest($2::text[], $3::bigint[]) AS u(room_id, joined)) t"
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
