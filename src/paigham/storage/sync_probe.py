"""The first read of every /sync: the stream position, the user's rooms, and which streams have
anything past `since` — in one statement, so that the sections with nothing new cost no query.

A /sync used to ask each stream in turn (account data, typing, receipts, push rules, presence,
to-device, device lists, …): ~13 statements for a sync that found nothing, each a round trip to
PostgreSQL. Most syncs find news in one stream of one room; the rest is answered here by index
probes (`EXISTS … stream > since`) inside the same statement.

Every check reads rows *past* `since`: the statement sees one snapshot (one statement is one
snapshot on both engines) and is bounded by the position it returns, the
stream's watermark in that snapshot (storage/watermark.py): "past since" means "in (since, position]".
Every position at or below the watermark is committed, so later reads bounded by it see the same rows.

Which joined rooms have news costs O(changes), not O(rooms): every write takes its own stream
position, so `position - since` bounds the rows past `since` in events, typing and receipts. When
that is small against the user's rooms (a client syncing again, the usual case), the probe reads
those rows (a range of each table's stream index) and keeps the rooms the user is in; a user in
1,000 rooms with one new message costs one index range of one row, not 3,000 index probes. Only a
token far behind (a client back after a while) looks in each room instead (the same answer, by
the other road; a short bounded range is read and thrown away).

Which rooms the user is in costs O(changes) too, once this process has read them: /sync passes a
RoomListCache (storage/sync_rooms.py) holding each user's rooms at a stream position, and the probe
then reads only the membership rows of the rooms that can matter (those whose row moved past that
position, and those with news), each by its key, instead of every room of the user; the quiet rooms
come from the cache. A user not remembered, a full_state sync and a token far behind read whole.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from paigham.storage.database import Database
from paigham.storage.dialect import POSTGRESQL, SQLITE, Dialect
from paigham.storage.receipts import read_position
from paigham.storage.sync_rooms import RoomList, RoomListCache, room_list
from paigham.storage.turn_batch import TurnBatcher
from paigham.storage.watermark import WATERMARK

_decode = msgspec.json.Decoder(list[str]).decode

# Per joined room: what it has past `since`.
ROOM_EVENTS, ROOM_TYPING, ROOM_RECEIPTS = 1, 2, 4
# Per user (and device).
ACCOUNT_DATA, PUSH_RULES, PRESENCE, TO_DEVICE, DEVICE_LISTS = 1, 2, 4, 8, 16
OFFERED = ("invite", "knock")


# The position of the statement: the stream's watermark (storage/watermark.py), read once.
_WATERMARK = f"p AS MATERIALIZED (SELECT {WATERMARK} AS pos)"
_UPTO = "(SELECT pos FROM p)"
_PAST_SINCE = f"stream > $2 AND stream <= {_UPTO}"
_READ = read_position("x.room_id", "$1")  # where the room's unread count starts (or the joining)


def _flags(parts: Sequence[tuple[int, Sequence[tuple[str, str]]]]) -> str:
    """`bit` for each part where any of its (table, condition) has a row; the bits added up."""
    return " + ".join(
        "CASE WHEN "
        + " OR ".join(f"EXISTS (SELECT 1 FROM {t} WHERE {w})" for t, w in checks)
        + f" THEN {bit} ELSE 0 END"
        for bit, checks in parts
    )


_ROOM_FLAGS = _flags(
    [
        (ROOM_EVENTS, [("events e", f"e.room_id = m.room_id AND e.stream > $2 AND e.stream <= {_UPTO}")]),
        (ROOM_TYPING, [("typing_stream t", f"t.room_id = m.room_id AND t.stream > $2 AND t.stream <= {_UPTO}")]),
        (ROOM_RECEIPTS, [("receipts r", f"r.room_id = m.room_id AND r.stream > $2 AND r.stream <= {_UPTO}")]),
    ]
)
_USER_FLAGS = _flags(
    [
        (ACCOUNT_DATA, [("account_data", f"user_id = $1 AND {_PAST_SINCE}")]),
        (PUSH_RULES, [("push_rules", f"user_id = $1 AND {_PAST_SINCE}")]),
        (PRESENCE, [("presence", _PAST_SINCE)]),
        # Any message waiting (or delivered and not yet acknowledged by syncing past it).
        (TO_DEVICE, [("e2e_device_inbox", "user_id = $1 AND device_id = $3")]),
        # Someone's keys changed, or any membership changed (who shares a room with whom).
        (DEVICE_LISTS, [("e2e_device_list_changes", _PAST_SINCE), ("memberships", _PAST_SINCE)]),
    ]
)


def _count(parts: Sequence[str]) -> str:
    """`a - b + c` of three counts (see PushActionStore.unread_counts), for room y.room_id past y.start."""
    a, b, c = (f"(SELECT count(*) FROM {p})" for p in parts)
    return f"{a} - {b} + {c}"


_PAST = f"room_id = y.room_id AND stream > y.start AND stream <= {_UPTO}"
_SHARED_MINUS_OWN = (
    "event_push_actions o JOIN room_push_actions r ON r.room_id = o.room_id AND "
    f"r.stream = o.stream WHERE o.user_id = $1 AND o.room_id = y.room_id AND o.stream > y.start AND o.stream <= {_UPTO}"
)
_NOTIFIED = _count(
    [
        f"room_push_actions WHERE {_PAST} AND sender <> $1",
        _SHARED_MINUS_OWN,
        f"event_push_actions WHERE user_id = $1 AND {_PAST} AND notify",
    ]
)
_HIGHLIGHTED = _count(
    [
        f"room_push_actions WHERE {_PAST} AND sender <> $1 AND highlight",
        f"{_SHARED_MINUS_OWN} AND r.highlight",
        f"event_push_actions WHERE user_id = $1 AND {_PAST} AND notify AND highlight",
    ]
)


def _key_rows(device: str, more: str) -> str:
    """The device's one-time key counts and unused fallback key types (E2EE clients need them in
    every response): rows named by algorithm, kind 'otk' or 'fallback' in the membership column
    (`device`: the device's parameter; `more`: the extra NULL columns of the statement's shape)."""
    return (
        f"UNION ALL SELECT algorithm, 'otk', count(*), 0, 0, NULL, NULL, NULL{more} FROM e2e_one_time_keys "
        f"WHERE user_id = $1 AND device_id = {device} GROUP BY algorithm "
        f"UNION ALL SELECT algorithm, 'fallback', 0, 0, 0, NULL, NULL, NULL{more} FROM e2e_fallback_keys "
        f"WHERE user_id = $1 AND device_id = {device} AND used = false"
    )


# The rooms with events, typing or receipts past `since` ($2) and their ROOM_* bits, read from the
# changes themselves: at most `k.hi - since` positions, so the scans are bounded whatever the token.
# A row's `bit` is a distinct power of two per table: sum(DISTINCT bit) is their OR on both engines.
_CHANGED = " UNION ALL ".join(
    f"SELECT room_id, {bit} AS bit FROM {table} WHERE stream > $2 AND stream <= (SELECT hi FROM k) "
    f"AND stream <= {_UPTO}"
    for bit, table in ((ROOM_EVENTS, "events"), (ROOM_TYPING, "typing_stream"), (ROOM_RECEIPTS, "receipts"))
)
# Read the changes when there are at most this many positions per room of the user past `since`
# (plus a few): one stream-index step per change against three index probes per room.
_CHANGES_PER_ROOM, _CHANGES_FLOOR = 4, 64


# Rows: one per room the user is in (with its flags and, for rooms with news, where counting unread
# starts — the newest main-timeline read receipt, or the joining if later — and the unread
# notification and highlight counts past it), then one row with the position and the user's flags
# (room_id NULL), then the key rows. The CTEs are materialised so that each room's flags and receipt
# are computed once (PostgreSQL would otherwise repeat the subqueries wherever their columns are used).
# `k`: how far the changes may be read (`hi`) and whether that covers every position up to now
# (`near`); `c`: the changed rooms with their bits (read only when near, see the module's docstring).
def _probe_sql(bumps: bool, dialect: Dialect = SQLITE) -> str:
    # With `bumps` (sliding sync), each room with events past `since` also gets the stream of the
    # newest of them whose type is in $5 (its new bump stamp, if any), in one more column.
    # Without (/sync), a joined room with nothing past `since` — no flags, membership and room account
    # data unchanged — is no row of its own unless $5 (every room) is set: its ID goes into one JSON
    # array in the position row (the `quiet` rooms a long-poll waits on), so a user in 1,000 rooms
    # with one change gets a handful of rows. A room left before `since` is not sent at all then.
    bump = (
        ", CASE WHEN y.flags % 2 = 1 THEN (SELECT max(e.stream) FROM events e WHERE e.room_id = y.room_id "
        f"AND e.stream > $2 AND e.stream <= {_UPTO} AND e.type = ANY($5::text[])) END"
        if bumps
        else ""
    )
    more = ", NULL" if bumps else ""
    keep = (
        "true"
        if bumps
        else "$5 OR w.stream > $2 OR w.flags <> 0 OR w.membership IN ('invite', 'knock') OR (w.membership = 'join' "
        f"AND w.room_id IN (SELECT a.room_id FROM account_data a WHERE a.user_id = $1 AND a.stream > $2 "
        f"AND a.stream <= {_UPTO}))"
    )
    quiet = (
        "NULL"
        if bumps
        else f"(SELECT {dialect.json_text_agg.format('y.room_id')} FROM y WHERE NOT y.keep AND y.membership = 'join')"
    )
    return (
        f"WITH {_WATERMARK}, u AS MATERIALIZED (SELECT m.room_id, m.membership, m.stream, m.joined_stream "
        "FROM memberships m "
        "WHERE m.user_id = $1 AND m.membership = ANY($4::text[]) AND m.forgotten = false), "
        f"k AS MATERIALIZED (SELECT $2 + {_CHANGES_PER_ROOM} * count(*) + {_CHANGES_FLOOR} AS hi FROM u), "
        f"n AS MATERIALIZED (SELECT {_UPTO} <= (SELECT hi FROM k) AS near), "
        f"c AS MATERIALIZED (SELECT room_id, sum(DISTINCT bit) AS flags FROM ({_CHANGED}) ch "
        "WHERE (SELECT near FROM n) GROUP BY room_id), "
        "x AS MATERIALIZED (SELECT m.*, CASE WHEN m.membership <> 'join' THEN 0 WHEN (SELECT near FROM n) "
        f"THEN coalesce((SELECT c.flags FROM c WHERE c.room_id = m.room_id), 0) ELSE {_ROOM_FLAGS} END AS flags "
        "FROM u m), "
        f"w AS MATERIALIZED (SELECT x.*, CASE WHEN x.flags <> 0 THEN coalesce({_READ}, 0) END AS read FROM x), "
        "y AS MATERIALIZED (SELECT w.*, CASE WHEN w.read > w.joined_stream THEN w.read ELSE w.joined_stream END "
        f"AS start, CASE WHEN {keep} THEN 1 ELSE 0 END = 1 AS keep FROM w) "
        "SELECT y.room_id, y.membership, y.stream, y.joined_stream, y.flags, y.read, "
        f"CASE WHEN y.flags <> 0 THEN {_NOTIFIED} END, CASE WHEN y.flags <> 0 THEN {_HIGHLIGHTED} END{bump} FROM y "
        f"WHERE y.keep UNION ALL SELECT NULL, {quiet}, {_UPTO}, 0, "
        f"{_USER_FLAGS}, NULL, NULL, NULL{more} " + _key_rows("$3", more)
    )


_PROBE = {d.name: _probe_sql(False, d) for d in (SQLITE, POSTGRESQL)}


# /sync's incremental probe for a user whose rooms this process remembers at a position ($5, or
# `since` if that is older: storage/sync_rooms.py), and how many ($6): where the full probe reads
# every room of the user, this one reads the membership rows of the rooms that can matter — those
# whose row moved past $5 (an index range of memberships_user_stream), those with events, typing or
# receipts past `since` (`c`) and those with room account data past it — each by its primary key.
# Every row comes back, with its `keep` (whether the full probe would have sent it) last; a
# forgotten room's membership reads as "". When `since` is too far behind to read the changes (not
# `near`), only the position row comes, with `near` 0 in its fourth column: the caller reads whole.
def _row(column: str) -> str:
    """`column` of the user's membership row of room d.room_id: a lookup by primary key per room (a
    join would let a planner with stale statistics read every row of the user and filter)."""
    return f"(SELECT {column} FROM memberships m WHERE m.user_id = $1 AND m.room_id = d.room_id)"


def _cached_probe_sql() -> str:
    near = "(SELECT near FROM n)"
    membership = "CASE WHEN m.forgotten OR NOT (m.membership = ANY($4::text[])) THEN '' ELSE m.membership END"
    keep = (
        "w.membership <> '' AND (w.stream > $2 OR w.flags <> 0 OR w.membership IN ('invite', 'knock') OR "
        f"(w.membership = 'join' AND w.room_id IN (SELECT a.room_id FROM account_data a WHERE a.user_id = $1 "
        f"AND a.stream > $2 AND a.stream <= {_UPTO})))"
    )
    return (
        f"WITH {_WATERMARK}, k AS MATERIALIZED (SELECT $2 + {_CHANGES_PER_ROOM} * $6 + {_CHANGES_FLOOR} AS hi), "
        f"n AS MATERIALIZED (SELECT {_UPTO} <= (SELECT hi FROM k) AS near), "
        f"c AS MATERIALIZED (SELECT room_id, sum(DISTINCT bit) AS flags FROM ({_CHANGED}) ch "
        f"WHERE {near} GROUP BY room_id), "
        f"d AS MATERIALIZED (SELECT room_id FROM memberships WHERE {near} AND user_id = $1 AND stream > $5 "
        "UNION SELECT room_id FROM c UNION SELECT a.room_id FROM account_data a "
        f"WHERE {near} AND a.user_id = $1 AND a.stream > $2 AND a.stream <= {_UPTO} AND a.room_id <> ''), "
        f"u AS MATERIALIZED (SELECT d.room_id, {_row(membership)} AS membership, {_row('m.stream')} AS stream, "
        f"{_row('m.joined_stream')} AS joined_stream FROM d), "
        "x AS MATERIALIZED (SELECT m.*, CASE WHEN m.membership <> 'join' THEN 0 "
        "ELSE coalesce((SELECT c.flags FROM c WHERE c.room_id = m.room_id), 0) END AS flags FROM u m "
        "WHERE m.membership IS NOT NULL), "
        f"w AS MATERIALIZED (SELECT x.*, CASE WHEN x.flags <> 0 THEN coalesce({_READ}, 0) END AS read FROM x), "
        "y AS MATERIALIZED (SELECT w.*, CASE WHEN w.read > w.joined_stream THEN w.read ELSE w.joined_stream END "
        f"AS start, CASE WHEN {keep} THEN 1 ELSE 0 END AS keep FROM w) "
        "SELECT y.room_id, y.membership, y.stream, y.joined_stream, y.flags, y.read, "
        f"CASE WHEN y.flags <> 0 THEN {_NOTIFIED} END, CASE WHEN y.flags <> 0 THEN {_HIGHLIGHTED} END, y.keep "
        f"FROM y UNION ALL SELECT NULL, NULL, {_UPTO}, CASE WHEN {near} THEN 1 ELSE 0 END, {_USER_FLAGS}, "
        "NULL, NULL, NULL, NULL " + _key_rows("$3", ", NULL")
    )


_CACHED_PROBE = _cached_probe_sql()


def _lateral(sql: str, varying: dict[int, tuple[str, str]]) -> str:
    """`sql` (a probe: `WITH {_WATERMARK}, …`) for many askers at once, PostgreSQL only: one lateral
    probe per element of the arrays given for the parameters in `varying` (number → (name, element
    type)); the other parameters stay one value for all. Its rows come tagged with the element's
    ordinal. One statement is one snapshot, so every probe of a batch reads the same watermark."""
    inner = sql.removeprefix(f"WITH {_WATERMARK}, ")
    assert inner != sql
    inner = re.sub(r"\$(\d+)(?!\d)", lambda m: f"q.{varying[int(m[1])][0]}" if int(m[1]) in varying else m[0], inner)
    arrays = ", ".join(f"${n}::{t}[]" for n, (_, t) in sorted(varying.items()))
    names = ", ".join(name for _, (name, _) in sorted(varying.items()))
    return (
        f"WITH {_WATERMARK} SELECT q.i, r.* FROM unnest({arrays}) WITH ORDINALITY q({names}, i) "
        f"CROSS JOIN LATERAL (WITH {inner}) r"
    )


@dataclass(frozen=True, slots=True)
class Shape:
    """A probe statement that ProbeBatcher can send for many askers: `single` for one, `batched` for
    many (`_lateral`); `varying` are the parameter numbers each asker gives, `fixed` those a batch
    shares (askers with different fixed values go in different batches)."""

    single: str
    batched: str
    varying: tuple[int, ...]
    fixed: tuple[int, ...]

    def params(self, fixed: tuple[Any, ...], varying: tuple[Any, ...]) -> list[Any]:
        """The parameters of `single`, in order, from one asker's values and the batch's."""
        by_number = {**dict(zip(self.fixed, fixed, strict=True)), **dict(zip(self.varying, varying, strict=True))}
        return [by_number[n] for n in range(1, len(by_number) + 1)]


def _shape(sql: str, varying: dict[int, tuple[str, str]], fixed: tuple[int, ...]) -> Shape:
    return Shape(sql, _lateral(sql, varying), tuple(sorted(varying)), fixed)


_USER, _AFTER, _DEVICE = (1, ("user_id", "text")), (2, ("after", "bigint")), (3, ("device_id", "text"))
# /sync's probe of remembered rooms: ($1 user, $2 since, $3 device, $5 remembered at, $6 how many) per
# asker, $4 the memberships.
CACHED = _shape(_CACHED_PROBE, dict([_USER, _AFTER, _DEVICE, (5, ("lo", "bigint")), (6, ("n", "bigint"))]), (4,))
# Batches hold at most this many probes: a batch is one statement on one connection.
BATCH_MAX = 256


class ProbeBatcher:
    """The incremental probes of the syncs that look at once, read in one statement (PostgreSQL).

    One message into a room of thousands wakes every member's long-poll in the same turn of the
    event loop; each would send its own probe. Probes of one shape asked in a turn go as one
    statement (`Shape.batched`, storage/turn_batch.py), each answer returned to its asker. On SQLite
    the probes go one by one (`Database.fetch`)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._batches: TurnBatcher[tuple[Shape, tuple[Any, ...]], tuple[Any, ...], list[Sequence[Any]]] = TurnBatcher(
            self._run, BATCH_MAX
        )

    @property
    def statements(self) -> int:
        """Statements sent (the tests count them)."""
        return self._batches.batches

    async def fetch(self, shape: Shape, fixed: tuple[Any, ...], *varying: Any) -> list[Sequence[Any]]:
        """The rows of `shape.single` for one asker (its `varying` values, the `fixed` ones shared;
        lists among them are given as tuples)."""
        if self.db.dialect.name != POSTGRESQL.name:
            return await self.db.fetch(shape.single, *shape.params(_lists(fixed), varying))
        return await self._batches.ask((shape, fixed), varying)

    async def _run(self, key: tuple[Shape, tuple[Any, ...]], asked: list[tuple[Any, ...]]) -> list[list[Sequence[Any]]]:
        shape, fixed = key
        columns = [list(c) for c in zip(*asked, strict=True)]
        rows = await self.db.fetch(shape.batched, *shape.params(_lists(fixed), tuple(columns)))
        by_asker: list[list[Sequence[Any]]] = [[] for _ in asked]
        for row in rows:
            by_asker[row[0] - 1].append(row[1:])
        return by_asker


