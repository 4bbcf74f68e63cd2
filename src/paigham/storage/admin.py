"""Queries of the admin API: user and room listings, registration tokens, blocked and purged rooms."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.storage.database import Database
from paigham.storage.directory import DirectoryIndex
from paigham.storage.org_schema import blocked_rooms, erased_users
from paigham.storage.schema import (
    account_data,
    current_state,
    event_push_actions,
    events,
    memberships,
    receipts,
    registration_tokens,
    room_aliases,
    room_push_actions,
    rooms,
    typing,
    typing_stream,
    users,
)

SUMMARY_STATE = (
    "m.room.create",
    "m.room.name",
    "m.room.canonical_alias",
    "m.room.join_rules",
    "m.room.guest_access",
    "m.room.history_visibility",
    "m.room.encryption",
)


@dataclass
class RoomSummary:
    room_id: str
    version: str
    creator: str
    public: bool
    created_ts: int
    joined: int = 0
    state_events: int = 0
    state: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_synapse(self, server_name: str) -> dict[str, Any]:
        s = self.state
        create = s.get("m.room.create", {})
        return {
            "room_id": self.room_id,
            "name": s.get("m.room.name", {}).get("name"),
            "canonical_alias": s.get("m.room.canonical_alias", {}).get("alias"),
            "joined_members": self.joined,
            "joined_local_members": self.joined,
            "version": self.version,
            "creator": self.creator,
            "encryption": s.get("m.room.encryption", {}).get("algorithm"),
            "federatable": create.get("m.federate", True) is not False,
            "public": self.public,
            "join_rules": s.get("m.room.join_rules", {}).get("join_rule"),
            "guest_access": s.get("m.room.guest_access", {}).get("guest_access"),
            "history_visibility": s.get("m.room.history_visibility", {}).get("history_visibility"),
            "state_events": self.state_events,
            "room_type": create.get("type"),
        }


class AdminStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.directory = DirectoryIndex(db)

    # -- users ------------------------------------------------------------------------------------
    async def list_users(
        self,
        *,
        offset: int,
        limit: int,
        name: str | None,
        user_id: str | None,
        deactivated: bool,
        admins: bool | None,
        order_by: str,
        descending: bool,
    ) -> tuple[list[Any], int]:
        cond: list[Any] = []
        if not deactivated:
            cond.append(users.c.deactivated.is_(False))
        if admins is not None:
            cond.append(users.c.admin.is_(admins))
        if name:
            like = f"%{name.lower()}%"
            cond.append(or_(func.lower(users.c.user_id).like(like), func.lower(users.c.displayname).like(like)))
        elif user_id:
            cond.append(func.lower(users.c.user_id).like(f"%{user_id.lower()}%"))
        where = and_(True, *cond)
        col = {
            "name": users.c.user_id,
            "displayname": users.c.displayname,
            "creation_ts": users.c.created_ts,
            "admin": users.c.admin,
            "deactivated": users.c.deactivated,
            "locked": users.c.locked,
        }[order_by]
        q = (
            select(users)
            .where(where)
            .order_by(col.desc() if descending else col.asc(), users.c.user_id)
            .offset(offset)
            .limit(limit)
        )
        async with self.db.read() as conn:
            total = int((await conn.execute(select(func.count()).select_from(users).where(where))).scalar_one())
            return list((await conn.execute(q)).all()), total

    async def erased(self, user_id: str) -> bool:
        async with self.db.read() as conn:
            return (
                await conn.execute(select(erased_users).where(erased_users.c.user_id == user_id))
            ).first() is not None

    async def mark_erased(self, user_id: str, now: int) -> None:
        async with self.db.write() as conn:
            await conn.execute(self.db.insert_ignore(erased_users, {"user_id": user_id, "ts": now}, ["user_id"]))
            await conn.execute(
                update(users).where(users.c.user_id == user_id).values(displayname=None, avatar_url=None)
            )
            await self.directory.refresh(conn, [user_id])
            await conn.execute(delete(account_data).where(account_data.c.user_id == user_id))

    # -- rooms ------------------------------------------------------------------------------------
    async def room_summaries(self, room_ids: Sequence[str] | None = None) -> list[RoomSummary]:
        """Summaries of every room (or of the given ones): a few grouped queries, not one per room."""
        rq = select(rooms)
        cq = select(current_state.c.room_id, func.count()).group_by(current_state.c.room_id)
        sq = (
            select(current_state.c.room_id, current_state.c.type, events.c.json)
            .join(events, events.c.event_id == current_state.c.event_id)
            .where(current_state.c.type.in_(SUMMARY_STATE), current_state.c.state_key == "")
        )
        if room_ids is not None:
            ids = list(room_ids)
            rq = rq.where(rooms.c.room_id.in_(ids))
            cq, sq = cq.where(current_state.c.room_id.in_(ids)), sq.where(current_state.c.room_id.in_(ids))
        async with self.db.read() as conn:
            out = {
                r.room_id: RoomSummary(
                    r.room_id, r.room_version, r.creator, bool(r.is_public), r.created_ts, joined=r.joined_members
                )
                for r in (await conn.execute(rq)).all()
            }
            for room_id, n in (await conn.execute(cq)).all():
                if room_id in out:
                    out[room_id].state_events = int(n)
            for room_id, type_, raw in (await conn.execute(sq)).all():
                if room_id in out:
                    content = msgspec.json.decode(raw).get("content")
                    out[room_id].state[type_] = content if isinstance(content, dict) else {}
        return list(out.values())

    async def block_room(self, room_id: str, by: str | None, now: int) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                self.db.insert_ignore(blocked_rooms, {"room_id": room_id, "blocked_by": by, "ts": now}, ["room_id"])
            )

    async def is_blocked(self, room_id: str) -> bool:
        async with self.db.read() as conn:
            return (
                await conn.execute(select(blocked_rooms.c.room_id).where(blocked_rooms.c.room_id == room_id))
            ).first() is not None

    async def moderation_flags(self, conn: AsyncConnection) -> tuple[set[str], set[str]]:
        """Suspended users and blocked rooms, read in the caller's transaction (the event pipeline's)."""
        suspended = (await conn.execute(select(users.c.user_id).where(users.c.suspended.is_(True)))).all()
        blocked = (await conn.execute(select(blocked_rooms.c.room_id))).all()
        return {r.user_id for r in suspended}, {r.room_id for r in blocked}

    async def remove_aliases(self, room_id: str) -> list[str]:
        async with self.db.write() as conn:
            found = [
                r.alias
                for r in (
                    await conn.execute(select(room_aliases.c.alias).where(room_aliases.c.room_id == room_id))
                ).all()
            ]
            await conn.execute(delete(room_aliases).where(room_aliases.c.room_id == room_id))
            await conn.execute(update(rooms).where(rooms.c.room_id == room_id).values(is_public=False))
        return found

    async def purge_room(self, room_id: str) -> int:
        """Delete everything stored for a room (its events included); returns the events removed."""
        async with self.db.write() as conn:
            await self.db.lock_room(conn, room_id)
            n = (await conn.execute(delete(events).where(events.c.room_id == room_id))).rowcount
            for table in (
                current_state,
                memberships,
                receipts,
                typing,
                typing_stream,
                event_push_actions,
                room_push_actions,
                room_aliases,
                rooms,
            ):
                await conn.execute(delete(table).where(table.c.room_id == room_id))
            await conn.execute(delete(account_data).where(account_data.c.room_id == room_id))
        return int(n or 0)

    # -- registration tokens --------------------------------------------------------------------------
    async def get_token(self, token: str) -> dict[str, Any] | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(registration_tokens).where(registration_tokens.c.token == token))).first()
        return dict(row._mapping) if row else None

    async def update_token(self, token: str, values: dict[str, Any]) -> bool:
        async with self.db.write() as conn:
            res = await conn.execute(
                update(registration_tokens).where(registration_tokens.c.token == token).values(**values)
            )
        return bool(res.rowcount)

    async def delete_token(self, token: str) -> bool:
        async with self.db.write() as conn:
            res = await conn.execute(delete(registration_tokens).where(registration_tokens.c.token == token))
        return bool(res.rowcount)
