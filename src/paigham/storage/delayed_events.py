"""Delayed events (storage/delayed_events_schema.py): schedule, look up, restart, cancel, claim the
due ones, finalise, list and purge.

Claiming: a worker takes due rows by setting `lease_owner`/`lease_until`; finalising is conditional
on still holding the lease. On PostgreSQL the claim is `UPDATE … WHERE delay_id IN (SELECT … FOR
UPDATE SKIP LOCKED)`: workers claiming at once skip each other's rows instead of waiting on them.
SQLite is one process with one writer: the same statement without the locking clause. A row being
sent (leased) cannot be restarted or cancelled: it is going out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from paigham.storage.database import Database
from paigham.types import JsonDict

SCHEDULED, SENT, CANCELLED, FAILED = "scheduled", "sent", "cancelled", "failed"

_COLS = (
    "delay_id, user_id, device_id, room_id, event_type, state_key, content, delay_ms, running_since, fire_at, "
    "state, reason, error, event_id, finalised_ts"
)


@dataclass(frozen=True, slots=True)
class DelayedEvent:
    delay_id: str
    user_id: str
    device_id: str | None
    room_id: str
    event_type: str
    state_key: str | None
    content: JsonDict
    delay_ms: int
    running_since: int  # ms
    fire_at: int  # ms
    state: str
    reason: str | None = None
    error: JsonDict | None = None
    event_id: str | None = None
    finalised_ts: int | None = None


def _json(raw: str | None) -> JsonDict | None:
    if raw is None:
        return None
    try:
        val = json.loads(raw)
    except ValueError:
        return {}
    return val if isinstance(val, dict) else {}


def _row(r: Sequence[Any]) -> DelayedEvent:
    return DelayedEvent(
        r[0], r[1], r[2], r[3], r[4], r[5], _json(r[6]) or {}, int(r[7]), int(r[8]), int(r[9]), r[10], r[11],
        _json(r[12]), r[13], None if r[14] is None else int(r[14]),
    )  # fmt: skip


def _dump(obj: JsonDict) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


_CLAIM = (
    "UPDATE delayed_events SET lease_owner = $1, lease_until = $2 WHERE delay_id IN (SELECT delay_id "
    "FROM delayed_events WHERE state = 'scheduled' AND fire_at <= $3 AND lease_until < $3 {only} "
    "ORDER BY fire_at LIMIT $4{lock}) RETURNING " + _COLS
)


class DelayedEventStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        lock = db.per_engine(sqlite="", postgresql=" FOR UPDATE SKIP LOCKED")
        self._claim_due = _CLAIM.format(only="", lock=lock)
        self._claim_one = _CLAIM.format(only="AND delay_id = $5", lock=lock)

    # -- scheduling --------------------------------------------------------------------------------
    async def schedule(self, d: DelayedEvent, txn_id: str | None, max_per_user: int) -> str | int:
        """Insert `d` (state scheduled); its delay_id. A retry of the same transaction (user, device,
        txn_id) answers the delay_id the first one got. An int: refused, the user already has
        `max_per_user` scheduled; the int is when the next of them fires (ms)."""
        async with self.db.write() as conn:
            await self.db.lock(conn, "delayed:" + d.user_id)  # the count and the insert, one user at a time
            if txn_id is not None:
                row = await self.db.fetchrow(
                    "SELECT delay_id FROM delayed_events WHERE user_id = $1 AND device_id = $2 AND txn_id = $3 "
                    "AND room_id = $4",
                    d.user_id,
                    d.device_id,
                    txn_id,
                    d.room_id,
                    conn=conn,
                )
                if row is not None:
                    return str(row[0])
            row = await self.db.fetchrow(
                "SELECT count(*), min(fire_at) FROM delayed_events WHERE user_id = $1 AND state = 'scheduled'",
                d.user_id,
                conn=conn,
            )
            if row is not None and int(row[0]) >= max_per_user:
                return int(row[1])
            await self.db.run(
                "INSERT INTO delayed_events (delay_id, user_id, device_id, txn_id, room_id, event_type, state_key, "
                "content, delay_ms, running_since, fire_at, state, lease_until) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'scheduled', 0)",
                d.delay_id, d.user_id, d.device_id, txn_id, d.room_id, d.event_type, d.state_key, _dump(d.content),
                d.delay_ms, d.running_since, d.fire_at,
                conn=conn,
            )  # fmt: skip
        return d.delay_id

    async def get(self, delay_id: str) -> DelayedEvent | None:
        row = await self.db.fetchrow(f"SELECT {_COLS} FROM delayed_events WHERE delay_id = $1", delay_id)
        return None if row is None else _row(row)

    async def of_user(
        self, user_id: str, states: Sequence[str], delay_ids: Sequence[str], limit: int
    ) -> list[DelayedEvent]:
        """The user's delayed events in `states` (all if `delay_ids` is empty, else only those),
        scheduled ones by send time, finalised ones newest first; at most `limit`."""
        where = "user_id = $1 AND state = ANY($2::text[])"
        order = "ORDER BY coalesce(finalised_ts, 0) DESC, fire_at"
        if not delay_ids:
            rows = await self.db.fetch(
                f"SELECT {_COLS} FROM delayed_events WHERE {where} {order} LIMIT $3", user_id, list(states), limit
            )
        else:
            rows = await self.db.fetch(
                f"SELECT {_COLS} FROM delayed_events WHERE {where} AND delay_id = ANY($3::text[]) {order} LIMIT $4",
                user_id,
                list(states),
                list(delay_ids),
                limit,
            )
        return [_row(r) for r in rows]

    # -- the actions -----------------------------------------------------------------------------
    async def restart(self, delay_id: str, now: int) -> int | None:
        """Postpone a scheduled (and not currently sending) row to now + its delay: the new fire_at."""
        rows = await self.db.write_one(
            "UPDATE delayed_events SET running_since = $2, fire_at = $2 + delay_ms WHERE delay_id = $1 "
            "AND state = 'scheduled' AND lease_until < $2 RETURNING fire_at",
            delay_id,
            now,
        )
        return int(rows[0][0]) if rows else None

    async def cancel(self, delay_id: str, now: int) -> bool:
        rows = await self.db.write_one(
            "UPDATE delayed_events SET state = 'cancelled', reason = 'action', finalised_ts = $2 "
            "WHERE delay_id = $1 AND state = 'scheduled' AND lease_until < $2 RETURNING delay_id",
            delay_id,
            now,
        )
        return bool(rows)

    async def scheduled_state_slots(self, room_id: str) -> set[tuple[str, str, str]]:
        """(event type, state key, user) of the room's scheduled delayed state events: one indexed
        read, so a batch of state events into a room checks them all at once (most rooms have none)."""
        rows = await self.db.fetch(
            "SELECT event_type, state_key, user_id FROM delayed_events WHERE room_id = $1 "
            "AND state = 'scheduled' AND state_key IS NOT NULL",
            room_id,
        )
        return {(str(r[0]), str(r[1]), str(r[2])) for r in rows}

    async def cancel_state_slot(
        self, room_id: str, event_type: str, state_key: str, sender: str, error: JsonDict, now: int
    ) -> int:
        """Cancel the scheduled delayed state events of other users than `sender` that would set
        (room, type, state_key): how many. A read first: most state events have none to cancel."""
        if not await self.db.fetch(
            "SELECT 1 FROM delayed_events WHERE room_id = $1 AND event_type = $2 AND state_key = $3 "
            "AND state = 'scheduled' AND user_id <> $4 LIMIT 1",
            room_id,
            event_type,
            state_key,
            sender,
        ):
            return 0
        rows = await self.db.write_one(
            "UPDATE delayed_events SET state = 'cancelled', reason = 'error', error = $5, finalised_ts = $6 "
            "WHERE room_id = $1 AND event_type = $2 AND state_key = $3 AND state = 'scheduled' "
            "AND user_id <> $4 AND lease_until < $6 RETURNING delay_id",
            room_id, event_type, state_key, sender, _dump(error), now,
        )  # fmt: skip
        return len(rows)

    async def cancel_for_user(self, user_id: str, now: int) -> int:
        """Cancel every scheduled (and not currently sending) delayed event of the user: how many."""
        rows = await self.db.write_one(
            "UPDATE delayed_events SET state = 'cancelled', reason = 'action', finalised_ts = $2 "
            "WHERE user_id = $1 AND state = 'scheduled' AND lease_until < $2 RETURNING delay_id",
            user_id,
            now,
        )
        return len(rows)

    # -- firing ------------------------------------------------------------------------------------
    async def next_fire_at(self, now: int) -> int | None:
        """When the earliest scheduled row that nobody is sending fires (ms), if any."""
        row = await self.db.fetchrow(
            "SELECT min(fire_at) FROM delayed_events WHERE state = 'scheduled' AND lease_until < $1", now
        )
        return None if row is None or row[0] is None else int(row[0])

    async def claim_due(self, owner: str, now: int, lease_ms: int, limit: int) -> list[DelayedEvent]:
        rows = await self.db.write_one(self._claim_due, owner, now + lease_ms, now, limit)
        return [_row(r) for r in rows]

    async def claim(self, delay_id: str, owner: str, now: int, lease_ms: int) -> DelayedEvent | None:
        """Take one scheduled row now, whatever its fire_at (the `send` action)."""
        rows = await self.db.write_one(self._claim_one, owner, now + lease_ms, 2**62, 1, delay_id)
        return _row(rows[0]) if rows else None

    async def finalise(
        self, delay_id: str, owner: str, state: str, reason: str, now: int, *, event_id: str | None = None,
        error: JsonDict | None = None,
    ) -> None:  # fmt: skip
        await self.db.write_one(
            "UPDATE delayed_events SET state = $3, reason = $4, event_id = $5, error = $6, finalised_ts = $7, "
            "lease_owner = NULL, lease_until = 0 WHERE delay_id = $1 AND lease_owner = $2",
            delay_id, owner, state, reason, event_id, None if error is None else _dump(error), now,
        )  # fmt: skip

    async def release(self, delay_id: str, owner: str) -> None:
        await self.db.write_one(
            "UPDATE delayed_events SET lease_owner = NULL, lease_until = 0 WHERE delay_id = $1 AND lease_owner = $2",
            delay_id,
            owner,
        )

    async def release_all(self, owner: str) -> None:
        await self.db.write_one(
            "UPDATE delayed_events SET lease_owner = NULL, lease_until = 0 WHERE lease_owner = $1", owner
        )

    # -- housekeeping ------------------------------------------------------------------------------
    async def purge_finalised(self, before: int) -> int:
        rows = await self.db.write_one(
            "DELETE FROM delayed_events WHERE state <> 'scheduled' AND finalised_ts < $1 RETURNING delay_id",
            before,
        )
        return len(rows)

    async def count_scheduled(self) -> int:
        row = await self.db.fetchrow("SELECT count(*) FROM delayed_events WHERE state = 'scheduled'")
        return int(row[0]) if row else 0
