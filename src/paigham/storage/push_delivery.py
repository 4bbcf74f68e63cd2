"""Delivery state of pushers (storage/pushers_schema.py): which pushers are due, claiming them with a
lease, moving their cursor, backing off — and what delivery reads: a user's notifications past a
position, the events at those positions, and the badge (`counts.unread`).

Claiming: a worker takes pushers by setting `lease_owner`/`lease_until`; every later change it makes
is conditional on still holding the lease (`AND lease_owner = $owner`), so a worker whose lease was
taken over (it stalled past `lease_until`) can no longer move the cursor. On PostgreSQL the claim
is `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)`: workers claiming at once skip each
other's rows instead of waiting on them. SQLite is one process with one writer: the same statement
without the locking clause.

A user's notifications (the push action tables, storage/push_actions.py; docs/decisions.md "Push
actions per event, not per recipient"): the room's shared result for rooms the user is joined to,
past their joining (`joined_stream`), not sent by them and without a result of the user's own, plus
the user's own results that notify (an invite included: the invitee is not joined). The same rules
as /sync's unread counts (storage/sync_probe.py). GET /notifications (storage/pushers.py) reads the
same rows with a query of its own, newest first; the two could share one later.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from paigham.domain.stored_event import StoredEvent
from paigham.storage.database import Database
from paigham.storage.event_rows import EV, event_from_row
from paigham.storage.receipts import read_position

_COLS = (
    "id, user_id, app_id, pushkey, pushkey_ts, data, last_stream, last_badge, failing_since, attempts, next_attempt_ts"
)


@dataclass
class Pusher:
    id: int
    user_id: str
    app_id: str
    pushkey: str
    pushkey_ts: int  # ms
    data: dict[str, Any]
    last_stream: int
    last_badge: int | None
    failing_since: int | None  # ms
    attempts: int
    next_attempt_ts: int  # ms


def _pusher(r: Sequence[Any]) -> Pusher:
    try:
        data = json.loads(r[5])
    except ValueError:
        data = {}
    return Pusher(
        int(r[0]),
        r[1],
        r[2],
        r[3],
        int(r[4]),
        data if isinstance(data, dict) else {},
        int(r[6]),
        None if r[7] is None else int(r[7]),
        None if r[8] is None else int(r[8]),
        int(r[9]),
        int(r[10]),
    )


class Advance(NamedTuple):
    """A pusher's cursor moved past `last_stream`; its lease extended to `lease_until`, or given up (None)."""

    pusher_id: int
    last_stream: int
    last_badge: int | None
    lease_until: int | None


# `advance` of one pusher ($2 .. $5: an Advance), and of many at once (PostgreSQL: the same from arrays). A
# NULL lease_until gives the lease up.
_ADVANCE_SET = (
    "SET last_stream = {ls}, last_badge = {lb}, failing_since = NULL, attempts = 0, next_attempt_ts = 0, "
    "lease_owner = CASE WHEN {lu} IS NULL THEN NULL ELSE lease_owner END, lease_until = coalesce({lu}, 0)"
)
_ADVANCE_ONE = (
    "UPDATE pushers " + _ADVANCE_SET.format(ls="$3", lb="$4", lu="$5") + " WHERE id = $2 AND lease_owner = $1 "
    "RETURNING id"
)
_ADVANCE_MANY = (
    "UPDATE pushers p "
    + _ADVANCE_SET.format(ls="v.ls", lb="v.lb", lu="v.lu")
    + " FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[]) AS v(id, ls, lb, lu) "
    "WHERE p.id = v.id AND p.lease_owner = $1 RETURNING p.id"
)


class Notification(NamedTuple):
    room_id: str
    stream: int
    highlight: bool


_CLAIM = (
    "UPDATE pushers SET lease_owner = $1, lease_until = $2 WHERE id IN (SELECT id FROM pushers "
    "WHERE id = ANY($3::bigint[]) AND kind = 'http' AND (lease_owner IS NULL OR lease_until < $4 OR lease_owner = $1) "
    "AND next_attempt_ts <= $4 ORDER BY id LIMIT $5{lock}) RETURNING " + _COLS
)

# Notifications of user {u} in ({a}, $3], oldest first, at most $4.
_NOTIFICATIONS_OF = (
    "SELECT room_id, stream, highlight FROM ("
    "SELECT r.room_id, r.stream, r.highlight FROM memberships m JOIN room_push_actions r ON r.room_id = m.room_id "
    "WHERE m.user_id = {u} AND m.membership = 'join' AND r.stream > {a} AND r.stream <= $3 "
    "AND r.stream > m.joined_stream AND r.sender <> {u} AND NOT EXISTS (SELECT 1 FROM event_push_actions o "
    "WHERE o.user_id = {u} AND o.room_id = r.room_id AND o.stream = r.stream) "
    "UNION ALL SELECT room_id, stream, highlight FROM event_push_actions "
    "WHERE user_id = {u} AND stream > {a} AND stream <= $3 AND notify"
    ") n ORDER BY stream LIMIT $4"
)
_NOTIFICATIONS = _NOTIFICATIONS_OF.format(u="$1", a="$2")
# The same for many (user, cursor) pairs at once (PostgreSQL: one LATERAL walk per pair).
_NOTIFICATIONS_MANY = (
    "SELECT q.i, n.room_id, n.stream, n.highlight FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY "
    "AS q(user_id, after, i) CROSS JOIN LATERAL (" + _NOTIFICATIONS_OF.format(u="q.user_id", a="q.after") + ") n "
    "ORDER BY q.i, n.stream"
)

