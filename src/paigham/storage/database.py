"""The database handle: one async engine, read and write transactions, and the stream counter.

This module and dialect.py are the only places where SQLite and PostgreSQL differ.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from paigham.storage.schema import stream_counter


def async_url(url: str) -> str:
    """Map the user-facing URL (sqlite:///path, postgresql://…) to the async driver's."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


class Database:
    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if not self.is_sqlite:
            kwargs = {"pool_size": pool_size, "max_overflow": pool_size, "pool_pre_ping": False}
        self.engine: AsyncEngine = create_async_engine(async_url(url), **kwargs)
        # SQLite allows one writer at a time; queue writers here instead of spinning on SQLITE_BUSY.
        self._write_lock = asyncio.Lock()
        if self.is_sqlite:
            _configure_sqlite(self.engine)

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed on success, rolled back on any exception."""
        if self.is_sqlite:
            async with self._write_lock, self.engine.connect() as conn:
                await conn.execution_options(sqlite_immediate=True)
                async with conn.begin():
                    yield conn
        else:
            async with self.engine.begin() as conn:
                yield conn

    async def lock_room(self, conn: AsyncConnection, room_id: str) -> None:
        """Serialise writers of one room across processes (SQLite already has one writer)."""
        if not self.is_sqlite:
            key = int.from_bytes(hashlib.sha256(room_id.encode()).digest()[:8], "big", signed=True)
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})

    @staticmethod
    async def next_position(conn: AsyncConnection, count: int = 1) -> int:
        """Take `count` stream positions; return the last. Call late in the transaction."""
        result = await conn.execute(
            update(stream_counter)
            .where(stream_counter.c.id == 1)
            .values(pos=stream_counter.c.pos + count)
            .returning(stream_counter.c.pos)
        )
        return int(result.scalar_one())

    async def current_position(self) -> int:
        async with self.engine.connect() as conn:
            result = await conn.execute(select(stream_counter.c.pos).where(stream_counter.c.id == 1))
            return int(result.scalar_one())


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN IMMEDIATE can be issued for writers.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute("PRAGMA foreign_keys=OFF")
        cur.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get("sqlite_immediate"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")
