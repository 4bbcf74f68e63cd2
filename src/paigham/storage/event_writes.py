"""What the event writer (services/writer.py) reads and writes inside its transaction: the room's
tip and state in one read, new rooms, events, current state, memberships, redactions and
transaction IDs. The send path: its statements are SQL text, counted per send (docs/decisions.md).

Writes take the caller's transaction as their first argument; nothing here commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.clock import now_ms
from paigham.domain.stored_event import StoredEvent
from paigham.storage.database import Database
from paigham.storage.event_rows import EV, INSERT_COLUMNS, INSERT_EVENT, NO_EV, event_from_row, insert_values
from paigham.storage.events import RoomRow, state_events_at
from paigham.storage.push_actions import PushRoomRow, PushUserRow, insert_push_actions
from paigham.storage.schema import events, rooms
from paigham.storage.watermark import NO_FLUSH_WAIT
from paigham.types import JsonDict

_decode = msgspec.json.decode
_encode = msgspec.json.encode

# A transaction ID as the writer keys it: (user, device, scope, transaction ID).
TxnKey = tuple[str, str, str, str]


@dataclass
class RoomForWrite:
    room: RoomRow
    tip: tuple[str, int] | None  # (event ID, depth) of the room's newest event
    txn_result: str | None  # the event ID an already-used transaction ID produced
    state: dict[tuple[str, str], StoredEvent] = field(default_factory=dict)
    joined_count: int = 0  # how many members are joined
    # The joined members with push rules of their own → their rules (every other member has the
    # server defaults): what the push evaluation of the event needs, however big the room.
    push_rules: dict[str, JsonDict] = field(default_factory=dict)


@dataclass(slots=True)
class NewMessage:
    """A non-state event ready to be written (its `stream` is set when it is)."""

    event: StoredEvent
    relates_to: str | None
    rel_type: str | None
    txn: TxnKey | None
    push_room: PushRoomRow | None
    push_own: list[PushUserRow]


def members_with_rules(db: Database) -> str:
    """FROM … WHERE of the joined members of room $1 with push rules of their own: read on the partial
    index memberships_room_rules, whatever the room's size (tests/api/test_large_rooms.py checks both
    plans). SQLite is told to (it would rather use memberships_room, two equalities, and filter)."""
    indexed = db.per_engine(sqlite=" INDEXED BY memberships_room_rules", postgresql="")
    return (
        f"FROM memberships m{indexed} JOIN push_rules p ON p.user_id = m.user_id "
        "WHERE m.room_id = $1 AND m.own_push_rules AND m.membership = 'join'"
    )


class EventWriteStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._insert_messages = db.per_engine(sqlite=_insert_messages_sqlite, postgresql=_insert_messages_pg)
        self._members_with_rules = members_with_rules(db)
        self._state_events, self._pairs_args = state_events_at(db, 2, 7)  # the (type, state key)s, as $2 and $7
        self._txn_lookup = db.per_engine(sqlite=_TXNS_SQLITE, postgresql=_TXNS_PG)

    async def room_for_write(
        self, conn: AsyncConnection, room_id: str, keys: Sequence[tuple[str, str]], txn: TxnKey | None
    ) -> RoomForWrite | None:
        """What a write to an existing room reads first, in one statement: the room and how many are
        joined, its tip, the result of this transaction ID if it was used, the current state at the
        given (type, state key)s, and the joined members with push rules of their own with those rules
        (what the push evaluation of the event needs; the others have the defaults). Nothing here
        grows with the room's size. None: no such room."""
        wanted = set(keys)
        pairs = self._pairs_args(sorted(wanted))
        # Two kinds of row: the room's (one per state event found, NULL member columns) and one per
        # joined member with rules of their own (NULL room and event columns).
        rows = await self.db.fetch(
            f"SELECT r.room_version, r.creator, r.is_public, r.joined_members, t.event_id, t.depth, x.result, "
            f"NULL, NULL, {EV} FROM rooms r "
            # (the tip as ORDER BY … LIMIT 1: max() read the room's every event when the planner thought it small)
            "LEFT JOIN events t ON t.stream = "
            "(SELECT stream FROM events WHERE room_id = $1 ORDER BY stream DESC LIMIT 1) "
            "LEFT JOIN event_txns x ON x.user_id = $3 AND x.device_id = $4 AND x.scope = $5 AND x.txn_id = $6 "
            f"LEFT JOIN ({self._state_events}) ON TRUE WHERE r.room_id = $1 "
            f"UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, m.user_id, p.json, {NO_EV} "
            + self._members_with_rules,
            room_id,
            pairs[0],
            *(txn or (None, None, None, None)),
            pairs[1],
            conn=conn,
        )
        found: RoomForWrite | None = None
        push_rules: dict[str, JsonDict] = {}
        state: dict[tuple[str, str], StoredEvent] = {}
        for version, creator, is_public, joined, tip_id, tip_depth, txn_result, member, rules, *event in rows:
            if member is not None:
                push_rules[member] = _decode(rules)
                continue
            if found is None:
                tip = (tip_id, int(tip_depth)) if tip_id is not None else None
                found = RoomForWrite(RoomRow(room_id, version, creator, bool(is_public)), tip, txn_result)
                found.joined_count = int(joined)
            if event[0] is not None and (key := (event[3], event[4] or "")) in wanted:
                state[key] = event_from_row(event)
        if found is not None:
            found.push_rules, found.state = push_rules, state
        return found

    async def insert_room(self, conn: AsyncConnection, room: RoomRow, now: int) -> None:
        await conn.execute(
            rooms.insert().values(
                room_id=room.room_id,
                room_version=room.room_version,
                creator=room.creator,
                created_ts=now,
                is_public=room.is_public,
            )
        )

    # -- events ---------------------------------------------------------------------------
    async def insert_event(
        self,
        conn: AsyncConnection,
        stream: int,
        event_id: str,
        pdu: JsonDict,
        *,
        unsigned: JsonDict | None,
        txn_id: str | None,
        device_id: str | None,
        relates_to: str | None,
        rel_type: str | None,
    ) -> None:
        event = StoredEvent(
            stream=stream,
            event_id=event_id,
            room_id=pdu["room_id"],
            type=pdu["type"],
            state_key=pdu.get("state_key"),
            sender=pdu["sender"],
            origin_server_ts=pdu["origin_server_ts"],
            pdu=pdu,
            unsigned=unsigned,
            redacted_by=None,
            txn_id=txn_id,
            device_id=device_id,
        )
        await self.db.run(INSERT_EVENT, *insert_values(event, relates_to, rel_type), conn=conn)

    async def insert_messages(self, conn: AsyncConnection, messages: Sequence[NewMessage]) -> None:
        """Append non-state events at the next stream positions, in order, with their transaction
        IDs and push actions (the rows' stream is filled in here), and set each event's `stream`.
        On PostgreSQL one statement, so the stream counter's row — which orders every writer of every
        room — is held from here to commit only, however many messages a batch has; on SQLite the
        same rows statement by statement."""
        if messages:
            await self._insert_messages(self.db, conn, messages)

    async def insert_state_events(
        self, conn: AsyncConnection, written: Sequence[tuple[StoredEvent, str | None, str | None]]
    ) -> None:
        """Write many state events of one room at once — each with the event it relates to and how
        (or None, None) —: their rows, current state and memberships."""
        await self.db.run_many(INSERT_EVENT, [insert_values(e, to, rel) for e, to, rel in written], conn=conn)
        evs = [e for e, _, _ in written]
        last = {(e.room_id, e.type, e.state_key): e for e in evs}  # the newest per key wins
        await self.db.run_many(
            _SET_CURRENT_STATE,
            [(e.room_id, e.type, e.state_key, e.event_id, e.stream) for e in last.values()],
            conn=conn,
        )
        members = [
            (e.state_key, e.room_id, str(e.content.get("membership")), e.event_id, e.stream)
            for e in last.values()
            if e.type == "m.room.member"
        ]
        await self.db.run_many(_COUNT_MEMBERSHIP, [(*m[:3], m[4]) for m in members], conn=conn)
        await self.db.run_many(_SET_MEMBERSHIP, members, conn=conn)

    async def set_current_state(
        self, conn: AsyncConnection, room_id: str, type_: str, state_key: str, event_id: str, stream: int
    ) -> None:
        await self.db.run(_SET_CURRENT_STATE, room_id, type_, state_key, event_id, stream, conn=conn)

    async def set_membership(
        self, conn: AsyncConnection, user_id: str, room_id: str, membership: str, event_id: str, stream: int
    ) -> None:
        """The member's row, and the room's counts of joined and invited members moved with it."""
        await self.db.run(_COUNT_MEMBERSHIP, user_id, room_id, membership, stream, conn=conn)
        await self.db.run(_SET_MEMBERSHIP, user_id, room_id, membership, event_id, stream, conn=conn)

    async def mark_redacted(self, conn: AsyncConnection, event_id: str, redacted_by: str) -> None:
        await conn.execute(update(events).where(events.c.event_id == event_id).values(redacted_by=redacted_by))

    # -- transaction IDs ------------------------------------------------------------------
    async def put_txn(
        self, conn: AsyncConnection, user_id: str, device_id: str, scope: str, txn_id: str, result: str, now: int
    ) -> None:
        await self.db.run(_PUT_TXN, user_id, device_id, scope, txn_id, result, now, conn=conn)

    async def insert_push_actions(
        self,
        conn: AsyncConnection,
        actions: Sequence[tuple[int, PushRoomRow | None, Sequence[PushUserRow]]],
    ) -> None:
        """The push actions of events other than messages (those come with `insert_messages`), as
        (stream, shared row, own rows) per event: each event's rows at its stream position (the rows'
        own stream slot is a placeholder). See schema.room_push_actions."""
        await self.db.run_many(
            "INSERT INTO room_push_actions (room_id, stream, sender, thread_id, highlight) VALUES ($1, $2, $3, $4, $5)",
            [tuple(r._replace(stream=stream)) for stream, r, _ in actions if r is not None],
            conn=conn,
        )
        await self.db.run_many(
            "INSERT INTO event_push_actions (user_id, room_id, stream, thread_id, notify, highlight) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            [tuple(r._replace(stream=stream)) for stream, _, own in actions for r in own],
            conn=conn,
        )

    async def txn_results(self, conn: AsyncConnection, keys: Sequence[TxnKey]) -> dict[TxnKey, str]:
        """The event ID each of these transaction IDs produced, for those already used."""
        if not keys:
            return {}
        users, devices, scopes, txn_ids = (list(c) for c in zip(*keys, strict=True))
        rows = await self.db.fetch(self._txn_lookup, users, devices, scopes, txn_ids, conn=conn)
        wanted = set(keys)
        return {k: r[4] for r in rows if (k := (r[0], r[1], r[2], r[3])) in wanted}


