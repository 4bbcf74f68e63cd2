"""Storage of policies, account validity, and the retention purge of old events."""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import and_, delete, func, select, update

from paigham.storage.database import Database
from paigham.storage.org_schema import account_validity, officials, policies
from paigham.storage.schema import current_state, event_push_actions, events, room_push_actions, rooms

PURGE_BATCH = 2000


class PolicyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def all(self) -> dict[str, dict[str, Any]]:
        async with self.db.read() as conn:
            rows = (await conn.execute(select(policies.c.scope, policies.c.json))).all()
        return {r.scope: msgspec.json.decode(r.json) for r in rows}

    async def put(self, scope: str, overrides: dict[str, Any], by: str | None, now: int) -> None:
        values = {"scope": scope, "json": msgspec.json.encode(overrides).decode(), "updated_ts": now, "updated_by": by}
        async with self.db.write() as conn:
            await conn.execute(self.db.upsert(policies, values, ["scope"]))

    async def delete(self, scope: str) -> bool:
        async with self.db.write() as conn:
            return bool((await conn.execute(delete(policies).where(policies.c.scope == scope))).rowcount)

    # -- account validity -------------------------------------------------------------------------
    async def expiry(self, user_id: str) -> tuple[int | None, int | None]:
        """(renewal deadline, the official's expiry from the directory), in one statement (every
        request's expiry check reads it every few seconds)."""
        row = await self.db.fetchrow(
            "SELECT (SELECT expires_ts FROM account_validity WHERE user_id = $1),"
            " (SELECT expires_ts FROM officials WHERE user_id = $1)",
            user_id,
        )
        assert row is not None  # (two scalar subqueries: always one row)
        return row[0], row[1]

    async def set_validity(self, user_id: str, expires_ts: int, now: int) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                self.db.upsert(
                    account_validity,
                    {"user_id": user_id, "expires_ts": expires_ts, "renewed_ts": now},
                    ["user_id"],
                )
            )

    async def delete_validity(self, user_id: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(delete(account_validity).where(account_validity.c.user_id == user_id))

    async def clear_official_expiry(self, user_id: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                update(officials).where(officials.c.user_id == user_id).values(expires=None, expires_ts=None)
            )

    # -- retention --------------------------------------------------------------------------------
    async def room_creators(self) -> list[tuple[str, str]]:
        async with self.db.read() as conn:
            return [(r.room_id, r.creator) for r in (await conn.execute(select(rooms.c.room_id, rooms.c.creator)))]

    async def purge_history(self, room_id: str, before_ts: int) -> int:
        """Delete a room's events older than before_ts, except its current state and its newest event
        (the room keeps working; its history starts later). Returns how many were deleted."""
        removed = 0
        while True:
            async with self.db.write() as conn:
                await self.db.lock_room(conn, room_id)
                newest = (
                    await conn.execute(select(func.max(events.c.stream)).where(events.c.room_id == room_id))
                ).scalar()
                if newest is None:
                    return removed
                keep = select(current_state.c.event_id).where(current_state.c.room_id == room_id)
                q = (
                    select(events.c.stream)
                    .where(
                        events.c.room_id == room_id,
                        events.c.origin_server_ts < before_ts,
                        events.c.stream < newest,
                        events.c.type != "m.room.create",
                        events.c.event_id.not_in(keep),
                    )
                    .limit(PURGE_BATCH)
                )
                streams = [r.stream for r in (await conn.execute(q)).all()]
                if not streams:
                    return removed
                await conn.execute(delete(events).where(events.c.stream.in_(streams)))
                await conn.execute(
                    delete(event_push_actions).where(
                        and_(event_push_actions.c.room_id == room_id, event_push_actions.c.stream.in_(streams))
                    )
                )
                await conn.execute(
                    delete(room_push_actions).where(
                        and_(room_push_actions.c.room_id == room_id, room_push_actions.c.stream.in_(streams))
                    )
                )
            removed += len(streams)
