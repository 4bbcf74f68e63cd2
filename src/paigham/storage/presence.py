"""Presence: each user's state (online, unavailable, offline), status message and last activity;
each change a stream position."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from paigham.storage.database import Database
from paigham.storage.schema import presence

_MAX_POS = 2**62
_COLUMNS = "user_id, state, status_msg, last_active_ts, stream"


class PresenceRow(NamedTuple):
    user_id: str
    state: str
    status_msg: str | None
    last_active_ts: int
    stream: int


class PresenceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def put(self, user_id: str, state: str, status_msg: str | None, now: int) -> int:
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

    async def get(
        self, user_ids: Sequence[str], after: int | None = None, upto: int | None = None
    ) -> list[PresenceRow]:
        """The presence of these users that changed in (after, upto] (by default: all of it)."""
        if not user_ids:
            return []
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM presence WHERE user_id = ANY($1::text[]) AND stream > $2 AND stream <= $3",
            list(user_ids),
            -1 if after is None else after,
            _MAX_POS if upto is None else upto,
        )
        return [PresenceRow(*r) for r in rows]

    async def of_co_members(self, user_id: str, after: int | None, upto: int) -> list[PresenceRow]:
        """Presence changed in (after, upto] of everyone who shares a joined room with `user_id` (and
        the user's own): one query instead of one per room."""
        if after is None:  # everyone's current presence: from the co-members
            rows = await self.db.fetch(
                f"SELECT {_COLUMNS} FROM presence WHERE stream <= $2 AND user_id IN ("
                "SELECT o.user_id FROM memberships m JOIN memberships o ON o.room_id = m.room_id "
                "WHERE m.user_id = $1 AND m.membership = 'join' AND o.membership = 'join')",
                user_id,
                upto,
            )
        else:  # what changed: from the few recent presence rows (a big room has many co-members)
            rows = await self.db.fetch(
                f"SELECT {_COLUMNS} FROM presence p WHERE p.stream > $2 AND p.stream <= $3 AND EXISTS ("
                "SELECT 1 FROM memberships o JOIN memberships m ON m.room_id = o.room_id AND m.user_id = $1 "
                "AND m.membership = 'join' WHERE o.user_id = p.user_id AND o.membership = 'join')",
                user_id,
                after,
                upto,
            )
        return [PresenceRow(*r) for r in rows]