# The rows of these transaction keys ($1..$4: users, devices, scopes, transaction IDs, one key per
# index). PostgreSQL probes the primary key once per key, in a loop: matching users and transaction
# IDs apart read every transaction of the batch's senders — all they ever sent — and a join of the
# keys was hashed over the whole table whenever the statistics said it was small (a sequential scan
# per batch, growing with the table: docs/decisions.md). SQLite takes the users' range of the key
# and filters (the devices and scopes are not needed to match).
_TXNS_PG = (
    "SELECT k.u, k.d, k.s, k.t, x.result FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) "
    "AS k(u, d, s, t) CROSS JOIN LATERAL (SELECT x.result FROM event_txns x WHERE x.user_id = k.u "
    "AND x.device_id = k.d AND x.scope = k.s AND x.txn_id = k.t LIMIT 1) x"
)
_TXNS_SQLITE = (
    "SELECT user_id, device_id, scope, txn_id, result FROM event_txns WHERE user_id = ANY($1::text[]) "
    "AND txn_id = ANY($4::text[])"
)


# -- writing a batch of messages: one function per engine, chosen by EventWriteStore once -----------
async def _insert_messages_sqlite(db: Database, conn: AsyncConnection, messages: Sequence[NewMessage]) -> None:
    """The rows statement by statement (SQLite runs in-process: a statement costs no round trip)."""
    n = len(messages)
    base = await db.next_position(conn, n) - n
    for i, m in enumerate(messages, 1):
        stream = m.event.stream = base + i
        await db.run(INSERT_EVENT, *insert_values(m.event, m.relates_to, m.rel_type), conn=conn)
        if m.txn is not None:
            await db.run(_PUT_TXN, *m.txn, m.event.event_id, now_ms(), conn=conn)
        room = m.push_room._replace(stream=stream) if m.push_room is not None else None
        await insert_push_actions(db, conn, room, [r._replace(stream=stream) for r in m.push_own])


