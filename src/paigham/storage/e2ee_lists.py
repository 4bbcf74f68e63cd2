"""Device-list changes and the room facts E2EE needs: memberships (who must hear of a change) and
earlier state (encryption settings)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.storage.database import Database
from paigham.storage.e2ee_schema import e2e_device_list_changes as changes
from paigham.storage.schema import events, memberships

SHARING = ("join", "invite")


async def record_change(db: Database, conn: AsyncConnection, users: Iterable[str]) -> int:
    """Note, at a new stream position, that these users' devices or keys changed. Call late in the
    write transaction; returns the position."""
    pos = await db.next_position(conn)
    rows = [{"stream": pos, "user_id": u} for u in sorted(set(users))]
    if rows:
        await conn.execute(changes.insert(), rows)
    return pos


async def previous_state_content(conn: AsyncConnection, room_id: str, type_: str, state_key: str,
                                 before: int) -> dict[str, Any] | None:
    """The content of the newest (type, state_key) state event of the room before `before`."""
    q = (select(events.c.json).where(events.c.room_id == room_id, events.c.type == type_,
                                     events.c.state_key == state_key, events.c.stream < before)
         .order_by(events.c.stream.desc()).limit(1))
    row = (await conn.execute(q)).first()
    if row is None:
        return None
    content = msgspec.json.decode(row.json).get("content")
    return content if isinstance(content, dict) else {}


class DeviceListStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def changed_users(self, after: int, upto: int) -> set[str]:
        q = select(changes.c.user_id).where(changes.c.stream > after, changes.c.stream <= upto).distinct()
        async with self.db.read() as conn:
            return {r.user_id for r in (await conn.execute(q)).all()}

    async def own_membership_changes(self, user_id: str, after: int, upto: int) -> list[tuple[str, str]]:
        """(room_id, current membership) of the user's rooms whose membership changed in (after, upto]."""
        m = memberships.c
        q = select(m.room_id, m.membership).where(m.user_id == user_id, m.stream > after, m.stream <= upto)
        async with self.db.read() as conn:
            return [(r.room_id, r.membership) for r in (await conn.execute(q)).all()]

    async def others_membership_changes(self, user_id: str, after: int, upto: int) -> list[tuple[str, str]]:
        """(user_id, current membership) of other users whose membership changed in (after, upto] in a
        room this user is joined to."""
        mine = memberships.alias("mine")
        other = memberships.alias("other")
        q = (
            select(other.c.user_id, other.c.membership)
            .join(mine, and_(mine.c.room_id == other.c.room_id, mine.c.user_id == user_id,
                             mine.c.membership == "join"))
            .where(other.c.user_id != user_id, other.c.stream > after, other.c.stream <= upto)
        )
        async with self.db.read() as conn:
            return [(r.user_id, r.membership) for r in (await conn.execute(q)).all()]

    async def members_of(self, room_ids: Iterable[str]) -> set[str]:
        rooms = sorted(set(room_ids))
        if not rooms:
            return set()
        q = select(memberships.c.user_id).where(memberships.c.room_id.in_(rooms),
                                                memberships.c.membership.in_(SHARING)).distinct()
        async with self.db.read() as conn:
            return {r.user_id for r in (await conn.execute(q)).all()}

    async def shared_users(self, user_id: str) -> set[str]:
        """Everyone joined to or invited into a room this user is joined to (the user included)."""
        mine = memberships.alias("mine")
        other = memberships.alias("other")
        q = (
            select(other.c.user_id)
            .join(mine, and_(mine.c.room_id == other.c.room_id, mine.c.user_id == user_id,
                             mine.c.membership == "join"))
            .where(other.c.membership.in_(SHARING))
            .distinct()
        )
        async with self.db.read() as conn:
            return {r.user_id for r in (await conn.execute(q)).all()} | {user_id}
