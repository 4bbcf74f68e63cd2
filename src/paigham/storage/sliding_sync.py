"""Simplified Sliding Sync (MSC4186) connections: what each connection has been sent, by position.

A connection is (user, device, conn_id). Every response that changes what the connection holds is
saved as a new *generation* (a row); its `pos` names that generation and the stream position it was
computed at. A request with `pos` g reads row g and saves its answer as a generation of its own (the
next free one, above g) while deleting every generation older than g — so the latest pos can be
retried (a lost response), two requests made with the same pos (a client that cancels a long-poll
to change its request: the cancelled one still answers on the server) each keep what they sent, and
a superseded pos is refused (`M_UNKNOWN_POS`). Rows live in the database, so a `pos` survives a
restart and a move to another worker; rows older than `MAX_AGE_MS` are refused and purged.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Index, LargeBinary, PrimaryKeyConstraint, String, Table
from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.clock import now_ms
from paigham.storage.database import Database
from paigham.storage.schema import metadata
from paigham.storage.turn_batch import TurnBatcher

MAX_AGE_MS = 7 * 24 * 3600 * 1000
_INSERT = (
    "INSERT INTO sliding_sync_positions (user_id, device_id, conn_id, generation, stream, state, created_ts) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (user_id, device_id, conn_id, generation) DO NOTHING "
    "RETURNING generation"
)  # a connection unused for a week is forgotten (as Synapse does)
_SAVE_ATTEMPTS = 5  # concurrent requests with one pos (each failed attempt means another one saved)
SAVES_AT_ONCE = 256  # saves in one statement at most (PostgreSQL)
# Saves of many connections in one statement (PostgreSQL; one row of the arrays per save): for each, the
# next free generation (at least the one asked for), every older generation of the connection but
# the one its request came with dropped, the row added; the generations saved come back.
_SAVE_MANY = (
    "WITH cfg AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true) AS v), "
    "q AS MATERIALIZED (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], "
    "$6::bytea[], $7::bigint[], $8::bigint[]) q(user_id, device_id, conn_id, at_least, stream, state, ts, used)), "
    "t AS MATERIALIZED (SELECT q.*, greatest(q.at_least, coalesce((SELECT max(s.generation) "
    "FROM sliding_sync_positions s WHERE s.user_id = q.user_id AND s.device_id = q.device_id "
    "AND s.conn_id = q.conn_id), -1) + 1) AS g FROM q), "
    "gone AS (DELETE FROM sliding_sync_positions s USING t WHERE s.user_id = t.user_id "
    "AND s.device_id = t.device_id AND s.conn_id = t.conn_id AND s.generation < coalesce(t.used, t.g)) "
    "INSERT INTO sliding_sync_positions (user_id, device_id, conn_id, generation, stream, state, created_ts) "
    "SELECT t.user_id, t.device_id, t.conn_id, t.g, t.stream, t.state, t.ts FROM t, cfg WHERE cfg.v IS NOT NULL "
    "ON CONFLICT (user_id, device_id, conn_id, generation) DO NOTHING "
    "RETURNING user_id, device_id, conn_id, generation"
)
# One save: user, device, conn_id, generation at least, stream, state, created at, generation used.
_Save = tuple[str, str, str, int, int, bytes, int, int | None]

sliding_sync_positions = Table(
    "sliding_sync_positions",
    metadata,
    Column("user_id", String(255), nullable=False),
    Column("device_id", String(255), nullable=False),
    Column("conn_id", String(64), nullable=False),
    Column("generation", BigInteger, nullable=False),
    Column("stream", BigInteger, nullable=False),
    Column("state", LargeBinary, nullable=False),  # what the connection holds (sync/sliding_state.py)
    Column("created_ts", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "device_id", "conn_id", "generation"),
    Index("sliding_sync_positions_age", "created_ts"),
)


@dataclass(frozen=True, slots=True)
class SavedPosition:
    stream: int
    state: bytes
    created_ts: int


class SlidingSyncStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._one_statement = db.per_engine(sqlite=False, postgresql=True)
        self._saves: TurnBatcher[None, _Save, int | None] = TurnBatcher(self._save_postgresql, SAVES_AT_ONCE)

    async def load(self, user_id: str, device_id: str, conn_id: str, generation: int) -> SavedPosition | None:
        """The saved generation of this connection, None if unknown, superseded or too old."""
        row = await self.db.fetchrow(
            "SELECT stream, state, created_ts FROM sliding_sync_positions WHERE user_id = $1 AND device_id = $2 "
            "AND conn_id = $3 AND generation = $4",
            user_id,
            device_id,
            conn_id,
            generation,
        )
        if row is None or int(row[2]) < now_ms() - MAX_AGE_MS:
            return None
        return SavedPosition(int(row[0]), bytes(row[1]), int(row[2]))

    async def save(
        self,
        user_id: str,
        device_id: str,
        conn_id: str,
        at_least: int,
        stream: int,
        state: bytes,
        *,
        used: int | None,
    ) -> int:
        """Save a new generation — `at_least`, or the next free one above every saved generation of the
        connection — and drop every generation older than `used` (the one the request came with: it
        stays, so a lost response can be asked for again; None: older than the new one). Returns the
        generation saved. Never overwrites one: each saved generation is what one answer sent."""
        for _ in range(_SAVE_ATTEMPTS):
            if self._one_statement:
                added = await self._saves.ask(
                    None, (user_id, device_id, conn_id, at_least, stream, state, now_ms(), used)
                )
            else:
                async with self.db.write() as conn:
                    added = await self._save_sqlite(conn, user_id, device_id, conn_id, at_least, stream, state, used)
            if added is not None:
                return added
        raise RuntimeError(f"sliding sync: no free generation for {user_id} {device_id} {conn_id!r}")

    async def _save_sqlite(
        self,
        conn: AsyncConnection,
        user_id: str,
        device_id: str,
        conn_id: str,
        at_least: int,
        stream: int,
        state: bytes,
        used: int | None,
    ) -> int | None:
        row = await self.db.fetchrow(
            "SELECT MAX(generation) FROM sliding_sync_positions WHERE user_id = $1 AND device_id = $2 AND conn_id = $3",
            user_id,
            device_id,
            conn_id,
            conn=conn,
        )
        top = row[0] if row is not None and row[0] is not None else None
        generation = at_least if top is None else max(at_least, int(top) + 1)
        await self.db.run(
            "DELETE FROM sliding_sync_positions WHERE user_id = $1 AND device_id = $2 AND conn_id = $3 "
            "AND generation < $4",
            user_id,
            device_id,
            conn_id,
            generation if used is None else used,
            conn=conn,
        )
        added = await self.db.fetchrow(
            _INSERT, user_id, device_id, conn_id, generation, stream, state, now_ms(), conn=conn
        )
        return None if added is None else int(added[0])

    async def _save_postgresql(self, _: None, asked: list[_Save]) -> list[int | None]:
        """Saves asked in one turn of the event loop (one message wakes every member's long-poll, and
        each then saves), in one statement that is a transaction of its own (`_SAVE_MANY`). It commits
        without waiting for the WAL flush (`set_config(…, true)` in the statement: it holds until the
        statement's own commit): a crash may lose the newest positions, and a client then gets
        M_UNKNOWN_POS and starts over — never a wrong answer. Every long-poll answer saves one, so a
        BEGIN, a SET LOCAL and a COMMIT around it, or the flush wait, would be most of its cost.
        Two saves of one connection in a batch would take the same generation: the later ones get
        None and try again (in the next turn's batch). The rows go in one order, by connection, so two
        batches running at once take their row locks in the same order (no deadlock)."""
        first: dict[tuple[str, str, str], int] = {}
        for i, save in enumerate(asked):
            first.setdefault(save[:3], i)
        batch = [asked[first[k]] for k in sorted(first)]
        columns = [list(c) for c in zip(*batch, strict=True)]
        rows = await self.db.write_one(_SAVE_MANY, *columns)
        saved = {(r[0], r[1], r[2]): int(r[3]) for r in rows}
        return [saved.get(save[:3]) if first[save[:3]] == i else None for i, save in enumerate(asked)]

    async def forget(self, user_id: str, device_id: str, conn_id: str) -> None:
        """Drop a connection (a request without `pos` starts it afresh)."""
        async with self.db.write() as conn:
            await self.db.run(
                "DELETE FROM sliding_sync_positions WHERE user_id = $1 AND device_id = $2 AND conn_id = $3",
                user_id,
                device_id,
                conn_id,
                conn=conn,
            )

    async def purge(self) -> None:
        """Drop connections unused for MAX_AGE_MS, and those of devices that no longer exist."""
        async with self.db.write() as conn:
            await self.db.run(
                "DELETE FROM sliding_sync_positions WHERE created_ts < $1 OR NOT EXISTS (SELECT 1 FROM devices d "
                "WHERE d.user_id = sliding_sync_positions.user_id AND d.device_id = sliding_sync_positions.device_id)",
                now_ms() - MAX_AGE_MS,
                conn=conn,
            )