def _lists(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """Tuples (hashable, to key a batch) back into lists (the drivers' arrays)."""
    return tuple(list(v) if isinstance(v, tuple) else v for v in values)


_PROBE_BUMPS = _probe_sql(bumps=True)
# Sliding sync's probe: ($1 user, $2 since, $3 device) per asker, $4 the memberships, $5 the bump types.
BUMPS = _shape(_PROBE_BUMPS, dict([_USER, _AFTER, _DEVICE]), (4, 5))

# A connection's first look (sliding sync without `pos`): everything is new, so no flags and no
# counts — the rooms, each joined room's newest event of the bump types ($4), the position and the
# device's key counts, in the row shape of _PROBE_BUMPS.
_FIRST = (
    f"WITH {_WATERMARK} SELECT m.room_id, m.membership, m.stream, m.joined_stream, 0, NULL, NULL, NULL, "
    "CASE WHEN m.membership = 'join' THEN (SELECT e.stream FROM events e WHERE e.room_id = m.room_id "
    f"AND e.type = ANY($4::text[]) AND e.stream <= {_UPTO} ORDER BY e.stream DESC LIMIT 1) END FROM memberships m "
    "WHERE m.user_id = $1 AND m.membership = ANY($3::text[]) AND m.forgotten = false "
    f"UNION ALL SELECT NULL, NULL, {_UPTO}, 0, 0, NULL, NULL, NULL, NULL " + _key_rows("$2", ", NULL")
)


@dataclass
class SyncProbe:
    position: int
    # room → (membership, stream of the membership event): every room of the user, except, for
    # /sync's incremental probe, the quiet joined rooms (`quiet`) and the rooms left before `since`
    memberships: dict[str, tuple[str, int]] = field(default_factory=dict)
    # rooms whose membership event is past `since` (every room when there is no `since`): what an
    # incremental sync looks at for joins, invites and leaves, without going through every room
    moved: list[str] = field(default_factory=list)
    # /sync's probe: every joined room, by ID (a superset of `quiet`, see there; shared with the
    # process's RoomListCache: never changed)
    joined_rooms: frozenset[str] = frozenset()
    joined_at: dict[str, int] = field(default_factory=dict)  # joined room → its joined_stream
    room_flags: dict[str, int] = field(default_factory=dict)  # joined room → ROOM_* bits (absent: 0)
    # joined room with news → stream of the user's read receipt (0: none); rooms without news absent
    read_positions: dict[str, int] = field(default_factory=dict)
    # joined room with news → (notifications, highlights) unread past the receipt or the joining
    unread: dict[str, tuple[int, int]] = field(default_factory=dict)
    user_flags: int = 0
    one_time_keys: dict[str, int] = field(default_factory=dict)  # algorithm → count
    fallback_keys: list[str] = field(default_factory=list)  # algorithms with an unused fallback key
    # (asked with bump types) joined room with events past `since` → the newest of them of those types
    bumps: dict[str, int] = field(default_factory=dict)

    @property
    def quiet(self) -> list[str]:
        """/sync's probe: the joined rooms with nothing past `since` (not in `memberships`): a
        long-poll waits on them, nothing else looks at them (built when asked: O(rooms))."""
        return [r for r in self.joined_rooms if r not in self.memberships]

    def joined(self, room_id: str) -> bool:
        """Whether the user is in the room: a room in `memberships` as "join", or a quiet one."""
        found = self.memberships.get(room_id)
        if found is not None:
            return found[0] == "join"
        return room_id in self.joined_rooms

    def rooms_with(self, bit: int, rooms: Sequence[str]) -> list[str]:
        return [r for r in rooms if self.room_flags.get(r, 0) & bit]

    def has(self, bit: int) -> bool:
        return bool(self.user_flags & bit)


async def probe(
    db: Database,
    user_id: str,
    device_id: str,
    since: int | None,
    states: Sequence[str],
    bump_types: Sequence[str] | None = None,
    *,
    every_room: bool = False,
    rooms: RoomListCache | None = None,
    batcher: ProbeBatcher | None = None,
) -> SyncProbe:
    """What changed for (user, device) past `since` (None: everything counts as changed); with
    `bump_types`, also each changed room's newest event of those types (`bumps`), and every room in
    `memberships`. Without, the joined rooms with nothing new are listed in `quiet` only and the
    rooms left before `since` not at all, unless `every_room` (a full_state sync sends them all) or
    there is no `since`. With `rooms` (and no `bump_types`), the user's rooms are remembered there
    between calls and an incremental probe reads only the membership rows that moved (sync_rooms.py).
    An incremental probe goes through `batcher` if given (with the probes of other syncs looking at
    the same time)."""
    after = -1 if since is None else since
    if bump_types is not None:
        if batcher is not None:
            rows = await batcher.fetch(BUMPS, (tuple(states), tuple(bump_types)), user_id, after, device_id)
        else:
            rows = await db.fetch(_PROBE_BUMPS, user_id, after, device_id, list(states), list(bump_types))
        out = _read(rows, after)
    else:
        out = await _probe_sync(db, user_id, device_id, since, states, every_room, rooms, batcher)
    if since is None:  # everything is news to a first sync
        out.user_flags = ACCOUNT_DATA | PUSH_RULES | PRESENCE | TO_DEVICE | DEVICE_LISTS
    return out


async def _probe_sync(
    db: Database,
    user_id: str,
    device_id: str,
    since: int | None,
    states: Sequence[str],
    every_room: bool,
    rooms: RoomListCache | None,
    batcher: ProbeBatcher | None = None,
) -> SyncProbe:
    """/sync's probe: from the rooms `rooms` remembers for the user when it can (incremental and not
    far behind), else whole (and then remembered)."""
    after = -1 if since is None else since
    held = rooms.get(user_id) if rooms is not None and since is not None and not every_room else None
    if rooms is not None and held is not None:
        lo = min(held.position, after)
        if batcher is not None:
            rows = await batcher.fetch(CACHED, (tuple(states),), user_id, after, device_id, lo, len(held))
        else:
            rows = await db.fetch(_CACHED_PROBE, user_id, after, device_id, list(states), lo, len(held))
        found = _read_cached(rows, after, held)
        if found is not None:
            rooms.put(user_id, found[1])
            return found[0]
        rooms.drop(user_id)  # read whole: `since` far behind, or the database went back
    sql = _PROBE[db.dialect.name]
    out = _read(await db.fetch(sql, user_id, after, device_id, list(states), every_room or since is None), after)
    if rooms is not None:
        offered = {r: v for r, v in out.memberships.items() if v[0] in OFFERED}
        now = room_list(out.position, out.joined_rooms, offered)
        rooms.put(user_id, now)
        out.joined_rooms = now.joined
    return out


async def first_probe(
    db: Database, user_id: str, device_id: str, states: Sequence[str], bump_types: Sequence[str]
) -> SyncProbe:
    """A sliding-sync connection's first look: the user's rooms with each joined room's newest event
    of `bump_types` (`bumps`), the position and the device's key counts; no flags (the caller sends
    everything) and no unread counts (counted for the rooms in view only)."""
    return _read(await db.fetch(_FIRST, user_id, device_id, list(states), list(bump_types)), -1)


def _read(rows: Sequence[Sequence[Any]], after: int) -> SyncProbe:
    out = SyncProbe(0)
    quiet: list[str] = []
    for room_id, membership, stream, joined_stream, flags, read, notified, highlighted, *bump in rows:
        if bump and bump[0] is not None and room_id is not None:
            out.bumps[room_id] = int(bump[0])
        if room_id is None:
            out.position, out.user_flags = int(stream), int(flags)
            quiet = _decode(membership) if membership else []
            continue
        if membership == "otk":
            out.one_time_keys[room_id] = int(stream)
            continue
        if membership == "fallback":
            out.fallback_keys.append(room_id)
            continue
        _room(out, after, room_id, membership, stream, joined_stream, flags, read, notified, highlighted)
    out.joined_rooms = frozenset([*quiet, *(r for r, (m, _) in out.memberships.items() if m == "join")])
    out.fallback_keys.sort()
    return out


def _room(out: SyncProbe, after: int, room_id: str, membership: str, stream: int, *rest: Any) -> None:
    """One room's row of a probe into `out` (rest: joined_stream, flags, read, notified, highlighted)."""
    joined_stream, flags, read, notified, highlighted = rest
    out.memberships[room_id] = (membership, stream)
    if stream > after:
        out.moved.append(room_id)
    if membership == "join":
        out.joined_at[room_id] = int(joined_stream)
        if flags:
            out.room_flags[room_id] = int(flags)
            out.read_positions[room_id] = int(read or 0)
            out.unread[room_id] = (int(notified or 0), int(highlighted or 0))


def _read_cached(rows: Sequence[Sequence[Any]], after: int, held: RoomList) -> tuple[SyncProbe, RoomList] | None:
    """The rows of _CACHED_PROBE over the rooms `held` remembers: the probe and the rooms at its
    position; None when `since` was too far behind (or the database went back before `held`)."""
    out = SyncProbe(0)
    moved: list[tuple[str, str, int]] = []
    for room_id, membership, stream, joined_stream, flags, read, notified, highlighted, keep in rows:
        if room_id is None:
            out.position, out.user_flags = int(stream), int(flags)
            if not joined_stream or out.position < held.position:
                return None
        elif membership in ("otk", "fallback"):
            if membership == "otk":
                out.one_time_keys[room_id] = int(stream)
            else:
                out.fallback_keys.append(room_id)
        else:
            moved.append((room_id, membership, int(stream)))
            if keep:
                _room(out, after, room_id, membership, stream, joined_stream, flags, read, notified, highlighted)
    rooms = held.moved_to(out.position, moved)
    for room_id, (membership, stream) in rooms.offered.items():  # sent until answered, moved or not
        if room_id not in out.memberships:
            out.memberships[room_id] = (membership, stream)
            if stream > after:
                out.moved.append(room_id)
    out.joined_rooms = rooms.joined
    out.fallback_keys.sort()
    return out, rooms
