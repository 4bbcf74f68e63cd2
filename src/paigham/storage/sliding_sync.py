"""Simplified Sliding Sync (MSC4186) connections: what each connection has been sent, by position.

A connection is (user, device, conn_id). Every response that changes what the connection holds is
saved as a new *generation* (a row); its `pos` names that generation and the stream position it was
computed at. A request with `pos` g reads row g, and saving g+1 deletes every generation older than
g — so the latest pos can be retried (a lost response), and a superseded one is refused
(`M_UNKNOWN_POS`). Rows live in the database, so a `pos` survives a restart and a move to another
worker; rows older than `MAX_AGE_MS` are refused and purged.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Index, LargeBinary, PrimaryKeyConstraint, String, Table

from paigham.clock import now_ms
from paigham.storage.database import Database
from paigham.storage.schema import metadata

MAX_AGE_MS = 7 * 24 * 3600 * 1000  # a connection unused for a week is forgotten (as Synapse does)

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
        self, user_id: str, device_id: str, conn_id: str, generation: int, stream: int, state: bytes, *, used: int
    ) -> None:
        """Save `generation`, and drop every generation of the connection older than `used` (the one
        the request came with: it stays, so a lost response can be asked for again)."""
        async with self.db.write() as conn:
            await self.db.run(
                "DELETE FROM sliding_sync_positions WHERE user_id = $1 AND device_id = $2 AND conn_id = $3 "
                "AND (generation < $4 OR generation = $5)",
                user_id,
                device_id,
                conn_id,
                used,
                generation,
                conn=conn,
            )
            await self.db.run(
                "INSERT INTO sliding_sync_positions (user_id, device_id, conn_id, generation, stream, state, "
                "created_ts) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                user_id,
                device_id,
                conn_id,
                generation,
                stream,
                state,
                now_ms(),
                conn=conn,
            )

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