# counts.unread of user {u}: pending invites + joined rooms with an unread notification past the
# newest main-timeline read receipt (or the joining, if later) — what /sync counts per room.
_START = "CASE WHEN coalesce(x.rd, 0) > x.joined_stream THEN x.rd ELSE x.joined_stream END"  # max() differs per engine
_BADGE_OF = (
    "SELECT (SELECT count(*) FROM memberships WHERE user_id = {u} AND membership = 'invite') + "
    "(SELECT count(*) FROM (SELECT y.room_id, y.start FROM (SELECT x.room_id, " + _START + " AS start FROM "
    "(SELECT m.room_id, m.joined_stream, " + read_position("m.room_id", "{u}") + " AS rd "
    "FROM memberships m WHERE m.user_id = {u} AND m.membership = 'join') x) y "
    "WHERE EXISTS (SELECT 1 FROM room_push_actions r WHERE r.room_id = y.room_id AND r.stream > y.start "
    "AND r.sender <> {u} AND NOT EXISTS (SELECT 1 FROM event_push_actions o WHERE o.user_id = {u} "
    "AND o.room_id = r.room_id AND o.stream = r.stream)) "
    "OR EXISTS (SELECT 1 FROM event_push_actions o WHERE o.user_id = {u} AND o.room_id = y.room_id "
    "AND o.stream > y.start AND o.notify)) z)"
)
_BADGE = _BADGE_OF.format(u="$1")
_BADGES = "SELECT q.user_id, (" + _BADGE_OF.format(u="q.user_id") + ") FROM unnest($1::text[]) AS q(user_id)"


class PushDeliveryStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._claim = _CLAIM.format(lock=db.per_engine(sqlite="", postgresql=" FOR UPDATE SKIP LOCKED"))
        self._many = db.per_engine(sqlite=False, postgresql=True)  # set-at-once reads (LATERAL, unnest)

    async def position(self) -> int:
        return await self.db.current_position()

    # -- which pushers have work -------------------------------------------------------------------
    async def behind_in_rooms(self, rooms: Sequence[str], pos: int, now: int) -> list[int]:
        """Pushers of the rooms' joined members whose cursor is before `pos` (not those in backoff)."""
        rows = await self.db.fetch(
            "SELECT p.id FROM memberships m JOIN pushers p ON p.user_id = m.user_id WHERE m.room_id = ANY($1::text[]) "
            "AND m.membership = 'join' AND p.kind = 'http' AND p.last_stream < $2 AND p.next_attempt_ts <= $3",
            sorted(set(rooms)),
            pos,
            now,
        )
        return [int(r[0]) for r in rows]

    async def any_http(self) -> bool:
        return await self.db.fetchrow("SELECT 1 FROM pushers WHERE kind = 'http' LIMIT 1") is not None

    async def of_users(self, users: Sequence[str]) -> list[int]:
        rows = await self.db.fetch(
            "SELECT id FROM pushers WHERE user_id = ANY($1::text[]) AND kind = 'http'", sorted(set(users))
        )
        return [int(r[0]) for r in rows]

    async def due(self, pos: int, now: int, horizon: int, limit: int) -> list[tuple[int, int]]:
        """(id, next_attempt_ts) of unleased pushers with something to do: a retry due before
        `horizon`, or a cursor behind `pos` (a wake-up this worker missed: a restart, a bus
        outage). Oldest cursor first."""
        rows = await self.db.fetch(
            "SELECT id, next_attempt_ts FROM pushers WHERE kind = 'http' AND (lease_owner IS NULL OR lease_until < $2) "
            "AND ((attempts > 0 AND next_attempt_ts <= $3) OR (attempts = 0 AND last_stream < $1)) "
            "ORDER BY last_stream LIMIT $4",
            pos,
            now,
            horizon,
            limit,
        )
        return [(int(r[0]), int(r[1])) for r in rows]

    async def failing(self) -> int:
        """Pushers in backoff (the head notification failed at least once)."""
        row = await self.db.fetchrow("SELECT count(*) FROM pushers WHERE attempts > 0")
        return int(row[0]) if row else 0

    # -- claiming and state under the lease ------------------------------------------------------
    async def claim(self, ids: Sequence[int], owner: str, now: int, lease_ms: int) -> list[Pusher]:
        if not ids:
            return []
        rows = await self.db.write_one(self._claim, owner, now + lease_ms, sorted(set(ids)), now, len(ids))
        return [_pusher(r) for r in rows]

    async def advance(self, owner: str, moves: Sequence[Advance]) -> set[int]:
        """Move each pusher's cursor (the notification at `last_stream` is done), clear its failure
        state and extend its lease — or give the lease up (`lease_until` None) — in one statement on
        PostgreSQL, one transaction on SQLite. The ids moved: a pusher this worker no longer holds
        (or one deleted) is not."""
        if not moves:
            return set()
        if self._many:
            rows = await self.db.write_one(
                _ADVANCE_MANY,
                owner,
                [m.pusher_id for m in moves],
                [m.last_stream for m in moves],
                [m.last_badge for m in moves],
                [m.lease_until for m in moves],
            )
            return {int(r[0]) for r in rows}
        done: set[int] = set()
        async with self.db.write() as conn:
            for m in moves:
                rows = await self.db.fetch(_ADVANCE_ONE, owner, *m, conn=conn)
                done.update(int(r[0]) for r in rows)
        return done

    async def failed(
        self, pusher_id: int, owner: str, last_stream: int, attempts: int, failing_since: int, next_attempt: int
    ) -> None:
        """Record a failed attempt (the cursor at `last_stream`: what precedes the failing head is
        done) and release the pusher until `next_attempt`."""
        await self.db.write_one(
            "UPDATE pushers SET last_stream = $3, attempts = $4, failing_since = $5, next_attempt_ts = $6, "
            "lease_owner = NULL, lease_until = 0 WHERE id = $1 AND lease_owner = $2",
            pusher_id,
            owner,
            last_stream,
            attempts,
            failing_since,
            next_attempt,
        )

    async def unpark(self, ids: Sequence[int], now: int) -> None:
        """Pushers held back while their gateway was down are due now (it answered again)."""
        await self.db.write_one(
            "UPDATE pushers SET next_attempt_ts = $2 WHERE id = ANY($1::bigint[]) AND attempts > 0", list(ids), now
        )

    async def release(self, pusher_id: int, owner: str) -> None:
        await self.db.write_one(
            "UPDATE pushers SET lease_owner = NULL, lease_until = 0 WHERE id = $1 AND lease_owner = $2",
            pusher_id,
            owner,
        )

    async def release_all(self, owner: str) -> None:
        await self.db.write_one("UPDATE pushers SET lease_owner = NULL, lease_until = 0 WHERE lease_owner = $1", owner)

    async def delete(self, pusher_id: int) -> None:
        """The gateway rejected the pushkey: this pusher goes (only this one)."""
        await self.db.write_one("DELETE FROM pushers WHERE id = $1", pusher_id)

    # -- what is delivered -----------------------------------------------------------------------
    async def notifications(self, user_id: str, after: int, upto: int, limit: int) -> list[Notification]:
        rows = await self.db.fetch(_NOTIFICATIONS, user_id, after, upto, limit)
        return [Notification(r[0], int(r[1]), bool(r[2])) for r in rows]

    async def room(self, room_id: str) -> tuple[str, int] | None:
        """The room's version and joined-member count."""
        row = await self.db.fetchrow("SELECT room_version, joined_members FROM rooms WHERE room_id = $1", room_id)
        return (str(row[0]), int(row[1])) if row else None

    async def events_at(self, streams: Sequence[int]) -> dict[int, StoredEvent]:
        if not streams:
            return {}
        rows = await self.db.fetch(
            f"SELECT {EV} FROM events e WHERE e.stream = ANY($1::bigint[])", sorted(set(streams))
        )
        return {ev.stream: ev for ev in map(event_from_row, rows)}

    async def badge(self, user_id: str) -> int:
        row = await self.db.fetchrow(_BADGE, user_id)
        return int(row[0]) if row else 0

    async def badges(self, user_ids: Sequence[str]) -> dict[str, int]:
        """`badge` of many users: one statement on PostgreSQL, one per user on SQLite (in process)."""
        users = sorted(set(user_ids))
        if not self._many:
            return {u: await self.badge(u) for u in users}
        return {r[0]: int(r[1]) for r in await self.db.fetch(_BADGES, users)} if users else {}

    async def notifications_many(
        self, cursors: Sequence[tuple[str, int]], upto: int, limit: int
    ) -> list[list[Notification]]:
        """`notifications` for many (user, after) pairs, in their order."""
        if not self._many:
            return [await self.notifications(u, after, upto, limit) for u, after in cursors]
        out: list[list[Notification]] = [[] for _ in cursors]
        if cursors:
            rows = await self.db.fetch(
                _NOTIFICATIONS_MANY, [u for u, _ in cursors], [a for _, a in cursors], upto, limit
            )
            for i, room_id, stream, highlight in rows:
                out[int(i) - 1].append(Notification(room_id, int(stream), bool(highlight)))
        return out
