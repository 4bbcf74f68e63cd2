"""Rooms, events, room state, memberships, relations and threads, as everyone reads them (the
writer's own statements are in storage/event_writes.py).

History is linear on one server (every event's prev_event is the room's previous tip), so the state
at any stream position is "the newest state event per (type, state_key) at or before it".

Reads take an optional `conn`: given, they run inside that transaction (a writer's, say); otherwise
on a fresh read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgspec
from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.domain.stored_event import StoredEvent
from paigham.storage.database import Database
from paigham.storage.event_rows import (
    EV,
    EVENT_TABLE_COLUMNS,
    ClientStateEvents,
    client_event_from_row,
    event_from_row,
)
from paigham.storage.schema import events, memberships, rooms

_decode = msgspec.json.decode
_MAX_POS = 2**62


@dataclass(frozen=True, slots=True)
class RoomRow:
    room_id: str
    room_version: str
    creator: str
    is_public: bool


class Membership(NamedTuple):
    membership: str  # join, invite, leave, ban or knock
    stream: int  # of the membership event
    forgotten: bool


# Every state type but members, as two index ranges of events_room_state (`<>` would scan the members).
_NOT_MEMBERS = " AND (type < 'm.room.member' OR type > 'm.room.member')"


PairsArgs = Callable[[Sequence[tuple[str, str]]], tuple[Any, Any]]


def state_events_at(db: Database, a: int, b: int) -> tuple[str, PairsArgs]:
    """A FROM item: the events (as `e`) of room $1's current state at exact (type, state key) pairs
    (none where the room has none), the pairs passed as the parameters $a and $b; and how the pairs
    become those two arguments. One primary-key probe of current_state per pair, then one of events
    per event found, in subqueries no planner can turn around: `type = ANY(…) AND state_key = ANY(…)`,
    or a join of the pairs, let PostgreSQL read every member event of the room and filter (2,000 rows
    for one join into a room of 2,000: tests/api/test_large_rooms.py); and a plain join to `events`
    let it hash the whole table whenever its statistics said the table was small (a fresh database
    whose tables were never analyzed: every write of the benchmark read all events so far)."""
    probe = "SELECT c.event_id FROM current_state c WHERE c.room_id = $1 AND c.type = k.t AND c.state_key = k.s"
    return db.per_engine(
        sqlite=(  # one JSON list of pairs in $b ($a is bound and unused); SQLite only joins by loops
            f"(SELECT ({probe}) AS event_id FROM (SELECT json_extract(value, '$[0]') AS t, "
            f"json_extract(value, '$[1]') AS s FROM json_each(${b})) k) cs JOIN events e ON e.event_id = cs.event_id",
            lambda pairs: ("", list(pairs)),
        ),
        postgresql=(
            f"unnest(${a}::text[], ${b}::text[]) AS k(t, s) CROSS JOIN LATERAL {by_key('e.event_id', f'({probe})')}",
            lambda pairs: ([t for t, _ in pairs], [k for _, k in pairs]),
        ),
    )


def by_key(column: str, value: str) -> str:
    """PostgreSQL: the subquery of the one event whose `column` (a unique key of events) is `value`
    (an expression of the outer row), for `CROSS JOIN LATERAL`: a loop over the outer rows probing the
    index. The LIMIT keeps the planner from pulling the subquery up into a join it may hash."""
    return f"(SELECT * FROM events e WHERE {column} = {value} LIMIT 1) e"


def rooms_in(db: Database, param: str) -> str:
    """A FROM item: the room IDs of the list parameter `param`, as `r(room_id)` — the outer loop of a
    read of many rooms, each probed in its indexes whatever the tables' statistics say (a join to
    `rooms` or a `room_id = ANY(…)` filter let PostgreSQL scan whole tables while they were small, and
    keep that plan: see `state_events_at`)."""
    return db.per_engine(
        sqlite=f"(SELECT value AS room_id FROM json_each({param})) r",
        postgresql=f"unnest({param}::text[]) AS r(room_id)",
    )


def state_many(db: Database) -> str:
    """Rooms $1's current state of types $2 and member events of users $3 (as `e`'s columns). On
    PostgreSQL each room is two primary-key ranges of current_state in a subquery the planner keeps
    as a loop (OFFSET 0), and each event one probe of `events`."""
    return db.per_engine(
        sqlite=f"SELECT {EV} FROM current_state c JOIN events e ON e.event_id = c.event_id "
        "WHERE c.room_id = ANY($1::text[]) AND (c.type = ANY($2::text[]) "
        "OR (c.type = 'm.room.member' AND c.state_key = ANY($3::text[])))",
        postgresql=f"SELECT {EV} FROM {rooms_in(db, '$1')} CROSS JOIN LATERAL (SELECT c.event_id FROM current_state c "
        "WHERE c.room_id = r.room_id AND c.type = ANY($2::text[]) UNION ALL SELECT c.event_id FROM current_state c "
        "WHERE c.room_id = r.room_id AND c.type = 'm.room.member' AND c.state_key = ANY($3::text[]) OFFSET 0) c "
        f"CROSS JOIN LATERAL {by_key('e.event_id', 'c.event_id')}",
    )


class EventStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._client_state = ClientStateEvents()
        at_pairs, self._pairs_args = state_events_at(db, 2, 3)
        # The newest event of type $2 at or before $4 for each state key in $3: one backward probe per key
        # (a GROUP BY over `state_key = ANY(…)` read every member event of a big room on PostgreSQL).
        keys = db.per_engine(
            sqlite="(SELECT value AS k FROM json_each($3)) AS k", postgresql="unnest($3::text[]) AS k(k)"
        )
        newest = (
            "SELECT stream FROM events WHERE room_id = $1 AND type = $2 AND state_key IS NOT NULL "
            "AND state_key = k.k AND stream <= $4 ORDER BY stream DESC LIMIT 1"
        )
        self._state_at_keys = db.per_engine(
            sqlite=f"SELECT {EV} FROM (SELECT ({newest}) AS m FROM {keys}) s JOIN events e ON e.stream = s.m",
            postgresql=f"SELECT {EV} FROM {keys} CROSS JOIN LATERAL {by_key('e.stream', f'({newest})')}",
        )
        self._state_at = f"SELECT {EV} FROM {at_pairs}"
        rooms_r = rooms_in(db, "$1")
        # Events by ID: on PostgreSQL each ID probed in the unique index (`event_id = ANY(…)` was read as
        # a scan of all events by a generic plan made while the table was small).
        self._by_ids = db.per_engine(
            sqlite=f"SELECT {EV} FROM events e WHERE e.event_id = ANY($1::text[])",
            postgresql=f"SELECT {EV} FROM unnest($1::text[]) AS k(id) "
            f"CROSS JOIN LATERAL {by_key('e.event_id', 'k.id')}",
        )
        self._state_many = state_many(db)
        counts = (
            "(SELECT joined_members FROM rooms x WHERE x.room_id = r.room_id), "
            "(SELECT invited_members FROM rooms x WHERE x.room_id = r.room_id)"
        )
        self._counts_many = f"SELECT r.room_id, {counts} FROM {rooms_r}"
        self._state_and_counts_many = (
            f"SELECT {EV}, NULL, NULL FROM ({self._state_many}) e UNION ALL SELECT NULL, NULL, r.room_id, "
            f"{', '.join(['NULL'] * 9)}, {counts} FROM {rooms_r}"
        )
        self._bump_stamps = (
            "SELECT r.room_id, (SELECT e.stream FROM events e WHERE e.room_id = r.room_id "
            f"AND e.type = ANY($2::text[]) ORDER BY e.stream DESC LIMIT 1) FROM {rooms_r}"
        )
        # The newest $3 events of each room at or before $2, and their m.replace and m.thread relations.
        relations = "e.rel_type IN ('m.replace', 'm.thread')"
        self._recent_many = db.per_engine(
            # SQLite has no LATERAL: each room's window starts after its ($3+1)-th newest event, found by
            # one index walk, and is read as a range.
            sqlite=f"WITH recent AS MATERIALIZED (SELECT {EV} FROM events e JOIN (SELECT r.room_id AS rid, "
            "coalesce((SELECT e2.stream FROM events e2 WHERE e2.room_id = r.room_id AND e2.stream <= $2 "
            f"ORDER BY e2.stream DESC LIMIT 1 OFFSET $3), -1) AS lo FROM {rooms_r}) b "
            "ON e.room_id = b.rid AND e.stream > b.lo AND e.stream <= $2) "
            f"SELECT 0, {EV} FROM recent e UNION ALL SELECT 1, {EV} FROM events e WHERE e.relates_to IS NOT NULL "
            f"AND e.relates_to IN (SELECT event_id FROM recent) AND {relations} ORDER BY 1, 2",
            postgresql=f"WITH recent AS MATERIALIZED (SELECT e.* FROM {rooms_r} CROSS JOIN LATERAL (SELECT {EV} "
            "FROM events e WHERE e.room_id = r.room_id AND e.stream <= $2 ORDER BY e.stream DESC LIMIT $3) e) "
            f"SELECT 0, {EV} FROM recent e UNION ALL SELECT 1, {EV} FROM recent w CROSS JOIN LATERAL "
            f"(SELECT * FROM events e WHERE e.relates_to = w.event_id AND {relations} OFFSET 0) e ORDER BY 1, 2",
        )
        collate = db.dialect.code_point_collation
        self._heroes_many = db.per_engine(
            sqlite="SELECT room_id, user_id FROM (SELECT room_id, user_id, row_number() OVER (PARTITION BY room_id "
            f"ORDER BY user_id{collate}) AS n FROM memberships WHERE room_id = ANY($1::text[]) "
            f"AND membership IN ('join', 'invite') AND user_id <> $2) h WHERE n <= $3 "
            f"ORDER BY room_id, user_id{collate}",
            postgresql=f"SELECT r.room_id, h.user_id FROM {rooms_r} CROSS JOIN LATERAL (SELECT user_id "
            "FROM memberships m WHERE m.room_id = r.room_id AND m.membership IN ('join', 'invite') AND m.user_id <> $2 "
            f"ORDER BY m.user_id{collate} LIMIT $3) h ORDER BY r.room_id, h.user_id{collate}",
        )

    # -- rooms ----------------------------------------------------------------------------
    async def get_room(self, room_id: str) -> RoomRow | None:
        row = await self.db.fetchrow(
            "SELECT room_id, room_version, creator, is_public FROM rooms WHERE room_id = $1", room_id
        )
        return RoomRow(row[0], row[1], row[2], bool(row[3])) if row else None

    async def set_room_public(self, room_id: str, public: bool) -> None:
        async with self.db.write() as conn:
            await conn.execute(update(rooms).where(rooms.c.room_id == room_id).values(is_public=public))

    async def public_rooms(self) -> list[str]:
        async with self.db.read() as conn:
            rows = (await conn.execute(select(rooms.c.room_id).where(rooms.c.is_public.is_(True)))).all()
        return [r.room_id for r in rows]

    # -- events ---------------------------------------------------------------------------
    async def get_event(self, event_id: str, *, conn: AsyncConnection | None = None) -> StoredEvent | None:
        evs = await self.get_events([event_id], conn=conn)
        return evs.get(event_id)

    async def get_events(
        self, event_ids: Sequence[str], *, conn: AsyncConnection | None = None
    ) -> dict[str, StoredEvent]:
        if not event_ids:
            return {}
        rows = await self.db.fetch(self._by_ids, sorted(set(event_ids)), conn=conn)
        return {r[1]: event_from_row(r) for r in rows}

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
        return [event_from_row(r) for r in rows]

    async def recent_with_relations(
        self, room_id: str, *, after: int | None, upto: int, limit: int
    ) -> tuple[list[StoredEvent], list[StoredEvent]]:
        """The newest `limit` events with after < stream <= upto (oldest first), and the m.replace and
        m.thread relations of those events (oldest first, as `relation_summaries` gives them) —
        one read for what a /sync timeline and its bundled aggregations need."""
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
        timeline = [event_from_row(r[1:]) for r in rows if r[0] == 0]
        return timeline, [event_from_row(r[1:]) for r in rows if r[0] == 1]

    async def bump_stamps(self, room_ids: Sequence[str], types: Sequence[str]) -> dict[str, int]:
        """room → the stream of its newest event of one of `types` (rooms without one left out): the
        recency order of sliding sync's room lists. Each room is one backward index walk from its
        newest event, which is nearly always a message."""
        if not room_ids:
            return {}
        rows = await self.db.fetch(self._bump_stamps, list(room_ids), list(types))
        return {r[0]: int(r[1]) for r in rows if r[1] is not None}

    async def recent_many(
        self, room_ids: Sequence[str], *, upto: int, limit: int
    ) -> dict[str, tuple[list[StoredEvent], list[StoredEvent]]]:
        """room → (its newest `limit` events at or before `upto`, oldest first; their m.replace and
        m.thread relations, oldest first) for many rooms in one read: each room's window starts after
        its (limit+1)-th newest event, found by one index walk. For clients only: the events' `pdu`
        holds the keys the client format shows (`client_event_from_row`)."""
        if not room_ids:
            return {}
        rows = await self.db.fetch(self._recent_many, list(room_ids), upto, limit)
        out: dict[str, tuple[list[StoredEvent], list[StoredEvent]]] = {r: ([], []) for r in room_ids}
        for r in rows:
            ev = client_event_from_row(r[1:])
            out[ev.room_id][r[0]].append(ev)
        return out

    async def current_state_many(
        self, room_ids: Sequence[str], types: Sequence[str], member_keys: Sequence[str]
    ) -> dict[str, list[StoredEvent]]:
        """room → its current state events of `types`, and its m.room.member events for `member_keys`:
        what sliding sync sends for many rooms at once, in one read."""
        if not room_ids:
            return {}
        rows = await self.db.fetch(self._state_many, list(room_ids), list(types), list(member_keys))
        out: dict[str, list[StoredEvent]] = {r: [] for r in room_ids}
        for r in rows:
            ev = event_from_row(r)
            out[ev.room_id].append(ev)
        return out

    async def current_state_and_counts_many(
        self, room_ids: Sequence[str], types: Sequence[str], member_keys: Sequence[str]
    ) -> tuple[dict[str, list[StoredEvent]], dict[str, dict[str, int]]]:
        """`current_state_many` and `member_counts_many` in one read (a room list's new rooms). For
        clients only: the events' `pdu` holds the keys the client format shows (`client_event_from_row`),
        and they are shared with other reads (`ClientStateEvents`): not to be changed."""
        if not room_ids:
            return {}, {}
        rows = await self.db.fetch(self._state_and_counts_many, list(room_ids), list(types), list(member_keys))
        state: dict[str, list[StoredEvent]] = {r: [] for r in room_ids}
        counts: dict[str, dict[str, int]] = {r: {} for r in room_ids}
        for r in rows:
            if r[1] is None:
                if r[12] is not None:  # (none for a room that does not exist)
                    counts[r[2]] = {"join": int(r[12]), "invite": int(r[13])}
            else:
                ev = self._client_state.from_row(r)
                state[ev.room_id].append(ev)
        return state, counts

    async def heroes_many(self, room_ids: Sequence[str], exclude: str, limit: int = 5) -> dict[str, list[str]]:
        """`heroes` for many rooms in one read."""
        if not room_ids:
            return {}
        rows = await self.db.fetch(self._heroes_many, list(room_ids), exclude, limit)
        out: dict[str, list[str]] = {r: [] for r in room_ids}
        for room_id, user_id in rows:
            out[room_id].append(user_id)
        return out

    async def member_counts_many(self, room_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """room → {"join": joined, "invite": invited}: the counts kept with the room (O(1) each)."""
        if not room_ids:
            return {}
        rows = await self.db.fetch(self._counts_many, list(room_ids))
        out: dict[str, dict[str, int]] = {r: {} for r in room_ids}
        for room_id, joined, invited in rows:
            if joined is not None:  # (none for a room that does not exist)
                out[room_id] = {"join": int(joined), "invite": int(invited)}
        return out

    # -- state ----------------------------------------------------------------------------
    async def state_for_keys(
        self, room_id: str, keys: Iterable[tuple[str, str]], *, conn: AsyncConnection | None = None
    ) -> dict[tuple[str, str], StoredEvent]:
        """The current state at the given (type, state key)s."""
        wanted = set(keys)
        if not wanted:
            return {}
        rows = await self.db.fetch(self._state_at, room_id, *self._pairs_args(sorted(wanted)), conn=conn)
        out: dict[tuple[str, str], StoredEvent] = {}
        for r in rows:
            if (r[3], r[4]) in wanted:
                out[(r[3], r[4])] = event_from_row(r)
        return out

    async def current_state(self, room_id: str, types: Sequence[str] | None = None) -> list[StoredEvent]:
        sql = f"SELECT {EV} FROM current_state c JOIN events e ON e.event_id = c.event_id WHERE c.room_id = $1"
        if types is None:
            rows = await self.db.fetch(sql, room_id)
        else:
            rows = await self.db.fetch(sql + " AND c.type = ANY($2::text[])", room_id, list(types))
        return [event_from_row(r) for r in rows]

    async def current_state_event(self, room_id: str, type_: str, state_key: str) -> StoredEvent | None:
        found = await self.state_for_keys(room_id, [(type_, state_key)])
        return found.get((type_, state_key))

    async def state_at(
        self, room_id: str, stream: int, types: Sequence[str] | None = None, *, members: bool = True
    ) -> list[StoredEvent]:
        """The room state after the event at `stream` (inclusive); without its member events if not
        `members` (a lazy-loading sync of a big room reads the few it needs with `state_at_keys`)."""
        where = "" if members else _NOT_MEMBERS
        if types is None:
            rows = await self.db.fetch(
                f"SELECT {EV} FROM events e JOIN (SELECT max(stream) AS m FROM events WHERE room_id = $1 "
                f"AND state_key IS NOT NULL AND stream <= $2{where} GROUP BY type, state_key) s ON s.m = e.stream",
                room_id,
                stream,
            )
        else:
            rows = await self.db.fetch(
                f"SELECT {EV} FROM events e JOIN (SELECT max(stream) AS m FROM events WHERE room_id = $1 "
                f"AND state_key IS NOT NULL AND stream <= $2 AND type = ANY($3::text[]){where} "
                "GROUP BY type, state_key) s ON s.m = e.stream",
                room_id,
                stream,
                list(types),
            )
        return [event_from_row(r) for r in rows]

    async def state_at_keys(
        self, room_id: str, stream: int, type_: str, state_keys: Sequence[str]
    ) -> list[StoredEvent]:
        """The newest event of type `type_` for each of `state_keys` at or before `stream` (e.g. the
        member events of a few senders, without reading every member of a big room)."""
        if not state_keys:
            return []
        rows = await self.db.fetch(self._state_at_keys, room_id, type_, sorted(set(state_keys)), stream)
        return [event_from_row(r) for r in rows]

    async def state_changes(
        self, room_id: str, after: int, upto: int, *, members_of: Sequence[str] | None = None
    ) -> list[StoredEvent]:
        """State events in (after, upto], oldest first; with `members_of`, of the member events only
        those of these users (a lazy-loading sync after a join storm reads the few it shows)."""
        if members_of is None:
            rows = await self.db.fetch(
                f"SELECT {EV} FROM events e WHERE e.room_id = $1 AND e.state_key IS NOT NULL AND e.stream > $2 "
                "AND e.stream <= $3 ORDER BY e.stream",
                room_id,
                after,
                upto,
            )
        else:
            rows = await self.db.fetch(
                f"SELECT {EV} FROM events e WHERE e.room_id = $1 AND e.state_key IS NOT NULL AND e.stream > $2 "
                "AND e.stream <= $3 AND (e.type <> 'm.room.member' OR e.state_key = ANY($4::text[])) "
                "ORDER BY e.stream",
                room_id,
                after,
                upto,
                sorted(set(members_of)),
            )
        return [event_from_row(r) for r in rows]

    async def members_changed(self, room_id: str, after: int, upto: int) -> bool:
        """Whether any member event is in (after, upto]."""
        row = await self.db.fetchrow(
            "SELECT 1 FROM events WHERE room_id = $1 AND stream > $2 AND stream <= $3 AND state_key IS NOT NULL "
            "AND type = 'm.room.member' LIMIT 1",
            room_id,
            after,
            upto,
        )
        return row is not None

    async def state_history(self, room_id: str, type_: str, state_key: str = "") -> list[StoredEvent]:
        """Every event the room had at (type, state key), oldest first."""
        q = (
            select(*EVENT_TABLE_COLUMNS)
            .where(events.c.room_id == room_id, events.c.type == type_, events.c.state_key == state_key)
            .order_by(events.c.stream)
        )
        async with self.db.read() as conn:
            return [event_from_row(r) for r in (await conn.execute(q)).all()]

    # -- memberships ----------------------------------------------------------------------
    async def membership(self, user_id: str, room_id: str) -> Membership | None:
        q = select(memberships.c.membership, memberships.c.stream, memberships.c.forgotten).where(
            memberships.c.user_id == user_id, memberships.c.room_id == room_id
        )
        async with self.db.read() as conn:
            row = (await conn.execute(q)).first()
        return Membership(row.membership, row.stream, bool(row.forgotten)) if row else None

    async def user_rooms(self, user_id: str, states: Sequence[str] = ("join",)) -> dict[str, tuple[str, int]]:
        """room_id → (membership, stream of the membership event) for the given membership states."""
        rows = await self.db.fetch(
            "SELECT room_id, membership, stream FROM memberships WHERE user_id = $1 "
            "AND membership = ANY($2::text[]) AND forgotten = false",
            user_id,
            list(states),
        )
        return {r[0]: (r[1], int(r[2])) for r in rows}

    async def room_members(
        self, room_id: str, states: Sequence[str] = ("join",), *, conn: AsyncConnection | None = None
    ) -> list[str]:
        rows = await self.db.fetch(
            "SELECT user_id FROM memberships WHERE room_id = $1 AND membership = ANY($2::text[])",
            room_id,
            list(states),
            conn=conn,
        )
        return [r[0] for r in rows]

    async def first_joined(self, room_id: str, candidates: Sequence[str]) -> str | None:
        """The first of `candidates` who is joined to the room."""
        if not candidates:
            return None
        rows = await self.db.fetch(
            "SELECT user_id FROM memberships WHERE room_id = $1 AND user_id = ANY($2::text[]) AND membership = 'join'",
            room_id,
            list(candidates),
        )
        joined = {r[0] for r in rows}
        return next((u for u in candidates if u in joined), None)

    async def any_joined(self, room_id: str, suffix: str, *, excluding: Sequence[str] = ()) -> str | None:
        """A joined member whose user ID ends with `suffix` (e.g. ":<server name>"), other than
        `excluding`; the scan stops at the first found."""
        row = await self.db.fetchrow(
            "SELECT user_id FROM memberships WHERE room_id = $1 AND membership = 'join' "
            "AND substr(user_id, length(user_id) - length($2::text) + 1) = $2::text "
            "AND NOT (user_id = ANY($3::text[])) LIMIT 1",
            room_id,
            suffix,
            list(excluding),
        )
        return str(row[0]) if row else None

    async def joined_count(self, room_id: str, *, conn: AsyncConnection | None = None) -> int:
        row = await self.db.fetchrow("SELECT joined_members FROM rooms WHERE room_id = $1", room_id, conn=conn)
        return int(row[0]) if row else 0

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

    async def members_stream(self, room_id: str) -> int | None:
        """The stream of the room's newest membership write (None: no such room): its member list
        is the same as long as this is."""
        row = await self.db.fetchrow("SELECT members_stream FROM rooms WHERE room_id = $1", room_id)
        return None if row is None else int(row[0])

    async def member_counts(self, room_id: str) -> dict[str, int]:
        """{"join": joined, "invite": invited} ({} for an unknown room)."""
        return (await self.member_counts_many([room_id]))[room_id]

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

    # -- relations and threads ------------------------------------------------------------
    async def relations(
        self,
        event_id: str,
        rel_type: str | None = None,
        limit: int = 50,
        before: int | None = None,
        after: int | None = None,
        backwards: bool = True,
    ) -> list[StoredEvent]:
        q = select(*EVENT_TABLE_COLUMNS).where(events.c.relates_to == event_id)
        if rel_type is not None:
            q = q.where(events.c.rel_type == rel_type)
        if before is not None:
            q = q.where(events.c.stream < before)
        if after is not None:
            q = q.where(events.c.stream > after)
        q = q.order_by(events.c.stream.desc() if backwards else events.c.stream).limit(limit)
        async with self.db.read() as conn:
            return [event_from_row(r) for r in (await conn.execute(q)).all()]

    async def relation_summaries(self, event_ids: Sequence[str]) -> list[StoredEvent]:
        """All m.replace and m.thread relations of the given events (for bundled aggregations)."""
        if not event_ids:
            return []
        rows = await self.db.fetch(
            f"SELECT {EV} FROM events e WHERE e.relates_to IS NOT NULL AND e.relates_to = ANY($1::text[]) "
            "AND e.rel_type IN ('m.replace', 'm.thread') ORDER BY e.stream",
            sorted(set(event_ids)),
        )
        return [event_from_row(r) for r in rows]

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
