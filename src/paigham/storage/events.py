"""Rooms, events, room state and memberships.

History is linear on one server (every event's prev_event is the room's previous tip), so the state
at any stream position is "the newest state event per (type, state_key) at or before it".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.clock import now_ms
from paigham.domain.stored_event import StoredEvent
from paigham.storage.database import Database
from paigham.storage.schema import current_state, event_txns, events, memberships, rooms

# (room_id, stream, sender, thread_id, highlight) and (user_id, room_id, stream, thread_id, notify, highlight)
PushRoomRow = tuple[str, int, str, str, bool]
PushUserRow = tuple[str, str, int, str, bool, bool]

_decode = msgspec.json.decode
_encode = msgspec.json.encode
_MAX_POS = 2**62


@dataclass(frozen=True, slots=True)
class RoomRow:
    room_id: str
    room_version: str
    creator: str
    is_public: bool


@dataclass
class RoomForWrite:
    room: RoomRow
    tip: tuple[str, int] | None  # (event ID, depth) of the room's newest event
    txn_result: str | None  # the event ID an already-used transaction ID produced
    state: dict[tuple[str, str], StoredEvent] = field(default_factory=dict)
    joined: list[str] = field(default_factory=list)  # who is joined (user IDs only)
    push_rules: dict[str, Any] = field(default_factory=dict)  # joined user → their own push rules, if any


@dataclass(slots=True)
class NewMessage:
    """A non-state event ready to be written (its `stream` is set when it is)."""

    event: StoredEvent
    relates_to: str | None
    rel_type: str | None
    txn: tuple[str, str, str, str] | None  # (user, device, scope, transaction ID)
    push_room: PushRoomRow | None
    push_own: list[PushUserRow]


_EVENT_COLS = (
    events.c.stream,
    events.c.event_id,
    events.c.room_id,
    events.c.type,
    events.c.state_key,
    events.c.sender,
    events.c.origin_server_ts,
    events.c.json,
    events.c.unsigned,
    events.c.redacted_by,
    events.c.txn_id,
    events.c.device_id,
)


def _row_event(r: Any) -> StoredEvent:
    return StoredEvent(
        r.stream,
        r.event_id,
        r.room_id,
        r.type,
        r.state_key,
        r.sender,
        r.origin_server_ts,
        _decode(r.json),
        _decode(r.unsigned) if r.unsigned else None,
        r.redacted_by,
        r.txn_id,
        r.device_id,
    )


# The same columns for the raw-SQL queries of the hot paths (send, /sync); rows are tuples.
EV = (
    "e.stream, e.event_id, e.room_id, e.type, e.state_key, e.sender, e.origin_server_ts, e.json, e.unsigned, "
    "e.redacted_by, e.txn_id, e.device_id"
)
_NO_EV = ", ".join(["NULL"] * len(EV.split(",")))


def _tuple_event(r: Sequence[Any]) -> StoredEvent:
    return StoredEvent(
        int(r[0]),
        r[1],
        r[2],
        r[3],
        r[4],
        r[5],
        int(r[6]),
        _decode(r[7]),
        _decode(r[8]) if r[8] else None,
        r[9],
        r[10],
        r[11],
    )


# PostgreSQL: non-state events, their transaction IDs and their push actions at the next positions
# (base + 1 … base + n, in order), in one statement: data-modifying CTEs all run, once, whether or
# not the final SELECT reads them. Push-action rows name their message by its ordinal (1 … n).
_INSERT_MESSAGES = (
    "WITH pos AS (UPDATE stream_counter SET pos = pos + $1 WHERE id = 1 RETURNING pos - $1 AS base), "
    "m AS (SELECT pos.base + u.i AS stream, u.* FROM pos, unnest($2::text[], $3::text[], $4::text[], $5::text[], "
    "$6::bigint[], $7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[]) WITH ORDINALITY "
    "AS u(event_id, room_id, type, sender, ts, depth, json, txn_id, device_id, relates_to, rel_type, i)), "
    "ev AS (INSERT INTO events (stream, event_id, room_id, type, state_key, sender, origin_server_ts, depth, json, "
    "unsigned, txn_id, device_id, relates_to, rel_type) SELECT stream, event_id, room_id, type, NULL, sender, ts, "
    "depth, json, NULL, txn_id, device_id, relates_to, rel_type FROM m), "
    "tx AS (INSERT INTO event_txns (user_id, device_id, scope, txn_id, result, created_ts) SELECT t.*, $13 FROM "
    "unnest($14::text[], $15::text[], $16::text[], $17::text[], $18::text[]) AS t(user_id, device_id, scope, "
    "txn_id, result)), "
    "ra AS (INSERT INTO room_push_actions (room_id, stream, sender, thread_id, highlight) SELECT r.room_id, "
    "pos.base + r.i, r.sender, r.thread_id, r.highlight FROM pos, unnest($19::bigint[], $20::text[], $21::text[], "
    "$22::text[], $23::boolean[]) AS r(i, room_id, sender, thread_id, highlight)), "
    "oa AS (INSERT INTO event_push_actions (user_id, room_id, stream, thread_id, notify, highlight) SELECT "
    "o.user_id, o.room_id, pos.base + o.i, o.thread_id, o.notify, o.highlight FROM pos, unnest($24::bigint[], "
    "$25::text[], $26::text[], $27::text[], $28::boolean[], $29::boolean[]) AS o(i, user_id, room_id, thread_id, "
    "notify, highlight)) "
    "SELECT base FROM pos"
)


# A member's row after a membership event; `joined_stream` moves only when the member (re)joins, not
# on a join → join event (a display-name or avatar change).
_SET_MEMBERSHIP = (
    "INSERT INTO memberships (user_id, room_id, membership, event_id, stream, joined_stream, forgotten) "
    "VALUES ($1, $2, $3, $4, $5, $5, FALSE) ON CONFLICT (user_id, room_id) DO UPDATE SET "
    "membership = excluded.membership, event_id = excluded.event_id, stream = excluded.stream, "
    "joined_stream = CASE WHEN memberships.membership = 'join' AND excluded.membership = 'join' "
    "THEN memberships.joined_stream ELSE excluded.stream END, forgotten = FALSE"
)


class EventStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._insert_messages = db.per_engine(sqlite=self._insert_messages_sqlite, postgresql=self._insert_messages_pg)

    # -- rooms ----------------------------------------------------------------------------
    async def get_room(self, room_id: str) -> RoomRow | None:
        row = await self.db.fetchrow(
            "SELECT room_id, room_version, creator, is_public FROM rooms WHERE room_id = $1", room_id
        )
        return RoomRow(row[0], row[1], row[2], bool(row[3])) if row else None

    @staticmethod
    async def insert_room(conn: AsyncConnection, room: RoomRow, now: int) -> None:
        await conn.execute(
            rooms.insert().values(
                room_id=room.room_id,
                room_version=room.room_version,
                creator=room.creator,
                created_ts=now,
                is_public=room.is_public,
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
    async def room_for_write(
        self,
        conn: AsyncConnection,
        room_id: str,
        keys: Sequence[tuple[str, str]],
        txn: tuple[str, str, str, str] | None,
    ) -> RoomForWrite | None:
        """What a write to an existing room reads first, in one statement: the room, its tip, the
        result of this transaction ID if it was used (user, device, scope, txn ID), the current state
        at the given (type, state key)s, and who is joined with their push rules (what the push
        evaluation of the event needs). None: no such room."""
        wanted = set(keys)
        rows = await self.db.fetch(
            f"SELECT r.room_version, r.creator, r.is_public, t.event_id, t.depth, x.result, NULL, NULL, {EV} "
            "FROM rooms r "
            "LEFT JOIN events t ON t.stream = (SELECT max(stream) FROM events WHERE room_id = $1) "
            "LEFT JOIN event_txns x ON x.user_id = $3 AND x.device_id = $4 AND x.scope = $5 AND x.txn_id = $6 "
            "LEFT JOIN current_state c ON c.room_id = r.room_id AND c.type = ANY($2::text[]) "
            "AND c.state_key = ANY($7::text[]) "
            "LEFT JOIN events e ON e.event_id = c.event_id WHERE r.room_id = $1 "
            f"UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, NULL, m.user_id, p.json, {_NO_EV} FROM memberships m "
            "LEFT JOIN push_rules p ON p.user_id = m.user_id WHERE m.room_id = $1 AND m.membership = 'join'",
            room_id,
            sorted({t for t, _ in wanted}),
            *(txn or (None, None, None, None)),
            sorted({k for _, k in wanted}),
            conn=conn,
        )
        first = next((r for r in rows if r[0] is not None), None)
        if first is None:
            return None
        out = RoomForWrite(
            RoomRow(room_id, first[0], first[1], bool(first[2])),
            (first[3], int(first[4])) if first[3] is not None else None,
            first[5],
        )
        for r in rows:
            if r[6] is not None:
                out.joined.append(r[6])
                if r[7] is not None:
                    out.push_rules[r[6]] = _decode(r[7])
            elif r[8] is not None and (r[11], r[12] or "") in wanted:
                ev = _tuple_event(r[8:])
                out.state[(ev.type, ev.state_key or "")] = ev
        return out

    async def state_for_keys(
        self, conn: AsyncConnection, room_id: str, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], StoredEvent]:
        wanted = set(keys)
        if not wanted:
            return {}
        types, state_keys = sorted({t for t, _ in wanted}), sorted({k for _, k in wanted})
        rows = await self.db.fetch(
            f"SELECT {EV} FROM current_state c JOIN events e ON e.event_id = c.event_id "
            "WHERE c.room_id = $1 AND c.type = ANY($2::text[]) AND c.state_key = ANY($3::text[])",
            room_id,
            types,
            state_keys,
            conn=conn,
        )
        out: dict[tuple[str, str], StoredEvent] = {}
        for r in rows:
            if (r[3], r[4]) in wanted:
                out[(r[3], r[4])] = _tuple_event(r)
        return out

    async def insert_event(
        self,
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
        await self.db.run(
            "INSERT INTO events (stream, event_id, room_id, type, state_key, sender, origin_server_ts, depth, json, "
            "unsigned, txn_id, device_id, relates_to, rel_type) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            stream,
            event_id,
            pdu["room_id"],
            pdu["type"],
            pdu.get("state_key"),
            pdu["sender"],
            pdu["origin_server_ts"],
            pdu["depth"],
            _encode(pdu).decode(),
            _encode(unsigned).decode() if unsigned else None,
            txn_id,
            device_id,
            relates_to,
            rel_type,
            conn=conn,
        )

    async def insert_messages(self, conn: AsyncConnection, messages: Sequence[NewMessage]) -> None:
        """Append non-state events at the next stream positions, in order, with their transaction
        IDs and push actions (the rows' stream is filled in here), and set each event's `stream`.
        On PostgreSQL one statement, so the stream counter's row — which orders every writer of every
        room — is held from here to commit only, however many messages a batch has; on SQLite the
        same rows statement by statement."""
        if messages:
            await self._insert_messages(conn, messages)

    async def _insert_messages_pg(self, conn: AsyncConnection, messages: Sequence[NewMessage]) -> None:
        n = len(messages)
        evs = [m.event for m in messages]
        txns = [(m.txn, m.event.event_id) for m in messages if m.txn is not None]
        rooms = [(i, r) for i, m in enumerate(messages, 1) if (r := m.push_room) is not None]
        own = [(i, r) for i, m in enumerate(messages, 1) for r in m.push_own]
        row = await self.db.fetchrow(
            _INSERT_MESSAGES,
            n,
            [e.event_id for e in evs],
            [e.room_id for e in evs],
            [e.type for e in evs],
            [e.sender for e in evs],
            [e.origin_server_ts for e in evs],
            [e.pdu["depth"] for e in evs],
            [_encode(e.pdu).decode() for e in evs],
            [e.txn_id for e in evs],
            [e.device_id for e in evs],
            [m.relates_to for m in messages],
            [m.rel_type for m in messages],
            now_ms(),
            [t[0] for t, _ in txns],
            [t[1] for t, _ in txns],
            [t[2] for t, _ in txns],
            [t[3] for t, _ in txns],
            [result for _, result in txns],
            [i for i, _ in rooms],
            [r[0] for _, r in rooms],
            [r[2] for _, r in rooms],
            [r[3] for _, r in rooms],
            [r[4] for _, r in rooms],
            [i for i, _ in own],
            [r[0] for _, r in own],
            [r[1] for _, r in own],
            [r[3] for _, r in own],
            [r[4] for _, r in own],
            [r[5] for _, r in own],
            conn=conn,
        )
        assert row is not None
        for i, m in enumerate(messages, 1):
            m.event.stream = int(row[0]) + i

    async def _insert_messages_sqlite(self, conn: AsyncConnection, messages: Sequence[NewMessage]) -> None:
        n = len(messages)
        base = await self.db.next_position(conn, n) - n
        for i, m in enumerate(messages, 1):
            stream = m.event.stream = base + i
            await self.insert_event(
                conn,
                stream,
                m.event.event_id,
                m.event.pdu,
                unsigned=None,
                txn_id=m.event.txn_id,
                device_id=m.event.device_id,
                relates_to=m.relates_to,
                rel_type=m.rel_type,
            )
            if m.txn is not None:
                await self.put_txn(conn, *m.txn, m.event.event_id, now_ms())
            if m.push_room is not None:
                await self.db.run(
                    "INSERT INTO room_push_actions (room_id, stream, sender, thread_id, highlight) "
                    "VALUES ($1, $2, $3, $4, $5)",
                    m.push_room[0],
                    stream,
                    *m.push_room[2:],
                    conn=conn,
                )
            await self.db.run_many(
                "INSERT INTO event_push_actions (user_id, room_id, stream, thread_id, notify, highlight) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                [(r[0], r[1], stream, *r[3:]) for r in m.push_own],
                conn=conn,
            )

    async def insert_state_events(self, conn: AsyncConnection, evs: Sequence[StoredEvent]) -> None:
        """Write many state events of one room at once: their rows, current state and memberships."""
        await self.db.run_many(
            "INSERT INTO events (stream, event_id, room_id, type, state_key, sender, origin_server_ts, depth, json, "
            "unsigned, txn_id, device_id, relates_to, rel_type) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, NULL, NULL, NULL)",
            [
                (
                    e.stream,
                    e.event_id,
                    e.room_id,
                    e.type,
                    e.state_key,
                    e.sender,
                    e.origin_server_ts,
                    e.pdu["depth"],
                    _encode(e.pdu).decode(),
                    _encode(e.unsigned).decode() if e.unsigned else None,
                )
                for e in evs
            ],
            conn=conn,
        )
        last = {(e.room_id, e.type, e.state_key): e for e in evs}  # the newest per key wins
        await self.db.run_many(
            "INSERT INTO current_state (room_id, type, state_key, event_id, stream) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id, "
            "stream = excluded.stream",
            [(e.room_id, e.type, e.state_key, e.event_id, e.stream) for e in last.values()],
            conn=conn,
        )
        await self.db.run_many(
            _SET_MEMBERSHIP,
            [
                (e.state_key, e.room_id, str(e.content.get("membership")), e.event_id, e.stream)
                for e in last.values()
                if e.type == "m.room.member"
            ],
            conn=conn,
        )

    async def set_current_state(
        self, conn: AsyncConnection, room_id: str, type_: str, state_key: str, event_id: str, stream: int
    ) -> None:
        values = {"room_id": room_id, "type": type_, "state_key": state_key, "event_id": event_id, "stream": stream}
        await conn.execute(self.db.upsert(current_state, values, ["room_id", "type", "state_key"]))

    async def set_membership(
        self, conn: AsyncConnection, user_id: str, room_id: str, membership: str, event_id: str, stream: int
    ) -> None:
        await self.db.run(_SET_MEMBERSHIP, user_id, room_id, membership, event_id, stream, conn=conn)

    @staticmethod
    async def mark_redacted(conn: AsyncConnection, event_id: str, redacted_by: str) -> None:
        await conn.execute(update(events).where(events.c.event_id == event_id).values(redacted_by=redacted_by))

    # -- transaction IDs ---------------------------------------------------------------------
    async def get_txn(self, user_id: str, device_id: str, scope: str, txn_id: str) -> str | None:
        q = select(event_txns.c.result).where(
            event_txns.c.user_id == user_id,
            event_txns.c.device_id == device_id,
            event_txns.c.scope == scope,
            event_txns.c.txn_id == txn_id,
        )
        async with self.db.read() as conn:
            row = (await conn.execute(q)).first()
        return row.result if row else None

    async def put_txn(
        self, conn: AsyncConnection, user_id: str, device_id: str, scope: str, txn_id: str, result: str, now: int
    ) -> None:
        await self.db.run(
            "INSERT INTO event_txns (user_id, device_id, scope, txn_id, result, created_ts) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            user_id,
            device_id,
            scope,
            txn_id,
            result,
            now,
            conn=conn,
        )

    async def txn_results(
        self, conn: AsyncConnection, keys: Sequence[tuple[str, str, str, str]]
    ) -> dict[tuple[str, str, str, str], str]:
        """(user, device, scope, txn ID) → the event ID it produced, for those already used."""
        if not keys:
            return {}
        rows = await self.db.fetch(
            "SELECT user_id, device_id, scope, txn_id, result FROM event_txns WHERE user_id = ANY($1::text[]) "
            "AND txn_id = ANY($2::text[])",
            sorted({k[0] for k in keys}),
            sorted({k[3] for k in keys}),
            conn=conn,
        )
        wanted = set(keys)
        return {k: r[4] for r in rows if (k := (r[0], r[1], r[2], r[3])) in wanted}

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
        rows = await self.db.fetch(
            f"SELECT {EV} FROM events e WHERE e.event_id = ANY($1::text[])", sorted(set(event_ids))
        )
        return {r[1]: _tuple_event(r) for r in rows}

    async def current_state(self, room_id: str, types: Sequence[str] | None = None) -> list[StoredEvent]:
        sql = f"SELECT {EV} FROM current_state c JOIN events e ON e.event_id = c.event_id WHERE c.room_id = $1"
        if types is None:
            rows = await self.db.fetch(sql, room_id)
        else:
            rows = await self.db.fetch(sql + " AND c.type = ANY($2::text[])", room_id, list(types))
        return [_tuple_event(r) for r in rows]

    async def current_state_event(self, room_id: str, type_: str, state_key: str) -> StoredEvent | None:
        async with self.db.read() as conn:
            found = await self.state_for_keys(conn, room_id, [(type_, state_key)])
        return found.get((type_, state_key))

    async def state_at(self, room_id: str, stream: int, types: Sequence[str] | None = None) -> list[StoredEvent]:
        """The room state after the event at `stream` (inclusive)."""
        if types is None:
            rows = await self.db.fetch(
                f"SELECT {EV} FROM events e JOIN (SELECT max(stream) AS m FROM events WHERE room_id = $1 "
                "AND state_key IS NOT NULL AND stream <= $2 GROUP BY type, state_key) s ON s.m = e.stream",
                room_id,
                stream,
            )
        else:
            rows = await self.db.fetch(
                f"SELECT {EV} FROM events e JOIN (SELECT max(stream) AS m FROM events WHERE room_id = $1 "
                "AND state_key IS NOT NULL AND stream <= $2 AND type = ANY($3::text[]) GROUP BY type, state_key) s "
                "ON s.m = e.stream",
                room_id,
                stream,
                list(types),
            )
        return [_tuple_event(r) for r in rows]

    async def state_at_keys(
        self, room_id: str, stream: int, type_: str, state_keys: Sequence[str]
    ) -> list[StoredEvent]:
        """The newest event of type `type_` for each of `state_keys` at or before `stream` (e.g. the
        member events of a few senders, without reading every member of a big room)."""
        if not state_keys:
            return []
        rows = await self.db.fetch(
            f"SELECT {EV} FROM events e JOIN (SELECT max(stream) AS m FROM events WHERE room_id = $1 AND type = $2 "
            "AND state_key IS NOT NULL AND state_key = ANY($3::text[]) AND stream <= $4 GROUP BY state_key) s "
            "ON s.m = e.stream",
            room_id,
            type_,
            sorted(set(state_keys)),
            stream,
        )
        return [_tuple_event(r) for r in rows]

    async def state_changes(self, room_id: str, after: int, upto: int) -> list[StoredEvent]:
        """State events in (after, upto], oldest first."""
        rows = await self.db.fetch(
            f"SELECT {EV} FROM events e WHERE e.room_id = $1 AND e.state_key IS NOT NULL AND e.stream > $2 "
            "AND e.stream <= $3 ORDER BY e.stream",
            room_id,
            after,
            upto,
        )
        return [_tuple_event(r) for r in rows]

    async def room_events(
        self, room_id: str, *, after: int | None = None, upto: int | None = None, limit: int, backwards: bool
    ) -> list[StoredEvent]:
        """Events with after < stream <= upto, newest first if backwards, else oldest first."""
        rows = await self.db.fetch(
            f"SELECT {EV} FROM events e WHERE e.room_id = $1 AND e.stream > $2 AND e.stream <= $3 "
            f"ORDER BY e.stream {'DESC' if backwards else 'ASC'} LIMIT $4",
            room_id,
            -1 if after is None else after,
            _MAX_POS if upto is None else upto,
            limit,
        )
        return [_tuple_event(r) for r in rows]

    async def recent_with_relations(
        self, room_id: str, *, after: int | None, upto: int, limit: int
    ) -> tuple[list[StoredEvent], list[StoredEvent]]:
        """The newest `limit` events with after < stream <= upto (oldest first), and the m.replace and
        m.thread relations of those events (oldest first, as `relation_summaries` gives them) — one
        read for what a /sync timeline and its bundled aggregations need."""
        rows = await self.db.fetch(
            "WITH recent AS (SELECT e.stream, e.event_id FROM events e WHERE e.room_id = $1 AND e.stream > $2 "
            "AND e.stream <= $3 ORDER BY e.stream DESC LIMIT $4) "
            f"SELECT 0, {EV} FROM events e WHERE e.stream IN (SELECT stream FROM recent) "
            f"UNION ALL SELECT 1, {EV} FROM events e WHERE e.relates_to IS NOT NULL "
            "AND e.relates_to IN (SELECT event_id FROM recent) AND e.rel_type IN ('m.replace', 'm.thread') "
            "ORDER BY 1, 2",
            room_id,
            -1 if after is None else after,
            upto,
            limit,
        )
        timeline = [_tuple_event(r[1:]) for r in rows if r[0] == 0]
        return timeline, [_tuple_event(r[1:]) for r in rows if r[0] == 1]

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
        rows = await self.db.fetch(
            "SELECT room_id, membership, stream FROM memberships WHERE user_id = $1 "
            "AND membership = ANY($2::text[]) AND forgotten = false",
            user_id,
            list(states),
        )
        return {r[0]: (r[1], int(r[2])) for r in rows}

    async def room_members(self, room_id: str, states: Sequence[str] = ("join",)) -> list[str]:
        return await self.room_members_in(None, room_id, states)

    async def room_members_in(
        self, conn: AsyncConnection | None, room_id: str, states: Sequence[str] = ("join",)
    ) -> list[str]:
        rows = await self.db.fetch(
            "SELECT user_id FROM memberships WHERE room_id = $1 AND membership = ANY($2::text[])",
            room_id,
            list(states),
            conn=conn,
        )
        return [r[0] for r in rows]

    async def heroes(self, room_id: str, exclude: str, limit: int = 5) -> list[str]:
        """The first `limit` joined or invited members other than `exclude`, in code point order."""
        rows = await self.db.fetch(
            "SELECT user_id FROM memberships WHERE room_id = $1 AND membership IN ('join', 'invite') "
            f"AND user_id <> $2 ORDER BY user_id{self.db.dialect.code_point_collation} LIMIT $3",
            room_id,
            exclude,
            limit,
        )
        return [r[0] for r in rows]

    async def member_counts(self, room_id: str) -> dict[str, int]:
        rows = await self.db.fetch(
            "SELECT membership, count(*) FROM memberships WHERE room_id = $1 GROUP BY membership", room_id
        )
        return {r[0]: int(r[1]) for r in rows}

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
            .where(
                events.c.type == "m.room.member",
                events.c.state_key == user_id,
                events.c.stream > after,
                events.c.stream <= upto,
            )
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
            .where(
                e2.c.type == "m.room.member", e2.c.state_key == user_id, e2.c.room_id.in_(room_ids), e2.c.stream <= pos
            )
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
            .where(
                m1.c.user_id == user_a,
                m2.c.user_id == user_b,
                m1.c.membership == "join",
                m2.c.membership.in_(("join", "invite")),
            )
            .limit(1)
        )
        async with self.db.read() as conn:
            return (await conn.execute(q)).first() is not None

    async def relations(
        self,
        event_id: str,
        rel_type: str | None = None,
        limit: int = 50,
        before: int | None = None,
        after: int | None = None,
        backwards: bool = True,
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
        rows = await self.db.fetch(
            f"SELECT {EV} FROM events e WHERE e.relates_to IS NOT NULL AND e.relates_to = ANY($1::text[]) "
            "AND e.rel_type IN ('m.replace', 'm.thread') ORDER BY e.stream",
            sorted(set(event_ids)),
        )
        return [_tuple_event(r) for r in rows]

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