async def _insert_messages_pg(db: Database, conn: AsyncConnection, messages: Sequence[NewMessage]) -> None:
    """Everything in one statement (`_INSERT_MESSAGES`): each argument is one column's array."""
    evs = [m.event for m in messages]
    txns = [(m.txn, m.event.event_id) for m in messages if m.txn is not None]
    room_rows = [(i, r) for i, m in enumerate(messages, 1) if (r := m.push_room) is not None]
    own_rows = [(i, r) for i, m in enumerate(messages, 1) for r in m.push_own]
    db.took_positions(conn)
    row = await db.fetchrow(
        _INSERT_MESSAGES,
        len(messages),
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
        [i for i, _ in room_rows],
        [r.room_id for _, r in room_rows],
        [r.sender for _, r in room_rows],
        [r.thread_id for _, r in room_rows],
        [r.highlight for _, r in room_rows],
        [i for i, _ in own_rows],
        [r.user_id for _, r in own_rows],
        [r.room_id for _, r in own_rows],
        [r.thread_id for _, r in own_rows],
        [r.notify for _, r in own_rows],
        [r.highlight for _, r in own_rows],
        conn=conn,
    )
    assert row is not None
    for i, m in enumerate(messages, 1):
        m.event.stream = int(row[0]) + i


# PostgreSQL: non-state events, their transaction IDs and their push actions at the next positions
# (base + 1 … base + n, in order), in one statement: data-modifying CTEs all run, once, whether or
# not the final SELECT reads them. Push-action rows name their message by its ordinal (1 … n).
# The commit does not wait for the WAL flush (NO_FLUSH_WAIT): `Database.write` waits for the flush
# barrier after it instead, with the counter's row already released (storage/watermark.py).
_INSERT_MESSAGES = (
    f"WITH c AS MATERIALIZED ({NO_FLUSH_WAIT}), "
    "pos AS (UPDATE stream_counter SET pos = pos + $1 FROM c WHERE id = 1 RETURNING pos - $1 AS base), "
    "m AS (SELECT pos.base + u.i AS stream, u.* FROM pos, unnest($2::text[], $3::text[], $4::text[], $5::text[], "
    "$6::bigint[], $7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[]) WITH ORDINALITY "
    "AS u(event_id, room_id, type, sender, ts, depth, json, txn_id, device_id, relates_to, rel_type, i)), "
    f"ev AS (INSERT INTO events ({INSERT_COLUMNS}) SELECT stream, event_id, room_id, type, NULL, sender, ts, "
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

_PUT_TXN = (
    "INSERT INTO event_txns (user_id, device_id, scope, txn_id, result, created_ts) VALUES ($1, $2, $3, $4, $5, $6)"
)
_SET_CURRENT_STATE = (
    "INSERT INTO current_state (room_id, type, state_key, event_id, stream) VALUES ($1, $2, $3, $4, $5) "
    "ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id, stream = excluded.stream"
)
# The room's member counts as a member's membership becomes $3 by the event at stream $4 (run before
# the member's row is written: the subqueries read the membership it replaces).
_COUNT_MEMBERSHIP = (
    "UPDATE rooms SET members_stream = $4, "
    "joined_members = joined_members + (CASE WHEN $3 = 'join' THEN 1 ELSE 0 END) - (SELECT count(*) FROM "
    "memberships WHERE user_id = $1 AND room_id = $2 AND membership = 'join'), "
    "invited_members = invited_members + (CASE WHEN $3 = 'invite' THEN 1 ELSE 0 END) - (SELECT count(*) FROM "
    "memberships WHERE user_id = $1 AND room_id = $2 AND membership = 'invite') WHERE room_id = $2"
)
# A member's row after a membership event; `joined_stream` moves only when the member (re)joins, not
# on a join → join event (a display-name or avatar change). `own_push_rules`: see schema.memberships.
_SET_MEMBERSHIP = (
    "INSERT INTO memberships (user_id, room_id, membership, event_id, stream, joined_stream, forgotten, "
    "own_push_rules) VALUES ($1::text, $2, $3, $4, $5, $5, FALSE, "
    "EXISTS (SELECT 1 FROM push_rules WHERE user_id = $1::text)) "
    "ON CONFLICT (user_id, room_id) DO UPDATE SET "
    "membership = excluded.membership, event_id = excluded.event_id, stream = excluded.stream, "
    "joined_stream = CASE WHEN memberships.membership = 'join' AND excluded.membership = 'join' "
    "THEN memberships.joined_stream ELSE excluded.stream END, forgotten = FALSE, "
    "own_push_rules = excluded.own_push_rules"
)
