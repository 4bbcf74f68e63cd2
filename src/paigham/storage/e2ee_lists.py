"""Device-list changes and the room facts E2EE needs: memberships (who must hear of a change)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.storage.database import Database
from paigham.storage.e2ee_schema import e2e_device_list_changes as changes
from paigham.storage.schema import memberships

SHARING = ("join", "invite")


async def record_change(db: Database, conn: AsyncConnection, users: Iterable[str]) -> int:
    """Note, at a new stream position, that these users' devices or keys changed. Call late in the
    write transaction; returns the position."""
    pos = await db.next_position(conn)
    rows = [{"stream": pos, "user_id": u} for u in sorted(set(users))]
    if rows:
        await conn.execute(changes.insert(), rows)
    return pos


@dataclass(slots=True)
class ListChanges:
    keys: set[str]  # users whose devices or keys changed
    mine: list[tuple[str, str]]  # (room_id, membership) of the user's own changed memberships
    others: list[tuple[str, str]]  # (user_id, membership) of changes in rooms the user is joined to


class DeviceListStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list_changes(self, user_id: str, after: int, upto: int) -> ListChanges:
        """What an incremental /sync needs to work out device-list changes in (after, upto], in one read
        (raw SQL: every incremental /sync runs it):
        - users whose devices or keys changed;
        - (room_id, current membership) of this user's rooms whose membership changed;
        - (user_id, current membership) of other users whose membership changed in a room this user is
          joined to — driven by the stream index: a sync's range holds few membership changes, while
          this user's rooms may hold thousands of members."""
        rows = await self.db.fetch(
            # The range's membership rows first (materialised: a planner must not start from this
            # user's rooms and read every member of each, as PostgreSQL did in a room of 5,000).
            "WITH moved AS MATERIALIZED (SELECT user_id, room_id, membership FROM memberships "
            "WHERE stream > $2 AND stream <= $3) "
            "SELECT DISTINCT 0, user_id, '' FROM e2e_device_list_changes WHERE stream > $2 AND stream <= $3 "
            "UNION ALL SELECT 1, room_id, membership FROM memberships WHERE user_id = $1 AND stream > $2 "
            "AND stream <= $3 "
            "UNION ALL SELECT 2, other.user_id, other.membership FROM moved other "
            "WHERE other.user_id <> $1 AND EXISTS ("
            "SELECT 1 FROM memberships mine WHERE mine.user_id = $1 AND mine.room_id = other.room_id "
            "AND mine.membership = 'join')",
            user_id,
            after,
            upto,
        )
        out = ListChanges(set(), [], [])
        for kind, name, membership in rows:
            if kind == 0:
                out.keys.add(name)
            else:
                (out.mine if kind == 1 else out.others).append((name, membership))
        return out

    async def members_of(self, room_ids: Iterable[str]) -> set[str]:
        rooms = sorted(set(room_ids))
        if not rooms:
            return set()
        q = (
            select(memberships.c.user_id)
            .where(memberships.c.room_id.in_(rooms), memberships.c.membership.in_(SHARING))
            .distinct()
        )
        async with self.db.read() as conn:
            return {r.user_id for r in (await conn.execute(q)).all()}

    async def sharing(self, user_id: str, users: Iterable[str]) -> set[str]:
        """Those of `users` joined to or invited into a room this user is joined to (the user too, if
        named and joined somewhere): looked up per named user, so it costs the same however many
        members this user's rooms have."""
        wanted = sorted(set(users))
        if not wanted:
            return set()
        rows = await self.db.fetch(
            "SELECT DISTINCT other.user_id FROM memberships other JOIN memberships mine "
            "ON mine.room_id = other.room_id AND mine.user_id = $1 AND mine.membership = 'join' "
            "WHERE other.user_id = ANY($2::text[]) AND other.membership IN ('join', 'invite')",
            user_id,
            wanted,
        )
        return {r[0] for r in rows}
