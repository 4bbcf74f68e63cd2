"""Rooms, events, room state and memberships.

History is linear on one server (every event's prev_event is the room's previous tip), so the state
at any stream position is "the newest state event per (type, state_key) at or before it".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.storage.database import Database
from paigham.storage.dialect import upsert
from paigham.storage.schema import current_state, event_txns, events, memberships, rooms

_decode = msgspec.json.decode
_encode = msgspec.json.encode


@dataclass(frozen=True, slots=True)
class RoomRow:
    room_id: str
    room_version: str
    creator: str
    is_public: bool


@dataclass(slots=True)
class StoredEvent:
    stream: int
    event_id: str
    room_id: str
    type: str
    state_key: str | None
    sender: str
    origin_server_ts: int
    pdu: dict[str, Any]
    unsigned: dict[str, Any] | None
    redacted_by: str | None
    txn_id: str | None
    device_id: str | None

    @property
    def content(self) -> dict[str, Any]:
        c = self.pdu.get("content")
        return c if isinstance(c, dict) else {}


_EVENT_COLS = (
    events.c.stream, events.c.event_id, events.c.room_id, events.c.type, events.c.state_key,
    events.c.sender, events.c.origin_server_ts, events.c.json, events.c.unsigned, events.c.redacted_by,
    events.c.txn_id, events.c.device_id,
)


def _row_event(r: Any) -> StoredEvent:
    return StoredEvent(
        r.stream, r.event_id, r.room_id, r.type, r.state_key, r.sender, r.origin_server_ts,
        _decode(r.json), _decode(r.unsigned) if r.unsigned else None, r.redacted_by, r.txn_id, r.device_id,
    )


class EventStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- rooms ----------------------------------------------------------------------------
    async def get_room(self, room_id: str, conn: AsyncConnection | None = None) -> RoomRow | None:
        q = select(rooms).where(rooms.c.room_id == room_id)
        if conn is not None:
            row = (await conn.execute(q)).first()
        else:
            async with self.db.read() as c:
                row = (await c.execute(q)).first()
        return RoomRow(row.room_id, row.room_version, row.creator, bool(row.is_public)) if row else None

    @staticmethod
    async def insert_room(conn: AsyncConnection, room: RoomRow, now: int) -> None:
        await conn.execute(
            rooms.insert().values(
                room_id=room.room_id, room_version=room.room_version, creator=room.creator,
                created_ts=now, is_public=room.is_public,
            )
        )

    async def set_room_public(self, room_id: str, public: bool) -> None:
        async with self.db.write() as conn:
            await conn.execute(update(rooms).where(rooms.c.room_id == room_id).values(is_public=public))

    async def public_rooms(self) -> list[str]:
        async with self.db.read() as conn:
            rows = (await conn.execute(select(rooms.c.room_id).where(rooms.c.is_public.is_(True)))).all()
        return [r.room_id for r in rows]

    async def all_room_ids(self, limit: int, offset: int) -> list[RoomRow]:
        q = select(rooms).order_by(rooms.c.created_ts).limit(limit).offset(offset)
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        return [RoomRow(r.room_id, r.room_version, r.creator, bool(r.is_public)) for r in rows]

    # -- writing (inside the caller's transaction) -------------------------------------------
    @staticmethod
    async def tip(conn: AsyncConnection, room_id: str) -> tuple[str, int] | None:
        q = (
            select(events.c.event_id, events.c.depth)
            .where(events.c.room_id == room_id)
            .order_by(events.c.stream.desc())
            .limit(1)
        )
        row = (await conn.execute(q)).first()
        return (row.event_id, row.depth) if row else None

    @staticmethod
    async def state_for_keys(
        conn: AsyncConnection, room_id: str, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], StoredEvent]:
        keys = list(set(keys))
        if not keys:
            return {}
        types = {t for t, _ in keys}
        q = (
            select(*_EVENT_COLS)
            .join(current_state, current_state.c.event_id == events.c.event_id)
            .where(current_state.c.room_id == room_id, current_state.c.type.in_(types))
        )
        wanted = set(keys)
        out: dict[tuple[str, str], StoredEvent] = {}
        for r in (await conn.execute(q)).all():
            if (r.type, r.state_key) in wanted:
                out[(r.type, r.state_key)] = _row_event(r)
        return out

    @staticmethod
    async def insert_event(
        conn: AsyncConnection,
        stream: int,
        event_id: str,
        pdu: dict[str, Any],
        *,
        unsigned: dict[str, Any] | None,
        txn_id: str | None,
        device_id: str | None,
        relates_to: str | None,
        rel_type: str | None,
    ) -> None:
        await conn.execute(
            events.insert().values(
                stream=stream, event_id=event_id, room_id=pdu["room_id"], type=pdu["type"],
                state_key=pdu.get("state_key"), sender=pdu["sender"],
                origin_server_ts=pdu["origin_server_ts"], depth=pdu["depth"],
                json=_encode(pdu).decode(), unsigned=_encode(unsigned).decode() if unsigned else None,
                txn_id=txn_id, device_id=device_id, relates_to=relates_to, rel_type=rel_type,
            )
        )

    async def set_current_state(
        self, conn: AsyncConnection, room_id: str, type_: str, state_key: str, event_id: str, stream: int
    ) -> None:
        values = {"room_id": room_id, "type": type_, "state_key": state_key, "event_id": event_id,
                  "stream": stream}
        await conn.execute(
            upsert(self.db.is_sqlite, current_state, values, ["room_id", "type", "state_key"])
        )

    async def set_membership(
        self, conn: AsyncConnection, user_id: str, room_id: str, membership: str, event_id: str, stream: int
    ) -> None:
        values = {"user_id": user_id, "room_id": room_id, "membership": membership, "event_id": event_id,
                  "stream": stream, "forgotten": False}
        await conn.execute(upsert(self.db.is_sqlite, memberships, values, ["user_id", "room_id"]))

    @staticmethod
    async def mark_redacted(conn: AsyncConnection, event_id: str, redacted_by: str) -> None:
        await conn.execute(
            update(events).where(events.c.event_id == event_id).values(redacted_by=redacted_by)
        )

    # -- transaction IDs ---------------------------------------------------------------------
    async def get_txn(self, user_id: str, device_id: str, scope: str, txn_id: str) -> str | None:
        q = select(event_txns.c.result).where(
            event_txns.c.user_id == user_id, event_txns.c.device_id == device_id,
            event_txns.c.scope == scope, event_txns.c.txn_id == txn_id,
        )
        async with self.db.read() as conn:
            row = (await conn.execute(q)).first()
        return row.result if row else None

    @staticmethod
    async def get_txn_in(conn: AsyncConnection, user_id: str, device_id: str, scope: str,
                         txn_id: str) -> str | None:
        q = select(event_txns.c.result).where(
            event_txns.c.user_id == user_id, event_txns.c.device_id == device_id,
            event_txns.c.scope == scope, event_txns.c.txn_id == txn_id,
        )
        row = (await conn.execute(q)).first()
        return row.result if row else None

    @staticmethod
    async def put_txn(
        conn: AsyncConnection, user_id: str, device_id: str, scope: str, txn_id: str, result: str, now: int
    ) -> None:
        await conn.execute(
            event_txns.insert().values(
                user_id=user_id, device_id=device_id, scope=scope, txn_id=txn_id, result=result, created_ts=now
            )
        )

    @staticmethod
    async def get_event_in(conn: AsyncConnection, event_id: str) -> StoredEvent | None:
        row = (await conn.execute(select(*_EVENT_COLS).where(events.c.event_id == event_id))).first()
        return _row_event(row) if row else None

    # -- reading -----------------------------------------------------------------------------
    async def get_event(self, event_id: str) -> StoredEvent | None:
        evs = await self.get_events([event_id])
        return evs.get(event_id)

    async def get_events(self, event_ids: Sequence[str]) -> dict[str, StoredEvent]:
        if not event_ids:
            return {}
        async with self.db.read() as conn:
            rows = (await conn.execute(select(*_EVENT_COLS).where(events.c.event_id.in_(set(event_ids))))).all()
        return {r.event_id: _row_event(r) for r in rows}

    async def current_state(self, room_id: str, types: Sequence[str] | None = None) -> list[StoredEvent]:
        q = (
            select(*_EVENT_COLS)
            .join(current_state, current_state.c.event_id == events.c.event_id)
            .where(current_state.c.room_id == room_id)
        )
        if types is not None:
            q = q.where(current_state.c.type.in_(types))
        async with self.db.read() as conn:
            return [_row_event(r) for r in (await conn.execute(q)).all()]

    async def current_state_event(self, room_id: str, type_: str, state_key: str) -> StoredEvent | None:
        async with self.db.read() as conn:
            found = await self.state_for_keys(conn, room_id, [(type_, state_key)])
        return found.get((type_, state_key))

    async def state_at(self, room_id: str, stream: int, types: Sequence[str] | None = None) -> list[StoredEvent]:
        """The room state after the event at `stream` (inclusive)."""
        e2 = events.alias("e2")
        latest = (
            select(e2.c.type, e2.c.state_key, func.max(e2.c.stream).label("m"))
            .where(e2.c.room_id == room_id, e2.c.state_key.is_not(None), e2.c.stream <= stream)
            .group_by(e2.c.type, e2.c.state_key)
        )
        if types is not None:
            latest = latest.where(e2.c.type.in_(types))
        sub = latest.subquery()
        q = select(*_EVENT_COLS).join(sub, sub.c.m == events.c.stream)
        async with self.db.read() as conn:
            return [_row_event(r) for r in (await conn.execute(q)).all()]

    async def state_changes(self, room_id: str, after: int, upto: int) -> list[StoredEvent]:
        """State events in (after, upto], oldest first."""
        q = (
            select(*_EVENT_COLS)
            .where(events.c.room_id == room_id, events.c.state_key.is_not(None),
                   events.c.stream > after, events.c.stream <= upto)
            .order_by(events.c.stream)
        )
        async with self.db.read() as conn:
            return [_row_event(r) for r in (await conn.execute(q)).all()]

    async def room_events(
        self, room_id: str, *, after: int | None = None, upto: int | None = None, limit: int, backwards: bool
    ) -> list[StoredEvent]:
        """Events with after < stream <= upto, newest first if backwards, else oldest first."""
        q = select(*_EVENT_COLS).where(events.c.room_id == room_id)
        if after is not None:
            q = q.where(events.c.stream > after)
        if upto is not None:
            q = q.where(events.c.stream <= upto)
        q = q.order_by(events.c.stream.desc() if backwards else events.c.stream).limit(limit)
        async with self.db.read() as conn:
            return [_row_event(r) for r in (await conn.execute(q)).all()]

    async def rooms_with_events(self, room_ids: Sequence[str], after: int, upto: int) -> set[str]:
        if not room_ids:
            return set()
        q = (
            select(events.c.room_id)
            .where(events.c.room_id.in_(room_ids), events.c.stream > after, events.c.stream <= upto)
            .group_by(events.c.room_id)
        )
        async with self.db.read() as conn:
            return {r.room_id for r in (await conn.execute(q)).all()}

    async def last_event_streams(self, room_ids: Sequence[str], upto: int) -> dict[str, int]:
        if not room_ids:
            return {}
        q = (
            select(events.c.room_id, func.max(events.c.stream).label("m"))
            .where(events.c.room_id.in_(room_ids), events.c.stream <= upto)
            .group_by(events.c.room_id)
        )
        async with self.db.read() as conn:
            return {r.room_id: int(r.m) for r in (await conn.execute(q)).all()}

    # -- memberships --------------------------------------------------------------------------
    async def membership(self, user_id: str, room_id: str) -> tuple[str, int, bool] | None:
        q = select(memberships.c.membership, memberships.c.stream, memberships.c.forgotten).where(
            memberships.c.user_id == user_id, memberships.c.room_id == room_id
        )
        async with self.db.read() as conn:
            row = (await conn.execute(q)).first()
        return (row.membership, row.stream, bool(row.forgotten)) if row else None

    async def user_rooms(self, user_id: str, states: Sequence[str] = ("join",)) -> dict[str, tuple[str, int]]:
        """room_id → (membership, stream of the membership event) for the given membership states."""
        q = select(memberships.c.room_id, memberships.c.membership, memberships.c.stream).where(
            memberships.c.user_id == user_id, memberships.c.membership.in_(states),
            memberships.c.forgotten.is_(False),
        )
        async with self.db.read() as conn:
            return {r.room_id: (r.membership, r.stream) for r in (await conn.execute(q)).all()}

    async def room_members(self, room_id: str, states: Sequence[str] = ("join",)) -> list[str]:
        q = select(memberships.c.user_id).where(
            memberships.c.room_id == room_id, memberships.c.membership.in_(states)
        )
        async with self.db.read() as conn:
            return [r.user_id for r in (await conn.execute(q)).all()]

    @staticmethod
    async def room_members_in(conn: AsyncConnection, room_id: str, states: Sequence[str] = ("join",)) -> list[str]:
        q = select(memberships.c.user_id).where(
            memberships.c.room_id == room_id, memberships.c.membership.in_(states)
        )
        return [r.user_id for r in (await conn.execute(q)).all()]

    async def member_counts(self, room_id: str) -> dict[str, int]:
        q = (
            select(memberships.c.membership, func.count().label("n"))
            .where(memberships.c.room_id == room_id)
            .group_by(memberships.c.membership)
        )
        async with self.db.read() as conn:
            return {r.membership: int(r.n) for r in (await conn.execute(q)).all()}

    async def membership_history(self, user_id: str, room_id: str) -> list[tuple[int, str]]:
        """(stream, membership) of every membership event of the user in the room, oldest first."""
        q = (
            select(events.c.stream, events.c.json)
            .where(events.c.room_id == room_id, events.c.type == "m.room.member", events.c.state_key == user_id)
            .order_by(events.c.stream)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        return [(r.stream, str(_decode(r.json).get("content", {}).get("membership", ""))) for r in rows]

    async def state_history(self, room_id: str, type_: str, state_key: str = "") -> list[StoredEvent]:
        q = (
            select(*_EVENT_COLS)
            .where(events.c.room_id == room_id, events.c.type == type_, events.c.state_key == state_key)
            .order_by(events.c.stream)
        )
        async with self.db.read() as conn:
            return [_row_event(r) for r in (await conn.execute(q)).all()]

    async def membership_changes(self, user_id: str, after: int, upto: int) -> list[StoredEvent]:
        q = (
            select(*_EVENT_COLS)
            .where(events.c.type == "m.room.member", events.c.state_key == user_id,
                   events.c.stream > after, events.c.stream <= upto)
            .order_by(events.c.stream)
        )
        async with self.db.read() as conn:
            return [_row_event(r) for r in (await conn.execute(q)).all()]

    async def memberships_at(self, user_id: str, room_ids: Sequence[str], pos: int) -> dict[str, str]:
        """The user's membership in each room as of stream position `pos` (absent: never a member)."""
        if not room_ids:
            return {}
        e2 = events.alias("e2")
        latest = (
            select(func.max(e2.c.stream).label("m"))
            .where(e2.c.type == "m.room.member", e2.c.state_key == user_id, e2.c.room_id.in_(room_ids),
                   e2.c.stream <= pos)
            .group_by(e2.c.room_id)
            .subquery()
        )
        q = select(events.c.room_id, events.c.json).join(latest, latest.c.m == events.c.stream)
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        return {r.room_id: str(_decode(r.json).get("content", {}).get("membership", "")) for r in rows}

    async def forget(self, user_id: str, room_id: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                update(memberships)
                .where(and_(memberships.c.user_id == user_id, memberships.c.room_id == room_id))
                .values(forgotten=True)
            )

    async def shares_room(self, user_a: str, user_b: str) -> bool:
        m1 = memberships.alias("m1")
        m2 = memberships.alias("m2")
        q = (
            select(m1.c.room_id)
            .join(m2, m1.c.room_id == m2.c.room_id)
            .where(m1.c.user_id == user_a, m2.c.user_id == user_b,
                   m1.c.membership == "join", m2.c.membership.in_(("join", "invite")))
            .limit(1)
        )
        async with self.db.read() as conn:
            return (await conn.execute(q)).first() is not None

    async def relations(
        self, event_id: str, rel_type: str | None = None, limit: int = 50, before: int | None = None,
        after: int | None = None, backwards: bool = True,
    ) -> list[StoredEvent]:
        q = select(*_EVENT_COLS).where(events.c.relates_to == event_id)
        if rel_type is not None:
            q = q.where(events.c.rel_type == rel_type)
        if before is not None:
            q = q.where(events.c.stream < before)
        if after is not None:
            q = q.where(events.c.stream > after)
        q = q.order_by(events.c.stream.desc() if backwards else events.c.stream).limit(limit)
        async with self.db.read() as conn:
            return [_row_event(r) for r in (await conn.execute(q)).all()]

    async def relation_summaries(self, event_ids: Sequence[str]) -> list[StoredEvent]:
        """All m.replace and m.thread relations of the given events (for bundled aggregations)."""
        if not event_ids:
            return []
        q = (
            select(*_EVENT_COLS)
            .where(events.c.relates_to.in_(set(event_ids)), events.c.rel_type.in_(("m.replace", "m.thread")))
            .order_by(events.c.stream)
        )
        async with self.db.read() as conn:
            return [_row_event(r) for r in (await conn.execute(q)).all()]

    async def thread_roots(self, room_id: str, limit: int, before: int | None) -> list[tuple[str, int]]:
        """(root event ID, stream of the latest reply) for the room's threads, newest activity first."""
        q = (
            select(events.c.relates_to, func.max(events.c.stream).label("m"))
            .where(events.c.room_id == room_id, events.c.rel_type == "m.thread")
            .group_by(events.c.relates_to)
        )
        sub = q.subquery()
        outer = select(sub.c.relates_to, sub.c.m).order_by(sub.c.m.desc()).limit(limit)
        if before is not None:
            outer = outer.where(sub.c.m < before)
        async with self.db.read() as conn:
            return [(r.relates_to, int(r.m)) for r in (await conn.execute(outer)).all()]
