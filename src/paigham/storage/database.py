"""The database handle: read and write transactions, and the stream counter.

This module and dialect.py are the only places that know which engine runs: stores build their
engine-specific statements through `db.upsert`/`db.insert_ignore` (dialect.py), and where a hot-path
statement must differ they name both forms and pick one when they are made (`Database.per_engine`).

PostgreSQL goes through SQLAlchemy's async engine (asyncpg, a connection pool). SQLite does not:
an SQLite query on an indexed column takes microseconds, far less than handing it to a driver
thread and back (aiosqlite) through SQLAlchemy's greenlet adapter, which cost ~1 ms per query.
So SQLite runs SQLAlchemy's *synchronous* engine in the event-loop thread, on two long-lived
connections: one for reads (autocommit: each statement sees the latest commit, as READ COMMITTED
does on PostgreSQL) and one for writes (BEGIN IMMEDIATE … COMMIT, one writer at a time behind an
asyncio lock). Both are wrapped in `InLoopConnection`, which offers the `AsyncConnection` methods
the stores use, so store code is the same for both engines.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from hashlib import sha256
from typing import Any, TypeVar

import msgspec
from sqlalchemy import Connection, Engine, NullPool, Table, create_engine, event, text
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.dml import Insert

from paigham.storage.dialect import POSTGRESQL, SQLITE, Dialect
from paigham.storage.raw_pool import RawPool
from paigham.storage.unavailable import database_unreachable
from paigham.storage.watermark import ADVANCE, NO_FLUSH_WAIT, WATERMARK, FlushBarrier, barrier_slot

T = TypeVar("T")

_TOOK_POSITIONS = "paigham_took_positions"  # a key of a PostgreSQL connection's info dict

# How long a writer waits for another *process* holding SQLite's write lock (CLI commands).
SQLITE_LOCK_WAIT_S = 10.0
# Settings of every PostgreSQL session the server opens. JIT compilation off: PostgreSQL compiles a
# statement whose estimated cost passes `jit_above_cost` (100,000) — and optimises and inlines past
# 500,000 — before running it, which a big table's estimates reach although the statement reads a
# few rows by index: /sync's batched probe in a room of 50,000 spent 950 ms compiling and 14 ms
# running (docs/decisions.md). Every statement here is a short indexed read or write.
SESSION_SETTINGS = {"jit": "off"}


def async_url(url: str) -> str:
    """Map the user-facing URL (sqlite:///path, postgresql://…) to the async driver's."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


class InLoopConnection(AsyncConnection):
    """The `AsyncConnection` API over a synchronous SQLAlchemy connection, executed in the calling
    (event-loop) thread. Row results are fully buffered, as an `AsyncConnection`'s are."""

    def __init__(self, sync_conn: Connection) -> None:  # deliberately no super().__init__: nothing async
        self.conn = sync_conn
        self.sync_connection = sync_conn
        self.sync_engine = sync_conn.engine
        self.dbapi: Any = sync_conn.connection.dbapi_connection  # the sqlite3 connection, for raw SQL

    async def execute(
        self, statement: Any, parameters: Any = None, *, execution_options: Mapping[str, Any] | None = None
    ) -> Any:
        return _buffered(self.conn.execute(statement, parameters, execution_options=execution_options))

    async def exec_driver_sql(
        self, statement: str, parameters: Any = None, execution_options: Mapping[str, Any] | None = None
    ) -> Any:
        return _buffered(self.conn.exec_driver_sql(statement, parameters, execution_options=execution_options))

    async def scalar(
        self, statement: Any, parameters: Any = None, *, execution_options: Mapping[str, Any] | None = None
    ) -> Any:
        return (await self.execute(statement, parameters, execution_options=execution_options)).scalar()

    async def scalars(
        self, statement: Any, parameters: Any = None, *, execution_options: Mapping[str, Any] | None = None
    ) -> Any:
        return (await self.execute(statement, parameters, execution_options=execution_options)).scalars()

    async def run_sync(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return fn(self.conn, *args, **kwargs)

    def get_execution_options(self) -> Mapping[str, Any]:
        return self.conn.get_execution_options()

    def in_transaction(self) -> bool:
        return self.conn.in_transaction()


def _buffered(result: CursorResult[Any]) -> Any:
    """Rows fetched now (the cursor is released at once); DML results keep `rowcount`."""
    return result.freeze()() if result.returns_rows else result


class Database:
    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self._is_sqlite = url.startswith("sqlite")
        self.dialect: Dialect = SQLITE if self._is_sqlite else POSTGRESQL
        # Whether every read suspends the caller (PostgreSQL: a network round trip). SQLite's reads
        # run in the event loop's thread and return without letting other tasks run.
        self.reads_suspend = not self._is_sqlite
        # SQLite allows one writer at a time; queue writers here instead of spinning on SQLITE_BUSY.
        self._write_lock = asyncio.Lock()
        self._sqlite: Engine | None = None
        self._reader: InLoopConnection | None = None
        self._writer: InLoopConnection | None = None
        self._pool: RawPool | None = None  # raw connections for single statements (PostgreSQL), made on first use
        self._pool_size = pool_size
        if self._is_sqlite:
            self._sqlite = create_engine(
                url, poolclass=NullPool, connect_args={"check_same_thread": False, "cached_statements": 2048}
            )
            _configure_sqlite(self._sqlite)
        else:
            self._barrier = FlushBarrier(self._advance_watermark)
            self._barrier_slot = barrier_slot()
            self.engine: AsyncEngine = create_async_engine(
                async_url(url),
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=False,
                connect_args={"server_settings": SESSION_SETTINGS},
            )

    # -- what differs between the engines (dialect.py) -------------------------------------------
    def upsert(
        self, table: Table, values: Mapping[str, Any], keys: Sequence[str], update: Sequence[str] | None = None
    ) -> Insert:
        """INSERT … ON CONFLICT (keys) DO UPDATE SET the `update` columns (default: all non-key ones)."""
        return self.dialect.upsert(table, values, keys, update)

    def insert_ignore(self, table: Table, values: Mapping[str, Any], keys: Sequence[str]) -> Insert:
        """INSERT … ON CONFLICT (keys) DO NOTHING."""
        return self.dialect.insert_ignore(table, values, keys)

    def per_engine(self, *, sqlite: T, postgresql: T) -> T:
        """One of two forms of the same thing, chosen once by the store that names both (a query or a
        function whose SQL must differ per engine), so no call asks which engine runs."""
        return sqlite if self._is_sqlite else postgresql

    def _sqlite_conn(self, which: str) -> InLoopConnection:
        conn = self._reader if which == "read" else self._writer
        if conn is None:
            assert self._sqlite is not None
            raw = self._sqlite.connect().execution_options(isolation_level="AUTOCOMMIT")
            conn = InLoopConnection(raw)
            if which == "read":
                self._reader = conn
            else:
                self._writer = conn
        return conn

    async def close(self) -> None:
        if self._is_sqlite:
            async with self._write_lock:
                for conn in (self._reader, self._writer):
                    if conn is not None:
                        conn.conn.close()
                self._reader = self._writer = None
                assert self._sqlite is not None
                self._sqlite.dispose()
        else:
            if self._pool is not None:
                await self._pool.close()
                self._pool = None
            await self.engine.dispose()

    async def ping(self) -> None:
        """One round trip (the readiness probe): raises when the database does not answer."""
        async with self.read() as conn:
            await conn.execute(text("SELECT 1"))

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        if self._is_sqlite:
            yield self._sqlite_conn("read")
            return
        async with self.engine.connect() as conn, _discard_if_dead(conn):
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed on success, rolled back on any exception. On PostgreSQL a
        transaction that took stream positions returns only once its commit is durable and the
        watermark readers read has passed it (storage/watermark.py)."""
        if not self._is_sqlite:
            async with self.engine.connect() as conn, _discard_if_dead(conn):
                conn.info.pop(_TOOK_POSITIONS, None)  # (the info dict outlives a checkout)
                async with conn.begin():
                    yield conn
                took = conn.info.pop(_TOOK_POSITIONS, False)
            if took:
                await self._barrier.wait()
            return
        async with self._write_lock:
            conn = self._sqlite_conn("write")
            await _begin_immediate(conn.dbapi)
            try:
                yield conn
            except BaseException:
                if conn.dbapi.in_transaction:
                    conn.dbapi.execute("ROLLBACK")
                raise
            if conn.dbapi.in_transaction:  # (Alembic commits its own work through the driver)
                conn.dbapi.execute("COMMIT")

    # -- raw SQL for the hot paths ---------------------------------------------------------------
    # Building and compiling a SQLAlchemy statement costs far more than running it, so the queries
    # every send and every /sync make are written as SQL text, once, in PostgreSQL's style
    # (`$1`, `col = ANY($2::text[])`); `_sqlite_sql` rewrites that for SQLite (`?1`,
    # `col IN (SELECT value FROM json_each(?2))`, list arguments passed as JSON).

    async def fetch(self, sql: str, *args: Any, conn: AsyncConnection | None = None) -> list[Sequence[Any]]:
        """Rows of a query, as tuples (inside `conn`'s transaction if given, else a fresh read)."""
        if self._is_sqlite:
            q, lists = _sqlite_sql(sql)
            return self._dbapi(conn).execute(q, _sqlite_args(args) if lists else args).fetchall()  # type: ignore[no-any-return]
        if conn is not None:
            return await (await _driver(conn)).fetch(sql, *args)  # type: ignore[no-any-return]
        pool = self._pg_pool()
        c = await pool.acquire()
        try:
            return await c.fetch(sql, *args)  # type: ignore[no-any-return]
        finally:
            pool.release(c)

    async def fetchrow(self, sql: str, *args: Any, conn: AsyncConnection | None = None) -> Sequence[Any] | None:
        rows = await self.fetch(sql, *args, conn=conn)
        return rows[0] if rows else None

    async def write_one(self, sql: str, *args: Any) -> list[Sequence[Any]]:
        """One write statement that is a transaction of its own, and its rows (RETURNING). On
        PostgreSQL it runs on the raw pool as the statement's implicit transaction: one round trip,
        where a `write()` block adds a BEGIN and a COMMIT (and SQLAlchemy's connection checkout)."""
        if self._is_sqlite:
            async with self.write() as conn:
                return await self.fetch(sql, *args, conn=conn)
        pool = self._pg_pool()
        c = await pool.acquire()
        try:
            return await c.fetch(sql, *args)  # type: ignore[no-any-return]
        finally:
            pool.release(c)

    async def run(self, sql: str, *args: Any, conn: AsyncConnection) -> None:
        """A statement without result rows, inside the caller's write transaction."""
        if self._is_sqlite:
            q, lists = _sqlite_sql(sql)
            self._dbapi(conn).execute(q, _sqlite_args(args) if lists else args)
        else:
            await (await _driver(conn)).execute(sql, *args)

    async def run_many(self, sql: str, rows: Sequence[Sequence[Any]], *, conn: AsyncConnection) -> None:
        if not rows:
            return
        if self._is_sqlite:
            q, lists = _sqlite_sql(sql)
            self._dbapi(conn).executemany(q, [_sqlite_args(r) for r in rows] if lists else rows)
        else:
            await (await _driver(conn)).executemany(sql, rows)

    def _dbapi(self, conn: AsyncConnection | None) -> Any:
        c = conn if isinstance(conn, InLoopConnection) else self._sqlite_conn("read")
        return c.dbapi

    def _pg_pool(self) -> RawPool:
        if self._pool is None:
            import asyncpg

            dsn = "postgresql://" + self.url.split("://", 1)[1]
            # These connections only ever run single statements outside transactions (reads, and the
            # writes of `write_one`, whose settings are transaction-local): no session state to reset
            # between checkouts (asyncpg's pool sent `RESET ALL; UNLISTEN *; …` on every release, one
            # more round trip per read, until it was told not to), and a checkout is a list's pop
            # (storage/raw_pool.py).
            self._pool = RawPool(lambda: asyncpg.connect(dsn, server_settings=SESSION_SETTINGS), self._pool_size)
        return self._pool

    async def lock_room(self, conn: AsyncConnection, room_id: str) -> None:
        """Serialise writers of one room across processes (SQLite already has one writer)."""
        await self.lock(conn, room_id)

    async def lock(self, conn: AsyncConnection, name: str | int) -> None:
        """Hold the lock on `name` (a room ID, or a prefixed name such as "pushers:@u:server"; or a fixed
        number) until `conn`'s transaction ends: on PostgreSQL a transaction-scoped advisory lock on a
        64-bit hash of the name; SQLite has one writer at a time already."""
        if not self._is_sqlite:
            key = (
                name
                if isinstance(name, int)
                else int.from_bytes(sha256(name.encode()).digest()[:8], "big", signed=True)
            )
            await (await _driver(conn)).execute("SELECT pg_advisory_xact_lock($1)", key)

    @staticmethod
    async def next_position(conn: AsyncConnection, count: int = 1) -> int:
        """Take `count` stream positions; return the last. Call late in the transaction: the
        counter's row is held from here to commit (storage/watermark.py)."""
        if isinstance(conn, InLoopConnection):  # one writer: the watermark moves with the counter
            row = conn.dbapi.execute(
                "UPDATE stream_counter SET pos = pos + ? WHERE id IN (1, 2) RETURNING pos", (count,)
            ).fetchone()
            return int(row[0])
        Database.took_positions(conn)
        return int(
            await (await _driver(conn)).fetchval(
                f"WITH c AS MATERIALIZED ({NO_FLUSH_WAIT}) "
                "UPDATE stream_counter SET pos = pos + $1 FROM c WHERE id = 1 RETURNING pos",
                count,
            )
        )

    @staticmethod
    def took_positions(conn: AsyncConnection) -> None:
        """(PostgreSQL) This transaction takes stream positions, in a statement that also runs
        `NO_FLUSH_WAIT`: `write()` waits for the flush barrier after its commit."""
        conn.info[_TOOK_POSITIONS] = True

    async def current_position(self) -> int:
        """The stream's position as readers see it: every position at or below it is committed."""
        row = await self.fetchrow(f"SELECT {WATERMARK}")
        assert row is not None
        return int(row[0])

    async def _advance_watermark(self) -> None:
        pool = self._pg_pool()
        c = await pool.acquire()
        try:
            await c.execute(ADVANCE, self._barrier_slot)
        finally:
            pool.release(c)


@asynccontextmanager
async def _discard_if_dead(conn: AsyncConnection) -> AsyncIterator[None]:
    """A pooled connection that failed because the database went out of reach is discarded, not
    returned to the pool. SQLAlchemy does that for errors of its own statements, but the hot paths
    run raw statements on the driver under it (`_driver`), whose errors it never sees: without this a
    network cut left dead connections in the pool, and every write failed until a restart."""
    try:
        yield
    except BaseException as exc:
        if database_unreachable(exc) and not conn.invalidated:
            with contextlib.suppress(Exception):
                await conn.invalidate()
        raise


async def _driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under a SQLAlchemy connection, inside its transaction: SQLAlchemy's
    asyncpg adapter sends BEGIN lazily with its first statement, so when raw SQL comes first the
    BEGIN is sent here (otherwise the raw statement would run, and commit, on its own)."""
    sync = conn.sync_connection
    assert sync is not None
    adapt = sync.connection.dbapi_connection
    if sync.in_transaction() and getattr(adapt, "_transaction", True) is None:
        start = getattr(adapt, "_start_transaction", None)
        if start is not None:
            await start()
        else:  # another SQLAlchemy version: let it begin the way it does
            await conn.execute(text("SELECT 1"))
    return sync.connection.driver_connection


_PARAM = re.compile(r"\$(\d+)")
_ANY = re.compile(r"=\s*ANY\(\$(\d+)(?:::\w+\[\])?\)")
_CAST = re.compile(r"::\w+(\[\])?")
_sqlite_cache: dict[str, tuple[str, bool]] = {}


def _sqlite_sql(sql: str) -> tuple[str, bool]:
    """The SQLite form of a query, and whether it takes list arguments (passed as JSON)."""
    out = _sqlite_cache.get(sql)
    if out is None:
        text_ = _ANY.sub(lambda m: f"IN (SELECT value FROM json_each(?{m.group(1)}))", sql)
        # (a statement of SQLite's own may read a list argument with json_each too)
        out = (_PARAM.sub(lambda m: f"?{m.group(1)}", _CAST.sub("", text_)), text_ != sql or "json_each(" in sql)
        if sqlite3.sqlite_version_info < (3, 35):  # before 3.35 SQLite has no MATERIALIZED hint
            out = (out[0].replace(" AS MATERIALIZED (", " AS ("), out[1])
        _sqlite_cache[sql] = out
    return out


def _json_text(value: Any) -> str:
    """JSON as text (bytes would reach SQLite as a BLOB, which its JSON functions read as JSONB)."""
    return msgspec.json.encode(value).decode()


def _sqlite_args(args: Sequence[Any]) -> tuple[Any, ...]:
    out = []
    for a in args:
        if isinstance(a, set | frozenset):
            a = sorted(a)
        if isinstance(a, list | tuple):
            a = _json_text(a)
        out.append(a)
    return tuple(out)


async def _begin_immediate(dbapi: Any) -> None:
    """BEGIN IMMEDIATE without blocking the event loop while another process holds the lock."""
    deadline = time.monotonic() + SQLITE_LOCK_WAIT_S
    delay = 0.002
    while True:
        try:
            dbapi.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Transactions are issued explicitly (BEGIN IMMEDIATE … COMMIT); the driver must not.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        # Short: these connections run in the event loop, which must not sleep in SQLite's busy
        # handler; writers wait for other processes in `_begin_immediate` instead.
        cur.execute("PRAGMA busy_timeout=50")
        cur.execute("PRAGMA foreign_keys=OFF")
        cur.close()
